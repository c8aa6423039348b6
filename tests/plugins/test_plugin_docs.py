"""docs/plugins.md's worked example is true: its file blocks, installed as a
package, give a plugin that checks, summarises, compiles, builds and trains."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from modelspec.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
BLOCK = re.compile(r"<!-- file: modelspec-layerscale/(?P<path>[^ ]+) -->\n```\w*\n(?P<text>.*?)\n```", re.S)


def pyproject(text: str) -> dict:
    """The fields of pyproject.toml this test needs (tomllib is Python 3.11+)."""
    section = text.split("[project.entry-points.modelspec]")[1].split("\n[")[0]
    entries = dict(re.findall(r'^(\w+) = "([\w.:]+)"$', section, re.M))
    return {
        "name": re.search(r'^name = "([^"]+)"', text, re.M)[1],
        "version": re.search(r'^version = "([^"]+)"', text, re.M)[1],
        "entry-points": {"modelspec": entries},
    }


def files() -> dict[str, str]:
    return {m["path"]: m["text"] + "\n" for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))}


@pytest.fixture
def installed(fake_site, tmp_path):
    """The worked example installed as pip would: the package on sys.path, a dist-info with its entry point."""
    blocks = files()
    project = pyproject(blocks.pop("pyproject.toml"))
    spec = tmp_path / "digits_layerscale.mspec"
    spec.write_text(blocks.pop("digits_layerscale.mspec"), encoding="utf-8")
    for path, text in blocks.items():
        target = fake_site.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    (fake_site.root / "modelspec_layerscale" / "__init__.py").write_text("", encoding="utf-8")
    info = fake_site.root / f"modelspec_layerscale-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entries = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["modelspec"].items())
    (info / "entry_points.txt").write_text(f"[modelspec]\n{entries}", encoding="utf-8")
    yield spec


def run(args, capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_doc_has_every_file_of_the_package():
    assert set(files()) == {
        "pyproject.toml",
        "modelspec_layerscale/op.py",
        "modelspec_layerscale/lowering.py",
        "modelspec_layerscale/templates/ops/layerscale.j2",
        "modelspec_layerscale/schedule.py",
        "modelspec_layerscale/plugin.py",
        "digits_layerscale.mspec",
    }


def test_the_worked_example_registers_and_checks(installed, capsys, monkeypatch):
    code, out, err = run(["plugins", "--json"], capsys, monkeypatch)
    entry = next(e for e in json.loads(out) if e["name"] == "layerscale")
    assert entry["distribution"] == "modelspec-layerscale" and entry["version"] == "0.1.0"
    assert entry["registers"] == {
        "ops": ["layerscale"],
        "schedules": ["inverse_sqrt"],
        "lowerings for torch": ["layerscale"],
    }
    code, out, err = run(["check", str(installed)], capsys, monkeypatch)
    assert code == 0, err
    code, out, err = run(["summary", str(installed), "--json"], capsys, monkeypatch)
    assert code == 0, err
    width = 96
    residual = 2 * width + (width * width + width) + width  # layernorm, linear, layerscale
    assert json.loads(out)["parameters"] == (64 * width + width) + 2 * residual + (width * 10 + 10) == 26_410


def test_the_worked_example_compiles_builds_and_trains(installed, capsys, monkeypatch, tmp_path):
    import torch

    import modelspec

    source = modelspec.compile_source(installed)
    assert 'self.layerscale = nn.ParameterDict({"weight": nn.Parameter(torch.full((96,), 0.01))})' in source
    assert "layerscale = gelu * self.layerscale.weight  # [B, 96]" in source
    module = modelspec.build(installed)
    assert torch.equal(module.state_dict()["residual.layerscale.weight"], torch.full((96,), 0.01))
    assert module(torch.randn(5, 1, 8, 8)).shape == (5, 10)

    code, out, err = run(
        ["train", str(installed), "--out", str(tmp_path / "runs"), "--max-steps", "30"], capsys, monkeypatch
    )
    assert code == 0, err
    [metrics] = (tmp_path / "runs").glob("*/metrics.jsonl")
    logged = [json.loads(line) for line in metrics.read_text().splitlines()]
    trained = [m for m in logged if "loss" in m]
    assert trained and all(math.isfinite(m["loss"]) for m in trained)
    for m in trained:  # the lr of optimizer step number s (from 0) is lr * inverse_sqrt(s)
        s = m["step"]
        assert m["lr"] == pytest.approx(3e-3 * min((s + 1) / 20, math.sqrt(20 / (s + 1))))


def test_the_spec_without_the_plugin_stops_at_its_use_line(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "digits_layerscale.mspec"
    spec.write_text(files()["digits_layerscale.mspec"], encoding="utf-8")
    code, _, err = run(["check", str(spec)], capsys, monkeypatch)
    assert code == 1
    assert "error[E0104]: this spec needs the plugin `layerscale`, which is not installed" in err
    assert "digits_layerscale.mspec:1:1" in err
