"""Render diagnostics the way rustc does: header, location, source, carets, notes."""

from __future__ import annotations

import difflib
import json

from modelspec.diagnostics.diagnostic import Diagnostic, Label
from modelspec.diagnostics.span import SourceMap


def did_you_mean(name: str, candidates, limit: int = 4) -> list[str]:
    """Up to `limit` known names close to `name`, best first: near spellings,
    then names that `name` abbreviates (`disc` for `discriminator`)."""
    known = sorted(set(candidates))
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


def render(diagnostic: Diagnostic, sources: SourceMap, color: bool = False) -> str:
    def paint(text: str, style: str) -> str:
        if not color:
            return text
        codes = {"error": "1;31", "warning": "1;33", "bold": "1", "blue": "1;34"}
        return f"\x1b[{codes[style]}m{text}\x1b[0m"

    severity = diagnostic.severity.value
    out = [paint(f"{severity}[{diagnostic.code}]", severity) + paint(f": {diagnostic.message}", "bold")]
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
            out.append(paint(f"{gutter}{arrow} ", "blue") + f"{span}")
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
        underline = " " * (span.column - 1) + mark + (f" {label.message}" if label.message else "")
        out.append(paint(f"{gutter} | ", "blue") + paint(underline, severity if primary else "blue"))
    for note in diagnostic.notes:
        out.append(f"{gutter} = note: {note}")
    if diagnostic.help:
        out.append(f"{gutter} = help: {diagnostic.help}")
    return "\n".join(out)


def render_all(diagnostics: list[Diagnostic], sources: SourceMap, color: bool = False) -> str:
    return "\n\n".join(render(d, sources, color) for d in diagnostics)


def render_json(diagnostics: list[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2)
