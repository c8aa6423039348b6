"""A dataset from a plugin registered at run time loads through its component's
`build` and trains with the Trainer, exactly as a built-in dataset does; when
its code breaks, the error names the plugin."""

from __future__ import annotations

import math

import pytest
import torch

import modelspec
from modelspec import plugins
from modelspec.api import compile_program
from modelspec.diagnostics import Severity
from modelspec.hookspec import hookimpl
from modelspec.train.components import Component, ComponentArgs, PositiveInt
from modelspec.train.data import tensor_bundle, tensor_type
from modelspec.train.loop import Options, Trainer, TrainError

CALLS: list[dict] = []  # what each build received


class BlobsArgs(ComponentArgs):
    batch: PositiveInt = 16
    samples: PositiveInt = 200
    split: float = 0.75


def build_blobs(args, inputs, seed, *, base, bounds):
    """Two Gaussian blobs in 4 dimensions, one per class."""
    CALLS.append({"inputs": inputs, "seed": seed, "base": base, "bounds": bounds})
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 2, (args.samples,), generator=g)
    x = torch.randn(args.samples, 4, generator=g) + 3 * (label[:, None] * 2 - 1)
    (name,) = inputs
    return tensor_bundle({name: x}, {"label": label}, split=args.split, seed=seed, dataset="blobs", source="blobs")


def build_broken(args, inputs, seed, *, base, bounds):
    raise RuntimeError("the blob server is down")


def build_unlabelled(args, inputs, seed, *, base, bounds):
    (name,) = inputs
    return tensor_bundle({name: torch.zeros(8, 4)}, {}, split=1, seed=seed, dataset="blobs")


class BlobsPlugin:
    def __init__(self, build: str = f"{__name__}:build_blobs"):
        self.build = build

    @hookimpl
    def mspec_train_components(self):
        return [Component("dataset", "blobs", BlobsArgs, "two blobs", fields=("label",), build=self.build)]


SPEC = """model Probe() {
    input x: float[B, 4]
    output logits = x |> linear(2)
}

train blobs_probe {
    model      Probe()
    data       blobs(batch=16)
    loss       cross_entropy(logits, label)
    optimizer  sgd(lr=0.1)
    epochs     3
    metrics    [accuracy]
    seed       11
}
"""


@pytest.fixture
def fresh_manager(monkeypatch):
    monkeypatch.setattr(plugins, "_default", plugins.PluginManager(allow=()))
    CALLS.clear()


def trainer(tmp_path, **options) -> Trainer:
    path = tmp_path / "probe.mspec"
    path.write_text(SPEC, encoding="utf-8")
    program, diagnostics, _ = compile_program(path)
    assert not [d for d in diagnostics if d.severity is Severity.ERROR], diagnostics
    options.setdefault("progress", False)
    return Trainer(program, program.trains["blobs_probe"], Options(out=tmp_path / "runs", **options))


def test_a_plugin_dataset_registered_at_run_time_trains(fresh_manager, tmp_path):
    modelspec.register_plugin(BlobsPlugin(), name="blobs-plugin")
    result = trainer(tmp_path, max_steps=12).run()
    assert result.step == 12 and result.stopped == "max_steps"
    assert math.isfinite(result.metrics["val_loss"]) and result.metrics["val_accuracy"] > 0.9
    [call] = CALLS
    assert call["inputs"] == {"x": tensor_type("float[B, 4]")}
    assert call["seed"] == 11 and call["base"] == tmp_path and call["bounds"] == {}


def test_without_the_plugin_the_spec_does_not_check(fresh_manager):
    assert "E0404" in [d.code for d in modelspec.check(SPEC, name="probe.mspec")]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ("build_broken", "failed while loading: RuntimeError: the blob server is down"),
        ("build_unlabelled", "gives no `label`: its items hold x"),
        ("no_such_function", "cannot be used (AttributeError"),
    ],
)
def test_a_broken_plugin_dataset_is_its_fault_named_before_any_step(fresh_manager, tmp_path, build, message):
    modelspec.register_plugin(BlobsPlugin(f"{__name__}:{build}"), name="blobs-plugin")
    with pytest.raises(TrainError, match="dataset `blobs` of the plugin `blobs-plugin`") as caught:
        trainer(tmp_path).run()
    assert message in str(caught.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("checkpoints/*"))
