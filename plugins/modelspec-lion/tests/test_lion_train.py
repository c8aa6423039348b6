"""`mspec train` with `optimizer lion(...)`: the parameter groups of `no_decay`,
and a run stopped by --max-steps then resumed ends bitwise equal to an
uninterrupted one (Lion's momentum goes through the checkpoint)."""

from __future__ import annotations

from pathlib import Path

import torch
from modelspec_lion.optimizer import Lion
from safetensors.torch import load_file

import modelspec
from modelspec.cli import main
from modelspec.train.builders import make_optimizer

SPEC = """\
use "lion"

model Small(hidden: int = 16, p: float = 0.1) {
    input image: float[B, 1, 8, 8]
    output logits = image
        |> flatten
        |> linear(hidden, name=fc1)
        |> relu
        |> dropout(p)
        |> linear(10, name=fc2)
}

train small {
    model      Small()
    data       digits(batch=64, size=8)
    loss       cross_entropy(logits, label)
    optimizer  lion(lr=2e-3, betas=(0.9, 0.99), weight_decay=0.5, no_decay=[bias])
    schedule   cosine(warmup=3)
    epochs     1
    checkpoint every(steps=4)
    seed       5
}
"""


def write(tmp_path: Path) -> Path:
    path = tmp_path / "small.mspec"
    path.write_text(SPEC, encoding="utf-8")
    return path


def run(args: list[str], capsys) -> Path:
    code = main(["train", *args, "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (line,) = [line for line in captured.out.splitlines() if line.startswith("run folder: ")]
    return Path(line[len("run folder: ") :])


def last_weights(folder: Path) -> tuple[str, dict[str, torch.Tensor]]:
    last = sorted((folder / "checkpoints").glob("step-*"))[-1]
    return last.name, load_file(str(last / "model.safetensors"))


def test_no_decay_groups_reach_lion(tmp_path):
    program = modelspec.load(write(tmp_path))
    module = modelspec.build(program, "Small", seed=0)
    optimizer = make_optimizer(program.trains["small"].optimizer, module.named_parameters())
    assert isinstance(optimizer, Lion)
    decayed, exempt = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [(16, 64), (10, 16)]
    assert [p.shape for p in exempt["params"]] == [(16,), (10,)]
    assert (decayed["weight_decay"], exempt["weight_decay"]) == (0.5, 0.0)
    assert decayed["lr"] == exempt["lr"] == 2e-3 and decayed["betas"] == (0.9, 0.99)


def test_resume_after_max_steps_is_bitwise_exact(tmp_path, capsys):
    path = write(tmp_path)
    whole = run([str(path), "--out", str(tmp_path / "whole")], capsys)
    stopped = run([str(path), "--out", str(tmp_path / "resumed"), "--max-steps", "9"], capsys)
    assert last_weights(stopped)[0] == "step-00000009"
    resumed = run([str(path), "--resume", str(stopped)], capsys)
    assert resumed == stopped

    (step, weights), (whole_step, whole_weights) = last_weights(resumed), last_weights(whole)
    assert step == whole_step == "step-00000023"  # 1437 training digits in batches of 64
    assert weights.keys() == whole_weights.keys()
    for name in weights:
        assert torch.equal(weights[name], whole_weights[name]), name
    # Not vacuous: Lion moved every weight away from where the resumed run started.
    _, at_stop = last_weights_at(stopped, "step-00000009")
    assert all(not torch.equal(at_stop[name], weights[name]) for name in weights)


def last_weights_at(folder: Path, step: str) -> tuple[str, dict[str, torch.Tensor]]:
    return step, load_file(str(folder / "checkpoints" / step / "model.safetensors"))
