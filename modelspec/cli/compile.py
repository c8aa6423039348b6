"""`mspec compile FILE`: write the source a backend generates for a model, or
the file a binary backend writes itself (`binary = True` and `write()`, see
`mspec_backends` in modelspec/hookspec.py)."""

from __future__ import annotations

from pathlib import Path

import click

from modelspec.cli.common import has_errors, report
from modelspec.fileio import write_atomically


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


def write_binary(chosen, program, name: str, output: Path, checkpoint: Path | None, sources) -> None:
    """Let a binary backend write `output` itself; its errors become messages, not tracebacks."""
    from modelspec.diagnostics import CompileError

    options = {} if checkpoint is None else {"checkpoint": checkpoint}
    try:
        chosen.write(program, name, output, **options)
    except CompileError as exc:
        report(exc.diagnostics, sources)
        raise SystemExit(1) from None
    except ValueError as exc:  # the protocol's "an option's value does not fit": the message names it
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None


@click.command("compile")
@click.argument("file", type=click.Path(path_type=str))
@click.option("--model", help="the model to compile (default: the last one declared in FILE)")
@click.option("-b", "--backend", "backend_name", default="torch", show_default=True, help="backend to lower through")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="file to write (default: stdout)")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="weights for a backend that writes them (e.g. onnx): a `mspec train` checkpoint folder",
)
def compile_command(
    file: str, model: str | None, backend_name: str, output: Path | None, checkpoint: Path | None
) -> None:
    """Lower a model of FILE through a backend and write the source (or the file a binary backend writes)."""
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
    binary = getattr(chosen, "binary", False)
    if binary and output is None:
        raise click.UsageError(f"the {backend_name} backend writes a binary file, not text for stdout: give -o FILE")
    if checkpoint is not None and not binary:
        raise click.BadParameter(f"the {backend_name} backend writes no weights", param_hint="--checkpoint")
    name = pick_model(program, file, model)
    if binary:
        write_binary(chosen, program, name, output, checkpoint, sources)
        click.echo(f"wrote {output} (model {name}, backend {backend_name})", err=True)
        return
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
