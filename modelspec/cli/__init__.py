"""The `mspec` command: a thin layer over the API.

Each subcommand lives in its own module; `main` turns any unexpected
exception into an internal-error message instead of a traceback.
"""

from __future__ import annotations

import sys

import click

from modelspec.cli.check import check_command
from modelspec.cli.common import warn_about_plugins
from modelspec.cli.compile import compile_command
from modelspec.cli.fmt import fmt_command
from modelspec.cli.generate import generate_command
from modelspec.cli.graph import graph_command
from modelspec.cli.ops import ops_command
from modelspec.cli.plot import plot_command
from modelspec.cli.plugins import plugins_command
from modelspec.cli.summary import summary_command
from modelspec.cli.train import Terminated, train_command

# Subcommands that read the plugin registry: they warn about plugins that failed to load.
USES_PLUGINS = {"check", "compile", "summary", "graph", "generate", "train", "ops"}
# Those that also read backends or lowerings: they warn about those hooks' problems too.
USES_BACKENDS = {"compile", "generate", "train", "ops"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelspec", prog_name="mspec")
@click.option(
    "--no-plugins",
    is_flag=True,
    help="start without third-party plugins (built-ins only); MSPEC_LOAD_PLUGINS=a,b loads only those",
)
@click.pass_context
def cli(ctx: click.Context, no_plugins: bool) -> None:
    """modelspec: check, summarise and compile .mspec model specs."""
    from modelspec import plugins

    if no_plugins:
        plugins.configure(entry_points=True, allow=(), left_out="third-party plugins are off (`--no-plugins`)")
    if ctx.invoked_subcommand in USES_PLUGINS:
        warn_about_plugins(backends=ctx.invoked_subcommand in USES_BACKENDS)


cli.add_command(check_command)
cli.add_command(compile_command)
cli.add_command(summary_command)
cli.add_command(fmt_command)
cli.add_command(generate_command)
cli.add_command(graph_command)
cli.add_command(train_command)
cli.add_command(plot_command)
cli.add_command(plugins_command)
cli.add_command(ops_command)


def main(argv: list[str] | None = None) -> int:
    try:
        return cli.main(args=argv, prog_name="mspec", standalone_mode=True) or 0
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Terminated:  # SIGTERM during `mspec train`
        click.echo("terminated (SIGTERM)", err=True)
        return 143  # 128 + SIGTERM, what a shell reports for a process it ended
    except RecursionError:
        click.echo("error: the spec is nested too deeply to process", err=True)
        return 1
    except Exception as exc:  # a bug in modelspec, not a user mistake
        click.echo(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in modelspec; please report it with the spec that caused it.",
            err=True,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
