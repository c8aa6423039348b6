"""Broken specs and the error catalogue.

`specs/broken/NAME.mspec` carries one real mistake (the `multi_*` files
several); `specs/broken/NAME.expected` is exactly what `mspec check
specs/broken/NAME.mspec` prints on stderr, run from the repository root with
NO_COLOR=1. The checks run in-process through `modelspec.cli.main`.

`specs/broken/compile/NAME.mspec` passes `mspec check` but not `mspec
compile` (E06xx: names or sizes the torch backend cannot express); its
`NAME.expected` is what `mspec compile` prints on stderr.

To rewrite the snapshots after an intended change to a diagnostic (and to
write the snapshot of a new broken spec), run

    MSPEC_UPDATE_SNAPSHOTS=1 pytest tests/test_broken_specs.py

and read the diff before committing it.

Specs in PENDING show a diagnostic that is wrong, misleading, cascades or
points at the wrong place; they have no snapshot until the compiler is
fixed. Move a spec out of PENDING once its output is right, and let the
update above write its snapshot.

docs/errors.md is generated from `modelspec.diagnostics.codes.CODES`:

    python -m modelspec.diagnostics.codes > docs/errors.md
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from modelspec import plugins
from modelspec.api import check
from modelspec.cli import main
from modelspec.diagnostics.codes import CODES, markdown

REPO = Path(__file__).resolve().parents[1]
BROKEN = REPO / "specs" / "broken"
COMPILE = BROKEN / "compile"
DOCS = REPO / "docs" / "errors.md"
UPDATE = os.environ.get("MSPEC_UPDATE_SNAPSHOTS") == "1"

# Files in specs/broken that are not checked on their own.
HELPERS = {
    "cycle_b": "imported by cycle_a.mspec; only cycle_a is checked (the cycle is the same from either side)",
}

# Specs whose diagnostics are not right yet (no snapshot): name -> the problem.
PENDING: dict[str, str] = {}

# Codes that no spec file can trigger: code -> why.
NOT_FROM_A_SPEC = {
    "E0005": "a file that cannot be read (missing, a folder, no permission) is a fact of the file system",
    "E0105": "a fault of a plugin's op: tests/plugins/test_plugin_faults.py installs broken plugins",
    "E0501": "`mspec summary --input` sizes: command-line input, not a spec",
    "E9999": "an internal error: a bug in modelspec, and none is known to be triggerable",
}

# Codes a backend reports (`mspec compile`, `modelspec.build`), never `mspec check`: code -> where a spec shows it.
BACKEND_CODES = {
    "E0601": "specs/broken/compile/",
    "E0602": "specs/broken/compile/",
    "E0603": "needs a plugin op without a torch lowering: tests/backends/test_codegen_safety.py",
    "E0604": "depends on the device's free memory at build time: tests/backends/test_codegen_safety.py",
}

# Spec-triggerable codes whose only broken specs are still PENDING: code -> why.
ONLY_PENDING: dict[str, str] = {}

# CODES examples that are not one self-contained spec.
EXAMPLE_NOT_RUNNABLE = {
    "E0006": "abbreviated (201 levels of nesting)",
    "E0102": "two files",
}


def specs() -> list[str]:
    return sorted(p.stem for p in BROKEN.glob("*.mspec") if p.stem not in HELPERS)


def snapshot_specs() -> list[str]:
    return [name for name in specs() if name not in PENDING]


def run(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.chdir(REPO)
    # Built-ins only: notes that list the known ops or optimizers must not
    # depend on which third-party plugins this environment has installed.
    monkeypatch.setattr(plugins, "_default", plugins.PluginManager(allow=()))
    monkeypatch.setenv("NO_COLOR", "1")
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def relative(name: str) -> str:
    return f"specs/broken/{name}.mspec"


# ---- snapshots -------------------------------------------------------------------------


@pytest.mark.parametrize("name", snapshot_specs())
def test_snapshot(name, monkeypatch, capsys):
    code, out, err = run(["check", relative(name)], monkeypatch, capsys)
    expected = BROKEN / f"{name}.expected"
    if UPDATE:
        expected.write_text(err, encoding="utf-8")
    assert code == 1, err
    assert out == ""
    assert expected.exists(), f"no snapshot for {name}: run MSPEC_UPDATE_SNAPSHOTS=1 pytest {__file__}"
    assert err == expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(PENDING))
def test_pending_spec_fails_cleanly(name, monkeypatch, capsys):
    code, _, err = run(["check", relative(name)], monkeypatch, capsys)
    assert code == 1
    assert err.startswith("error[E")
    assert "internal error" not in err and "Traceback" not in err


def test_every_spec_has_a_snapshot_or_is_pending():
    names = set(specs())
    assert set(PENDING) <= names, "PENDING names a spec that does not exist"
    snapshots = {p.stem for p in BROKEN.glob("*.expected")}
    assert not snapshots & set(PENDING), "a PENDING spec has a snapshot"
    assert snapshots == names - set(PENDING), "every spec not PENDING has a snapshot, and only those"
    assert all((BROKEN / f"{helper}.mspec").exists() for helper in HELPERS)


# ---- coverage of the codes --------------------------------------------------------------


def codes_of(name: str, monkeypatch, capsys) -> set[str]:
    code, out, _ = run(["check", "--format", "json", relative(name)], monkeypatch, capsys)
    assert code == 1
    return {d["code"] for d in json.loads(out)}


def test_every_code_a_spec_can_trigger_has_a_broken_spec(monkeypatch, capsys):
    found: dict[str, set[str]] = {}
    for name in specs():
        for code in codes_of(name, monkeypatch, capsys):
            found.setdefault(code, set()).add(name)
    triggerable = set(CODES) - set(NOT_FROM_A_SPEC) - set(BACKEND_CODES)
    assert sorted(triggerable - set(found)) == []
    assert sorted(set(found) - set(CODES)) == [], "a spec triggers a code that CODES does not document"
    with_snapshot = {code for code, names in found.items() if set(names) - set(PENDING)}
    assert sorted(triggerable - with_snapshot) == sorted(ONLY_PENDING)


def test_codes_table_covers_every_code_in_the_source():
    emitted = set()
    for path in [*(REPO / "modelspec").rglob("*.py"), *(REPO / "backends").rglob("*.py")]:
        if path.name == "codes.py":
            continue
        emitted |= set(re.findall(r"[\"'](E\d{4})[\"']", path.read_text(encoding="utf-8")))
    assert sorted(emitted - set(CODES)) == [], "add these codes to modelspec/diagnostics/codes.py"
    assert sorted(set(CODES) - emitted) == [], "CODES documents codes that nothing emits"


def test_codes_table_is_well_formed():
    for key, c in CODES.items():
        assert key == c.code and re.fullmatch(r"E\d{4}", key)
        assert c.title and "\n" not in c.title and len(c.title) <= 60
        assert c.title[0].islower() and not c.title.endswith(".")
        assert c.explanation.endswith(".") and c.fix.endswith(".")
        assert c.example.strip()
    assert list(CODES) == sorted(CODES)


@pytest.mark.parametrize(
    "code", [c for c, v in CODES.items() if not v.example_is_command and c not in EXAMPLE_NOT_RUNNABLE]
)
def test_example_triggers_its_code(code, monkeypatch):
    monkeypatch.chdir(REPO)
    codes = [d.code for d in check(CODES[code].example + "\n", name="example.mspec")]
    assert code in codes


# ---- specs only a backend refuses ------------------------------------------------------


def compile_specs() -> list[str]:
    return sorted(p.stem for p in COMPILE.glob("*.mspec"))


@pytest.mark.parametrize("name", compile_specs())
def test_compile_snapshot(name, monkeypatch, capsys):
    path = f"specs/broken/compile/{name}.mspec"
    code, _, err = run(["check", path], monkeypatch, capsys)
    assert code == 0 and "error" not in err, "a spec in specs/broken/compile/ passes `mspec check`"
    code, out, err = run(["compile", path], monkeypatch, capsys)
    expected = COMPILE / f"{name}.expected"
    if UPDATE:
        expected.write_text(err, encoding="utf-8")
    assert code == 1, err
    assert out == ""
    assert expected.exists(), f"no snapshot for {name}: run MSPEC_UPDATE_SNAPSHOTS=1 pytest {__file__}"
    assert err == expected.read_text(encoding="utf-8")


def test_every_backend_code_a_spec_can_trigger_has_a_compile_spec():
    assert set(BACKEND_CODES) <= set(CODES)
    assert {p.stem for p in COMPILE.glob("*.expected")} == set(compile_specs())
    found = set()
    for path in COMPILE.glob("*.expected"):
        found |= set(re.findall(r"^error\[(E\d{4})\]", path.read_text(encoding="utf-8"), re.MULTILINE))
    assert found == {code for code, where in BACKEND_CODES.items() if where == "specs/broken/compile/"}


# ---- JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, code, line, column, message",
    [
        (
            "cnn_linear_in_features",
            "E0301",
            7,
            51,
            "`linear` declares 2304 input features but receives 4096",
        ),
        (
            "gan_channels",
            "E0305",
            21,
            5,
            "generator `Generator` emits float[B, 1, 16, 16] but discriminator `Discriminator` expects "
            "float[B, 3, 16, 16]",
        ),
    ],
)
def test_json_format(name, code, line, column, message, monkeypatch, capsys):
    rc, out, err = run(["check", "--format", "json", relative(name)], monkeypatch, capsys)
    assert rc == 1
    assert err == ""
    (diagnostic,) = json.loads(out)
    assert diagnostic["severity"] == "error"
    assert diagnostic["code"] == code
    assert diagnostic["message"] == message
    assert diagnostic["file"] == relative(name)
    assert (diagnostic["line"], diagnostic["column"]) == (line, column)


# ---- the catalogue ---------------------------------------------------------------------


def test_docs_errors_md_is_generated_from_codes():
    assert DOCS.read_text(encoding="utf-8") == markdown(), (
        "docs/errors.md is stale: python -m modelspec.diagnostics.codes > docs/errors.md"
    )


def test_every_code_is_documented():
    text = DOCS.read_text(encoding="utf-8")
    for code, c in CODES.items():
        assert f"\n## {code}: {c.title}\n" in text
