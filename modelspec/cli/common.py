"""Helpers shared by the subcommands."""

from __future__ import annotations

import sys

import click

from modelspec.diagnostics import Diagnostic, Severity, SourceMap, render_all, render_json


def use_color(stream=None) -> bool:
    stream = stream or sys.stderr
    import os

    if os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def report(diagnostics: list[Diagnostic], sources: SourceMap, fmt: str = "human") -> None:
    if fmt == "json":
        click.echo(render_json(diagnostics))
        return
    if diagnostics:
        click.echo(render_all(diagnostics, sources, color=use_color()), err=True)
        errors = sum(d.severity is Severity.ERROR for d in diagnostics)
        warnings = len(diagnostics) - errors
        parts = []
        if errors:
            parts.append(f"{errors} error{'s' if errors != 1 else ''}")
        if warnings:
            parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
        click.echo("\n" + ", ".join(parts), err=True)


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def warn_about_plugins(backends: bool = False) -> None:
    """One line on stderr per plugin problem (a plugin that failed to import,
    was rejected, raised in a hook, or took a taken name); the command goes on.
    `backends`: the command uses backends, so collect their hooks first (they
    are collected lazily) and report their problems too, here, once."""
    from modelspec.plugins import registry

    current = registry()
    if backends:
        current.load_all()
    for problem in current.problems:
        click.echo(f"warning: {problem}", err=True)


def device_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The `--device` callback of `mspec train` and `mspec generate`: a device torch knows that is here and
    holds real tensors (modelspec.api.check_device), refused while the options are parsed rather than deep in a run."""
    from modelspec.api import TrainSetupError, check_device

    try:
        return check_device(value)
    except TrainSetupError as exc:
        raise click.BadParameter(str(exc)) from None
