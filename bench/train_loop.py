"""Benchmark: `mspec train`'s loop vs a minimal hand-written PyTorch loop.

For each regime, the time of one epoch (training over the epoch, then the
evaluation `mspec train` runs at its end) is measured two ways, in the
same process:

  A  modelspec: the Trainer of `mspec train` (modelspec/train/loop.py),
     progress bar off, its epochs driven one at a time through
     `Trainer.run_epoch`, writing its run folder (metrics.jsonl) to a
     temporary folder;
  B  hand: a minimal loop over the same in-memory tensors: each epoch
     gathers its batches with `x[perm[i:i + batch]]` from the permutation
     the Trainer's sampler uses (`randperm` seeded with seed + epoch), so
     both sides see the same batches in the same order; forward,
     `F.cross_entropy`, zero_grad, backward, the same optimizer (built
     from the Trainer's optimizer's hyperparameters); then the validation
     loss and accuracy over the validation set, in batches of the same
     size;
  C  hand_select: B with its training batches gathered by
     `x.index_select(0, index)` instead of `x[index]` (about 3x faster for
     the digits' rows, and what the Trainer's data does);
  D  hand_tuned: C with the optimizer implementation the Trainer picks
     (torch's fused kernel where it runs: `fused=True`, one pass over each
     tensor; modelspec/train/builders.py `fused_choice`), so the same
     arithmetic as A: what is left between A and D is the runtime's own
     overhead, which no faster gather or kernel can hide.

B and C are what a minimal hand-written loop looks like (torch's default
optimizer implementation); the issue's target (<= 1.05) is against them, and
A / D is reported next to it.

Every side trains THE SAME MODULE CLASS, the one modelspec builds (each hand
side gets a deep copy made before any step, so same initial weights): the
comparison isolates the training runtime's overhead, not the generated
module's (bench/torch_backend.py compares the modules). After every epoch the
sides' validation losses are compared: A and D (the same arithmetic) and B
and C follow the same trajectory, so they do the same work; the two pairs
differ by the fused kernel's rounding only (the gap is reported).

Epochs alternate in rounds whose order swaps (ABCD DCBA ABCD ...) after warm-up
epochs; we report medians, the interquartile range, the ratio of the
medians (the target: <= 1.05) and the median of the pairs' ratios. The
machine is shared and an epoch with 2 threads slows down several times
while another process holds a core, so epochs are timed in blocks of about
a second, and a block during which other processes used more than 0.15
cores is discarded and run again once the machine is quiet (Quiet below).

    python bench/train_loop.py              # both regimes (a few minutes on a quiet machine)
    python bench/train_loop.py --quick      # a third of the epochs
    python bench/train_loop.py --attribute  # also: the Trainer's extra work piece by piece, what-if variants
    python bench/train_loop.py --only mlp --profile   # cProfile of the Trainer's epochs
    python bench/train_loop.py --cpu-time --no-wait   # 1 thread, CPU time: what a busy machine cannot skew
    python bench/train_loop.py --device cuda --no-wait [--precision bf16]   # on a GPU (the hand
        loops keep the data on the device, as the Trainer does with data that fits)

--cpu-time measures this process's CPU time with one torch thread: waiting
for a core that another process holds does not count, so the ratio holds on
a shared machine where wall-clock blocks are rarely quiet.

This is a benchmark, not a test: it asserts only that the two sides compute
the same thing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import gc
import io
import math
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
TARGET = 1.05
THREADS = 2
WAIT_S = 3600.0  # the most seconds to wait in all for other processes to finish (--patience)

# specs/cnn.mspec declares no train block: this one trains its CNN on synthetic
# float[B, 3, 32, 32] images (1,280 training and 320 validation samples).
CNN_SPEC = f'''import "{(SPECS / "cnn.mspec").as_posix()}"

train cnn_synthetic {{
    model      CNN()
    data       synthetic(batch=64, samples=1600, split=0.8, classes=10)
    loss       cross_entropy(logits, label)
    optimizer  sgd(lr=0.01, momentum=0.9)
    epochs     10
    metrics    [accuracy]
}}
'''


@dataclass
class Case:
    name: str
    what: str
    source: Callable[[], tuple[str | Path, str | None]]  # (spec path or text, name for a text)
    regime: str
    epochs: int  # timed epochs per side in a full run
    warmup: int = 2


CASES = [
    Case(
        "mlp",
        "digits MLP (specs/mlp_digits.mspec), 1,437 samples, batch 64, SGD",
        lambda: (SPECS / "mlp_digits.mspec", None),
        "mlp_sgd",
        epochs=40,
        warmup=3,
    ),
    Case(
        "cnn",
        "CNN (specs/cnn.mspec) on synthetic 3x32x32, 1,280 samples, batch 64, SGD",
        lambda: (CNN_SPEC, "cnn_train.mspec"),
        "cnn_synthetic",
        epochs=24,
    ),
]


# ---------------------------------------------------------------- side A: the Trainer


class TrainerSide:
    """A Trainer set up as `Trainer.run` does it, stepped one epoch at a time."""

    def __init__(self, case: Case, out: Path, total_epochs: int):
        from modelspec.api import compile_program
        from modelspec.train.loop import Options, Progress, Trainer

        source, name = case.source()
        program, diagnostics, sources = compile_program(source, name)
        errors = [d for d in diagnostics if d.severity.name == "ERROR"]
        if errors:
            raise SystemExit(f"{case.name}: the spec does not check: {errors[0].message}")
        update = {"epochs": total_epochs} | ({"precision": PRECISION} if PRECISION else {})
        spec = program.trains[case.regime].model_copy(update=update)
        options = Options(out=out, progress=False, device=DEVICE)
        self.trainer = t = Trainer(program, spec, options, sources=dict(sources.texts))
        self.step, self.epoch, self.position = t.start()  # Trainer.run's set-up, without its loop
        self.initial = copy.deepcopy(t.model)  # for side B, before any step
        self.progress = Progress(t, enabled=False)
        self.case, self.out = case, out
        self.others: list[TrainerSide] = []  # variants' Trainers, closed with this one
        self.sink = open(os.devnull, "w")  # noqa: SIM115 - closed in close()

    def run_epoch(self) -> float:
        """One epoch (training, then the evaluation at its end); its val_loss."""
        t = self.trainer
        with contextlib.redirect_stderr(self.sink):  # the per-epoch evaluation line
            self.step, self.epoch, self.position, stopped = t.run_epoch(
                self.step, self.epoch, self.position, self.progress
            )
        assert stopped == "done" and self.position == 0, (stopped, self.position)
        return t.last_metrics["val_loss"]

    def close(self) -> None:
        self.trainer.log.close()
        self.sink.close()
        for other in self.others:
            other.close()


# ---------------------------------------------------------------- side B: a minimal hand-written loop


def same_sgd(trainer, model: torch.nn.Module, tuned: bool) -> torch.optim.SGD:
    """SGD with the Trainer's hyperparameters over `model`; `tuned`: also its implementation
    (fused or not), else torch's default one."""
    if not isinstance(trainer.optimizer, torch.optim.SGD):
        raise SystemExit("the hand loop builds SGD only")
    d = trainer.optimizer.defaults
    keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov") + (("fused", "foreach") if tuned else ())
    return torch.optim.SGD(model.parameters(), **{k: d[k] for k in keys})


class HandSide:
    """The hand loop; `select`: batches gathered with `index_select` (about 3x faster than `x[index]`
    for the digits' rows), as the Trainer's data gathers them; `tuned`: the optimizer implementation
    the Trainer uses (fused), not torch's default."""

    def __init__(self, a: TrainerSide, model: torch.nn.Module | None = None, select: bool = False, tuned: bool = False):
        t = a.trainer
        self.select = select
        (self.input,) = t.model_ir.graph.inputs
        # On an accelerator the hand loop keeps this small data set on the device (what a tuned loop
        # does, and the Trainer's place_data).
        self.device = t.device
        train, val = t.data.train.tensors, t.data.val.tensors
        self.x, self.y = train[self.input].to(self.device), train["label"].to(self.device)
        self.xv, self.yv = val[self.input].to(self.device), val["label"].to(self.device)
        if t.regime.precision == "fp16":
            raise SystemExit("the hand loop runs fp32 or bf16 (fp16 needs a scaler)")
        # as the Trainer: the forward pass under autocast, the loss outside it
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.regime.precision == "bf16")
        self.batch = t.data_args.batch
        self.seed = t.seed
        self.model = a.initial if model is None else model
        self.optimizer = same_sgd(t, self.model, tuned)
        self.epoch = 0

    def run_epoch(self) -> float:
        model, optimizer, x, y, batch = self.model, self.optimizer, self.x, self.y, self.batch
        n = len(x)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).to(self.device)
        model.train()
        for i in range(0, n, batch):
            index = order[i : i + batch]
            with self.autocast:
                logits = model(x.index_select(0, index)) if self.select else model(x[index])
            loss = F.cross_entropy(logits, y.index_select(0, index) if self.select else y[index])
            if loss.dtype != torch.float32:  # bf16 logits: the step's loss in float32, as the Trainer's
                loss = loss.float()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.epoch += 1
        model.eval()
        total, hits = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(self.xv), batch):
                with self.autocast:
                    logits = model(self.xv[i : i + batch])
                target = self.yv[i : i + batch]
                total += F.cross_entropy(logits, target, reduction="sum").item()
                hits += (logits.argmax(-1) == target).sum().item()
        self.accuracy = hits / len(self.xv)
        return total / len(self.xv)


# ---------------------------------------------------------------- timing


class Quiet:
    """Other processes' CPU use, from /proc/stat less this process's own time.

    The machine is shared: another process on one of the 2 cores makes an
    epoch run with 2 threads several times slower (a thread waits at every
    parallel region's barrier for the one that lost its core). So epochs are
    timed in blocks of pairs (at least BLOCK_S seconds), a block during which
    other processes used more than LIMIT cores on average is discarded and
    timed again once the machine is quiet, for at most `patience` seconds of
    waiting in all; after that, contended blocks are kept and counted."""

    BLOCK_S = 1.0
    LIMIT = 0.15  # cores

    def __init__(self, enabled: bool = True, patience: float = WAIT_S):
        self.enabled = enabled and Path("/proc/stat").exists()
        self.patience = patience
        self.hz = os.sysconf("SC_CLK_TCK") if self.enabled else 100
        self.waited = 0.0
        self.discarded = 0
        self.kept_contended = 0

    def snapshot(self) -> tuple[float, float, float]:
        if not self.enabled:
            return 0.0, 0.0, time.perf_counter()
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:9]]
        busy = (sum(fields) - fields[3] - fields[4]) / self.hz  # all but idle and iowait
        own = os.times()
        return busy, own.user + own.system, time.perf_counter()

    def others(self, since: tuple[float, float, float]) -> float:
        """Cores that other processes used on average since `since`."""
        if not self.enabled:
            return 0.0
        now = self.snapshot()
        wall = max(now[2] - since[2], 1e-9)
        return max((now[0] - since[0]) - (now[1] - since[1]), 0.0) / wall

    def out_of_patience(self) -> bool:
        return self.waited >= self.patience

    def wait(self) -> None:
        """Until other processes used under LIMIT cores for a second (or patience runs out)."""
        while self.enabled and not self.out_of_patience():
            since = self.snapshot()
            time.sleep(1.0)
            self.waited += time.perf_counter() - since[2]
            if self.others(since) < self.LIMIT:
                return

    def accept(self, since: tuple[float, float, float]) -> bool:
        if self.others(since) <= self.LIMIT:
            return True
        if self.out_of_patience():
            self.kept_contended += 1
            return True
        self.discarded += 1
        return False


CLOCK = time.perf_counter  # --cpu-time: time.process_time
DEVICE = "cpu"  # --device
PRECISION: str | None = None  # --precision: instead of the regime's


def synchronize() -> None:
    """Wait for the accelerator's queued work, so that a clock reading covers it."""
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def timed(run: Callable[[], float]) -> tuple[float, float]:
    gc.collect()
    synchronize()
    start = CLOCK()
    value = run()
    synchronize()
    return CLOCK() - start, value


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


REFERENCES = ("hand", "hand_select", "hand_tuned")  # the hand sides A is compared with
PAIRS = (("modelspec", "hand_tuned"), ("hand", "hand_select"))  # same arithmetic: same trajectory


@dataclass
class Measurement:
    times: dict[str, list[float]]  # seconds per epoch of each side, clean blocks only
    ratios: dict[str, list[float]]  # modelspec / each reference side, per round
    worst_gap: float  # largest relative val_loss difference within a pair of the same arithmetic
    rounding_gap: float  # largest relative val_loss difference between the two pairs
    accuracy: tuple[float, float]  # modelspec's, hand's
    steps: int


def relative(x: float, y: float) -> float:
    return abs(x - y) / max(abs(y), 1e-12)


def measure(
    case: Case,
    epochs: int,
    quiet: Quiet,
    variants: dict[str, Callable[[TrainerSide], Callable[[], float]]] | None = None,
) -> Measurement:
    """Alternating rounds of epochs (order reversed every other round) after warm-up, in blocks
    checked for contention."""
    with tempfile.TemporaryDirectory(prefix="mspec-bench-") as out:
        a = TrainerSide(case, Path(out), 1_000_000)  # epochs: more than will ever run (a constant schedule)
        b = HandSide(a)
        c = HandSide(a, copy.deepcopy(a.initial), select=True)
        d = HandSide(a, copy.deepcopy(a.initial), select=True, tuned=True)
        sides: dict[str, Callable[[], float]] = {
            "modelspec": a.run_epoch,
            "hand": b.run_epoch,
            "hand_select": c.run_epoch,
            "hand_tuned": d.run_epoch,
        }
        for label, make in (variants or {}).items():
            sides[label] = make(a)
        order = list(sides)
        times: dict[str, list[float]] = {k: [] for k in sides}
        ratios: dict[str, list[float]] = {k: [] for k in REFERENCES}
        worst = rounding = 0.0
        pair = 0

        def run_round() -> dict[str, float]:
            nonlocal pair, worst, rounding
            seconds, losses = {}, {}
            for label in order if pair % 2 == 0 else order[::-1]:
                seconds[label], losses[label] = timed(sides[label])
            pair += 1
            # sides of the same arithmetic train the same weights on the same batches: same trajectory
            for first, second in PAIRS:
                gap = relative(losses[first], losses[second])
                worst = max(worst, gap)
                assert gap < 1e-3, f"{case.name} round {pair}: val_loss {losses[first]} ({first}) vs {losses[second]}"
            for label in variants or {}:
                assert relative(losses[label], losses["modelspec"]) < 1e-3, (label, losses)
            # reported, not asserted: on the CNN's random labels rounding differences grow to a few %
            rounding = max(rounding, relative(losses["modelspec"], losses["hand"]))
            return seconds

        for _ in range(case.warmup):
            run_round()
        while len(times["modelspec"]) < epochs:
            quiet.wait()
            since = quiet.snapshot()
            block: list[dict[str, float]] = []
            while not block or time.perf_counter() - since[2] < Quiet.BLOCK_S:
                block.append(run_round())
            if quiet.accept(since):
                for seconds in block:
                    for label, value in seconds.items():
                        times[label].append(value)
                    for label in REFERENCES:
                        ratios[label].append(seconds["modelspec"] / seconds[label])
        accuracy = (a.trainer.last_metrics.get("val_accuracy"), b.accuracy)
        steps = a.trainer.steps_per_epoch
        a.close()
    return Measurement(times, ratios, worst, rounding, accuracy, steps)


# ---------------------------------------------------------------- --attribute: what-if variants


@contextlib.contextmanager
def no_loss_item():
    """In memory only: the Trainer's one-micro-batch step without reading its loss back as a
    Python number (what the NaN check and the log need)."""
    from modelspec.train.loop import Trainer

    original = Trainer.backward_one

    def backward_one(self, batch):
        outputs = self.forward(batch)
        loss, count = self.loss.mean(outputs, batch)
        loss.backward()
        return 1.0, float(count), next(iter(batch.values())).shape[0]

    Trainer.backward_one = backward_one
    try:
        yield
    finally:
        Trainer.backward_one = original


def trainer_variant(*patches: Callable[[], contextlib.AbstractContextManager]):
    """A side: a second Trainer (same spec, seed and batches), each epoch run under `patches`."""

    def make(a: TrainerSide) -> Callable[[], float]:
        side = TrainerSide(a.case, a.out, 1_000_000)

        def run() -> float:
            with contextlib.ExitStack() as stack:
                for patch in patches:
                    stack.enter_context(patch())
                return side.run_epoch()

        a.others.append(side)
        return run

    return make


def hand_with_loader(a: TrainerSide) -> Callable[[], float]:
    """The hand loop (the Trainer's optimizer implementation), its batches from the Trainer's own
    make_loaders."""
    t = a.trainer
    h = HandSide(a, copy.deepcopy(a.initial), tuned=True)

    def run() -> float:
        train, val = t.make_loaders(t.data, t.data_args, t.seed, epoch=h.epoch)
        h.model.train()
        for item in train:
            loss = F.cross_entropy(h.model(item[h.input]), item["label"])
            h.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            h.optimizer.step()
        h.epoch += 1
        h.model.eval()
        total = 0.0
        with torch.no_grad():
            for item in val:
                total += F.cross_entropy(h.model(item[h.input]), item["label"], reduction="sum").item()
        return total / len(h.xv)

    return run


def per_call(fn: Callable[[], object], quiet: Quiet, rounds: int = 7, round_s: float = 0.3) -> float:
    """Median seconds per call of `fn` over `rounds` rounds of about `round_s` seconds each
    (long enough for Quiet to tell whether another process ran), quiet rounds only."""
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < 0.05:
        fn()
        calls += 1
    reps = max(1, math.ceil(round_s / ((time.perf_counter() - start) / calls)))
    results: list[float] = []
    while len(results) < rounds:
        quiet.wait()
        since = quiet.snapshot()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        seconds = (time.perf_counter() - start) / reps
        if quiet.accept(since):
            results.append(seconds)
    return statistics.median(results)


def pieces(case: Case, quiet: Quiet, repeats: int = 7) -> None:
    """Where the gap goes, on one epoch's batches fetched beforehand: the batches
    themselves, a ladder of training steps that goes from the hand loop's step to
    the Trainer's one piece at a time (each rung adds one thing the Trainer's
    `train_step` does), and the evaluation. Every rung trains its own copy of
    the model; rungs are timed in turn, `repeats` times, medians reported."""
    from modelspec.train.builders import make_schedule

    with tempfile.TemporaryDirectory(prefix="mspec-bench-") as out:
        a = TrainerSide(case, Path(out), 1_000_000)
        t = a.trainer
        b = HandSide(a, copy.deepcopy(a.initial))
        name = b.input
        train_loader, val_loader = t.make_loaders(t.data, t.data_args, t.seed)
        train, val = list(train_loader), list(val_loader)

        def loader_batches():
            loader, _ = t.make_loaders(t.data, t.data_args, t.seed, epoch=1)
            for _ in loader:
                pass
            for _ in val_loader:
                pass

        def hand_batches():
            order = torch.randperm(len(b.x), generator=torch.Generator().manual_seed(t.seed + 1))
            for i in range(0, len(b.x), b.batch):
                index = order[i : i + b.batch]
                b.x[index], b.y[index]
            for i in range(0, len(b.xv), b.batch):
                b.xv[i : i + b.batch], b.yv[i : i + b.batch]

        def rung(level: int):
            model = copy.deepcopy(a.initial)
            optimizer = same_sgd(t, model, tuned=True)
            schedule = make_schedule(t.regime.schedule, optimizer, t.regime_steps)

            def run():
                model.train()
                for batch in train:
                    x, y = batch[name], batch["label"]
                    if level >= 1:
                        loss, count = t.loss.mean({t.loss.inputs[0]: model(x)}, batch)
                        float(count)
                    else:
                        loss = F.cross_entropy(model(x), y)
                    if level < 3:
                        optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if level >= 2:
                        math.isfinite(loss.item())
                    optimizer.step()
                    if level >= 3:
                        optimizer.zero_grad(set_to_none=True)
                    if level >= 4 and t.regime.schedule is not None:
                        schedule.step()

            return run

        def trainer_steps():
            for step, batch in enumerate(train):
                t.train_step([batch], step)

        def hand_evaluation():
            b.model.eval()
            total, hits = 0.0, 0
            with torch.no_grad():
                for batch in val:
                    logits, y = b.model(batch[name]), batch["label"]
                    total += F.cross_entropy(logits, y, reduction="sum").item()
                    hits += (logits.argmax(-1) == y).sum().item()

        def trainer_evaluation():
            t.evaluate(val)

        rows = [
            ("batches", "hand: x[perm[i:i+B]] (training and validation sets)", hand_batches),
            ("batches", "the Trainer's batches (make_loaders: in-process, a gather per batch)", loader_batches),
            ("steps", "hand: zero_grad, F.cross_entropy (mean), backward, step", rung(0)),
            ("steps", "+ the loss as Loss.mean (outputs/batch lookup, F.cross_entropy mean, its count)", rung(1)),
            ("steps", "+ loss.item(), isfinite", rung(2)),
            ("steps", "+ zero_grad after the step instead of before", rung(3)),
            ("steps", "+ schedule.step() (when the regime has a schedule)", rung(4)),
            ("steps", "Trainer.train_step itself", trainer_steps),
            ("evaluation", "hand: cross_entropy sum .item(), argmax hits .item()", hand_evaluation),
            ("evaluation", "Trainer.evaluate (Loss, float() x2, accuracy metric)", trainer_evaluation),
        ]
        results: dict[str, list[float]] = {label: [] for _, label, _ in rows}
        for _ in range(repeats):
            for _, label, fn in rows:
                results[label].append(per_call(fn, quiet, rounds=3))
        a.close()
    print(
        f"\n### {case.name}: where the time goes, on one epoch's batches fetched beforehand "
        f"({len(train)} steps, {len(val)} evaluation batches)\n"
    )
    print("| part | what | ms/epoch | vs the line above, ms | vs the first line of the part, ms |")
    print("|---|---|---:|---:|---:|")
    previous: dict[str, float] = {}
    first: dict[str, float] = {}
    last = None
    for part, label, _ in rows:
        value = statistics.median(results[label]) * 1e3
        above = f"{value - last:+.3f}" if part in previous else ""
        base = f"{value - first[part]:+.3f}" if part in first else ""
        first.setdefault(part, value)
        previous[part] = value
        last = value
        print(f"| {part} | {label} | {value:.3f} | {above} | {base} |")


LADDER = {
    "hand, batches from the Trainer's make_loaders": hand_with_loader,
    "modelspec, no loss.item() per step (patched)": trainer_variant(no_loss_item),
}


def attribute(case: Case, epochs: int, quiet: Quiet) -> None:
    pieces(case, quiet)
    print(f"\n### {case.name}: variants, all interleaved in one run (patches in memory only)\n")
    m = measure(case, epochs, quiet, LADDER)
    hand = statistics.median(m.times["hand"])
    print(f"{len(m.times['hand'])} epochs of each; largest relative val_loss gap in a pair {m.worst_gap:.1e}\n")
    print("| variant | median s/epoch (IQR) | / hand | - hand, ms/epoch |")
    print("|---|---:|---:|---:|")
    for label, values in m.times.items():
        median, (q1, q3) = statistics.median(values), quartiles(values)
        print(f"| {label} | {median:.4f} ({q1:.4f}-{q3:.4f}) | {median / hand:.3f} | {(median - hand) * 1e3:.2f} |")


def profile(case: Case, epochs: int, quiet: Quiet) -> None:
    """cProfile of the Trainer's epochs, the ones timed on a quiet machine only."""
    stats = None
    with tempfile.TemporaryDirectory(prefix="mspec-bench-") as out:
        a = TrainerSide(case, Path(out), 1_000_000)
        for _ in range(case.warmup):
            a.run_epoch()
        kept = 0
        while kept < epochs:
            quiet.wait()
            since = quiet.snapshot()
            profiler = cProfile.Profile()
            profiler.enable()
            a.run_epoch()
            profiler.disable()
            if quiet.accept(since):
                kept += 1
                if stats is None:
                    stats = pstats.Stats(profiler, stream=(stream := io.StringIO()))
                else:
                    stats.add(profiler)
        a.close()
    print(f"{case.name}: {epochs} epochs profiled ({quiet.discarded} contended epochs dropped)")
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(45)
    print(stream.getvalue().replace(str(ROOT) + "/", "").replace(sys.prefix + "/", ""))


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a third of the epochs")
    parser.add_argument("--only", choices=[c.name for c in CASES], action="append")
    parser.add_argument("--epochs", type=int, help="timed epochs per side (default: the case's)")
    parser.add_argument("--profile", action="store_true", help="cProfile the Trainer's epochs instead")
    parser.add_argument("--attribute", action="store_true", help="also time what-if variants")
    parser.add_argument("--no-wait", action="store_true", help="keep epochs timed while other processes ran")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (default: %(default)s)")
    parser.add_argument("--cpu-time", action="store_true", help="1 thread, CPU time of this process")
    parser.add_argument("--patience", type=float, default=WAIT_S, help="seconds to wait in all for a quiet machine")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="instead of the regimes' (fp32)")
    args = parser.parse_args()
    global CLOCK, DEVICE, PRECISION
    DEVICE, PRECISION = args.device, args.precision
    if args.device != "cpu" and args.cpu_time:
        parser.error("--cpu-time measures the CPU: it cannot time an accelerator's work")
    if args.cpu_time:
        CLOCK, args.threads = time.process_time, 1
    torch.set_num_threads(args.threads)
    cases = [c for c in CASES if not args.only or c.name in args.only]
    quiet = Quiet(enabled=not args.no_wait, patience=args.patience)

    def epochs_of(case: Case) -> int:
        return args.epochs or (max(4, case.epochs // 3) if args.quick else case.epochs)

    clock = "CPU time of this process" if args.cpu_time else "wall clock"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {clock}, Python {platform.python_version()}")
    if DEVICE != "cpu":
        print(f"device {DEVICE}: {torch.cuda.get_device_name(torch.device(DEVICE))}, precision {PRECISION or 'fp32'}")
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs\n")
    if args.profile:
        for case in cases:
            profile(case, epochs_of(case), quiet)
        return
    rows = [(case, measure(case, epochs_of(case), quiet)) for case in cases]
    print(
        "| regime | steps/epoch | epochs timed | modelspec s/epoch (IQR) "
        + "".join(f"| {k} s/epoch (IQR) | / {k} | median round ratio " for k in REFERENCES)
        + f"| target (<= {TARGET} against hand and hand_select) |"
    )
    print("|---|---:|---:|---:" + "|---:|---:|---:" * len(REFERENCES) + "|---|")
    for case, m in rows:
        a = statistics.median(m.times["modelspec"])
        qa = quartiles(m.times["modelspec"])
        cells = []
        for k in REFERENCES:
            v, (q1, q3) = statistics.median(m.times[k]), quartiles(m.times[k])
            cells.append(f"| {v:.4f} ({q1:.4f}-{q3:.4f}) | **{a / v:.3f}** | {statistics.median(m.ratios[k]):.3f} ")
        worst = max(a / statistics.median(m.times[k]) for k in ("hand", "hand_select"))
        verdict = "met" if worst <= TARGET else "NOT met"
        print(
            f"| {case.name}: {case.what} | {m.steps} | {len(m.times['hand'])} "
            f"| {a:.4f} ({qa[0]:.4f}-{qa[1]:.4f}) " + "".join(cells) + f"| {verdict} |"
        )
    print()
    for case, m in rows:
        print(
            f"{case.name}: largest relative val_loss gap within a pair of the same arithmetic {m.worst_gap:.1e}, "
            f"between the pairs (the fused kernel's rounding) {m.rounding_gap:.1e}; "
            f"final val_accuracy {m.accuracy[0]:.4f} / {m.accuracy[1]:.4f}"
        )
    print(
        f"contention: {quiet.discarded} blocks discarded, {quiet.kept_contended} kept after the patience ran out, "
        f"{quiet.waited:.0f} s waited; load average after {os.getloadavg()[0]:.2f}"
    )
    if args.attribute:
        for case in cases:
            attribute(case, epochs_of(case), quiet)


if __name__ == "__main__":
    main()
