"""`mspec graph FILE`: a model's dataflow as a Mermaid flowchart or a Graphviz digraph."""

from __future__ import annotations

from pathlib import Path

import click

from modelspec.cli.common import has_errors, report
from modelspec.fileio import write_atomically


@click.command("graph")
@click.argument("file", type=click.Path(path_type=str))
@click.option("--model", "model_name", default=None, help="model to draw (default: the last one declared in FILE)")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="Mermaid flowchart or Graphviz dot digraph",
)
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(dir_okay=False, path_type=str),
    help="write to this file (atomically) instead of standard output",
)
def graph_command(file: str, model_name: str | None, fmt: str, output: str | None) -> None:
    """Draw a model of FILE: one box per layer, blocks and repeats as subgraphs,
    edges labelled with tensor shapes."""
    from modelspec.api import compile_program
    from modelspec.graph import to_dot, to_mermaid

    program, diagnostics, sources = compile_program(Path(file))
    if has_errors(diagnostics):
        report(diagnostics, sources)
        raise SystemExit(1)
    if not program.models:
        raise click.UsageError(f"{file} declares no model that can be built from its defaults")
    if model_name is None:
        from modelspec.semantics.loader import display_name

        root = display_name(Path(file))
        own = [n for n, m in program.models.items() if m.span is None or m.span.file == root]
        model_name = (own or list(program.models))[-1]
    elif model_name not in program.models:
        from modelspec.diagnostics import suggestion

        hint = suggestion(model_name, program.models) or "models: " + ", ".join(program.models)
        raise click.BadParameter(f"no model {model_name!r} in {file} ({hint})", param_hint="--model")
    model = program.models[model_name]
    text = to_dot(model) if fmt == "dot" else to_mermaid(model)
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    try:
        write_atomically(output, text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {fmt} graph of {model_name} to {output}", err=True)
