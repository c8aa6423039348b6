"""Render diagnostics the way rustc does: header, location, source, carets, notes."""

from __future__ import annotations

import bisect
import difflib
import json

from modelspec.diagnostics.diagnostic import Diagnostic, Label
from modelspec.diagnostics.span import SourceMap

# Above this many candidates, only plausible ones (at most this many) are compared with difflib, so an unknown
# name among thousands costs a bounded number of comparisons.
MAX_COMPARED = 256


class NameIndex:
    """Names, indexed so that the candidates for "did you mean" among many are found in bounded time.

    A name difflib finds close (a ratio of 0.6) has a length within 3/7 to 7/3 of the unknown one's; typos
    keep one end of a name, so beyond MAX_COMPARED candidates only names of such a length that share the
    first or the last letter (case aside) are compared, nearest lengths first, and names the unknown one
    abbreviates (`disc` for `discriminator`)."""

    def __init__(self, names=()):
        self._all: set[str] = set()
        self._sorted: list[str] = []  # for abbreviations: the names a prefix starts are adjacent
        self._ends: dict[tuple[bool, str, int], list[str]] = {}  # (first?, letter, length) -> names
        for name in names:
            self.add(name)

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self):
        return iter(self._all)

    def add(self, name: str) -> None:
        if name in self._all:
            return
        self._all.add(name)
        bisect.insort(self._sorted, name)
        size = len(name)
        self._ends.setdefault((True, name[:1].lower(), size), []).append(name)
        self._ends.setdefault((False, name[-1:].lower(), size), []).append(name)

    def plausible(self, name: str, cap: int = MAX_COMPARED) -> list[str]:
        """At most `cap` names worth comparing with `name`; all of them when there are no more than `cap`."""
        if len(self._all) <= cap:
            return list(self._all)
        found: dict[str, None] = {}  # an ordered set
        if len(name) >= 3:
            start = bisect.bisect_left(self._sorted, name)
            for other in self._sorted[start : start + cap]:
                if not other.startswith(name):
                    break
                found[other] = None
        size = len(name)
        low, high = max(1, (3 * size) // 7), -(-7 * size // 3)  # 2 * min / (len(a) + len(b)) >= 0.6
        first, last = name[:1].lower(), name[-1:].lower()
        for length in sorted(range(low, high + 1), key=lambda n: (abs(n - size), n)):
            for key in ((True, first, length), (False, last, length)):
                for other in self._ends.get(key, ())[: cap - len(found)]:
                    found[other] = None
                if len(found) >= cap:
                    return list(found)
        return list(found)


def did_you_mean(name: str, candidates, limit: int = 4) -> list[str]:
    """Up to `limit` known names close to `name`, best first: near spellings,
    then names that `name` abbreviates (`disc` for `discriminator`).

    `candidates`: any collection of names, or a `NameIndex` (anything with its `plausible`), which keeps
    the work bounded however many names there are."""
    plausible = getattr(candidates, "plausible", None)
    if plausible is None:
        candidates = set(candidates)
        plausible = NameIndex(candidates).plausible if len(candidates) > MAX_COMPARED else None
    known = sorted(set(plausible(name)) if plausible is not None else candidates)
    close = difflib.get_close_matches(name, known, n=limit, cutoff=0.6)
    if len(name) >= 3:
        close += [c for c in known if c.startswith(name) and c not in close]
    return close[:limit]


def suggestion(name: str, candidates) -> str | None:
    """A help line proposing near names, or None when nothing is close."""
    close = did_you_mean(name, candidates)
    if not close:
        return None
    if len(close) == 1:
        return f"did you mean `{close[0]}`?"
    return "did you mean one of " + ", ".join(f"`{c}`" for c in close) + "?"


def _printable(line: str) -> str:
    # Keep one character per column so carets stay under the text they mark.
    return "".join(c if c.isprintable() else " " for c in line)


def _inert(text: str) -> str:
    """Text that may quote a spec (assert messages, import paths, names), made inert for a terminal: control
    and other non-printing characters become escapes (`\\x1b`, `\\n`, `\\u202e`), so a spec cannot move the
    cursor, ring the bell, retitle the window or hide text through a diagnostic."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def render(diagnostic: Diagnostic, sources: SourceMap, color: bool = False) -> str:
    def paint(text: str, style: str) -> str:
        if not color:
            return text
        codes = {"error": "1;31", "warning": "1;33", "bold": "1", "blue": "1;34"}
        return f"\x1b[{codes[style]}m{text}\x1b[0m"

    severity = diagnostic.severity.value
    out = [paint(f"{severity}[{_inert(diagnostic.code)}]", severity) + paint(f": {_inert(diagnostic.message)}", "bold")]
    labels: list[tuple[Label, bool]] = []
    if diagnostic.primary:
        labels.append((diagnostic.primary, True))
    labels += [(label, False) for label in diagnostic.secondary]

    width = max((len(str(label.span.line)) for label, _ in labels), default=1)
    gutter = " " * width
    shown_file = None
    previous_line = None
    # Labels on one line share one printing of it, primary first.
    for label, primary in labels:
        span = label.span
        arrow = "-->" if shown_file is None else ":::"
        if span.file != shown_file:
            out.append(paint(f"{gutter}{arrow} ", "blue") + _inert(f"{span}"))
            shown_file = span.file
            previous_line = None
        text = sources.line(span.file, span.line)
        if text is None:
            continue
        text = _printable(text)
        if (span.file, span.line) != previous_line:
            out.append(paint(f"{gutter} |", "blue"))
            out.append(paint(f"{span.line:>{width}} | ", "blue") + text)
            previous_line = (span.file, span.line)
        end = span.end_column if span.end_line == span.line else len(text) + 1
        length = max(1, end - span.column)
        mark = ("^" if primary else "-") * length
        underline = " " * (span.column - 1) + mark + (f" {_inert(label.message)}" if label.message else "")
        out.append(paint(f"{gutter} | ", "blue") + paint(underline, severity if primary else "blue"))
    for note in diagnostic.notes:
        out.append(f"{gutter} = note: {_inert(note)}")
    if diagnostic.help:
        out.append(f"{gutter} = help: {_inert(diagnostic.help)}")
    return "\n".join(out)


def render_all(diagnostics: list[Diagnostic], sources: SourceMap, color: bool = False) -> str:
    return "\n\n".join(render(d, sources, color) for d in diagnostics)


def render_json(diagnostics: list[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2)
