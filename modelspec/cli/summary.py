"""`mspec summary FILE`: parameters, FLOPs and memory, without building anything."""

from __future__ import annotations

import json
from pathlib import Path

import click

from modelspec.cli.common import has_errors, report


def _human(n: int) -> str:
    for unit, size in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


@click.command("summary")
@click.argument("file", type=click.Path(path_type=str))
@click.option("--model", "models", multiple=True, help="model to summarise (repeatable; default: all in FILE)")
@click.option(
    "--input", "inputs", multiple=True, metavar="NAME=SHAPE", help="bind an input's sizes, e.g. tokens=1x1024"
)
@click.option("--depth", default=1, show_default=True, type=click.IntRange(1, 32), help="levels of blocks to expand")
@click.option("--training", is_flag=True, help="add an estimate of one training step's memory")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def summary_command(file, models, inputs, depth, training, as_json) -> None:
    """Count parameters, FLOPs and memory of the models in FILE."""
    from modelspec.api import compile_program
    from modelspec.diagnostics import CompileError
    from modelspec.summary import parse_shape, summarise
    from modelspec.summary.training import training_memory

    given: dict[str, tuple[int, ...]] = {}
    for item in inputs:
        name, sep, shape = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r}: write NAME=SHAPE, e.g. tokens=1x1024", param_hint="--input")
        try:
            given[name.strip()] = parse_shape(shape)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--input") from None

    program, diagnostics, sources = compile_program(Path(file))
    if has_errors(diagnostics):
        report(diagnostics, sources)
        raise SystemExit(1)
    names = list(models)
    if not names:
        from modelspec.semantics.loader import display_name

        root = display_name(Path(file))
        names = [n for n, m in program.models.items() if m.span is None or m.span.file == root] or list(program.models)
    if not names:
        raise click.UsageError(f"{file} declares no model that can be built from its defaults")
    results = []
    for name in names:
        if name not in program.models:
            from modelspec.diagnostics import suggestion

            hint = suggestion(name, program.models) or "models: " + ", ".join(program.models)
            raise click.BadParameter(f"no model {name!r} in {file} ({hint})", param_hint="--model")
        try:
            summary = summarise(program.models[name], given, depth=depth)
            if training:
                summary.training = training_memory(program, name, summary)
        except CompileError as exc:
            report(exc.diagnostics, sources)
            raise SystemExit(1) from None
        results.append(summary)
    if as_json:
        data = [s.to_json() for s in results]
        click.echo(json.dumps(data[0] if len(data) == 1 else data, indent=2))
        return
    for summary in results:
        _print(summary)


def _print(summary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"model {summary.model}", title_justify="left", show_lines=False)
    table.add_column("layer")
    table.add_column("kind")
    table.add_column("output shape")
    table.add_column("parameters", justify="right")
    table.add_column("FLOPs", justify="right")
    for row in summary.rows:
        table.add_row(
            "  " * row.depth + row.name,
            row.kind,
            row.output,
            f"{row.parameters:,}",
            _human(row.flops),
        )
    console.print(table)
    inputs = ", ".join(f"{k}: {v}" for k, v in summary.inputs.items())
    sizes = ", ".join(f"{k}={v}" for k, v in summary.bindings.items())
    console.print(f"inputs              {inputs}" + (f"   with {sizes}" if sizes else ""))
    console.print(f"parameters          {summary.parameters:,} ({_human(summary.parameters)})")
    console.print(f"trainable           {summary.trainable_parameters:,}")
    if summary.buffers:
        console.print(f"buffers             {summary.buffers:,} elements (running statistics, not trained)")
    console.print(
        f"forward FLOPs       {summary.forward_flops:,} ({_human(summary.forward_flops)}FLOP; a multiply-add counts 2)"
    )
    console.print(f"multiply-accumulates {summary.forward_macs:,} ({_human(summary.forward_macs)}MAC)")
    memory = ", ".join(f"{_bytes(summary.parameter_bytes(d))} in {d}" for d in ("float32", "bfloat16"))
    console.print(f"parameter memory    {memory}")
    if summary.training:
        t = summary.training
        console.print(f"training step (est.) {_bytes(t['total_bytes'])} with batch {t['batch']} in {t['dtype']}:")
        for key in ("parameters", "gradients", "optimizer_state", "activations"):
            console.print(f"  {key:<18}{_bytes(t[key + '_bytes'])}")
        for note in t.get("notes", []):
            console.print(f"  note: {note}")
    for note in summary.notes:
        console.print(f"note: {note}")
    console.print()
