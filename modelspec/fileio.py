"""Writing a file so that a crash never leaves half of one.

Every file modelspec writes for a user (compiled sources, diagrams, plots,
formatted specs, a run's config and metrics) goes through `write_atomically`:
a temporary file in the same folder, flushed and fsynced, then renamed over
the target. A reader sees the old file or the new one, and a failure leaves
the old one in place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike, data: str | bytes, *, follow_symlinks: bool = False) -> None:
    """Replace the file at `path` with `data` (text is written as UTF-8, newlines untranslated).

    An existing file keeps its permission bits; a new one gets the usual
    ones (0o666 less the umask). `follow_symlinks`: rewrite the file a
    symlink points to instead of replacing the link."""
    target = Path(os.path.realpath(path)) if follow_symlinks else Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp's file is private (0o600)
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
