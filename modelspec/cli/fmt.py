"""`mspec fmt FILE... [--check]`: rewrite specs in the canonical layout.

A file is replaced atomically (a temporary file in the same folder, synced,
then renamed over it), and only when its text changes. `--check` writes
nothing and exits 1 when some file would change. A file that cannot be
read or parsed is reported and left alone. `-` reads stdin and writes the
formatted text to stdout.
"""

from __future__ import annotations

import sys

import click

from modelspec.cli.common import report
from modelspec.diagnostics import CompileError, SourceMap, error
from modelspec.fileio import write_atomically
from modelspec.syntax import decode
from modelspec.syntax.format import FormatterBug, format_source

STDIN = "-"


def _read(file: str) -> bytes:
    if file == STDIN:
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        return data.encode("utf-8") if isinstance(data, str) else data
    with open(file, "rb") as f:
        return f.read()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@click.command("fmt")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True, path_type=str))
@click.option("--check", is_flag=True, help="write nothing; list the files that would change and exit 1 if any")
def fmt_command(files: tuple[str, ...], check: bool) -> None:
    """Rewrite FILES in the canonical layout, keeping every comment (`-` for stdin to stdout)."""
    failed = changed = unchanged = 0
    for file in files:
        name = "<stdin>" if file == STDIN else file
        sources = SourceMap()
        try:
            data = _read(file)
        except OSError as exc:
            report([error("E0005", f"cannot read `{name}`: {exc.strerror or exc}", None)], sources)
            failed += 1
            continue
        try:
            text = decode(data, name)
        except CompileError as exc:
            sources.add(name, data.decode("utf-8", errors="replace"))
            report(exc.diagnostics, sources)
            failed += 1
            continue
        sources.add(name, text)
        try:
            formatted = format_source(text, name)
        except CompileError as exc:
            report(exc.diagnostics, sources)
            failed += 1
            continue
        except FormatterBug as exc:
            click.echo(
                f"internal error: cannot format {name}: {exc}\n"
                "The file was left as it is. This is a bug in modelspec; please report it with the spec.",
                err=True,
            )
            failed += 1
            continue

        if formatted == text:
            unchanged += 1
            if file == STDIN and not check:
                click.echo(formatted, nl=False)
            continue
        changed += 1
        if check:
            click.echo(f"would reformat: {file}")
        elif file == STDIN:
            click.echo(formatted, nl=False)
        else:
            try:
                write_atomically(file, formatted, follow_symlinks=True)
            except OSError as exc:
                click.echo(f"error: cannot write `{file}`: {exc.strerror or exc}", err=True)
                failed += 1
                changed -= 1
                continue
            click.echo(f"reformatted: {file}", err=True)

    if STDIN not in files or len(files) > 1:
        parts = []
        if changed:
            parts.append(_plural(changed, "file") + (" would be reformatted" if check else " reformatted"))
        if unchanged:
            parts.append(_plural(unchanged, "file") + (" would be left unchanged" if check else " left unchanged"))
        if failed:
            parts.append(_plural(failed, "file") + " failed")
        click.echo(", ".join(parts), err=True)
    sys.exit(1 if failed or (check and changed) else 0)
