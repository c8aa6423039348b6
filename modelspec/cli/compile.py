"""`mspec compile FILE`: write the source a backend generates for a model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from modelspec.cli.common import has_errors, report


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, flush, fsync, then rename over it."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pick_model(program, file: str, model: str | None) -> str:
    from modelspec.diagnostics import suggestion

    if model is None:
        from modelspec.semantics.loader import display_name

        root = display_name(Path(file))
        mine = [n for n, m in program.models.items() if m.span is not None and m.span.file == root]
        candidates = mine or list(program.models)
        if not candidates:
            raise click.UsageError(f"{file} declares no model that can be built from its defaults")
        return candidates[-1]
    if model not in program.models:
        hint = suggestion(model, program.models) or "models: " + ", ".join(program.models)
        raise click.BadParameter(f"no model {model!r} in {file} ({hint})", param_hint="--model")
    return model


@click.command("compile")
@click.argument("file", type=click.Path(path_type=str))
@click.option("--model", help="the model to compile (default: the last one declared in FILE)")
@click.option("-b", "--backend", "backend_name", default="torch", show_default=True, help="backend to lower through")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="file to write (default: stdout)")
def compile_command(file: str, model: str | None, backend_name: str, output: Path | None) -> None:
    """Lower a model of FILE through a backend and write the source."""
    from modelspec.api import backend, compile_program
    from modelspec.diagnostics import CompileError

    try:
        chosen = backend(backend_name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--backend") from None
    program, diagnostics, sources = compile_program(Path(file))
    if has_errors(diagnostics):
        report(diagnostics, sources)
        raise SystemExit(1)
    name = pick_model(program, file, model)
    try:
        text = chosen.generate(program, name)
    except CompileError as exc:
        report(exc.diagnostics, sources)
        raise SystemExit(1) from None
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_atomically(output, text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output} (model {name}, backend {backend_name})", err=True)
