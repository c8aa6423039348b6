"""`mspec train`'s loop as the issue promises it: the main job, exact resume
(stopped, or killed at a random moment), NaN stops, mistakes found before the
first step, gradient accumulation, fine-tuning, distillation, the gan regime
and TensorBoard. Every run is small (a 64-32-10 MLP on the 8×8 digits, a few
dozen steps) so that the file runs in seconds on two CPU cores."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modelspec.api import compile_program
from modelspec.diagnostics import Severity, render_all
from modelspec.train import checkpoint as ckpt
from modelspec.train.loop import MetricsLog, Options, RunResult, Trainer, TrainError

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"

SMALL = """\
model Small(hidden: int = 32, p: float = 0.2) {
    input image: float[B, 1, 8, 8]
    output logits = image
        |> flatten
        |> linear(hidden, name=fc1)
        |> relu
        |> dropout(p)
        |> linear(10, name=fc2)
}
"""

# 1437 training digits in batches of 32: 45 batches (the last one of 29) per epoch.
BATCHES = 45
DEFAULTS = {
    "model": "Small()",
    "data": "digits(batch=32, size=8)",
    "loss": "cross_entropy(logits, label)",
    "optimizer": "adam(lr=1e-2)",
    "schedule": "cosine(warmup=5)",
    "epochs": "2",
    "metrics": "[accuracy]",
    "seed": "3",
}


def block(name: str = "small", **settings: str | int | None) -> str:
    """A `train` block: DEFAULTS with `settings` over them (None drops one)."""
    merged = {**DEFAULTS, **settings}
    lines = [f"    {key:<10} {value}" for key, value in merged.items() if value is not None]
    return f"train {name} {{\n" + "\n".join(lines) + "\n}\n"


def write_spec(folder: Path, *blocks: str, model: str = SMALL, name: str = "small.mspec") -> Path:
    path = folder / name
    path.write_text(model + "\n" + "\n".join(blocks), encoding="utf-8")
    return path


def make_trainer(path: Path, regime: str | None = None, **options) -> Trainer:
    program, diagnostics, sources = compile_program(Path(path))
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    assert not errors, render_all(errors, sources)
    spec = program.trains[regime or next(iter(program.trains))]
    options.setdefault("progress", False)
    cls = Trainer
    if spec.model.kind == "gan":
        from modelspec.train.gan import GanTrainer

        cls = GanTrainer
    return cls(program, spec, Options(**options), sources=dict(sources.texts))


def train(path: Path, regime: str | None = None, **options) -> RunResult:
    return make_trainer(path, regime, **options).run()


def last_checkpoint(folder: Path) -> Path:
    found = ckpt.checkpoints(folder / "checkpoints")
    assert found, f"no checkpoint in {folder}"
    return found[-1]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(last_checkpoint(folder) / "model.safetensors"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_bitwise(run: Path, reference: Path) -> None:
    """The last checkpoints of two runs hold the same step and bitwise the same weights."""
    a, b = last_checkpoint(run), last_checkpoint(reference)
    assert a.name == b.name
    wa, wb = weights(run), weights(reference)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert wa[key].dtype == wb[key].dtype and torch.equal(wa[key], wb[key]), key
    assert digest(a / "model.safetensors") == digest(b / "model.safetensors")


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the main job ------------------------------------------------------------------------------


def test_main_job_mlp_digits(tmp_path):
    """specs/mlp_digits.mspec as shipped: ≥ 95% validation accuracy in under a minute."""
    started = time.perf_counter()
    result = train(SPECS / "mlp_digits.mspec", out=tmp_path / "runs")
    seconds = time.perf_counter() - started
    assert result.stopped == "done" and result.epoch == 10
    assert result.metrics["val_accuracy"] >= 0.95, result.metrics
    assert seconds < 60, f"the main job took {seconds:.1f} s"

    folder = result.folder
    assert folder.parent == tmp_path / "runs" and folder.name.startswith("mlp_sgd-")
    assert (folder / "spec" / "00-mlp_digits.mspec").read_text() == (SPECS / "mlp_digits.mspec").read_text()
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == "MLP" and config["regime"]["name"] == "mlp_sgd" and config["seed"] == 0
    assert len(config["spec_hash"]) == 64

    lines = records(folder)
    steps = [r for r in lines if "loss" in r]
    evaluations = [r for r in lines if "val_loss" in r]
    assert steps and all({"step", "epoch", "loss", "lr", "samples_per_s"} <= r.keys() for r in steps)
    assert [r["step"] for r in steps] == sorted(r["step"] for r in steps)
    assert len(evaluations) == 10 and all("val_accuracy" in r for r in evaluations)
    assert evaluations[-1]["val_accuracy"] == result.metrics["val_accuracy"]
    assert lines[-1]["event"] == "end" and lines[-1]["stopped"] == "done"

    final = last_checkpoint(folder)
    assert final.name == f"step-{result.step:08d}"
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors", "state.json", "state.safetensors"]
    assert ckpt.read_meta(final, config["spec_hash"])["epoch"] == 10


# ---- exact resume ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of `small` (2 epochs, 90 steps; dropout, adam, cosine)."""
    folder = tmp_path_factory.mktemp("reference")
    path = write_spec(folder, block())
    result = train(path, out=folder / "runs")
    assert result.step == 2 * BATCHES and result.stopped == "done"
    return result.folder


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop", [17, BATCHES], ids=["mid-epoch", "epoch-boundary"])
def test_resume_is_bitwise_exact(tmp_path, reference, workers, stop):
    path = write_spec(tmp_path, block(data=f"digits(batch=32, size=8, workers={workers})"))
    first = train(path, out=tmp_path / "runs", max_steps=stop)
    assert first.step == stop and first.stopped == "max_steps"
    state = ckpt.read_meta(last_checkpoint(first.folder), None)
    assert (state["epoch"], state["batch"]) == ((0, stop) if stop < BATCHES else (1, 0))

    resumed = train(path, resume=first.folder)
    assert resumed.folder == first.folder
    assert resumed.step == 2 * BATCHES and resumed.stopped == "done"
    assert_bitwise(first.folder, reference)
    assert records(first.folder)[-1]["stopped"] == "done"


def test_resume_keeps_best_and_early_stopping_exact(tmp_path):
    """Evaluations every 10 steps with `best` and `early_stop`: a resumed run
    tracks the same best checkpoint and stops at the same step."""
    settings = {
        "epochs": "3",
        "optimizer": "adam(lr=3e-2)",
        "evaluate": "every(steps=10)",
        "checkpoint": "every(steps=10)",
        "keep": "2",
        "best": "val_accuracy",
        "early_stop": "early_stop(2, metric=val_loss, min_delta=0.01)",
    }
    path = write_spec(tmp_path, block(**settings))
    whole = train(path, out=tmp_path / "whole")
    first = train(path, out=tmp_path / "resumed", max_steps=whole.step - 12)
    resumed = train(path, resume=first.folder)
    assert (resumed.step, resumed.stopped, resumed.best) == (whole.step, whole.stopped, whole.best)
    assert_bitwise(first.folder, whole.folder)
    best, reference = first.folder / "best", whole.folder / "best"
    assert digest(best / "model.safetensors") == digest(reference / "model.safetensors")
    assert json.loads((best / "state.json").read_text())["step"] == whole.best["step"]


def test_best_and_early_stop_on_train_metrics_without_validation_data(tmp_path):
    """`best min(train_loss)` and `early_stop` on `train_accuracy` work with `split=1` (no validation
    data): both are measured over each epoch's training steps."""
    settings = {
        "data": "digits(batch=32, size=8, split=1)",
        "epochs": "6",
        "best": "min(train_loss)",
        "early_stop": "early_stop(1, metric=train_accuracy, min_delta=0.5)",  # no epoch gains 50 points
    }
    path = write_spec(tmp_path, block(**settings))
    result = train(path, out=tmp_path / "runs", log_every=1)
    batches = 1797 // 32 + 1  # every digit trains: 57 batches, the last one of 5
    assert result.stopped == "early_stop" and result.step == 2 * batches
    lines = records(result.folder)
    evaluations = [r for r in lines if "train_loss" in r]
    assert len(evaluations) == 2 and not any("val_loss" in r for r in lines)
    # train_loss is the mean of the epoch's step losses weighted by their batch sizes
    steps = [r for r in lines if "loss" in r and r["epoch"] == 0]
    sizes = [32] * (batches - 1) + [1797 - 32 * (batches - 1)]
    assert len(steps) == batches
    expected = sum(r["loss"] * n for r, n in zip(steps, sizes, strict=True)) / 1797
    assert evaluations[0]["train_loss"] == pytest.approx(expected, rel=1e-9)
    assert 0.2 < evaluations[0]["train_accuracy"] < evaluations[1]["train_accuracy"] <= 1
    assert result.best["metric"] == "train_loss" and result.best["step"] == 2 * batches
    assert result.best["value"] == evaluations[1]["train_loss"] < evaluations[0]["train_loss"]
    assert json.loads((result.folder / "best" / "state.json").read_text())["step"] == 2 * batches


def test_train_metrics_resume_mid_window_exactly(tmp_path):
    """A run stopped between evaluations resumes its training window (loss sum, count, metric
    counts) from the checkpoint: the same train_loss and train_accuracy as an uninterrupted run."""
    settings = {"epochs": "2", "checkpoint": "every(steps=5)", "best": "max(train_accuracy)"}
    path = write_spec(tmp_path, block(**settings))
    whole = train(path, out=tmp_path / "whole")
    first = train(path, out=tmp_path / "resumed", max_steps=BATCHES + 17)
    resumed = train(path, resume=first.folder)
    assert resumed.best == whole.best
    watched = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")

    def evaluations(folder):
        return [{k: r[k] for k in watched} for r in records(folder) if "train_loss" in r]

    assert evaluations(first.folder)[-1] == evaluations(whole.folder)[-1]
    assert_bitwise(first.folder, whole.folder)


def test_uninterrupted_runs_are_reproducible_and_a_wrong_resume_would_show(tmp_path, reference):
    """The bitwise comparison is not vacuous: another seed gives other weights."""
    path = write_spec(tmp_path, block())
    assert_bitwise(train(path, out=tmp_path / "a").folder, reference)
    other = train(path, out=tmp_path / "b", seed=4, max_steps=2 * BATCHES)
    assert not torch.equal(weights(other.folder)["fc1.weight"], weights(reference)["fc1.weight"])


def test_resume_after_sigkill_at_a_random_moment(tmp_path):
    """A `mspec train` process killed at a random moment (once a checkpoint
    exists) and then `--resume`d ends bitwise equal to an uninterrupted run."""
    from modelspec.cli import main

    path = write_spec(tmp_path, block(epochs="4", checkpoint="every(steps=3)"))
    reference = train(path, out=tmp_path / "reference")
    out = tmp_path / "runs"
    log = open(tmp_path / "killed.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "modelspec.cli", "train", str(path), "--out", str(out), "--no-progress"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    rng = random.Random()
    target, pause = rng.randint(1, 40), rng.uniform(0.0, 0.02)  # of 60 checkpoints
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*/checkpoints/step-*"))) < target:
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "too slow"
            time.sleep(0.001)
        time.sleep(pause)
        assert process.poll() is None, f"the run ended before the kill ({target} checkpoints + {pause:.3f} s)"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert process.returncode == -signal.SIGKILL
    (folder,) = out.iterdir()
    killed_at = last_checkpoint(folder).name
    assert killed_at != f"step-{4 * BATCHES:08d}", "killed too late to show anything"

    assert main(["train", str(path), "--out", str(out), "--resume", str(folder), "--no-progress"]) == 0
    assert_bitwise(folder, reference.folder)
    assert [p for p in (folder / "checkpoints").iterdir() if p.name.startswith(".")] == []
    # metrics.jsonl: what the killed run logged after its last checkpoint is not there twice
    assert logged(folder) == logged(reference.folder)


def test_sigterm_stops_the_run_cleanly_and_it_resumes_exactly(tmp_path):
    """`kill` (SIGTERM) stops `mspec train` through its clean-up: exit 143, every metrics line
    written whole, no checkpoint half written; `--resume` then ends bitwise equal to an
    uninterrupted run."""
    from modelspec.cli import main

    path = write_spec(tmp_path, block(epochs="3", checkpoint="every(steps=10)"))
    reference = train(path, out=tmp_path / "reference")
    out = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "modelspec.cli", "train", str(path), "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*/checkpoints/step-*"))) < 3:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.002)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143 and "terminated (SIGTERM)" in err.decode() and "Traceback" not in err.decode()
    (folder,) = out.iterdir()
    text = (folder / "metrics.jsonl").read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    assert last_checkpoint(folder).name != f"step-{3 * BATCHES:08d}", "stopped too late to show anything"
    assert main(["train", str(path), "--out", str(out), "--resume", str(folder), "--no-progress"]) == 0
    assert_bitwise(folder, reference.folder)
    assert logged(folder) == logged(reference.folder)


def test_lines_still_buffered_are_written_when_a_run_stops_on_an_exception(tmp_path, monkeypatch):
    monkeypatch.setattr(MetricsLog, "FLUSH_S", 3600.0)
    path = write_spec(tmp_path, block(epochs="1", checkpoint=None))
    trainer = make_trainer(path, out=tmp_path / "runs", log_every=1)
    make_step = Trainer.plain_step

    def interrupted_at_step_7(self):
        step = make_step(self)

        def run(batch, number):
            if number == 6:
                raise KeyboardInterrupt
            return step(batch, number)

        return run

    monkeypatch.setattr(Trainer, "plain_step", interrupted_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert [r["step"] for r in records(trainer.folder) if "loss" in r] == [1, 2, 3, 4, 5, 6]


def logged(folder: Path) -> list[tuple]:
    """The training and evaluation lines of a run's metrics.jsonl, without timings and notes."""
    keys = ("step", "epoch", "loss", "lr", "val_loss", "val_accuracy", "train_loss")
    return [tuple(r.get(k) for k in keys) for r in records(folder) if "loss" in r or "val_loss" in r]


def test_resume_drops_the_lines_logged_after_the_checkpoint(tmp_path, reference):
    """The killed run's log goes on past its last checkpoint; the resumed run cuts it there
    (atomically) before logging those steps again, and notes that it resumed."""
    path = write_spec(tmp_path, block(checkpoint="every(steps=20)"))
    first = train(path, out=tmp_path / "runs", max_steps=BATCHES + 7, log_every=1)
    log = first.folder / "metrics.jsonl"
    checkpoint = ckpt.read_meta(last_checkpoint(first.folder), None)
    assert checkpoint["step"] == BATCHES + 7  # the final save; remove it as a kill before it would
    shutil.rmtree(last_checkpoint(first.folder))
    kept = ckpt.read_meta(last_checkpoint(first.folder), None)
    assert kept["step"] == 40 and 0 < kept["log_bytes"] < log.stat().st_size
    resumed = train(path, resume=first.folder, log_every=1)
    assert resumed.step == 2 * BATCHES
    lines = records(first.folder)
    steps = [r["step"] for r in lines if "loss" in r]
    assert steps == list(range(1, 2 * BATCHES + 1))  # each step once
    assert [r for r in lines if r.get("event") == "note"][0]["text"].startswith("resumed from checkpoint step 40")
    whole = train(path, out=tmp_path / "whole", log_every=1)
    assert logged(first.folder) == logged(whole.folder)


def test_latest_run_is_the_one_with_the_newest_checkpoint(tmp_path):
    """`--resume` without RUN: the run of this model and regime whose newest checkpoint was
    saved last, whatever the folders' modification times; runs of another model are skipped."""
    from modelspec.train.loop import latest_run

    path = write_spec(tmp_path, block())
    out = tmp_path / "runs"
    a = train(path, out=out, max_steps=2).folder
    b = train(path, out=out, max_steps=2).folder
    spec_hash = json.loads((a / "config.json").read_text())["spec_hash"]
    assert latest_run(out, "small", spec_hash) == b
    train(path, resume=a, max_steps=4)  # a now holds the newest checkpoint
    os.utime(b)  # a newer modification time does not matter
    assert latest_run(out, "small", spec_hash) == a
    other = write_spec(tmp_path, block(), model=SMALL.replace("32", "16"), name="other.mspec")
    c = train(other, out=out, max_steps=2).folder  # the same regime name, another model
    assert latest_run(out, "small", spec_hash) == a
    assert latest_run(out, "small", json.loads((c / "config.json").read_text())["spec_hash"]) == c
    assert latest_run(out, "smal", spec_hash) is None


def test_metrics_lines_reach_the_file_within_a_second_at_events_and_before_a_checkpoint(tmp_path, monkeypatch):
    """Step lines are written in batches (a system call per line costs a small model ~1% of its
    epoch); events and a checkpoint's recorded size see every line in the file."""
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    monkeypatch.setattr(MetricsLog, "FLUSH_S", 3600.0)
    log.write({"step": 1, "loss": 2.0})
    assert path.read_bytes() == b""
    assert log.size() == len(path.read_bytes()) > 0  # what a checkpoint records is on disk
    log.write({"step": 2, "loss": 1.5})
    log.write({"event": "note", "text": "hello"})
    assert [json.loads(line)["step" if i < 2 else "event"] for i, line in enumerate(path.read_text().splitlines())] == [
        1,
        2,
        "note",
    ]
    monkeypatch.setattr(MetricsLog, "FLUSH_S", 0.0)
    log.write({"step": 3, "loss": 1.0})
    assert path.read_text().splitlines()[-1] == json.dumps({"step": 3, "loss": 1.0})
    log.close()


# ---- NaN ---------------------------------------------------------------------------------------------


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    path = write_spec(tmp_path, block(optimizer="sgd(lr=1e30)", schedule=None, epochs="1", checkpoint="every(steps=1)"))
    trainer = make_trainer(path, out=tmp_path / "runs")
    with pytest.raises(TrainError, match=r"at step \d+") as excinfo:
        trainer.run()
    message = str(excinfo.value)
    assert "not finite" in message or "nan" in message or "inf" in message
    step = int(message.split("at step ")[1].split()[0].rstrip(":;,"))
    (folder,) = (tmp_path / "runs").iterdir()
    good, refused = ckpt.latest_valid(folder / "checkpoints", trainer.spec_hash)
    assert good is not None and not refused
    assert int(good.name[5:]) < step
    state = ckpt.load(good, trainer.model, trainer.spec_hash)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert state.step == int(good.name[5:])


# Trainer.plain_step where it applies (reading each loss at once, as on the CPU, or `deferred`:
# left on the device until `settle`, as on an accelerator); train_step always
STEP_PATHS = ["plain", "deferred", "general"]


def use_step_path(monkeypatch, path: str) -> None:
    """Run every step through `path`."""
    if path == "general":
        monkeypatch.setattr(Trainer, "plain_step", lambda self: None)
    elif path == "deferred":
        after_prepare(monkeypatch, lambda trainer: setattr(trainer, "read_each_step", False))


def after_prepare(monkeypatch, install) -> None:
    """Call `install(trainer)` once the trainer's model and optimizer are built."""
    prepare = Trainer.prepare

    def prepared(self):
        prepare(self)
        install(self)

    monkeypatch.setattr(Trainer, "prepare", prepared)


def poison_forward(monkeypatch, n: int, poison) -> None:
    """The n-th training forward pass's output goes through `poison` (a forward hook on the model,
    so that either step path meets it)."""
    calls = {"n": 0}

    def hook(module, inputs, output):
        if module.training:
            calls["n"] += 1
            if calls["n"] == n:
                return poison(output)
        return None

    after_prepare(monkeypatch, lambda trainer: trainer.model.register_forward_hook(hook))


@pytest.mark.parametrize("step_path", STEP_PATHS)
def test_nan_in_the_forward_pass_names_its_step(tmp_path, monkeypatch, step_path):
    path = write_spec(tmp_path, block(epochs="1", checkpoint="every(steps=2)"))
    trainer = make_trainer(path, out=tmp_path / "runs")
    use_step_path(monkeypatch, step_path)
    poison_forward(monkeypatch, 5, lambda output: output * float("nan"))
    with pytest.raises(TrainError, match="the loss is nan at step 5"):
        trainer.run()
    assert (trainer.plain_step() is not None) is (step_path != "general")
    (folder,) = (tmp_path / "runs").iterdir()
    good, _ = ckpt.latest_valid(folder / "checkpoints", trainer.spec_hash)
    assert good.name == "step-00000004"
    ckpt.load(good, trainer.model, trainer.spec_hash)


def overflow_backward_at(monkeypatch, n: int) -> None:
    """The n-th training forward pass gets a finite loss whose backward pass overflows."""

    def overflowing(output):
        output.register_hook(lambda grad: grad * float("inf"))
        return output

    poison_forward(monkeypatch, n, overflowing)


@pytest.mark.parametrize("step_path", STEP_PATHS)
@pytest.mark.parametrize(
    ("every", "stops"),
    [(2, "the loss is nan at step 4"), (1, "the weights are not finite after step 3")],
)
def test_infinite_gradients_without_clip_grad_stop_the_run_and_keep_a_finite_checkpoint(
    tmp_path, monkeypatch, every, stops, step_path
):
    """No per-step gradient check without clip_grad: the overflowing step 3 is applied, then the
    next step's loss (or step 3's own checkpoint) stops the run naming its step, and the newest
    checkpoint on disk is the finite one of step 2."""
    path = write_spec(tmp_path, block(epochs="1", checkpoint=f"every(steps={every})"))
    trainer = make_trainer(path, out=tmp_path / "runs")
    use_step_path(monkeypatch, step_path)
    overflow_backward_at(monkeypatch, 3)
    with pytest.raises(TrainError, match=stops) as excinfo:
        trainer.run()
    assert "the last good checkpoint is" in str(excinfo.value) and "step-00000002" in str(excinfo.value)
    newest = ckpt.checkpoints(trainer.checkpoints)[-1]
    assert newest.name == "step-00000002"
    state = ckpt.load(newest, trainer.model, trainer.spec_hash)
    assert state.step == 2 and all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert records(trainer.folder)[-1]["event"] == "error"


@pytest.mark.parametrize("step_path", STEP_PATHS)
def test_infinite_gradients_with_clip_grad_stop_before_the_weights_change(tmp_path, monkeypatch, step_path):
    """With clip_grad the norm is computed anyway: a non-finite one stops the step it belongs to
    (deferred, as on an accelerator: the run stops at the next read, naming that step, and the
    step was applied in memory; the checkpoints on disk are the good ones either way)."""
    path = write_spec(tmp_path, block(epochs="1", checkpoint="every(steps=2)", clip_grad="1.0"))
    trainer = make_trainer(path, out=tmp_path / "runs")
    use_step_path(monkeypatch, step_path)
    overflow_backward_at(monkeypatch, 3)
    with pytest.raises(TrainError, match=r"the gradients are not finite at step 3 \(the loss is [\d.]+\)"):
        trainer.run()
    assert (trainer.plain_step() is not None) is (step_path != "general")
    finite = all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert finite is (step_path != "deferred")
    good, _ = ckpt.latest_valid(trainer.checkpoints, trainer.spec_hash)
    assert good.name == "step-00000002"


def test_a_batch_with_every_target_ignored_is_a_step_of_loss_zero(tmp_path):
    """A window of one micro-batch takes the loss's mean, undefined when nothing is counted: such a
    step has loss 0 and no gradient, as in the summing path, rather than stopping on a nan."""
    path = write_spec(tmp_path, block(optimizer="sgd(lr=0.1)", schedule=None))
    trainer = make_trainer(path, out=tmp_path / "runs")
    trainer.start()
    batch = dict(next(iter(trainer.loaders()[0])))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batch["label"] = torch.full_like(batch["label"], -100)
    assert trainer.loss.criterion.none_ignored  # the digits hold no -100: counts need no tensor op
    trainer.loss.criterion.know_targets([batch["label"]])  # as for data that holds ignored targets
    loss, samples = trainer.train_step([batch], 0)
    assert loss == 0.0 and samples == len(batch["label"])
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    trainer.log.close()


@pytest.mark.parametrize("ignored", [False, True])
def test_evaluation_counts_exactly_whether_or_not_the_data_holds_ignored_targets(tmp_path, ignored):
    """Counts skip their tensor ops only when no label of the data is `ignore_index`; either way
    val_loss and val_accuracy are torch's over the targets not ignored."""
    import numpy as np
    import torch.nn.functional as F

    generator = np.random.default_rng(0)
    labels = generator.integers(0, 10, 200)
    if ignored:
        labels[::3] = -100
    np.savez(tmp_path / "d.npz", x=generator.normal(size=(200, 1, 8, 8)).astype(np.float32), y=labels)
    path = write_spec(tmp_path, block(data='npz(path="d.npz", batch=16, split=0.5)', schedule=None))
    trainer = make_trainer(path, out=tmp_path / "runs")
    trainer.start()
    assert trainer.loss.criterion.none_ignored is not ignored
    results = trainer.evaluate(trainer.loaders()[1])
    x, y = trainer.data.val.tensors["image"], trainer.data.val.tensors["label"]
    assert bool((y == -100).any()) is ignored
    with torch.no_grad():
        logits = trainer.model(x)
    kept = y != -100
    torch.testing.assert_close(results["val_loss"], F.cross_entropy(logits, y, ignore_index=-100).item())
    assert results["val_accuracy"] == (logits.argmax(-1)[kept] == y[kept]).sum().item() / kept.sum().item()
    trainer.log.close()


@pytest.mark.parametrize("step_path", STEP_PATHS)
def test_no_checkpoint_is_written_with_non_finite_weights(tmp_path, monkeypatch, step_path):
    path = write_spec(tmp_path, block(epochs="1", checkpoint="every(steps=1)"))
    trainer = make_trainer(path, out=tmp_path / "runs")
    use_step_path(monkeypatch, step_path)
    steps = {"n": 0}

    def spoil(optimizer, args, kwargs):  # step 3 leaves an infinite weight behind a finite loss
        steps["n"] += 1
        if steps["n"] == 3:
            with torch.no_grad():
                trainer.model.fc2.weight[0, 0] = float("inf")

    after_prepare(monkeypatch, lambda t: t.optimizer.register_step_post_hook(spoil))
    with pytest.raises(TrainError, match="weights are not finite after step 3 .*fc2.weight"):
        trainer.run()
    assert [p.name for p in ckpt.checkpoints(trainer.checkpoints)] == ["step-00000001", "step-00000002"]
    assert records(trainer.folder)[-1]["event"] == "error"


def test_the_plain_step_and_train_step_take_the_same_steps_bit_for_bit(tmp_path, monkeypatch):
    """The plain step is train_step's computation decided once: the same weights, optimizer state,
    logged losses and evaluations, with and without a schedule and under bf16 autocast, whether
    it reads each loss at once or leaves them for `settle` (what it does on an accelerator)."""
    settings = [{"schedule": None}, {"schedule": "cosine(warmup=3)", "evaluate": "every(steps=7)"}]
    settings.append({"precision": "bf16", "log_every": 1})
    settings.append({"clip_grad": "0.5", "optimizer": "sgd(lr=0.5, momentum=0.9)"})  # clipping at work
    # targets that may be ignored: counts on the device, label smoothing (torch's mean in its last bits)
    settings.append({"loss": "cross_entropy(logits, label, label_smoothing=0.1, ignore_index=3)"})
    for setting in settings:
        options = {"log_every": setting.pop("log_every", 10)}
        runs = {}
        for step_path in STEP_PATHS:
            with monkeypatch.context() as patch:
                use_step_path(patch, step_path)
                path = write_spec(tmp_path, block(epochs="2", checkpoint=None, **setting))
                trainer = make_trainer(path, out=tmp_path / step_path / str(len(runs)), **options)
                result = trainer.run()
                assert (trainer.plain_step() is not None) is (step_path != "general")
                assert not trainer.pending
                runs[step_path] = (trainer, result)
        general, b = runs["general"]
        lines = [{k: v for k, v in r.items() if k not in ("samples_per_s", "seconds")} for r in records(general.folder)]
        for step_path in ("plain", "deferred"):
            plain, a = runs[step_path]
            assert a.metrics == b.metrics and a.step == b.step > 0, (setting, step_path)
            for (name, x), y in zip(plain.model.state_dict().items(), general.model.state_dict().values(), strict=True):
                assert torch.equal(x, y), (setting, step_path, name)
            assert str(plain.optimizer.state_dict()) == str(general.optimizer.state_dict())
            mine = [
                {k: v for k, v in r.items() if k not in ("samples_per_s", "seconds")} for r in records(plain.folder)
            ]
            assert mine == lines, (setting, step_path)


def test_a_live_progress_bar_does_not_change_what_the_deferred_step_logs(tmp_path, monkeypatch):
    """With the bar live (a terminal), the deferred step's log lines still carry their own
    step's loss (the bar shows the last one read, at most twice a second)."""
    import rich.console

    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))
    path = write_spec(tmp_path, block(epochs="1", checkpoint=None))
    logged = {}
    for step_path in ("plain", "deferred"):
        with monkeypatch.context() as patch:
            use_step_path(patch, step_path)
            trainer = make_trainer(path, out=tmp_path / step_path, progress=True)
            trainer.run()
            logged[step_path] = [(r["step"], r["loss"]) for r in records(trainer.folder) if "loss" in r]
    assert len(logged["plain"]) == 5 and logged["deferred"] == logged["plain"]


def test_deferred_losses_count_ignored_targets_on_the_device_and_resume_exactly(tmp_path, monkeypatch):
    """Data holding ignore_index: the deferred step counts on the device (no read per step), a batch
    with every target ignored is a step of loss 0, and a run stopped and resumed ends with the
    weights of one that never stopped."""
    import numpy as np

    generator = np.random.default_rng(1)
    labels = generator.integers(0, 10, 160)
    labels[::4] = -100
    labels[:16] = -100  # the first batch (in order) counts nothing
    np.savez(tmp_path / "d.npz", x=generator.normal(size=(160, 1, 8, 8)).astype(np.float32), y=labels)
    use_step_path(monkeypatch, "deferred")
    data = 'npz(path="d.npz", batch=16, split=1, shuffle=false)'
    path = write_spec(tmp_path, block(data=data, schedule=None, epochs="3", checkpoint=None, metrics=None))
    whole = make_trainer(path, out=tmp_path / "whole", log_every=1)
    assert whole.run().step == 30
    assert not whole.loss.criterion.none_ignored  # counts are tensors: the device-side path ran
    losses = [r["loss"] for r in records(whole.folder) if "loss" in r]
    # the first batch of each epoch (in order) counts nothing
    assert len(losses) == 30 and losses[::10] == [0.0] * 3
    assert all(math.isfinite(v) and v > 0 for i, v in enumerate(losses) if i % 10)
    stopped = make_trainer(path, out=tmp_path / "parts", max_steps=13, log_every=1)
    assert stopped.run().step == 13
    resumed = make_trainer(path, out=tmp_path / "parts", resume=stopped.folder, log_every=1)
    assert resumed.run().step == 30
    for (name, x), y in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert [r["loss"] for r in records(resumed.folder) if "loss" in r] == losses


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_a_model_whose_inputs_declare_a_dtype_is_built_in_it(tmp_path, dtype):
    """`input image: float64[...]`: the data comes in that dtype, so the weights are made in it too
    (they were float32: an internal error at the first step)."""
    model = SMALL.replace("float[B, 1, 8, 8]", f"{dtype}[B, 1, 8, 8]")
    path = write_spec(tmp_path, block(epochs="1", optimizer="sgd(lr=0.1)", schedule=None), model=model)
    trainer = make_trainer(path, out=tmp_path / "runs")
    result = trainer.run()
    assert result.step == BATCHES and math.isfinite(result.metrics["val_loss"])
    assert {p.dtype for p in trainer.model.parameters()} == {getattr(torch, dtype)}
    assert trainer.data.train.tensors["image"].dtype == getattr(torch, dtype)
    assert weights(result.folder)["fc1.weight"].dtype == getattr(torch, dtype)


def test_without_periodic_checkpoints_improvements_of_best_do_not_pile_up(tmp_path):
    """`best` without `checkpoint`: each improvement is saved (best/ gets its copy), but
    checkpoints/ keeps only the newest and the best, not every improvement."""
    path = write_spec(tmp_path, block(epochs="5", best="min(val_loss)", checkpoint=None))
    result = train(path, out=tmp_path / "runs")
    kept = [p.name for p in ckpt.checkpoints(result.folder / "checkpoints")]
    assert f"step-{5 * BATCHES:08d}" in kept and len(kept) <= 2
    assert json.loads((result.folder / "best" / "state.json").read_text())["step"] == result.best["step"]
    assert f"step-{result.best['step']:08d}" in kept


def test_relative_paths_start_at_the_file_declaring_the_train_block(tmp_path):
    """A train block importing its model from another folder reads `data` (and `init`) relative to
    its own file, where the path is written (they used to start at the model's file)."""
    import numpy as np

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "small.mspec").write_text(SMALL, encoding="utf-8")
    generator = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=generator.normal(size=(40, 1, 8, 8)).astype(np.float32), y=np.arange(40) % 10)
    first = block("first", data='npz("d.npz", batch=8)', schedule=None, epochs="1")
    tuned = block("tuned", data='npz("d.npz", batch=8)', schedule=None, epochs="1", init='"base/best"')
    path = tmp_path / "experiments.mspec"
    path.write_text('import "models/small.mspec"\n\n' + first + "\n" + tuned, encoding="utf-8")
    trainer = make_trainer(path, "first", out=tmp_path / "runs")
    result = trainer.run()
    assert result.step == 4 and trainer.data.info["source"].endswith("d.npz")
    (tmp_path / "base").mkdir()
    shutil.copytree(last_checkpoint(result.folder), tmp_path / "base" / "best")
    assert make_trainer(path, "tuned", out=tmp_path / "runs").run().step == 4


def test_the_plain_step_applies_only_to_a_plain_regime(tmp_path):
    """Anything the plain step does not do (accumulation, regularization, a watched train_ metric)
    keeps train_step."""
    plain = make_trainer(write_spec(tmp_path, block()), out=tmp_path / "runs")
    plain.start()
    assert plain.plain_step() is not None
    plain.log.close()
    for setting in ({"accumulate": "2"}, {"regularization": "l2(1e-4)"}, {"best": "max(train_accuracy)"}):
        folder = tmp_path / next(iter(setting))
        folder.mkdir()
        trainer = make_trainer(write_spec(folder, block(**setting)), out=folder / "runs")
        trainer.start()
        assert trainer.plain_step() is None, setting
        trainer.log.close()


def test_gan_nan_loss_stops_before_the_optimizers_step(tmp_path, monkeypatch):
    from modelspec.train.gan import GanTrainer

    path = write_spec(tmp_path, model=GAN, name="gan.mspec")
    trainer = make_trainer(path, out=tmp_path / "runs")
    loss_against = GanTrainer.loss_against
    calls = {"n": 0}

    def poisoned(self, prediction, real):
        calls["n"] += 1
        value = loss_against(self, prediction, real)
        return value * float("nan") if calls["n"] == 7 else value  # step 3's discriminator loss

    monkeypatch.setattr(GanTrainer, "loss_against", poisoned)
    with pytest.raises(TrainError, match="the discriminator loss is nan at step 3"):
        trainer.run()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


# ---- mistakes found before the first step -----------------------------------------------------------


def fails_before_training(path: Path, out: Path, *patterns: str, **options) -> str:
    with pytest.raises(TrainError) as excinfo:
        train(path, out=out, **options)
    message = str(excinfo.value)
    for pattern in patterns:
        assert pattern in message, message
    assert not out.exists() or list(out.iterdir()) == [], "a run folder was made"
    return message


def test_wrong_data_path(tmp_path):
    path = write_spec(tmp_path, block(data='npz(path="missing/digits.npz", batch=8)'))
    fails_before_training(path, tmp_path / "runs", "missing/digits.npz")


def test_missing_csv_label_column(tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("a,b,c,y\n" + "".join(f"{i},{i + 1},{i + 2},{i % 2}\n" for i in range(20)))
    model = "model Tab() {\n    input x: float[B, 3]\n    output logits = x |> linear(2)\n}\n"
    path = write_spec(tmp_path, block(model="Tab()", data='csv(path="table.csv", label="label")'), model=model)
    fails_before_training(path, tmp_path / "runs", "label")


def test_data_that_does_not_fit_the_model(tmp_path):
    path = write_spec(tmp_path, block(data="digits(batch=32, size=28)"))
    fails_before_training(path, tmp_path / "runs", "image")


def test_fp16_on_the_cpu(tmp_path):
    path = write_spec(tmp_path, block(precision="fp16"))
    fails_before_training(path, tmp_path / "runs", "fp16", "CUDA")


def test_resume_of_another_spec_changes_nothing(tmp_path, reference):
    before = snapshot(reference)
    other = write_spec(tmp_path, block(), model=SMALL.replace("hidden: int = 32", "hidden: int = 16"))
    with pytest.raises(TrainError, match="another model"):
        train(other, resume=reference)
    assert snapshot(reference) == before


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    path = write_spec(tmp_path, block())
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(TrainError, match="not a run folder"):
        train(path, resume=folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    with pytest.raises(TrainError, match="not a run folder"):
        train(path, resume=tmp_path / "missing")


SGD = "sgd(lr=0.05, momentum=0.9)"


@pytest.mark.parametrize(
    ("settings", "was", "says"),
    [
        ({"optimizer": "adam(lr=1e-2)"}, "optimizer sgd(lr=0.05, momentum=0.9, ", "optimizer adam(lr=0.01, "),
        ({"optimizer": "sgd(lr=0.1, momentum=0.9)"}, "optimizer sgd(lr=0.05)", "optimizer sgd(lr=0.1)"),
        ({"data": "digits(batch=64, size=8)"}, "data digits(batch=32)", "data digits(batch=64)"),
        ({"schedule": None, "accumulate": "2"}, "schedule cosine(warmup=5, ", "no schedule, accumulate 2"),
    ],
    ids=["sgd-to-adam", "lr", "batch", "two-settings"],
)
def test_resume_refuses_another_train_block_and_changes_nothing(tmp_path, settings, was, says):
    """Only the train block edited (the model's IR hash is the same): the run's resolved regime
    (config.json) is compared with the spec's, and what differs is named before anything in the
    run folder changes (sgd -> adam used to fail in the first step with `KeyError: 'step'`)."""
    first = train(write_spec(tmp_path, block(optimizer=SGD)), out=tmp_path / "runs", max_steps=3)
    before = snapshot(first.folder)
    edited = write_spec(tmp_path, block(**{"optimizer": SGD, **settings}), name="edited.mspec")
    with pytest.raises(TrainError) as excinfo:
        train(edited, resume=first.folder)
    message = str(excinfo.value)
    assert f"{first.folder} was trained with {was}" in message and f"; the spec now says {says}" in message
    assert f"resume with the spec the run used (its copy is in {first.folder / 'spec'})" in message
    assert "\n" not in message
    assert snapshot(first.folder) == before


def test_resume_refuses_another_seed(tmp_path):
    """The seed the run used (here --seed 7 over the regime's 3) fixes its data order: a resume
    with another is refused, with the seed to give; with it, the run resumes."""
    path = write_spec(tmp_path, block(epochs="1"))
    first = train(path, out=tmp_path / "runs", max_steps=3, seed=7)
    before = snapshot(first.folder)
    with pytest.raises(TrainError, match=r"trained with seed 7, not --seed 8: the data order would change"):
        train(path, resume=first.folder, seed=8)
    with pytest.raises(TrainError, match=r"would use seed 3 \(from the spec\).*resume with --seed 7$"):
        train(path, resume=first.folder)
    assert snapshot(first.folder) == before
    assert train(path, resume=first.folder, seed=7, max_steps=5).step == 5


def test_resume_of_a_run_recorded_before_a_setting_existed(tmp_path):
    """A config.json written before a setting or a component argument was added (removed here
    by hand) lacks it: its default as installed now fills it in and the run resumes; a value
    that was recorded is compared as recorded."""
    path = write_spec(tmp_path, block(epochs="1"))
    first = train(path, out=tmp_path / "runs", max_steps=3)
    config = json.loads((first.folder / "config.json").read_text())
    del config["regime"]["data"]["args"]["workers"], config["regime"]["accumulate"]
    (first.folder / "config.json").write_text(json.dumps(config))
    assert train(path, resume=first.folder, max_steps=5).step == 5
    config["regime"]["data"]["args"]["workers"] = 2
    (first.folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TrainError, match=r"with data digits\(workers=2\); the spec now says data digits\(workers=0\)"):
        train(path, resume=first.folder, max_steps=6)


def test_resume_to_train_longer_without_a_schedule(tmp_path):
    """`epochs 1` -> `epochs 2` with no schedule: the run continues as if it had always been
    two epochs long (bitwise), and config.json and a copy of the spec record the change."""
    two = train(write_spec(tmp_path, block(schedule=None, epochs="2")), out=tmp_path / "two")
    one = write_spec(tmp_path, block(schedule=None, epochs="1"), name="one.mspec")
    first = train(one, out=tmp_path / "runs")
    assert first.step == BATCHES and first.stopped == "done"
    longer = write_spec(tmp_path, block(schedule=None, epochs="2"), name="longer.mspec")
    resumed = train(longer, resume=first.folder)
    assert resumed.step == 2 * BATCHES and resumed.stopped == "done"
    assert_bitwise(first.folder, two.folder)
    config = json.loads((first.folder / "config.json").read_text())
    assert config["regime"]["epochs"] == 2
    assert config["extended"] == [
        {
            "from": {"epochs": 1, "steps": None},
            "to": {"epochs": 2, "steps": None},
            "steps": [BATCHES, 2 * BATCHES],
            "spec": "spec-extended-1",
        }
    ]
    assert (first.folder / "spec" / "00-one.mspec").read_text() == one.read_text()
    assert (first.folder / "spec-extended-1" / "00-longer.mspec").read_text() == longer.read_text()
    notes = [r["text"] for r in records(first.folder) if r.get("event") == "note"]
    assert any(n.startswith("training longer: epochs 1 -> epochs 2 (45 -> 90 steps)") for n in notes), notes
    # The spec now used is the run's: resuming with it again is no change; the first one is shorter.
    assert train(longer, resume=first.folder).step == 2 * BATCHES
    shorter = r"epochs 2 \(90 steps\); the spec now says epochs 1 \(45 steps\): a run cannot be resumed shorter"
    with pytest.raises(TrainError, match=shorter + r".*its copy is in .*spec-extended-1\)"):
        train(one, resume=first.folder)


def test_resume_to_train_longer_refused_when_the_schedule_spans_the_run(tmp_path):
    """cosine() spans the regime's whole length (a longer run has other rates from its first
    steps): refused, saying so; `step(10)` does not depend on the length: allowed."""
    first = train(write_spec(tmp_path, block(epochs="1")), out=tmp_path / "runs", max_steps=3)
    before = snapshot(first.folder)
    longer = write_spec(tmp_path, block(epochs="2"), name="longer.mspec")
    with pytest.raises(TrainError) as excinfo:
        train(longer, resume=first.folder)
    message = str(excinfo.value)
    assert "trained for epochs 1 (45 steps); the spec now says epochs 2 (90 steps), but its schedule" in message
    assert "cosine(warmup=5, min_lr=0.0) spans the regime's whole length" in message
    assert snapshot(first.folder) == before

    stepped = train(write_spec(tmp_path, block(epochs="1", schedule="step(10, gamma=0.5)")), out=tmp_path / "step")
    longer = write_spec(tmp_path, block(epochs="2", schedule="step(10, gamma=0.5)"), name="step.mspec")
    assert train(longer, resume=stepped.folder, max_steps=BATCHES + 2).step == BATCHES + 2


def test_resume_with_an_optimizer_state_that_does_not_fit_names_the_checkpoint(tmp_path):
    """A checkpoint that passes validation but whose optimizer state does not fit (state.json
    edited by hand): a TrainError naming the checkpoint, not an internal error."""
    first = train(write_spec(tmp_path, block(epochs="1")), out=tmp_path / "runs", max_steps=3)
    checkpoint = last_checkpoint(first.folder)
    meta = json.loads((checkpoint / "state.json").read_text())
    meta["optimizers"]["main"]["param_groups"].append(meta["optimizers"]["main"]["param_groups"][0])
    (checkpoint / "state.json").write_text(json.dumps(meta))
    with pytest.raises(TrainError) as excinfo:
        train(write_spec(tmp_path, block(epochs="1")), resume=first.folder)
    message = str(excinfo.value)
    assert message.startswith(f"cannot resume from {checkpoint}: its optimizer state does not fit this regime")
    assert "parameter groups" in message


def test_tensorboard_missing_leaves_no_run_folder(tmp_path, monkeypatch):
    """--tensorboard without the package: refused before the run folder is made (a new run) or
    touched (a resume)."""
    path = write_spec(tmp_path, block(epochs="1"))
    first = train(path, out=tmp_path / "runs", max_steps=2)
    before = snapshot(first.folder)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(TrainError, match=r"--tensorboard needs the `tensorboard` package: pip install tensorboard"):
        train(path, out=tmp_path / "new", max_steps=2, tensorboard=True)
    assert not (tmp_path / "new").exists()
    with pytest.raises(TrainError, match="pip install tensorboard"):
        train(path, resume=first.folder, max_steps=4, tensorboard=True)
    assert snapshot(first.folder) == before


# ---- gradient accumulation -----------------------------------------------------------------------------


def test_accumulation_matches_one_large_batch(tmp_path):
    """4 micro-batches of 8 make the same first step as one batch of 32 (the
    per-epoch permutation makes them the same 32 digits)."""
    common = {"model": "Small(p=0.0)", "optimizer": "sgd(lr=0.1, momentum=0.9)", "schedule": None}
    path = write_spec(
        tmp_path,
        block("large", data="digits(batch=32, size=8)", **common),
        block("micro", data="digits(batch=8, size=8)", accumulate="4", **common),
        block("plain", data="digits(batch=8, size=8)", **common),
    )
    runs = {
        name: train(path, name, out=tmp_path / name, max_steps=1, log_every=1) for name in ("large", "micro", "plain")
    }
    large, micro, plain = (weights(runs[n].folder) for n in ("large", "micro", "plain"))
    initial = make_trainer(path, "large")
    initial.prepare()
    assert not torch.equal(large["fc1.weight"], initial.model.state_dict()["fc1.weight"])
    for key in large:
        torch.testing.assert_close(micro[key], large[key], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain["fc1.weight"], large["fc1.weight"], rtol=1e-5, atol=1e-6)
    (large_loss,), (micro_loss,) = (
        [r["loss"] for r in records(runs[n].folder) if "loss" in r] for n in ("large", "micro")
    )
    assert micro_loss == pytest.approx(large_loss, rel=1e-5)


# ---- fine-tuning and distillation ---------------------------------------------------------------------


def test_fine_tuning_a_new_head_of_another_shape(tmp_path, reference):
    """`reinit` names a head whose shape differs from the checkpoint's (5 classes, not 10): its
    weights are not read; every other layer is."""
    base = last_checkpoint(reference)
    model = SMALL.replace("p: float = 0.2)", "p: float = 0.2, classes: int = 10)").replace(
        "linear(10, name=fc2)", "linear(classes, name=fc2)"
    )
    tune = block(
        "tune",
        model="Small(p=0.0, classes=5)",
        data="synthetic(batch=16, samples=64, classes=5)",
        schedule=None,
        epochs=None,
        steps="2",
        init=json.dumps(str(base)),
        reinit="[fc2]",
    )
    trainer = make_trainer(write_spec(tmp_path, tune, model=model), out=tmp_path / "runs")
    trainer.prepare()
    base_weights = load_file(str(base / "model.safetensors"))
    assert torch.equal(trainer.model.fc1.weight, base_weights["fc1.weight"])
    assert trainer.model.fc2.weight.shape == (5, 32) != base_weights["fc2.weight"].shape
    assert trainer.run().step == 2
    without = tune.replace("    reinit     [fc2]\n", "")
    clash = r"init: .*`fc2\.(weight|bias)` is \[10.*\] there but \[5.*\] in this model \(and 1 more\)"
    with pytest.raises(TrainError, match=clash):  # without reinit: the sizes clash, in one line
        make_trainer(write_spec(tmp_path, without, model=model, name="again.mspec"), out=tmp_path / "runs2").prepare()


def test_fine_tuning_init_freeze_reinit(tmp_path, reference):
    base = last_checkpoint(reference)
    path = write_spec(
        tmp_path,
        block(
            "tune",
            model="Small(p=0.0)",
            optimizer="sgd(lr=0.1, momentum=0.9)",
            schedule=None,
            epochs=None,
            steps="5",
            init=json.dumps(str(base)),
            freeze="[fc1]",
            reinit="[fc2]",
        ),
    )
    base_weights = load_file(str(base / "model.safetensors"))
    trainer = make_trainer(path, out=tmp_path / "runs")
    trainer.prepare()
    start = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    assert torch.equal(start["fc1.weight"], base_weights["fc1.weight"])
    assert not torch.equal(start["fc2.weight"], base_weights["fc2.weight"])  # a fresh head
    assert start["fc2.weight"].abs().max() <= 1 / 32**0.5  # from the default initialisation (fan-in 32)

    result = trainer.run()
    assert result.step == 5
    final = weights(result.folder)
    assert torch.equal(final["fc1.weight"], base_weights["fc1.weight"])
    assert torch.equal(final["fc1.bias"], base_weights["fc1.bias"])
    assert not torch.equal(final["fc2.weight"], start["fc2.weight"])  # trained


def test_freeze_keeps_batch_norm_statistics(tmp_path, reference):
    """A frozen layer keeps its buffers too: it runs in eval mode while the rest trains."""
    model = SMALL.replace("|> relu", "|> batchnorm1d(name=bn)\n        |> relu")
    base = write_spec(tmp_path, block("base", epochs="1"), model=model, name="base.mspec")
    first = train(base, out=tmp_path / "base", max_steps=3)
    start = weights(first.folder)
    tuned = write_spec(
        tmp_path,
        block("tune", epochs="1", init=json.dumps(str(last_checkpoint(first.folder))), freeze="[fc1, bn]"),
        model=model,
        name="tune.mspec",
    )
    final = weights(train(tuned, out=tmp_path / "tune", max_steps=3).folder)
    for key in start:
        if key.startswith(("fc1.", "bn.")):
            assert torch.equal(final[key], start[key]), key
    assert not torch.equal(final["fc2.weight"], start["fc2.weight"])


def test_distillation_runs_and_changes_the_loss(tmp_path, reference):
    teacher = json.dumps(str(last_checkpoint(reference)))
    common = {"optimizer": "sgd(lr=0.1)", "schedule": None}
    path = write_spec(
        tmp_path,
        block("plain", **common),
        block(
            "distilled", distill=f"teacher(model=Small(), checkpoint={teacher}, temperature=2.0, weight=0.5)", **common
        ),
        block("orphan", distill='teacher(model=Small(), checkpoint="no/such/teacher", weight=0.5)', **common),
    )
    losses = {}
    for name in ("plain", "distilled"):
        result = train(path, name, out=tmp_path / name, max_steps=3, log_every=1)
        losses[name] = [r["loss"] for r in records(result.folder) if "loss" in r]
        assert len(losses[name]) == 3 and all(map(torch.isfinite, torch.tensor(losses[name])))
    assert losses["plain"][0] != pytest.approx(losses["distilled"][0], rel=1e-3)
    message = fails_before_training(path, tmp_path / "orphan", "distill", "no/such/teacher", regime="orphan")
    assert "does not exist" in message


# ---- the gan regime ------------------------------------------------------------------------------------

GAN = """\
model Gen(z: int = 8, width: int = 8) {
    input noise: float[B, z, 1, 1]
    output image = noise
        |> conv_transpose2d(2 * width, kernel=4, stride=1, padding=0, bias=false)
        |> batchnorm2d
        |> relu
        |> conv_transpose2d(width, kernel=4, stride=2, padding=1, bias=false)
        |> batchnorm2d
        |> relu
        |> conv_transpose2d(1, kernel=4, stride=2, padding=1, bias=false)
        |> tanh
}

model Disc(width: int = 8) {
    input image: float[B, 1, 16, 16]
    output p = image
        |> conv2d(width, kernel=4, stride=2, padding=1, bias=false)
        |> leaky_relu(0.2)
        |> conv2d(2 * width, kernel=4, stride=2, padding=1, bias=false)
        |> batchnorm2d
        |> leaky_relu(0.2)
        |> conv2d(1, kernel=4, stride=1, padding=0, bias=false)
        |> flatten
        |> sigmoid
}

gan Pair {
    generator      Gen()
    discriminator  Disc()
}

train pair {
    model      Pair
    data       digits(batch=64, size=16, scale=signed, split=0.3)
    loss       bce
    optimizer  generator: adam(lr=2e-4, betas=(0.5, 0.999)),
               discriminator: adam(lr=2e-4, betas=(0.5, 0.999))
    epochs     2
    samples    grid(3, 5, every=1)
}
"""


def test_shipped_dcgan_writes_a_sample_grid(tmp_path):
    """specs/dcgan.mspec itself, for a few steps: the samples need an epoch's end,
    so the regime's data is cut to one small batch per epoch."""
    text = (SPECS / "dcgan.mspec").read_text()
    assert "digits(batch=128" in text
    text = text.replace("digits(batch=128", "digits(batch=16, split=0.009")
    path = tmp_path / "dcgan.mspec"
    path.write_text(text)
    result = train(path, out=tmp_path / "runs", max_steps=1)
    assert result.step == 1
    from PIL import Image

    with Image.open(result.folder / "samples" / "epoch-001.png") as image:
        assert image.size == (8 * 18 + 2, 8 * 18 + 2) and image.mode == "L"


def test_gan_samples_checkpoints_and_exact_resume(tmp_path):
    from PIL import Image

    path = write_spec(tmp_path, model=GAN, name="gan.mspec")
    whole = train(path, out=tmp_path / "whole")
    assert whole.stopped == "done"
    samples = sorted(p.name for p in (whole.folder / "samples").iterdir())
    assert samples == ["epoch-001.png", "epoch-002.png"]
    with Image.open(whole.folder / "samples" / "epoch-001.png") as image:
        assert image.size == (5 * (16 + 2) + 2, 3 * (16 + 2) + 2)  # cols × rows of 16×16 digits, 2 pixels apart
    keys = weights(whole.folder).keys()
    assert {k.split(".")[0] for k in keys} == {"generator", "discriminator"}
    assert any("running_mean" in k for k in keys)  # batch-norm statistics travel too
    state = json.loads((last_checkpoint(whole.folder) / "state.json").read_text())
    assert set(state["optimizers"]) == {"generator", "discriminator"}

    steps = whole.step
    first = train(path, out=tmp_path / "resumed", max_steps=steps // 2 + 1)  # mid-epoch 1
    assert first.stopped == "max_steps"
    train(path, resume=first.folder)
    assert_bitwise(first.folder, whole.folder)
    for name in samples:
        assert digest(first.folder / "samples" / name) == digest(whole.folder / "samples" / name)


def test_a_gan_is_built_in_the_dtype_its_inputs_declare_and_refuses_two(tmp_path):
    both = GAN.replace("noise: float[", "noise: float64[").replace(
        "image: float[B, 1, 16, 16]", "image: float64[B, 1, 16, 16]"
    )
    path = write_spec(tmp_path, model=both, name="gan64.mspec")
    result = train(path, out=tmp_path / "runs", max_steps=3)
    saved = weights(result.folder)
    assert result.step == 3 and {v.dtype for k, v in saved.items() if k.endswith("weight")} == {torch.float64}
    one = GAN.replace("noise: float[", "noise: float64[")
    path = write_spec(tmp_path, model=one, name="gan_mixed.mspec")
    with pytest.raises(TrainError, match="the generator's inputs declare float64 and the discriminator's float32"):
        train(path, out=tmp_path / "mixed", max_steps=1)
    assert not (tmp_path / "mixed").exists()


# ---- TensorBoard -----------------------------------------------------------------------------------------


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    path = write_spec(tmp_path, block())
    result = train(path, out=tmp_path / "runs", max_steps=3, log_every=1, tensorboard=True)
    events = list((result.folder / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(result.folder / "tensorboard"))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert "loss" in tags and "lr" in tags
    assert [e.step for e in accumulator.Scalars("loss")] == [1, 2, 3]


def test_no_leftover_processes_or_files(tmp_path):
    """A finished run leaves no temporary files in its folder."""
    path = write_spec(tmp_path, block(checkpoint="every(steps=5)", keep="2"))
    result = train(path, out=tmp_path / "runs", max_steps=12)
    names = [p.name for p in result.folder.rglob("*")]
    assert not [n for n in names if n.startswith(".")]
    assert [p.name for p in ckpt.checkpoints(result.folder / "checkpoints")] == ["step-00000010", "step-00000012"]
    assert os.listdir(result.folder / "spec") == ["00-small.mspec"]


def test_bf16_autocast_on_the_cpu(tmp_path):
    """`precision bf16` on the CPU: the linear layers run in bfloat16 under autocast, the weights
    and the optimizer stay float32, and the run learns."""
    path = write_spec(tmp_path, block(precision="bf16", schedule=None, epochs="1"))
    trainer = make_trainer(path, out=tmp_path / "runs")
    seen = set()
    trainer.prepare = _after(
        trainer.prepare,
        lambda: trainer.model.fc1.register_forward_hook(lambda module, args, output: seen.add(output.dtype)),
    )
    result = trainer.run()
    assert seen == {torch.bfloat16}
    final = weights(result.folder)
    assert all(t.dtype == torch.float32 for t in final.values())
    losses = [r["loss"] for r in records(result.folder) if "loss" in r]
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0] / 2
    assert result.metrics["val_accuracy"] > 0.8


def _after(function, then):
    def wrapped(*args, **kwargs):
        value = function(*args, **kwargs)
        then()
        return value

    return wrapped


def test_the_progress_bar_shows_throughput_and_the_last_evaluation(monkeypatch):
    import io
    import types

    from rich.console import Console

    from modelspec.train.loop import Progress

    trainer = types.SimpleNamespace(regime=types.SimpleNamespace(name="small"), total_steps=10)
    progress = Progress(trainer, enabled=False)
    progress.console, progress.enabled = Console(file=io.StringIO(), force_terminal=True, width=200), True
    clock = iter([100.2, 100.6, 101.0, 101.5, 101.6])
    monkeypatch.setattr("modelspec.train.loop.time.perf_counter", lambda: next(clock))
    progress.since = 100.0
    with progress:
        progress.advance(1, 0, 2.5, 1e-3, 32)  # at 100.2: too soon for a rate
        assert progress.bar.tasks[0].fields["status"] == "epoch 0 loss 2.5000 lr 1.00e-03"
        progress.advance(2, 0, 2.0, 1e-3, 32)  # at 100.6: 64 samples in 0.6 s
        status = progress.bar.tasks[0].fields["status"]
        assert status == "epoch 0 loss 2.0000 lr 1.00e-03 107 samples/s"
        progress.evaluated({"train_loss": 2.1, "val_loss": 1.9, "val_accuracy": 0.5})  # at 101.0
        progress.advance(3, 0, 1.8, 1e-3, 32)
        assert progress.bar.tasks[0].fields["status"].endswith("samples/s val_loss 1.9000 val_accuracy 0.5000")
        progress.advance(4, 0, None, 1e-3, 32)  # no loss read back yet (left on an accelerator)
        assert progress.bar.tasks[0].fields["status"].startswith("epoch 0 lr 1.00e-03")
