"""The public API: a thin composition of the pipeline's stages.

program = modelspec.load("specs/gpt2.mspec")     # parse + check, or raise SpecError
diagnostics = modelspec.check("specs/gpt2.mspec")
table = program.summary("GPT2")
"""

from __future__ import annotations

from pathlib import Path

from modelspec.diagnostics import CompileError, Diagnostic, Severity, SourceMap, render_all
from modelspec.ir.graph import Program
from modelspec.semantics.analyse import analyse
from modelspec.semantics.loader import Sources, load_sources


class SpecError(CompileError):
    """A spec has mistakes; `str()` renders them with their source lines."""

    def __init__(self, diagnostics: list[Diagnostic], sources: SourceMap):
        super().__init__(diagnostics)
        self.sources = sources

    def __str__(self) -> str:
        return render_all(self.diagnostics, self.sources)


def _looks_like_text(source: str) -> bool:
    return "\n" in source or "{" in source or not source.strip()


def read(source: str | Path, name: str | None = None) -> Sources:
    """Load a spec from a path or from its text (with an optional display name)."""
    if isinstance(source, Path) or (isinstance(source, str) and not _looks_like_text(source)):
        return load_sources(path=source)
    return load_sources(text=source, name=name or "<string>")


def compile_program(source: str | Path, name: str | None = None) -> tuple[Program, list[Diagnostic], SourceMap]:
    from modelspec.plugins import registry

    sources = read(source, name)
    program, diagnostics = analyse(sources, registry())
    program._sources = sources.sources
    return program, diagnostics, sources.sources


def check(source: str | Path, name: str | None = None) -> list[Diagnostic]:
    """Every diagnostic for a spec (empty when it is consistent)."""
    _, diagnostics, _ = compile_program(source, name)
    return diagnostics


def load(source: str | Path, name: str | None = None) -> Program:
    """The checked Program of a spec; raises SpecError when it has errors."""
    program, diagnostics, sources = compile_program(source, name)
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise SpecError(errors, sources)
    return program
