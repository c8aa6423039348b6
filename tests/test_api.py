"""`modelspec.train(...)`: what `mspec train` does, in-process; the name is also the training
runtime's package, whose module is callable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import modelspec
from modelspec.api import TrainSetupError

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

SMALL = """\
model Small(hidden: int = 16) {
    input image: float[B, 1, 8, 8]
    output logits = image |> flatten |> linear(hidden, name=fc1) |> relu |> linear(10, name=fc2)
}
"""


def regime(name: str) -> str:
    return (
        f"train {name} {{\n    model Small()\n    data digits(batch=32, size=8)\n"
        "    loss cross_entropy(logits, label)\n    optimizer sgd(lr=0.1)\n    epochs 1\n}\n"
    )


def spec(tmp_path: Path, *regimes: str) -> Path:
    path = tmp_path / "small.mspec"
    path.write_text(SMALL + "\n".join(regimes), encoding="utf-8")
    return path


def test_train_survives_imports_of_the_subpackage(tmp_path):
    """Importing modules of `modelspec/train/` in any order leaves `modelspec.train` callable.
    A fresh interpreter: in this one everything is imported already, whatever the order."""
    code = (
        "import json, sys, modelspec\n"
        "from modelspec.train.loop import RunResult, Trainer\n"
        "import modelspec.train.gan\n"  # a submodule first imported after the call's own imports
        "from modelspec.train import data\n"
        "result = modelspec.train(sys.argv[1], max_steps=3, out=sys.argv[2])\n"
        "assert isinstance(result, RunResult), type(result)\n"
        "print(json.dumps({'step': result.step, 'folder': str(result.folder), 'stopped': result.stopped}))\n"
    )
    out = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-c", code, str(SPECS / "mlp_digits.mspec"), str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["step"] == 3 and result["stopped"] == "max_steps"
    folder = Path(result["folder"])
    assert folder.parent == out and (folder / "config.json").is_file()
    assert json.loads((folder / "config.json").read_text())["max_steps"] == 3


def test_train_is_callable_and_still_the_package():
    """`modelspec.train(...)` runs a regime; the same name is the package, reached every way."""
    import modelspec.train.loop as by_alias
    from modelspec.train import loop

    assert modelspec.train is sys.modules["modelspec.train"] and callable(modelspec.train)
    assert modelspec.train.loop is loop is by_alias and loop.__name__ == "modelspec.train.loop"


def test_calling_the_package_is_the_api_function(tmp_path, monkeypatch):
    from modelspec import api

    seen = []
    monkeypatch.setattr(api, "train", lambda *args, **kwargs: seen.append((args, kwargs)) or "result")
    assert modelspec.train("x.mspec", max_steps=2) == "result"
    assert seen == [(("x.mspec",), {"max_steps": 2})]


def test_several_regimes_need_one_named(tmp_path):
    path = spec(tmp_path, regime("small"), regime("large"))
    with pytest.raises(TrainSetupError) as e:
        modelspec.train(path, out=tmp_path / "runs")
    assert "several regimes (small, large)" in str(e.value) and "regime=" in str(e.value)
    assert e.value.setting is None
    with pytest.raises(TrainSetupError, match="no train regime 'smal' .*did you mean") as e:
        modelspec.train(path, "smal", out=tmp_path / "runs")
    assert e.value.setting == "regime"
    with pytest.raises(TrainSetupError, match="declares no `train` block"):
        modelspec.train(SMALL, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_named_regime_and_resume(tmp_path):
    path = spec(tmp_path, regime("small"), regime("large"))
    out = tmp_path / "runs"
    first = modelspec.train(path, "large", out=out, max_steps=2, seed=3)
    assert (first.step, first.stopped) == (2, "max_steps") and first.folder.name.startswith("large-")
    assert [p.name for p in (first.folder / "spec").iterdir()] == ["00-small.mspec"]  # the spec's text, kept
    again = modelspec.train(modelspec.load(path), "large", out=out, max_steps=4, resume=True, seed=3)
    assert again.folder == first.folder and again.step == 4
    assert [p.name for p in out.iterdir()] == [first.folder.name]


def test_setup_mistakes_are_errors_before_anything_is_written(tmp_path):
    path = spec(tmp_path, regime("small"))
    out = tmp_path / "runs"
    cases = [
        ({"resume": True}, "resume", "no run of regime 'small' of this model"),
        ({"resume": tmp_path}, "resume", "is not a run folder"),
        ({"device": "gpu"}, "device", "'gpu' is not a device"),
        ({"device": "meta"}, "device", "holds no data"),
        ({"max_steps": 0}, "max_steps", "at least 1"),
        ({"seed": -1}, "seed", "at least 0"),
    ]
    for kwargs, setting, message in cases:
        with pytest.raises(TrainSetupError, match=message) as e:
            modelspec.train(path, out=out, **kwargs)
        assert e.value.setting == setting
    assert not out.exists()


def test_a_gan_regime_runs_with_the_gan_trainer(tmp_path):
    result = modelspec.train(SPECS / "dcgan.mspec", out=tmp_path, max_steps=1)
    assert result.step == 1 and {"d_loss", "g_loss"} <= set(result.metrics)


def test_readme_shows_the_api_it_has():
    """The README's "From Python" block calls only public names, `train` among them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"From Python:\s*```python\n(.*?)```", readme, re.S).group(1)
    called = set(re.findall(r"\bmodelspec\.(\w+)\(", block))
    assert "train" in called and called <= set(modelspec.__all__)
