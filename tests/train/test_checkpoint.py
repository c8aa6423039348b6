"""Checkpoints never lose work and never run code.

Crashes are real: a forked child process writes checkpoint N+1 and is
SIGKILLed at each phase of the write (and, in a second test, at random
moments of a loop of writes and prunes); afterwards the previous checkpoint
always loads, `latest_valid` finds a valid one, nothing half-written counts as
a checkpoint and `clean_temporary` removes the leftovers. Damaged and foreign
checkpoints are refused with the file named, and a resumed run falls back to
the newest valid one. Loading never unpickles."""

from __future__ import annotations

import builtins
import copy
import dataclasses
import functools
import json
import os
import random
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modelspec.api import compile_program
from modelspec.train import checkpoint as ckpt
from modelspec.train.loop import TrainError

from .test_loop import BATCHES, SMALL, assert_bitwise, block, make_trainer, records, snapshot, train, write_spec

ROOT = Path(__file__).resolve().parents[2]
HASH = "a" * 64
PHASES = ["begin", "model", "state", "json", "rename", "done"]


# ---- a model and its state, and a child process to kill -------------------------------------------------


def model_and_state(step: int, size: int = 32) -> tuple[torch.nn.Module, ckpt.TrainingState]:
    """A model whose weights depend on `step`, with real Adam state and RNG states (a fresh copy)."""
    return copy.deepcopy(_model_and_state(step, size))


@functools.cache
def _model_and_state(step: int, size: int) -> tuple[torch.nn.Module, ckpt.TrainingState]:
    torch.manual_seed(step)
    model = torch.nn.Sequential(torch.nn.Linear(size, size), torch.nn.Linear(size, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(3, size)).sum().backward()
    optimizer.step()
    state = ckpt.TrainingState(
        step=step,
        epoch=step // 10,
        batch=step % 10,
        optimizers={"main": optimizer.state_dict()},
        rng=ckpt.capture_rng(),
        extra={"metrics": {"val_loss": 1.0 / (1 + step)}},
    )
    return model, state


def loads_as(path: Path, step: int, size: int = 32) -> None:
    """Checkpoint `path` loads and holds exactly what step `step` wrote."""
    expected, state = model_and_state(step, size)
    fresh, _ = model_and_state(step + 1000, size)
    loaded = ckpt.load(path, fresh, HASH)
    assert loaded.step == step and loaded.batch == state.batch
    for a, b in zip(fresh.state_dict().values(), expected.state_dict().values()):
        assert torch.equal(a, b)
    exp_avg = loaded.optimizers["main"]["state"][0]["exp_avg"]
    assert torch.equal(exp_avg, state.optimizers["main"]["state"][0]["exp_avg"])


def fork(work) -> int:
    """Run `work()` in a forked child; returns its pid (the child never returns)."""
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no atexit handlers
        code = 0
        try:
            work()
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def wait(pid: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child process hung")
        time.sleep(0.001)


def killed(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def kill_at(phase: str):
    def hook(name: str) -> None:
        if name == phase:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(ckpt.PREFIX))


def steps_named(folder: Path) -> list[int]:
    """The steps of the `step-` entries (racing a writer: names only)."""
    return [int(n[len(ckpt.PREFIX) :]) for n in os.listdir(folder) if n.startswith(ckpt.PREFIX)] or [0]


def all_listed_are_valid(folder: Path) -> list[int]:
    steps = []
    for path in ckpt.checkpoints(folder):
        ckpt.read_meta(path, HASH)  # raises for anything half-written
        steps.append(int(path.name[len(ckpt.PREFIX) :]))
    return steps


# ---- crashes while writing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
def test_sigkill_at_each_phase_of_writing_the_next_checkpoint(tmp_path, phase):
    folder = tmp_path / "checkpoints"
    ckpt.save(folder, *model_and_state(1), HASH)
    previous = 1
    for _ in range(3):  # each phase three times over
        step = previous + 1
        model, state = model_and_state(step)
        write = lambda model=model, state=state: ckpt.save(folder, model, state, HASH, hook=kill_at(phase))  # noqa: E731
        assert killed(wait(fork(write)))

        loads_as(folder / f"step-{previous:08d}", previous)  # the previous one always loads
        latest, refused = ckpt.latest_valid(folder, HASH)
        assert refused == []
        written = phase in ("rename", "done")
        assert latest == folder / f"step-{step if written else previous:08d}"
        loads_as(latest, step if written else previous)
        assert all_listed_are_valid(folder)[-1] == (step if written else previous)
        assert bool(leftovers(folder)) == (not written)  # the half-written folder is not a checkpoint

        ckpt.clean_temporary(folder)
        assert leftovers(folder) == []
        assert ckpt.latest_valid(folder, HASH) == (latest, [])
        previous = step if written else previous


@pytest.mark.parametrize("phase", [*PHASES, "replace"])
def test_sigkill_while_replacing_a_checkpoint_of_the_same_step(tmp_path, phase):
    """A resumed run writes a step again; the one on disk is never lost."""
    folder = tmp_path / "checkpoints"
    ckpt.save(folder, *model_and_state(7), HASH)
    old = ckpt.save(folder, *model_and_state(8), HASH)
    model, state = model_and_state(18)
    state.step = 8  # other weights, same step
    assert killed(wait(fork(lambda: ckpt.save(folder, model, state, HASH, hook=kill_at(phase)))))
    ckpt.clean_temporary(folder)
    assert leftovers(folder) == []
    assert ckpt.latest_valid(folder, HASH) == (old, [])
    replaced = phase in ("rename", "done")
    got = load_file(str(old / "model.safetensors"))
    want = (model if replaced else model_and_state(8)[0]).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_sigkill_at_random_moments_of_writes_and_prunes(tmp_path):
    """A child writes checkpoints (and prunes all but two) in a loop until it is
    killed at a random moment; eight times over, in the same folder."""
    folder = tmp_path / "checkpoints"
    size = 256  # a quarter of a MiB of weights: a write takes some milliseconds
    # Prepared here: the child only writes (no torch computation after a fork).
    variants = [model_and_state(1000 + i, size) for i in range(5)]
    ckpt.save(folder, variants[1][0], dataclasses.replace(variants[1][1], step=1), HASH)
    rng = random.Random()
    seen = set()
    for _round in range(8):
        start = ckpt.latest_valid(folder, HASH)[0]
        first = int(start.name[len(ckpt.PREFIX) :]) + 1

        def writer(first=first):
            for step in range(first, first + 100_000):
                model, state = variants[step % len(variants)]
                ckpt.save(folder, model, dataclasses.replace(state, step=step), HASH)
                ckpt.prune(folder, keep=2)

        pid = fork(writer)
        deadline = time.monotonic() + 60
        while max(steps_named(folder)) < first:  # until the child is under way
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the writer made no progress")
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        assert killed(wait(pid))

        steps = all_listed_are_valid(folder)
        assert steps and steps[-1] >= first and len(steps) <= 3, steps
        latest, refused = ckpt.latest_valid(folder, HASH)
        assert refused == [] and latest.name == f"step-{steps[-1]:08d}"
        model, state = variants[steps[-1] % len(variants)]
        fresh = model_and_state(7, size)[0]
        loaded = ckpt.load(latest, fresh, HASH)
        assert loaded.step == steps[-1]
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
        seen.update(name.split("-")[1] for name in leftovers(folder))
        ckpt.clean_temporary(folder)
        assert leftovers(folder) == []
    print("kills landed in:", sorted(seen))


def test_prune_keeps_the_newest_and_the_protected(tmp_path):
    """`prune` ranks by step: a stale checkpoint of a higher step outranks a fresh one, which
    survives only because the caller protects it (as the loop protects what it just wrote)."""
    folder = tmp_path / "checkpoints"
    saved = {step: ckpt.save(folder, *model_and_state(step), HASH) for step in (40, 5, 10, 20)}
    ckpt.prune(folder, keep=1, protect={saved[20], saved[5]})
    assert ckpt.checkpoints(folder) == [saved[5], saved[20], saved[40]]
    ckpt.prune(folder, keep=1)
    assert ckpt.checkpoints(folder) == [saved[40]]


def test_set_aside_moves_checkpoints_whole_under_free_names(tmp_path):
    folder = tmp_path / "checkpoints"
    first = ckpt.save(folder, *model_and_state(3), HASH)
    files = {p.name: p.read_bytes() for p in first.iterdir()}
    (moved,) = ckpt.set_aside(folder, [first])
    assert moved == folder / "refused" / "step-00000003" and ckpt.checkpoints(folder) == []
    assert {p.name: p.read_bytes() for p in moved.iterdir()} == files
    again = ckpt.save(folder, *model_and_state(3), HASH)
    assert ckpt.set_aside(folder, [again]) == [folder / "refused" / "step-00000003-1"]
    assert ckpt.set_aside(folder, []) == [] and ckpt.checkpoints(folder) == []


# ---- damaged and foreign checkpoints ----------------------------------------------------------------------------


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 100] ^= 0x10  # inside the tensor data, past the header: still a parseable file
    path.write_bytes(bytes(data))


def test_damaged_and_foreign_checkpoints_are_refused_and_resume_falls_back(tmp_path):
    path = write_spec(tmp_path, block(epochs="1", checkpoint="every(steps=10)"))
    first = train(path, out=tmp_path / "runs")
    assert first.step == BATCHES
    folder = first.folder / "checkpoints"
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "checkpoints").mkdir()
    final = folder / f"step-{BATCHES:08d}"
    (reference / "checkpoints" / final.name).mkdir()
    for f in final.iterdir():
        (reference / "checkpoints" / final.name / f.name).write_bytes(f.read_bytes())

    trainer = make_trainer(path)
    trainer.prepare()
    spec_hash = trainer.spec_hash
    other, _, _ = compile_program(write_spec(tmp_path, name="other.mspec", model=SMALL.replace("= 32", "= 16")))
    other_hash = ckpt.ir_hash(next(iter(other.models.values())))
    assert other_hash != spec_hash
    foreign_model, foreign_state = model_and_state(50)
    foreign = ckpt.save(folder, foreign_model, foreign_state, other_hash)  # another spec's, newest of all

    truncate(final / "model.safetensors")
    flip_bit(folder / "step-00000040" / "state.safetensors")
    truncate(folder / "step-00000030" / "state.json")
    damaged = {
        foreign: (str(foreign), "another model"),
        final: (str(final / "model.safetensors"), "damaged"),
        folder / "step-00000040": (str(folder / "step-00000040" / "state.safetensors"), "damaged"),
        folder / "step-00000030": (str(folder / "step-00000030" / "state.json"), "not a readable"),
    }
    model = torch.nn.Module()
    for checkpoint, (named, why) in damaged.items():
        with pytest.raises(ckpt.CheckpointError) as excinfo:
            ckpt.load(checkpoint, model, spec_hash)
        assert named in str(excinfo.value) and why in str(excinfo.value)
    latest, refused = ckpt.latest_valid(folder, spec_hash)
    assert latest == folder / "step-00000020" and len(refused) == 4
    files = {p.relative_to(folder): p.read_bytes() for c in damaged for p in c.iterdir()}

    resumed = train(path, resume=first.folder)
    assert resumed.step == BATCHES
    notes = [r["text"] for r in records(first.folder) if r.get("event") == "note"]
    for named, why in damaged.values():
        assert any(named in note and why in note for note in notes), (named, notes)
    assert f"the refused checkpoints are moved to {folder / 'refused'}" in notes
    # Moved aside whole (never deleted), out of the way of the run's new checkpoints
    assert {p.relative_to(folder / "refused"): p.read_bytes() for p in (folder / "refused").rglob("*.*")} == files
    assert [p.name for p in ckpt.checkpoints(folder)] == [f"step-{s:08d}" for s in (10, 20, 30, 40, BATCHES)]
    ckpt.read_meta(final, spec_hash)  # written again, whole
    assert_bitwise(first.folder, reference)


def test_resume_with_no_valid_checkpoint_starts_over_with_a_note(tmp_path):
    path = write_spec(tmp_path, block(epochs="1"))
    first = train(path, out=tmp_path / "runs", max_steps=5)
    (only,) = ckpt.checkpoints(first.folder / "checkpoints")
    flip_bit(only / "model.safetensors")
    resumed = train(path, resume=first.folder, max_steps=7)
    assert resumed.step == 7
    notes = [r["text"] for r in records(first.folder) if r.get("event") == "note"]
    assert any(str(only / "model.safetensors") in n for n in notes)
    assert any("starting from the beginning" in n for n in notes)


def test_resume_with_every_checkpoint_damaged_keeps_everything_and_starts_over(tmp_path):
    """`keep 3` and `best`, every checkpoint damaged: the resume starts over and ends as the
    run did the first time, and nothing the first run wrote is lost. The refused checkpoints
    are moved to checkpoints/refused/ (else a refused step-00000040 outranks a fresh
    step-00000010 and `prune` deleted the fresh one, which the best copy then read), and the
    earlier metrics.jsonl and best/ are renamed (`….before-restart`), not emptied or replaced."""
    settings = {"epochs": "1", "checkpoint": "every(steps=10)", "keep": "3", "evaluate": "every(steps=10)"}
    path = write_spec(tmp_path, block(**settings, best="val_accuracy"))
    first = train(path, out=tmp_path / "runs")
    folder = first.folder / "checkpoints"
    found = ckpt.checkpoints(folder)
    assert [p.name for p in found][-3:] == ["step-00000030", "step-00000040", f"step-{BATCHES:08d}"]
    reference = tmp_path / "reference"
    shutil.copytree(first.folder, reference)
    for checkpoint in found:
        flip_bit(checkpoint / "model.safetensors")
    before = snapshot(first.folder)

    resumed = train(path, resume=first.folder)
    assert (resumed.step, resumed.stopped, resumed.best) == (first.step, "done", first.best)
    assert_bitwise(first.folder, reference)
    assert (first.folder / "best" / "model.safetensors").read_bytes() == (
        reference / "best" / "model.safetensors"
    ).read_bytes()
    for checkpoint in ckpt.checkpoints(folder):
        ckpt.read_meta(checkpoint, None)  # every one written anew, whole
    kept = {
        "metrics.jsonl.before-restart": "metrics.jsonl",
        **{f"best.before-restart/{f.name}": f"best/{f.name}" for f in (reference / "best").iterdir()},
    }
    for p in found:
        files = (reference / "checkpoints" / p.name).iterdir()
        kept.update({f"checkpoints/refused/{p.name}/{f.name}": f"checkpoints/{p.name}/{f.name}" for f in files})
    after = snapshot(first.folder)
    for now, earlier in kept.items():
        assert after[now] == before[earlier], now
    lines = records(first.folder)
    assert lines[0]["event"] == "note" and [r["step"] for r in lines if "loss" in r][0] == 10  # a log from step 0
    (note,) = [r["text"] for r in lines if "starting from the beginning" in r.get("text", "")]
    assert note.startswith("no valid checkpoint: starting from the beginning; the earlier metrics.jsonl is kept as ")
    assert "metrics.jsonl.before-restart" in note and "best.before-restart" in note and "refused" in note


def test_state_json_without_file_hashes_is_refused(tmp_path):
    path = ckpt.save(tmp_path, *model_and_state(3), HASH)
    meta = json.loads((path / "state.json").read_text())
    del meta["files"]
    (path / "state.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match=re.escape(str(path / "state.json"))):
        ckpt.load(path, model_and_state(1)[0], HASH)


def test_load_weights_checks_a_checkpoint_folder(tmp_path):
    path = ckpt.save(tmp_path, *model_and_state(3), HASH)
    model = model_and_state(1)[0]
    assert ckpt.load_weights(path, model) == ([], [])
    flip_bit(path / "model.safetensors")
    with pytest.raises(ckpt.CheckpointError, match="damaged"):
        ckpt.load_weights(path, model)
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_weights(tmp_path / "nothing.pt", model)


# ---- nothing is ever unpickled ----------------------------------------------------------------------------------


class Canary:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


def test_a_pickle_with_a_payload_is_refused_and_never_run(tmp_path):
    model = torch.nn.Linear(2, 2)
    canary = tmp_path / "canary"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2, 2), "bias": torch.zeros(2), "payload": Canary(canary)}, evil)
    with pytest.raises(ckpt.CheckpointError) as excinfo:
        ckpt.load_weights(evil, model)
    assert str(evil) in str(excinfo.value) and "refused" in str(excinfo.value)
    assert not canary.exists()
    assert torch.equal(model.weight, model.weight)  # still usable

    # The payload is armed: an ordinary torch.load would have run it.
    armed = tmp_path / "armed"
    control = tmp_path / "control.pt"
    torch.save({"payload": Canary(armed)}, control)
    torch.load(control, weights_only=False)
    assert armed.exists()


def test_plain_pytorch_weights_load(tmp_path):
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    file = tmp_path / "plain.pt"
    torch.save({"state_dict": source.state_dict()}, file)
    assert ckpt.load_weights(file, target) == ([], [])
    assert torch.equal(source.weight, target.weight)


def test_init_from_a_pickle_with_a_payload_is_a_train_error(tmp_path):
    canary = tmp_path / "canary"
    evil = tmp_path / "evil.pt"
    torch.save({"fc1.weight": torch.zeros(32, 64), "payload": Canary(canary)}, evil)
    path = write_spec(tmp_path, block(init=json.dumps(str(evil))))
    with pytest.raises(TrainError, match="refused"):
        train(path, out=tmp_path / "runs", max_steps=1)
    assert not canary.exists() and not (tmp_path / "runs").exists()


def calls(text: str, name: str) -> list[str]:
    """The source of every call `name(...)` in `text`, up to its closing parenthesis."""
    found = []
    for match in re.finditer(re.escape(name) + r"\s*\(", text):
        depth, i = 0, match.end() - 1
        while i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        found.append(text[match.start() : i + 1])
    return found


def test_every_torch_load_is_weights_only():
    files = [p for top in ("modelspec", "backends") for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".j2")]
    assert len(files) > 20
    offenders, seen = [], 0
    for file in files:
        text = file.read_text(encoding="utf-8")
        for call in calls(text, "torch.load"):
            seen += 1
            if "weights_only=True" not in re.sub(r"\s+", "", call):
                offenders.append(f"{file.relative_to(ROOT)}: {call}")
        for call in calls(text, "np.load"):
            if "allow_pickle=False" not in re.sub(r"\s+", "", call):
                offenders.append(f"{file.relative_to(ROOT)}: {call}")
        for bad in ("pickle.load(", "pickle.loads(", "torch.jit.load("):
            if bad in text:
                offenders.append(f"{file.relative_to(ROOT)}: {bad}")
    assert seen >= 1  # the scan finds checkpoint.load_weights' own call
    assert offenders == []


def test_full_weights_are_written_as_a_module_is(tmp_path):
    """An fsdp run hands `save` its gathered state_dict: a tied parameter is kept under the name
    safetensors' save_model keeps for the module, so both files load into either."""
    model = torch.nn.ModuleDict({"wte": torch.nn.Embedding(5, 3), "head": torch.nn.Linear(3, 5, bias=False)})
    model["head"].weight = model["wte"].weight
    state = ckpt.TrainingState(step=1, epoch=0, batch=1, rng=ckpt.capture_rng())
    as_module = ckpt.save(tmp_path / "a", model, state, "h")
    as_mapping = ckpt.save(tmp_path / "b", dict(model.state_dict()), state, "h")
    a, b = (load_file(str(path / "model.safetensors")) for path in (as_module, as_mapping))
    assert set(a) == set(b) == {"head.weight"} and torch.equal(a["head.weight"], b["head.weight"])
    other = copy.deepcopy(model)
    torch.nn.init.zeros_(other["wte"].weight)
    ckpt.load(as_mapping, other, "h")
    assert torch.equal(other["head"].weight, model["wte"].weight) and other["head"].weight is other["wte"].weight
