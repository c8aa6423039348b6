"""Reading spec files and their imports.

`load_sources` reads the root file (or text), then every file it imports,
depth first. Relative imports resolve against the importing file's folder;
`std/...` falls back to the standard library shipped in `modelspec/std`.
A cycle is reported at the import that closes it; each file is read once.
"""

from __future__ import annotations

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


def _std_path(name: str) -> Path | None:
    candidate = resources.files("modelspec.std").joinpath(name[len(STD_PREFIX) :])
    return Path(str(candidate)) if candidate.is_file() else None


def display_name(path: Path) -> str:
    """How a file is named in diagnostics: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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
        if not target.is_file() and imp.path.startswith(STD_PREFIX):
            target = _std_path(imp.path) or target
        if not target.is_file():
            out.diagnostics.append(
                error(
                    "E0101",
                    f"cannot find imported file `{imp.path}`",
                    imp.span,
                    "imported here",
                    notes=[f"looked for {target}"],
                    help=f"imports are relative to the importing file; the standard library is under `{STD_PREFIX}`",
                )
            )
            return
        key = str(target.resolve())
        if key in stack:
            chain = [Path(k).name for k in stack[stack.index(key) :]] + [target.name]
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
        out.root = name
        load_text(text, name, Path(name).parent if path is None and name != "<string>" else None, name)
        return out
    assert path is not None
    file_path = Path(path)
    out.root = display_name(file_path)
    if not file_path.is_file():
        what = "is a folder" if file_path.is_dir() else "does not exist"
        out.diagnostics.append(error("E0005", f"cannot read `{path}`: it {what}", None))
        return out
    key = str(file_path.resolve())
    loaded[key] = True
    load_file(file_path, key)
    return out
