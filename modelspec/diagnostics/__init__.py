"""Diagnostics: the values every stage reports mistakes with, and their rendering."""

from modelspec.diagnostics.diagnostic import (
    CompileError,
    Diagnostic,
    DiagnosticSink,
    Label,
    Severity,
    error,
)
from modelspec.diagnostics.render import did_you_mean, render, render_all, render_json, suggestion
from modelspec.diagnostics.span import SourceMap, Span

__all__ = [
    "CompileError",
    "Diagnostic",
    "DiagnosticSink",
    "Label",
    "Severity",
    "SourceMap",
    "Span",
    "did_you_mean",
    "error",
    "render",
    "render_all",
    "render_json",
    "suggestion",
]
