"""docs/plugins.md's worked example is true: its file blocks, installed as a
package, give a plugin that checks, summarises, compiles, builds and trains."""

from __future__ import annotations

import json
import math
import re
import sys
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


RUN = re.compile(r"<!-- run: (?P<path>[^ ]+) -->\n```python\n(?P<text>.*?)\n```", re.S)


def runnable() -> dict[str, str]:
    """The page's other Python blocks, each a whole module or program."""
    return {m["path"]: m["text"] + "\n" for m in RUN.finditer(DOC.read_text(encoding="utf-8"))}


def test_the_embedding_example_runs_as_it_is():
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", runnable()["embedding.py"]], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "10\n"


BLOBS_SPEC = """model Probe(n: int = 6) {
    input x: float[B, n]
    output logits = x |> linear(2)
}

train blobs_probe {
    model      Probe()
    data       blobs(batch=20, samples=200)
    loss       cross_entropy(logits, label)
    optimizer  sgd(lr=0.1)
    epochs     2
    metrics    [accuracy]
}
"""


@pytest.fixture
def forget_modules():
    """Modules a test imports from the page's blocks are dropped after it."""
    yield
    for name in ("my_datasets", "layerscale_onnx"):
        sys.modules.pop(name, None)


def test_the_dataset_example_loads_and_trains(fake_site, tmp_path, forget_modules):
    import importlib

    import modelspec
    from modelspec.api import compile_program
    from modelspec.hookspec import hookimpl
    from modelspec.train.loop import Options, Trainer, TrainError

    (fake_site.root / "my_datasets.py").write_text(runnable()["my_datasets.py"], encoding="utf-8")
    blobs = importlib.import_module("my_datasets").BLOBS

    class Datasets:
        @hookimpl
        def mspec_train_components(self):
            return [blobs]

    modelspec.register_plugin(Datasets(), name="my-datasets")
    spec = tmp_path / "probe.mspec"
    spec.write_text(BLOBS_SPEC, encoding="utf-8")
    program, diagnostics, _ = compile_program(spec)
    assert diagnostics == []
    options = Options(out=tmp_path / "runs", progress=False)
    result = Trainer(program, program.trains["blobs_probe"], options).run()
    assert result.step == 2 * 8 and result.metrics["val_accuracy"] > 0.9  # 160 training samples: 8 batches
    spec.write_text(BLOBS_SPEC.replace("float[B, n]", "float[B, n, n]"), encoding="utf-8")
    program, diagnostics, _ = compile_program(spec)
    with pytest.raises(TrainError, match=r"dataset `blobs` feeds one input float\[B, n\], not float\[B, 6, 6\]"):
        Trainer(program, program.trains["blobs_probe"], options).run()


def test_the_onnx_lowering_example_matches_the_torch_lowering(installed, fake_site, tmp_path, forget_modules):
    np = pytest.importorskip("numpy")
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("modelspec_onnx")
    import importlib

    import torch
    from modelspec_onnx import export
    from safetensors.torch import save_file

    import modelspec
    from modelspec.diagnostics import CompileError
    from modelspec.hookspec import hookimpl
    from modelspec.plugins import registry

    program = modelspec.load(installed)
    with pytest.raises(CompileError, match="layerscale"):
        export(program, "ResMLP")  # no lowering for onnx yet
    (fake_site.root / "layerscale_onnx.py").write_text(runnable()["layerscale_onnx.py"], encoding="utf-8")
    lowering = importlib.import_module("layerscale_onnx").ONNX_LOWERING

    class OnnxLowerings:
        @hookimpl
        def mspec_lowerings(self):
            return [lowering]

    modelspec.register_plugin(OnnxLowerings(), name="layerscale-onnx")
    assert registry().backends_lowering("layerscale") == ["onnx", "torch"]
    module = modelspec.build(program, "ResMLP", seed=1).eval()
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if name.endswith("layerscale.weight"):
                value.copy_(torch.randn_like(value))  # not the constant init: the product shows
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights))
    session = onnxruntime.InferenceSession(
        export(program, "ResMLP", checkpoint=weights).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    image = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(session.run(None, {"image": image})[0], expected, atol=1e-5, rtol=1e-4)
