"""Diagnostics are values: what went wrong, where, and how to fix it.

Rendering is separate (`render.py`); the checker only ever builds these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from modelspec.diagnostics.span import Span


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Label:
    span: Span
    message: str = ""


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    primary: Label | None
    secondary: tuple[Label, ...] = ()
    notes: tuple[str, ...] = ()
    help: str | None = None
    severity: Severity = Severity.ERROR

    @property
    def span(self) -> Span | None:
        return self.primary.span if self.primary else None

    def to_json(self) -> dict:
        span = self.span
        notes = list(self.notes)
        notes += [f"{label.span}: {label.message}" for label in self.secondary]
        if self.help:
            notes.append(f"help: {self.help}")
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "file": span.file if span else None,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "end_line": span.end_line if span else None,
            "end_column": span.end_column if span else None,
            "notes": notes,
        }


def error(
    code: str,
    message: str,
    span: Span | None,
    label: str = "",
    *,
    secondary: list[Label] | tuple[Label, ...] = (),
    notes: list[str] | tuple[str, ...] = (),
    help: str | None = None,
) -> Diagnostic:
    """Shorthand for the common case: one error with a primary label."""
    return Diagnostic(
        code=code,
        message=message,
        primary=Label(span, label) if span else None,
        secondary=tuple(secondary),
        notes=tuple(notes),
        help=help,
    )


class CompileError(Exception):
    """Carries diagnostics out of a stage that cannot go on."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("; ".join(d.message for d in self.diagnostics))


@dataclass
class DiagnosticSink:
    """Collects diagnostics so a stage can report every mistake, not just the first."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diagnostic: Diagnostic) -> None:
        self.items.append(diagnostic)

    def extend(self, diagnostics: list[Diagnostic]) -> None:
        self.items.extend(diagnostics)

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.items)
