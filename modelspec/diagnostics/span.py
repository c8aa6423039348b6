"""Source positions: every AST node, IR node and diagnostic points back to text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A range of one source file. Lines and columns are 1-based; ends are exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0  # character offsets into the file's text
    end: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def to(self, other: Span) -> Span:
        """The span covering `self` through `other` (same file)."""
        return Span(
            self.file,
            self.line,
            self.column,
            other.end_line,
            other.end_column,
            self.start,
            other.end,
        )


@dataclass
class SourceMap:
    """The text of every file the compiler has read, for rendering diagnostics."""

    texts: dict[str, str]

    def __init__(self) -> None:
        self.texts = {}
        self._lines: dict[str, tuple[str, list[str]]] = {}  # file -> (the text split, its lines)

    def add(self, file: str, text: str) -> None:
        self.texts[file] = text

    def line(self, file: str, line: int) -> str | None:
        text = self.texts.get(file)
        if text is None:
            return None
        cached = self._lines.get(file)
        if cached is None or cached[0] is not text:
            # Split on "\n" only: that is how the lexer counts lines. Once per file (and text), not per call.
            cached = (text, text.split("\n"))
            self._lines[file] = cached
        lines = cached[1]
        if 1 <= line <= len(lines):
            return lines[line - 1].rstrip("\r")
        return None
