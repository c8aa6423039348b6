"""`distributed ddp` and `fsdp`: `mspec train --nproc 2` runs two processes under torchrun on the CPU (gloo).
Two processes take the steps one process takes (each half of every global batch); only the
first writes the run folder; a resumed distributed run ends bitwise equal to an uninterrupted
one. Launches that cannot run as declared are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import modelspec
from modelspec.cli import main
from modelspec.train import checkpoint as ckpt
from modelspec.train.loop import Options, Trainer, TrainError

SPEC = """\
model Small(hidden: int = 32, p: float = 0.2) {
    input image: float[B, 1, 8, 8]
    output logits = image |> flatten |> linear(hidden, name=fc1) |> relu |> dropout(p) |> linear(10, name=fc2)
}

train small {
    model      Small()
    data       digits(batch=32, size=8)
    loss       cross_entropy(logits, label)
    optimizer  adam(lr=1e-2)
    steps      24
    metrics    [accuracy]
    evaluate   every(steps=8)
    checkpoint every(steps=5)
    seed       3
    distributed ddp
}
"""


def run_folder(stdout: str) -> Path:
    (line,) = [line for line in stdout.splitlines() if line.startswith("run folder: ")]
    return Path(line.removeprefix("run folder: "))


def final_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt.checkpoints(folder / "checkpoints")[-1] / "model.safetensors"))


@pytest.mark.slow
def test_two_processes_train_resume_exactly_and_match_one_process(tmp_path, capfd):
    path = tmp_path / "small.mspec"
    path.write_text(SPEC)
    out = tmp_path / "runs"
    assert main(["train", str(path), "--out", str(out), "--nproc", "2", "--no-progress"]) == 0
    whole = run_folder(capfd.readouterr().out)

    args = ["train", str(path), "--out", str(tmp_path / "resumed"), "--nproc", "2", "--no-progress"]
    assert main([*args, "--max-steps", "13"]) == 0
    first = run_folder(capfd.readouterr().out)
    assert main([*args, "--resume"]) == 0  # the latest run, resolved before the processes start
    captured = capfd.readouterr()
    assert run_folder(captured.out) == first and captured.out.count("run folder: ") == 1

    # one run folder, written by the first process only: each step and evaluation logged once
    assert [p.name for p in out.iterdir()] == [whole.name]
    for folder, logged_steps in ((whole, [10, 20, 24]), (first, [10, 13, 20, 24])):  # 13: --max-steps
        lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in lines if "loss" in r] == logged_steps
        assert [r["step"] for r in lines if "val_loss" in r] == [8, 16, 24]
    a, b = final_weights(first), final_weights(whole)
    assert all(torch.equal(a[k], b[k]) for k in a), "a resumed 2-process run differs from an uninterrupted one"

    # the same steps as one process taking the whole batches (no dropout: the processes' masks differ)
    one = tmp_path / "one.mspec"
    one.write_text(SPEC.replace("    distributed ddp\n", "").replace("dropout(p)", "dropout(0.0)"))
    path.write_text(SPEC.replace("dropout(p)", "dropout(0.0)"))
    assert main(["train", str(path), "--out", str(tmp_path / "nodrop"), "--nproc", "2", "--no-progress"]) == 0
    two = final_weights(run_folder(capfd.readouterr().out))
    program = modelspec.load(one)
    single = Trainer(program, program.trains["small"], Options(out=tmp_path / "single", progress=False)).run()
    reference = final_weights(single.folder)
    for key in reference:
        torch.testing.assert_close(two[key], reference[key], rtol=1e-4, atol=1e-5)
    assert not torch.equal(two["fc1.weight"], final_weights(whole)["fc1.weight"])  # the comparison can fail


def trainer(text: str, tmp_path: Path) -> Trainer:
    program = modelspec.load(text)
    return Trainer(program, program.trains["small"], Options(out=tmp_path / "runs", progress=False))


# A model with a repeat (each iteration its own fsdp unit), tied weights (the head reuses the
# embedding's), gradient accumulation and clipping: what fsdp must get right.
FSDP_SPEC = """\
model Tied(vocab: int = 40, d: int = 16) {
    input tokens: int64[B, T]
    x = embedding(tokens, vocab, d, name=wte)
    repeat 2 as h {
        x = x + (x |> layernorm(name=ln) |> linear(32, name=up) |> gelu |> linear(d, name=down))
    }
    output logits = x |> layernorm(name=ln_f) |> linear(vocab, bias=false, tie=wte, name=head)
}

train tied {
    model      Tied()
    data       text(path="corpus.txt", block=16, batch=8)
    loss       cross_entropy(logits, target)
    optimizer  adamw(lr=3e-3)
    steps      12
    accumulate 2
    clip_grad  1.0
    evaluate   every(steps=6)
    checkpoint every(steps=4)
    seed       5
    distributed fsdp
}
"""


@pytest.mark.slow
def test_fsdp_trains_the_steps_of_one_process_and_resumes_exactly(tmp_path, capfd):
    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    path = tmp_path / "tied.mspec"
    path.write_text(FSDP_SPEC)
    args = ["train", str(path), "--nproc", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = run_folder(capfd.readouterr().out)
    assert main([*args, "--out", str(tmp_path / "resumed"), "--max-steps", "6"]) == 0
    first = run_folder(capfd.readouterr().out)
    assert main([*args, "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    assert run_folder(capfd.readouterr().out) == first

    # the checkpoint holds the full tensors, the tied head under one name, as one process writes
    weights = final_weights(whole)
    assert weights["head.weight"].shape == (40, 16) and "wte.weight" not in weights
    assert set(weights) >= {"h.0.up.weight", "h.1.down.bias", "ln_f.weight"}
    a = final_weights(first)
    assert all(torch.equal(a[k], weights[k]) for k in weights), "a resumed fsdp run differs from an uninterrupted one"

    # the same steps as one process taking the whole batches
    one = tmp_path / "one.mspec"
    one.write_text(FSDP_SPEC.replace("    distributed fsdp\n", ""))
    program = modelspec.load(one)
    single = Trainer(program, program.trains["tied"], Options(out=tmp_path / "single", progress=False)).run()
    reference = final_weights(single.folder)
    assert set(reference) == set(weights)
    for key in reference:
        torch.testing.assert_close(weights[key], reference[key], rtol=1e-4, atol=1e-5)
    start = Trainer(program, program.trains["tied"], Options(out=tmp_path / "start", max_steps=1, progress=False))
    assert not torch.equal(final_weights(start.run().folder)["head.weight"], weights["head.weight"])  # can fail


def test_torchrun_without_a_distributed_setting_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainError, match=r"one of 2 that torchrun started.*add `distributed ddp`"):
        trainer(SPEC.replace("    distributed ddp\n", ""), tmp_path).run()
    assert not (tmp_path / "runs").exists()


def test_ddp_in_one_process_runs_and_says_so(tmp_path):
    result = trainer(SPEC.replace("steps      24", "steps      3"), tmp_path).run()
    assert result.step == 3
    notes = [json.loads(line) for line in (result.folder / "metrics.jsonl").read_text().splitlines()]
    assert any("in one process" in r.get("text", "") for r in notes)


def test_nproc_needs_a_ddp_regime(tmp_path, capsys):
    path = tmp_path / "small.mspec"
    path.write_text(SPEC.replace("    distributed ddp\n", ""))
    assert main(["train", str(path), "--out", str(tmp_path / "runs"), "--nproc", "2"]) == 2
    assert "declares no `distributed ddp`" in capsys.readouterr().err


@pytest.mark.slow
def test_a_failing_distributed_run_reports_without_a_traceback(tmp_path, capfd):
    path = tmp_path / "small.mspec"
    path.write_text(SPEC.replace("adam(lr=1e-2)", "adam(lr=1e30)"))  # the loss is NaN at step 2
    assert main(["train", str(path), "--out", str(tmp_path / "runs"), "--nproc", "2", "--no-progress"]) == 1
    err = capfd.readouterr().err
    assert "error: the loss is nan at step 2" in err and "error: the run in 2 processes failed" in err
    assert "Traceback" not in err and "ChildFailedError" not in err
