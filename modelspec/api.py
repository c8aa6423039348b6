"""The public API: a thin composition of the pipeline's stages.

program = modelspec.load("specs/gpt2.mspec")     # parse + check, or raise SpecError
diagnostics = modelspec.check("specs/gpt2.mspec")
table = program.summary("GPT2")
"""

from __future__ import annotations

import gc
import sys
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

    # Checking recurses over expressions, whose depth the parser bounds (MAX_NESTING);
    # make room for that bound.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
    # Checking builds many small objects and frees none until it returns: the cyclic
    # collector would rescan the growing heap again and again (cost superlinear in
    # the spec's size), so it waits until the end.
    collecting = gc.isenabled()
    gc.disable()
    try:
        sources = read(source, name)
        program, diagnostics = analyse(sources, registry())
    finally:
        if collecting:
            gc.enable()
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


def _program(program_or_path: Program | str | Path) -> Program:
    return program_or_path if isinstance(program_or_path, Program) else load(program_or_path)


def backend(name: str):
    """The backend registered under `name` (built-in or from a plugin)."""
    from modelspec.plugins import registry

    found = registry().backend(name)
    if found is None:
        from modelspec.diagnostics import suggestion

        known = sorted(registry().backends)
        hint = registry().hint(backend=name) or suggestion(name, known) or "backends: " + ", ".join(known)
        message = f"no backend named {name!r} ({hint})"
        # A plugin that failed to load, or whose `mspec_backends` broke, may be the one that provides it.
        broken = [str(p) for p in registry().problems if p.may_hide_a_backend]
        if broken:
            message += "; a plugin problem may be why: " + "; ".join(broken[:3])
            message += f" (and {len(broken) - 3} more)" if len(broken) > 3 else ""
        raise ValueError(message)
    return found


def compile_source(program_or_path: Program | str | Path, model: str | None = None, backend_name: str = "torch") -> str:
    """The source a backend generates for `model` (what `mspec compile` writes)."""
    program = _program(program_or_path)
    return backend(backend_name).generate(program, program.model(model).name)


def build(
    program_or_path: Program | str | Path,
    model: str | None = None,
    backend: str = "torch",
    **options,
):
    """A runnable module for `model`: for the torch backend an `nn.Module`, an
    instance of exactly the class in the source `compile_source` returns.

    Options (torch): device="cpu" | "cuda" | "meta", dtype=None | "bfloat16" | ...,
    seed=0 (initialisation is reproducible), compile=False (wrap in torch.compile).
    """
    program = _program(program_or_path)
    return globals()["backend"](backend).build(program, program.model(model).name, **options)
