"""`mspec fmt`: print a spec canonically, keeping every comment.

The text is parsed to the AST and printed back from it, so the layout is
decided by the AST alone: 4-space indentation, one statement per line,
minimal parentheses, aligned train settings, long pipe chains broken before
each `|>`. Comments are not in the AST; they are placed from their source
positions (the lexer gives them, and the tokens that show where each `{`,
`}`, `(`, `)` and `|>` stands):

* a comment alone on its line stays before the statement that follows it,
  at that statement's indentation; one at the end of a body stays before
  its `}`; those at the start and end of the file stay there;
* a comment after code stays at the end of that line;
* a comment inside a statement split over lines stays with the part of the
  statement it was written beside (a stage of a pipe, a parameter, an
  argument of a variant), which keeps that statement split; elsewhere it
  moves to just before (or to the end of) the statement.

Blank lines between statements are kept, at most one; top-level
declarations are always separated by exactly one.

`format_source` checks its own result before returning it: the output must
parse to the same AST (positions aside) and hold the same comments, or
`FormatterBug` is raised and nothing should be written.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelspec.diagnostics import CompileError, Span
from modelspec.syntax import ast
from modelspec.syntax.parser import _lark, parse

__all__ = ["FormatterBug", "MAX_WIDTH", "format_source", "strip_spans"]

INDENT = "    "
# A pipe chain whose line would be longer than this is broken before each `|>`;
# a parameter list or variant argument list, one item per line.
MAX_WIDTH = 100
# Train settings and gan roles are aligned: keys padded to the longest, then this.
KEY_GAP = "  "


class FormatterBug(RuntimeError):
    """The formatted text would not mean what the source meant (a bug in `fmt`)."""


# ---- precedence ------------------------------------------------------------------
# Levels of grammar/mspec.lark, lowest first. An operand printed where the
# grammar asks for a higher level is put in parentheses.

PIPE, OR, AND, NOT, COMPARE, SUM, TERM, FACTOR, POWER, POSTFIX, ATOM = range(1, 12)

# operator -> (its level, least level of its left operand, of its right operand)
_BINARY = {
    "or": (OR, OR, AND),
    "and": (AND, AND, NOT),
    **{op: (COMPARE, SUM, SUM) for op in ("==", "!=", "<=", ">=", "<", ">")},
    **{op: (SUM, SUM, TERM) for op in ("+", "-")},
    **{op: (TERM, TERM, FACTOR) for op in ("*", "/", "//", "%")},
    "**": (POWER, POSTFIX, FACTOR),
}


# ---- the source: tokens and comments by position ----------------------------------


@dataclass
class _Comment:
    start: int
    end: int
    text: str
    full_line: bool  # nothing but blanks before it on its line


@dataclass
class _Token:
    value: str
    start: int
    end: int


_BLANK_LINE = re.compile(r"\n[ \t\f\r]*\n")


class _Source:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[_Token] = []
        self.comments: list[_Comment] = []
        for tok in _lark().lex(text, dont_ignore=True):
            value = str(tok)
            if tok.type == "COMMENT":
                line_start = text.rfind("\n", 0, tok.start_pos) + 1
                full = not text[line_start : tok.start_pos].strip()
                self.comments.append(_Comment(tok.start_pos, tok.end_pos, value.rstrip(), full))
            elif value.strip():
                self.tokens.append(_Token(value, tok.start_pos, tok.end_pos))
        self.token_starts = [t.start for t in self.tokens]
        self.comment_starts = [c.start for c in self.comments]
        self.taken = [False] * len(self.comments)
        self.closing: dict[int, int] = {}  # position of `{` -> position of its `}`
        stack = []
        for t in self.tokens:
            if t.value == "{":
                stack.append(t.start)
            elif t.value == "}" and stack:
                self.closing[stack.pop()] = t.start

    def take(self, start: int, end: int) -> list[_Comment]:
        """The comments starting in [start, end) not yet placed; they are placed now."""
        out = []
        i = bisect.bisect_left(self.comment_starts, start)
        while i < len(self.comments) and self.comments[i].start < end:
            if not self.taken[i]:
                self.taken[i] = True
                out.append(self.comments[i])
            i += 1
        return out

    def has_comments(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.comment_starts, start)
        while i < len(self.comments) and self.comments[i].start < end:
            if not self.taken[i]:
                return True
            i += 1
        return False

    def next_token(self, pos: int, value: str | None = None) -> _Token:
        """The first token starting at or after `pos` (with that text, if given)."""
        i = bisect.bisect_left(self.token_starts, pos)
        while value is not None and i < len(self.tokens) and self.tokens[i].value != value:
            i += 1
        if i >= len(self.tokens):
            raise FormatterBug(f"no token {value!r} after offset {pos}")
        return self.tokens[i]

    def prev_token(self, pos: int, value: str) -> _Token:
        """The last token with that text starting before `pos`."""
        i = bisect.bisect_left(self.token_starts, pos) - 1
        while i >= 0 and self.tokens[i].value != value:
            i -= 1
        if i < 0:
            raise FormatterBug(f"no token {value!r} before offset {pos}")
        return self.tokens[i]

    def eol(self, pos: int) -> int:
        end = self.text.find("\n", pos)
        return len(self.text) if end < 0 else end

    def blank_between(self, start: int, end: int) -> bool:
        return _BLANK_LINE.search(self.text, start, max(start, end)) is not None

    def literal(self, start: int, end: int) -> str:
        """The first string literal in [start, end), as written."""
        i = bisect.bisect_left(self.token_starts, start)
        while i < len(self.tokens) and self.tokens[i].start < end:
            if self.tokens[i].value.startswith('"'):
                return self.tokens[i].value
            i += 1
        raise FormatterBug(f"no string literal at offsets {start}-{end}")


# ---- segments: the lines one construct is printed on --------------------------------


@dataclass
class _Segment:
    """One output line of a construct, with the source range it stands for.

    Comments found inside the construct are given to the segment they were
    written beside; all but a last end-of-line one go on lines before it.
    """

    start: int
    end: int
    text: str  # the whole line, indentation included
    comment_indent: str
    comments: list[_Comment] = field(default_factory=list)


def _place(segments: list[_Segment], comments: list[_Comment]) -> None:
    starts = [s.start for s in segments]
    least = 0
    for c in comments:
        k = max(bisect.bisect_right(starts, c.start) - 1, 0)
        # A comment alone on its line after a segment's code belongs to the next one.
        if c.full_line and c.start >= segments[k].end and k + 1 < len(segments):
            k += 1
        k = max(k, least)  # never print a comment before one written earlier
        least = k
        segments[k].comments.append(c)


def _render(segments: list[_Segment], trailing: _Comment | None = None) -> list[str]:
    if trailing is not None:
        segments[-1].comments.append(trailing)
    lines = []
    for s in segments:
        comments = s.comments
        end = None
        if comments and not comments[-1].full_line:
            end, comments = comments[-1], comments[:-1]
        lines += [s.comment_indent + c.text for c in comments]
        lines.append(s.text + (f"  {end.text}" if end else ""))
    return lines


def _layout(
    single: _Segment,
    broken: Callable[[], list[_Segment]] | None,
    inner: list[_Comment],
    too_long: bool,
) -> list[_Segment]:
    """One line, or the broken form when the line is too long or when comments
    written inside the construct need its lines. Comments that would stand
    before the first line, or end the last one, do not: on one line they are
    printed there just the same (and, formatted again, they are found outside
    the construct), so the choice is the same the second time."""
    if broken is not None and (too_long or inner):
        segments = broken()
        _place(segments, inner)
        first, middle, last = segments[0].comments, segments[1:-1], segments[-1].comments
        if (
            too_long
            or (first and not first[-1].full_line)  # one ends the first line
            or any(s.comments for s in middle)
            or any(c.full_line for c in last)  # one stands on a line before the last
        ):
            return segments
    _place([single], inner)
    return [single]


# ---- the printer -----------------------------------------------------------------------


@dataclass
class _Chunk:
    """A top-level item with the comments before it, as it will be printed."""

    item: object
    leading: list[tuple[bool, str]]  # (a blank line before it in the source, the comment)
    blank_before_item: bool
    lines: list[str]


class _Printer:
    def __init__(self, src: _Source):
        self.src = src

    # ---- expressions

    def expr(self, e: ast.Expr, least: int = PIPE) -> str:
        text, level = self._expr(e)
        return f"({text})" if level < least else text

    def _expr(self, e: ast.Expr) -> tuple[str, int]:
        if isinstance(e, ast.Name):
            return e.id, ATOM
        if isinstance(e, (ast.Int, ast.Float, ast.Str)):
            return e.text, ATOM
        if isinstance(e, ast.Bool):
            return ("true" if e.value else "false"), ATOM
        if isinstance(e, ast.Tuple):
            items = [self.expr(i) for i in e.items]
            return ("(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"), ATOM
        if isinstance(e, ast.List):
            return "[" + ", ".join(self.expr(i) for i in e.items) + "]", ATOM
        if isinstance(e, ast.Unary):
            # Parentheses the grammar does not need but a reader does: `not (a > b)`, `-(-d)`.
            if e.op == "not":
                return "not " + self.expr(e.operand, FACTOR), NOT
            return e.op + self.expr(e.operand, POWER), FACTOR
        if isinstance(e, ast.Binary):
            level, left, right = _BINARY[e.op]
            return f"{self.expr(e.left, left)} {e.op} {self.expr(e.right, right)}", level
        if isinstance(e, ast.Call):
            return f"{self.expr(e.func, POSTFIX)}({self.args(e.args)})", POSTFIX
        if isinstance(e, ast.Attribute):
            return f"{self.expr(e.value, POSTFIX)}.{e.attr}", POSTFIX
        if isinstance(e, ast.Pipe):
            # `(h + shortcut) |> relu` keeps its parentheses: without them it reads as if
            # `relu` applied to `shortcut` alone.
            parts = [self.expr(e.value, POSTFIX)] + [self.expr(s, POSTFIX) for s in e.stages]
            return " |> ".join(parts), PIPE
        raise FormatterBug(f"cannot print {type(e).__name__}")

    def arg(self, a: ast.Arg) -> str:
        if isinstance(a, ast.PositionalArg):
            return self.expr(a.value)
        if isinstance(a, ast.KeywordArg):
            return f"{a.name}={self.expr(a.value)}"
        if isinstance(a, ast.ArrowArg):
            return f"{self.expr(a.input)} -> {self.expr(a.output)}"
        raise FormatterBug(f"cannot print {type(a).__name__}")

    def args(self, args: Sequence[ast.Arg]) -> str:
        return ", ".join(self.arg(a) for a in args)

    # ---- bodies

    def body(
        self,
        items: Sequence,
        open_pos: int,
        close_pos: int,
        indent: str,
        render: Callable[[object, str, _Comment | None], list[str]],
    ) -> tuple[_Comment | None, list[str]]:
        """The lines of the items between `{` at open_pos and `}` at close_pos,
        and the comment on the `{` line, if any."""
        src = self.src
        first = items[0].span.start if items else close_pos
        on_open_line = src.take(open_pos + 1, min(src.eol(open_pos), first))
        header = on_open_line[0] if on_open_line else None
        prev = header.end if header else open_pos + 1
        lines: list[str] = []

        def add(start: int, new: list[str]) -> None:
            if lines and src.blank_between(prev, start):
                lines.append("")
            lines.extend(new)

        for k, item in enumerate(items):
            for c in src.take(prev, item.span.start):
                add(c.start, [indent + c.text])
                prev = c.end
            following = items[k + 1].span.start if k + 1 < len(items) else close_pos
            trailing = src.take(item.span.end, min(src.eol(item.span.end), following))
            add(item.span.start, render(item, indent, trailing[0] if trailing else None))
            prev = trailing[0].end if trailing else item.span.end
        for c in src.take(prev, close_pos):
            add(c.start, [indent + c.text])
            prev = c.end
        return header, lines

    def block(
        self,
        indent: str,
        header: list[_Segment],
        open_comment: _Comment | None,
        lines: list[str],
        trailing: _Comment | None,
    ) -> list[str]:
        """A header ending in `{`, its body, and the `}`; `{}` when there is nothing inside."""
        if not lines and open_comment is None:
            header[-1].text += "}"
            return _render(header, trailing)
        if open_comment is not None:
            header[-1].comments.append(open_comment)
        return _render(header) + lines + [indent + "}" + (f"  {trailing.text}" if trailing else "")]

    # ---- statements

    def simple(
        self,
        indent: str,
        head: str,
        value: ast.Expr | None,
        span: Span,
        trailing: _Comment | None,
    ) -> list[str]:
        """`head value` on one line; a long (or commented) pipe chain or sum
        is broken before each `|>`, or each `+` and `-`."""
        inner = self.src.take(span.start, span.end)
        one = indent + head + (self.expr(value) if value is not None else "")
        chainable = isinstance(value, ast.Pipe) or (isinstance(value, ast.Binary) and value.op in ("+", "-"))

        def broken() -> list[_Segment]:
            (first, first_end), *rest = self.chain(value)
            segments = [_Segment(span.start, first_end, indent + head + first, indent)]
            more = indent + INDENT
            return segments + [_Segment(start, end, more + text, more) for text, start, end in rest]

        single = _Segment(span.start, span.end, one, indent)
        return _render(_layout(single, broken if chainable else None, inner, len(one) > MAX_WIDTH), trailing)

    def chain(self, value: ast.Pipe | ast.Binary) -> list:
        """A pipe or a sum as its first operand, then each `|> stage` (or `+ term`),
        with the source range each stands for."""
        if isinstance(value, ast.Pipe):
            parts: list = [(self.expr(value.value, POSTFIX), value.value.span.end)]
            for stage in value.stages:
                bar = self.src.prev_token(stage.span.start, "|>")
                parts.append(("|> " + self.expr(stage, POSTFIX), bar.start, stage.span.end))
            return parts
        if isinstance(value, ast.Binary) and value.op in ("+", "-"):
            terms = []
            while isinstance(value, ast.Binary) and value.op in ("+", "-"):
                op = self.src.prev_token(value.right.span.start, value.op)
                terms.append((f"{value.op} {self.expr(value.right, TERM)}", op.start, value.right.span.end))
                value = value.left
            return [(self.expr(value, SUM), value.span.end), *reversed(terms)]
        raise FormatterBug(f"cannot break {type(value).__name__}")

    def stmt(self, s: ast.Stmt, indent: str, trailing: _Comment | None) -> list[str]:
        if isinstance(s, ast.Input):
            dims = ", ".join(self.expr(d) for d in s.type.dims)
            return self.simple(indent, f"input {s.name}: {s.type.dtype}[{dims}]", None, s.span, trailing)
        if isinstance(s, ast.Output):
            head = f"output {s.name}" + (" = " if s.value is not None else "")
            return self.simple(indent, head, s.value, s.span, trailing)
        if isinstance(s, ast.Let):
            return self.simple(indent, f"{s.name} = ", s.value, s.span, trailing)
        if isinstance(s, ast.Assert):
            head = "assert " + self.expr(s.condition)
            if s.message is not None:
                head += ", " + self.src.literal(s.condition.span.end, s.span.end)
            return self.simple(indent, head, None, s.span, trailing)
        if isinstance(s, ast.Repeat):
            open_pos = self.src.next_token(s.count.span.end, "{").start
            head = "repeat " + self.expr(s.count)
            if s.name is not None:
                head += f" as {s.name}" + (f"[{s.index}]" if s.index is not None else "")
            header = [_Segment(s.span.start, open_pos, indent + head + " {", indent)]
            _place(header, self.src.take(s.span.start, open_pos))
            open_comment, lines = self.body(s.body, open_pos, s.span.end - 1, indent + INDENT, self.stmt)
            return self.block(indent, header, open_comment, lines, trailing)
        if isinstance(s, ast.If):
            return self.if_stmt(s, indent, trailing, "if ")
        raise FormatterBug(f"cannot print {type(s).__name__}")

    def if_stmt(self, s: ast.If, indent: str, trailing: _Comment | None, keyword: str) -> list[str]:
        src = self.src
        open_pos = src.next_token(s.condition.span.end, "{").start
        close_pos = src.closing[open_pos]
        # After `} else`, comments written before the `if` go at the end of the body above.
        comment_indent = indent + INDENT if keyword.startswith("}") else indent
        header = [_Segment(s.span.start, open_pos, indent + keyword + self.expr(s.condition) + " {", comment_indent)]
        _place(header, src.take(s.span.start, open_pos))
        open_comment, lines = self.body(s.then, open_pos, close_pos, indent + INDENT, self.stmt)
        if not s.orelse:
            return self.block(indent, header, open_comment, lines, trailing)

        else_token = src.next_token(close_pos + 1)
        after = src.next_token(else_token.end)
        # Comments between `}` and what follows `else` end the body above.
        lines += [indent + INDENT + c.text for c in src.take(close_pos + 1, after.start)]
        if open_comment is not None:
            header[-1].comments.append(open_comment)
        out = _render(header) + lines
        if after.value == "if":
            return out + self.if_stmt(s.orelse[0], indent, trailing, "} else if ")
        else_close = src.closing[after.start]
        only = s.orelse[0]
        if (
            len(s.orelse) == 1
            and isinstance(only, ast.If)
            and not src.has_comments(after.start, only.span.start)
            and not src.has_comments(only.span.end, else_close)
        ):  # `else { if c { ... } }` is `else if c { ... }`
            return out + self.if_stmt(only, indent, trailing, "} else if ")
        else_header = [_Segment(after.start, after.end, indent + "} else {", indent)]
        open_comment, lines = self.body(s.orelse, after.start, else_close, indent + INDENT, self.stmt)
        return out + self.block(indent, else_header, open_comment, lines, trailing)

    # ---- declarations

    def listed(
        self,
        head: str,
        items: list[tuple[str, int, int]],
        close: str,
        close_pos: int,
        close_end: int,
        start: int,
        open_from: int,
        inner: list[_Comment],
    ) -> list[_Segment]:
        """`head(a, b) close` on one line, or one item a line when too long or commented.
        The construct starts at `start`; its `(` is the first token `(` from `open_from`."""
        one = head + "(" + ", ".join(text for text, _, _ in items) + ")" + close

        def broken() -> list[_Segment]:
            open_end = self.src.next_token(open_from, "(").end
            segments = [_Segment(start, open_end, head + "(", "")]
            segments += [_Segment(s, e, INDENT + text + ",", INDENT) for text, s, e in items]
            return segments + [_Segment(close_pos, close_end, ")" + close, INDENT)]

        single = _Segment(start, close_end, one, "")
        return _layout(single, broken if items else None, inner, len(one) > MAX_WIDTH)

    def decl(self, d, trailing: _Comment | None) -> list[str]:
        src = self.src
        if isinstance(d, (ast.Import, ast.Use)):
            keyword = "import" if isinstance(d, ast.Import) else "use"
            segments = [_Segment(d.span.start, d.span.end, f"{keyword} {src.literal(d.span.start, d.span.end)}", "")]
            _place(segments, src.take(d.span.start, d.span.end))
            return _render(segments, trailing)
        if isinstance(d, ast.Variant):
            inner = src.take(d.span.start, d.span.end)
            items = [(self.arg(a), a.span.start, a.span.end) for a in d.args]
            close_pos = d.span.end - 1
            head = f"model {d.name} = {d.base}"
            segments = self.listed(head, items, "", close_pos, d.span.end, d.span.start, d.base_span.end, inner)
            return _render(segments, trailing)

        open_pos = src.next_token(d.name_span.end, "{").start
        close_pos = d.span.end - 1
        inner = src.take(d.span.start, open_pos)
        if isinstance(d, ast.ModelDecl):
            items = []
            for p in d.params:
                text = f"{p.name}: {p.type_name}" + (f" = {self.expr(p.default)}" if p.default is not None else "")
                items.append((text, p.span.start, p.span.end))
            paren = src.prev_token(open_pos, ")").start if d.params else open_pos
            head = f"{d.kind} {d.name}"
            header = self.listed(head, items, " {", paren, open_pos, d.span.start, d.name_span.end, inner)
            open_comment, lines = self.body(d.body, open_pos, close_pos, INDENT, self.stmt)
            return self.block("", header, open_comment, lines, trailing)

        if isinstance(d, ast.Gan):
            keyword, items = "gan", d.items
            width = max((len(i.role) for i in items), default=0)

            def render(item, indent, tail):
                return self.simple(indent, item.role.ljust(width) + KEY_GAP, item.value, item.span, tail)

        elif isinstance(d, ast.Train):
            keyword, items = "train", d.settings
            width = max((len(s.key) for s in items), default=0)

            def render(item, indent, tail):
                return self.setting(item, indent, width, tail)

        else:
            raise FormatterBug(f"cannot print {type(d).__name__}")
        header = [_Segment(d.span.start, open_pos, f"{keyword} {d.name} {{", "")]
        _place(header, inner)
        open_comment, lines = self.body(items, open_pos, close_pos, INDENT, render)
        return self.block("", header, open_comment, lines, trailing)

    def setting(self, s: ast.Setting, indent: str, width: int, trailing: _Comment | None) -> list[str]:
        head = s.key.ljust(width) + KEY_GAP
        if not isinstance(s.value, tuple):
            return self.simple(indent, head, s.value, s.span, trailing)
        inner = self.src.take(s.span.start, s.span.end)
        parts = [f"{item.label}: {self.expr(item.value)}" for item in s.value]
        one = indent + head + ", ".join(parts)

        def broken() -> list[_Segment]:
            align = " " * len(indent + head)
            segments = []
            for k, (item, part) in enumerate(zip(s.value, parts)):
                comma = "," if k + 1 < len(parts) else ""
                start = s.span.start if k == 0 else item.span.start
                text = (indent + head if k == 0 else align) + part + comma
                segments.append(_Segment(start, item.span.end, text, indent if k == 0 else align))
            return segments

        single = _Segment(s.span.start, s.span.end, one, indent)
        return _render(_layout(single, broken if len(parts) > 1 else None, inner, len(one) > MAX_WIDTH), trailing)

    # ---- the file

    def module(self, module: ast.Module) -> str:
        src = self.src
        items = sorted([*module.imports, *module.uses, *module.decls], key=lambda i: i.span.start)
        out: list[str] = []

        def comment_lines(comments: list[_Comment], prev: int) -> int:
            for c in comments:
                if out and src.blank_between(prev, c.start):
                    out.append("")
                out.append(c.text)
                prev = c.end
            return prev

        if not items:
            comment_lines(src.take(0, len(src.text)), 0)
            return "\n".join(out) + "\n" if out else ""

        chunks = []
        prev = 0
        for k, item in enumerate(items):
            leading = []
            for c in src.take(prev, item.span.start):
                leading.append((src.blank_between(prev, c.start), c.text))
                prev = c.end
            blank_before_item = src.blank_between(prev, item.span.start)
            following = items[k + 1].span.start if k + 1 < len(items) else len(src.text)
            trailing = src.take(item.span.end, min(src.eol(item.span.end), following))
            chunks.append(_Chunk(item, leading, blank_before_item, self.decl(item, trailing[0] if trailing else None)))
            prev = trailing[0].end if trailing else item.span.end

        # Comments at the top of the file, up to the last blank line before the
        # first item, stay at the top even when that item moves (imports come first).
        first = chunks[0]
        blanks = [b for b, _ in first.leading[1:]] + [first.blank_before_item]
        cut = max((i + 1 for i, b in enumerate(blanks) if b), default=0)
        for i, (blank, text) in enumerate(first.leading[:cut]):
            if blank and i:
                out.append("")
            out.append(text)
        first.leading = [(False, text) for _, text in first.leading[cut : cut + 1]] + first.leading[cut + 1 :]
        if cut == len(blanks):
            first.blank_before_item = False

        is_decl = [not isinstance(c.item, (ast.Import, ast.Use)) for c in chunks]
        order = [i for i in range(len(chunks)) if not is_decl[i]] + [i for i in range(len(chunks)) if is_decl[i]]
        for n, i in enumerate(order):
            chunk = chunks[i]
            blank_first = chunk.leading[0][0] if chunk.leading else chunk.blank_before_item
            if out and (n == 0 or is_decl[i] or is_decl[order[n - 1]] or blank_first):
                out.append("")
            for j, (blank, text) in enumerate(chunk.leading):
                if blank and j:
                    out.append("")
                out.append(text)
            if chunk.leading and chunk.blank_before_item:
                out.append("")
            out.extend(chunk.lines)

        comment_lines(src.take(prev, len(src.text)), prev)
        return "\n".join(out) + "\n"


# ---- checking the result ------------------------------------------------------------


def strip_spans(node):
    """An AST as nested tuples, without positions: equal for equal meaning."""
    if isinstance(node, Span):
        return None
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__,) + tuple(
            (f.name, strip_spans(getattr(node, f.name)))
            for f in dataclasses.fields(node)
            if f.name != "span" and not f.name.endswith("_span")
        )
    if isinstance(node, (tuple, list)):
        return tuple(strip_spans(x) for x in node)
    return node


def format_source(text: str, file: str = "<string>") -> str:
    """The canonical text of a spec. Raises CompileError when it does not parse."""
    module = parse(text, file).module
    src = _Source(text)
    out = _Printer(src).module(module)

    missing = [c.text for c, taken in zip(src.comments, src.taken) if not taken]
    if missing:
        raise FormatterBug(f"fmt lost comments: {missing}")
    try:
        again = parse(out, file).module
    except CompileError as exc:
        raise FormatterBug(f"fmt produced text that does not parse: {exc}") from None
    if strip_spans(again) != strip_spans(module):
        raise FormatterBug("fmt changed the meaning of the spec")
    if sorted(c.text for c in _Source(out).comments) != sorted(c.text for c in src.comments):
        raise FormatterBug("fmt changed the comments of the spec")
    return out
