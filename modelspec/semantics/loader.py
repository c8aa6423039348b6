"""Reading spec files and their imports.

`load_sources` reads the root file (or text), then every file it imports,
depth first. Relative imports resolve against the importing file's folder;
`std/...` falls back to the standard library shipped in `modelspec/std`.
A cycle is reported at the import that closes it; each file is read once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from modelspec.diagnostics import CompileError, Diagnostic, SourceMap, error
from modelspec.syntax import ast, decode, parse

STD_PREFIX = "std/"


@dataclass
class Sources:
    modules: list[ast.Module] = field(default_factory=list)  # dependencies before dependants
    sources: SourceMap = field(default_factory=SourceMap)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    root: str = ""


def _is_file(path) -> tuple[bool, str | None]:
    """Whether `path` is a file; when the OS refuses to look (a name too long, a loop of links...), False
    and its reason."""
    try:
        return path.is_file(), None
    except OSError as exc:
        return False, exc.strerror or str(exc)
    except ValueError as exc:  # a NUL in the path
        return False, str(exc)


def _std_path(name: str) -> Path | None:
    try:
        candidate = resources.files("modelspec.std").joinpath(name[len(STD_PREFIX) :])
    except (OSError, ValueError):
        return None
    found, _ = _is_file(candidate)
    return Path(str(candidate)) if found else None


def _resolved(path: Path) -> str:
    """The key a file is loaded under (each file is read once)."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError, ValueError):
        return str(path.absolute())


def safe_text(name: str) -> str:
    """A name as text that any output can carry: bytes of a file name that are not UTF-8 (decoded by
    Python to lone surrogates) and lone surrogates in general become `\\udcff` escapes."""
    return os.fsdecode(name).encode("utf-8", "backslashreplace").decode("utf-8")


def display_name(path: Path) -> str:
    """How a file is named in diagnostics: relative to the working folder when inside it."""
    try:
        name = str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):
        name = str(path)
    return safe_text(name)


def load_sources(path: str | Path | None = None, text: str | None = None, name: str = "<string>") -> Sources:
    out = Sources()
    loaded: dict[str, bool] = {}  # resolved path -> finished
    stack: list[str] = []

    def load_text(text: str, file: str, folder: Path | None, key: str) -> None:
        out.sources.add(file, text)
        try:
            module = parse(text, file).module
        except CompileError as exc:
            out.diagnostics.extend(exc.diagnostics)
            return
        stack.append(key)
        for imp in module.imports:
            load_import(imp, folder)
        stack.pop()
        out.modules.append(module)

    def load_import(imp: ast.Import, folder: Path | None) -> None:
        target = (folder or Path.cwd()) / imp.path
        found, refused = _is_file(target)
        if not found and imp.path.startswith(STD_PREFIX):
            std = _std_path(imp.path)
            if std is not None:
                target, found, refused = std, True, None
        if not found:
            notes = [f"looked for {safe_text(str(target))}"]
            if refused:
                notes.append(f"the system cannot look there: {refused}")
            out.diagnostics.append(
                error(
                    "E0101",
                    f"cannot find imported file `{imp.path}`",
                    imp.span,
                    "imported here",
                    notes=notes,
                    help=f"imports are relative to the importing file; the standard library is under `{STD_PREFIX}`",
                )
            )
            return
        key = _resolved(target)
        if key in stack:
            chain = [safe_text(Path(k).name) for k in stack[stack.index(key) :]] + [safe_text(target.name)]
            out.diagnostics.append(
                error(
                    "E0102",
                    "import cycle",
                    imp.span,
                    "this import closes the cycle",
                    notes=["the cycle: " + " → ".join(chain)],
                    help="move the shared declarations into a file that both import",
                )
            )
            return
        if key in loaded:
            return
        loaded[key] = True
        load_file(target, key)

    def load_file(file_path: Path, key: str) -> None:
        file = display_name(file_path)
        try:
            data = file_path.read_bytes()
        except OSError as exc:
            out.diagnostics.append(error("E0005", f"cannot read `{file}`: {exc.strerror or exc}", None))
            return
        try:
            text = decode(data, file)
        except CompileError as exc:
            out.sources.add(file, data.decode("utf-8", errors="replace"))
            out.diagnostics.extend(exc.diagnostics)
            return
        load_text(text, file, file_path.parent, key)

    if text is not None:
        shown = safe_text(name)
        out.root = shown
        load_text(text, shown, Path(name).parent if path is None and name != "<string>" else None, shown)
        return out
    assert path is not None
    file_path = Path(path)
    out.root = display_name(file_path)
    found, refused = _is_file(file_path)
    if not found:
        shown = safe_text(str(path))
        if refused:
            message = f"cannot read `{shown}`: {refused}"
        else:
            try:
                what = "is a folder" if file_path.is_dir() else "does not exist"
            except (OSError, ValueError):
                what = "cannot be reached"
            message = f"cannot read `{shown}`: it {what}"
        out.diagnostics.append(error("E0005", message, None))
        return out
    key = _resolved(file_path)
    loaded[key] = True
    load_file(file_path, key)
    return out
