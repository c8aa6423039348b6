"""`mspec check FILE...`: parse and check specs; exit 1 on any error."""

from __future__ import annotations

import json
from pathlib import Path

import click

from modelspec.cli.common import has_errors, report


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True, help="output format"
)
def check_command(files: tuple[str, ...], fmt: str) -> None:
    """Check every model, block, gan and train declaration of FILES."""
    from modelspec.api import compile_program

    all_diagnostics = []
    failed = False
    for file in files:
        _, diagnostics, sources = compile_program(Path(file))
        failed |= has_errors(diagnostics)
        if fmt == "json":
            all_diagnostics += [d.to_json() for d in diagnostics]
        else:
            report(diagnostics, sources)
            if not diagnostics:
                click.echo(f"{file}: ok", err=True)
    if fmt == "json":
        click.echo(json.dumps(all_diagnostics, indent=2))
    raise SystemExit(1 if failed else 0)
