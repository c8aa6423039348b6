"""`mspec fmt FILE... [--check]`: rewrite specs in the canonical layout.

A file is replaced atomically (a temporary file in the same folder, synced,
then renamed over it), and only when its text changes. `--check` writes
nothing and exits 1 when some file would change. A file that cannot be
read or parsed is reported and left alone. `-` reads stdin and writes the
formatted text to stdout.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile

import click

from modelspec.cli.common import report
from modelspec.diagnostics import CompileError, SourceMap, error
from modelspec.syntax import decode
from modelspec.syntax.format import FormatterBug, format_source

STDIN = "-"


def _read(file: str) -> bytes:
    if file == STDIN:
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        return data.encode("utf-8") if isinstance(data, str) else data
    with open(file, "rb") as f:
        return f.read()


def write_atomic(path: str, text: str) -> None:
    """Replace the file at `path` with `text` so that a crash leaves the old or the new file, never half of one."""
    target = os.path.realpath(path)  # through a symlink, rewrite what it points to
    folder = os.path.dirname(target) or "."
    mode = stat.S_IMODE(os.stat(target).st_mode)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".fmt-tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError, AttributeError):  # make the rename itself durable, where the OS allows
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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
                write_atomic(file, formatted)
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
