"""Benchmark: the module modelspec builds vs a hand-written PyTorch reference.

For each network, one training step (zero_grad, forward, loss, backward; no
optimizer step, on either side) is timed for the modelspec-built module and
for a hand-written reference (bench/references.py) holding the same weights
(copied by name), on the same inputs, in the same process. The two are
interleaved in pairs whose order alternates (AB BA AB ...), after warm-up;
we report medians, the interquartile range, and modelspec/reference. The
target is a ratio <= 1.03.

    python bench/torch_backend.py            # full run (a few minutes on 2 cores)
    python bench/torch_backend.py --quick    # fewer repetitions
    python bench/torch_backend.py --only gpt2_small --profile   # profiler tables, both sides
    python bench/torch_backend.py --attribute  # time variants that isolate a difference

`--attribute` times, round-robin with the two, the modelspec module rebuilt from
a patched copy of its generated source (activations and adds out of place, as
modelspec generated them before it learnt to do them in place) and the
reference written other ways (out-of-place activations, separate q/k/v,
nn.Dropout(0.0) calls): which swap moves one side onto the other shows where a
difference comes from. Results and findings: bench/RESULTS.md.

This is a benchmark, not a test: it asserts only that the two sides compute
the same thing before timing them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import os
import platform
import random
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import references as R  # noqa: E402

import modelspec  # noqa: E402

SPECS = ROOT / "specs"
TARGET = 1.03
THREADS = 2

GPT2_SMALL = (
    f'import "{(SPECS / "gpt2.mspec").as_posix()}"\n'
    "model Small = GPT2(vocab=512, ctx=128, d=128, heads=4, layers=2, p=0.0)\n"
)


# ---------------------------------------------------------------- the cases


@dataclass
class Case:
    name: str
    what: str  # a short description for the table
    build: Callable[[bool], nn.Module]  # compile -> the modelspec module
    reference: Callable[[], nn.Module]
    copy: Callable[[nn.Module, nn.Module], None]  # (modelspec module, reference)
    inputs: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    pairs: int  # interleaved pairs in a full run
    warmup: int = 5
    # --attribute: more modules to time against the reference, each made from (modelspec module, reference)
    variants: dict[str, Callable[[nn.Module, nn.Module], nn.Module]] = field(default_factory=dict)


def cross_entropy(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))


def labels(batch, classes):
    return lambda g: torch.randint(0, classes, (batch,), generator=g)


# ---------------------------------------------------------------- variants, to attribute a difference (--attribute)


def out_of_place_source(source: str) -> str:
    """The generated source with its in-place activations and adds done out of place (new tensors)."""
    source = re.sub(r"(= F\.(?:relu|leaky_relu)\([^()]*?), inplace=True\)", r"\1)", source)
    return re.sub(r"= (\w+)\.add_\((\w+)\)  #", r"= \1 + \2  #", source)


def patched(transform: Callable[[str], str]):
    """A variant: the modelspec module's class regenerated from `transform(its source)`, same weights."""

    def make(ours: nn.Module, ref: nn.Module) -> nn.Module:
        from modelspec_torch.build import load_module_class

        source = ours.modelspec_source
        changed = transform(source)
        if changed == source:
            raise ValueError(f"{transform.__name__} changed nothing in the generated source")
        module = load_module_class(changed, type(ours).__name__, "variant")()
        module.load_state_dict(ours.state_dict())
        return module

    return make


def reference_variant(factory: Callable[[], nn.Module], copy: Callable[[nn.Module, nn.Module], None]):
    def make(ours: nn.Module, ref: nn.Module) -> nn.Module:
        module = factory()
        copy(ours, module)
        return module

    return make


def cases() -> list[Case]:
    gpt = modelspec.load(GPT2_SMALL, name="gpt2_small.mspec")
    return [
        Case(
            "mlp_digits",
            "MLP, batch 64",
            lambda c: modelspec.build(SPECS / "mlp_digits.mspec", "MLP", seed=0, compile=c),
            R.MLP,
            R.copy_state,
            lambda g: (torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)),
            cross_entropy,
            pairs=3000,
            warmup=50,
        ),
        Case(
            "cnn",
            "CNN, batch 32",
            lambda c: modelspec.build(SPECS / "cnn.mspec", "CNN", seed=0, compile=c),
            R.CNN,
            R.copy_state,
            lambda g: (torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)),
            cross_entropy,
            pairs=400,
            variants={"modelspec, out-of-place activations (patched source)": patched(out_of_place_source)},
        ),
        Case(
            "dcgan_G",
            "DCGAN Generator, batch 64",
            lambda c: modelspec.build(SPECS / "dcgan.mspec", "Generator", seed=0, compile=c),
            R.Generator,
            lambda a, b: R.copy_state(a, b, R.GENERATOR_NAMES_RENAME),
            lambda g: (torch.randn(64, 100, 1, 1, generator=g), torch.rand(64, 1, 16, 16, generator=g) * 2 - 1),
            F.mse_loss,
            pairs=1000,
            warmup=10,
            variants={
                "modelspec, out-of-place activations/add (patched source)": patched(out_of_place_source),
                "reference, out-of-place activations/add": reference_variant(
                    lambda: R.Generator(inplace=False), lambda a, b: R.copy_state(a, b, R.GENERATOR_NAMES_RENAME)
                ),
            },
        ),
        Case(
            "dcgan_D",
            "DCGAN Discriminator, batch 64",
            lambda c: modelspec.build(SPECS / "dcgan.mspec", "Discriminator", seed=0, compile=c),
            R.Discriminator,
            lambda a, b: R.copy_state(a, b, R.DISCRIMINATOR_NAMES_RENAME),
            lambda g: (
                torch.rand(64, 1, 16, 16, generator=g) * 2 - 1,
                torch.randint(0, 2, (64, 1), generator=g).float(),
            ),
            F.binary_cross_entropy,
            pairs=1500,
            warmup=10,
            variants={
                "modelspec, out-of-place activations/add (patched source)": patched(out_of_place_source),
                "reference, out-of-place activations/add": reference_variant(
                    lambda: R.Discriminator(inplace=False),
                    lambda a, b: R.copy_state(a, b, R.DISCRIMINATOR_NAMES_RENAME),
                ),
            },
        ),
        Case(
            "gpt2_small",
            "GPT-2 d128 h4 L2 V512, 8x128 tokens",
            lambda c: modelspec.build(gpt, "Small", seed=0, compile=c),
            lambda: R.GPT(vocab=512, ctx=128, d=128, heads=4, layers=2),
            R.copy_gpt,
            lambda g: (torch.randint(0, 512, (8, 128), generator=g), torch.randint(0, 512, (8, 128), generator=g)),
            cross_entropy,
            pairs=400,
            variants={
                "reference with separate q, k, v linears": reference_variant(
                    lambda: R.GPT(vocab=512, ctx=128, d=128, heads=4, layers=2, fused=False), R.copy_gpt
                ),
                "reference with nanoGPT's nn.Dropout(0.0) calls": reference_variant(
                    lambda: R.GPT(vocab=512, ctx=128, d=128, heads=4, layers=2, dropout=0.0), R.copy_gpt
                ),
            },
        ),
        Case(
            "resnet18",
            "ResNet-18, 2x3x224x224",
            lambda c: modelspec.build(SPECS / "resnet18.mspec", "ResNet18", seed=0, compile=c),
            R.ResNet18,
            lambda a, b: R.copy_state(a, b, R.resnet_name),
            lambda g: (torch.randn(2, 3, 224, 224, generator=g), torch.randint(0, 1000, (2,), generator=g)),
            cross_entropy,
            pairs=120,
            warmup=3,
            variants={
                "modelspec, out-of-place activations/add (patched source)": patched(out_of_place_source),
                "reference, out-of-place activations/add": reference_variant(
                    lambda: R.ResNet18(inplace=False), lambda a, b: R.copy_state(a, b, R.resnet_name)
                ),
            },
        ),
    ]


COMPILED = ("mlp_digits", "cnn")


# ---------------------------------------------------------------- one step, and checking the two sides agree


def step(model: nn.Module, x, y, loss_fn) -> None:
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()


def unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "_orig_mod", module)


def check_same(case: Case, ours: nn.Module, ref: nn.Module, x, y) -> float:
    """Both sides give the same loss and gradients (train mode, so BatchNorm uses batch statistics)."""
    ours.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    a, b = ours(x), ref(x)
    la, lb = case.loss(a, y), case.loss(b, y)
    la.backward()
    lb.backward()
    worst = float((a - b).detach().abs().max())
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        raise AssertionError(f"{case.name}: outputs differ by up to {worst:.3g}")
    if not torch.allclose(la, lb, rtol=1e-5, atol=1e-6):
        raise AssertionError(f"{case.name}: losses differ: {float(la)} vs {float(lb)}")
    grads_a = sorted(float(p.grad.abs().sum()) for p in unwrap(ours).parameters())
    grads_b = sorted(float(p.grad.abs().sum()) for p in unwrap(ref).parameters())
    # q, k and v are one fused parameter in the GPT reference, so compare totals
    if abs(sum(grads_a) - sum(grads_b)) > 1e-3 * max(1.0, sum(grads_b)):
        raise AssertionError(f"{case.name}: gradients differ: {sum(grads_a)} vs {sum(grads_b)}")
    return worst


# ---------------------------------------------------------------- timing


@dataclass
class Result:
    name: str
    what: str
    ours: list[float]  # ms per step
    ref: list[float]
    ops_ours: int | None = None
    ops_ref: int | None = None
    first_ours: float | None = None  # ms of the first (compiling) step, torch.compile only
    first_ref: float | None = None
    load: tuple[float, float] | None = None  # 1-minute load average before and after timing
    source_sha1: str = ""  # of the generated source that was timed
    cache_hits: tuple[int, int] = (0, 0)  # inductor FX-graph cache hits in the first compiled step

    @staticmethod
    def quartiles(xs):
        q = statistics.quantiles(xs, n=4, method="inclusive")
        return q[0], q[1], q[2]

    @property
    def median_ours(self):
        return statistics.median(self.ours)

    @property
    def median_ref(self):
        return statistics.median(self.ref)

    @property
    def ratio(self):
        return self.median_ours / self.median_ref

    def iqr(self, xs):
        q1, _, q3 = self.quartiles(xs)
        return q3 - q1

    def paired_ratio(self):
        return statistics.median(a / b for a, b in zip(self.ours, self.ref))

    def ci(self, rounds=2000, seed=0):
        """95% bootstrap interval of the ratio of medians (pairs resampled together)."""
        rng = random.Random(seed)
        n = len(self.ours)
        pairs = list(zip(self.ours, self.ref))
        ratios = []
        for _ in range(rounds):
            sample = [pairs[rng.randrange(n)] for _ in range(n)]
            ratios.append(statistics.median(a for a, _ in sample) / statistics.median(b for _, b in sample))
        ratios.sort()
        return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def time_pairs(ours, ref, x, y, loss_fn, pairs: int, warmup: int) -> tuple[list[float], list[float]]:
    for _ in range(warmup):
        step(ours, x, y, loss_fn)
        step(ref, x, y, loss_fn)
    a, b = [], []
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()  # no collection pauses inside a timed step (tensors are freed by refcount anyway)
    try:
        for i in range(pairs):
            order = ((ours, a), (ref, b)) if i % 2 == 0 else ((ref, b), (ours, a))
            for model, out in order:
                t0 = clock()
                step(model, x, y, loss_fn)
                out.append((clock() - t0) / 1e6)
    finally:
        gc.enable()
    return a, b


@contextlib.contextmanager
def quiet_stderr():
    """Silence the profiler's own start/stop lines (written to file descriptor 2 by native code)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def count_ops(model, x, y, loss_fn) -> tuple[int, object]:
    """ATen ops dispatched (top level, forward + backward) in one step, and the profiler's averages."""
    from torch.profiler import ProfilerActivity, profile

    step(model, x, y, loss_fn)
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        step(model, x, y, loss_fn)
    averages = prof.key_averages()
    top = [e for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None]
    return len(top), averages


def run_case(case: Case, scale: float, compiled: bool, profile: bool) -> Result:
    g = torch.Generator().manual_seed(1234)
    x, y = case.inputs(g)
    ours = case.build(compiled)
    ref = case.reference()
    case.copy(unwrap(ours), ref)
    if compiled:
        ref = torch.compile(ref)
    ours.train()
    ref.train()
    first = [None, None]
    cache_hits = [0, 0]
    if compiled:  # the first step compiles forward and backward
        from torch._dynamo.utils import counters

        for i, m in enumerate((ours, ref)):
            hits = counters["inductor"]["fxgraph_cache_hit"]
            t0 = time.perf_counter()
            step(m, x, y, case.loss)
            first[i] = (time.perf_counter() - t0) * 1e3
            cache_hits[i] = counters["inductor"]["fxgraph_cache_hit"] - hits
    check_same(case, ours, ref, x, y)
    pairs = max(10, int(case.pairs * scale))
    load_before = os.getloadavg()[0]
    a, b = time_pairs(ours, ref, x, y, case.loss, pairs, case.warmup)
    result = Result(case.name + (" [compile]" if compiled else ""), case.what, a, b)
    result.load = (load_before, os.getloadavg()[0])
    result.source_sha1 = hashlib.sha1(unwrap(ours).modelspec_source.encode()).hexdigest()[:12]
    result.first_ours, result.first_ref = first
    result.cache_hits = tuple(cache_hits)
    if not compiled:
        result.ops_ours, avg_ours = count_ops(ours, x, y, case.loss)
        result.ops_ref, avg_ref = count_ops(ref, x, y, case.loss)
        if profile:
            for side, avg in (("modelspec", avg_ours), ("reference", avg_ref)):
                print(f"\n--- {case.name}: {side}, one step (forward + loss + backward) ---")
                print(avg.table(sort_by="self_cpu_time_total", row_limit=25))
    return result


def attribute(case: Case, scale: float) -> str:
    """Time the modelspec module, the reference and the variants round-robin; medians relative to the reference."""
    g = torch.Generator().manual_seed(1234)
    x, y = case.inputs(g)
    ours = case.build(False)
    ref = case.reference()
    case.copy(ours, ref)
    models = {"modelspec": ours, "reference": ref}
    for label, make in case.variants.items():
        models[label] = make(ours, ref)
    for model in models.values():
        model.train()
        check_same(case, model, ref, x, y)
    for _ in range(case.warmup):
        for model in models.values():
            step(model, x, y, case.loss)
    times = {label: [] for label in models}
    faults = dict.fromkeys(models, 0)  # minor page faults (fresh memory the kernel must map and zero)
    labels = list(models)
    rounds = max(10, int(case.pairs * scale))
    gc.collect()
    gc.disable()
    try:
        for i in range(rounds):
            k = i % len(labels)
            for label in labels[k:] + labels[:k]:  # rotate who goes first
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter_ns()
                step(models[label], x, y, case.loss)
                times[label].append((time.perf_counter_ns() - t0) / 1e6)
                faults[label] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    finally:
        gc.enable()
    base = statistics.median(times["reference"])
    rows = [
        f"{case.name} ({case.what}), {rounds} rounds, load {os.getloadavg()[0]:.1f}",
        "",
        "| variant | median ms | IQR ms | / reference | page faults/step |",
        "|---|---|---|---|---|",
    ]
    for label, ts in times.items():
        q1, _, q3 = Result.quartiles(ts)
        rows.append(
            f"| {label} | {statistics.median(ts):.3f} | {q3 - q1:.3f} | {statistics.median(ts) / base:.3f} "
            f"| {faults[label] / rounds:.0f} |"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------- reporting


def table(results: list[Result]) -> str:
    head = (
        "| case | modelspec ms (IQR) | reference ms (IQR) | ratio | paired ratio | 95% CI | n pairs | aten ops/step "
        "ms/ref | min ms ms/ref | load | ≤ 1.03 |"
    )
    rows = [head, "|" + "---|" * 11]
    for r in results:
        lo, hi = r.ci()
        ops = f"{r.ops_ours}/{r.ops_ref}" if r.ops_ours is not None else "–"
        if r.ratio <= TARGET:
            verdict = "pass"
        else:  # say whether the interval rules out noise
            verdict = "FAIL" if lo > TARGET else "FAIL? (CI reaches ≤ 1.03)"
        rows.append(
            f"| {r.name} ({r.what}) | {r.median_ours:.3f} ({r.iqr(r.ours):.3f}) | {r.median_ref:.3f} "
            f"({r.iqr(r.ref):.3f}) | {r.ratio:.3f} | {r.paired_ratio():.3f} | {lo:.3f}–{hi:.3f} | {len(r.ours)} "
            f"| {ops} | {min(r.ours):.3f}/{min(r.ref):.3f} | {r.load[0]:.1f}→{r.load[1]:.1f} | {verdict} |"
        )
    rows.append("")
    rows.append("generated sources timed (sha1): " + ", ".join(f"{r.name} {r.source_sha1}" for r in results))
    compile_rows = [r for r in results if r.first_ours is not None]
    if compile_rows:
        rows.append("")
        rows.append(
            "| case | first step (compiles) modelspec ms | reference ms | FX-graph cache hits modelspec/reference |"
        )
        rows.append("|---|---|---|---|")
        for r in compile_rows:
            rows.append(f"| {r.name} | {r.first_ours:.0f} | {r.first_ref:.0f} | {r.cache_hits[0]}/{r.cache_hits[1]} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a tenth of the repetitions")
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurements")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables for both sides")
    parser.add_argument(
        "--attribute",
        action="store_true",
        help="instead of the comparison, time each case's variants (patched modelspec source, reference "
        "written modelspec's way) to attribute a difference",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(THREADS)
    scale = 0.1 if args.quick else 1.0
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
        f"threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
        f"{'quick' if args.quick else 'full'} run"
    )
    selected = [c for c in cases() if not args.only or c.name in args.only]
    if args.attribute:
        for case in selected:
            if case.variants:
                print()
                print(attribute(case, scale), flush=True)
        return 0
    with contextlib.ExitStack() as stack:
        return run_all(args, selected, scale, stack)


def run_all(args, selected, scale, stack) -> int:
    results = []
    runs = [(case, False) for case in selected]
    if not args.no_compile:
        # A fresh inductor cache, so modelspec's module compiles cold; the reference, compiled second,
        # then finds its graphs in the cache only if they are the same graphs.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = stack.enter_context(tempfile.TemporaryDirectory(prefix="inductor-"))
        runs += [(case, True) for case in selected if case.name in COMPILED]
    for case, compiled in runs:
        t0 = time.perf_counter()
        r = run_case(case, scale, compiled=compiled, profile=args.profile and not compiled)
        results.append(r)
        print(
            f"{r.name}: {r.median_ours:.3f} ms vs {r.median_ref:.3f} ms, ratio {r.ratio:.3f} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    print()
    print(table(results))
    failed = [r.name for r in results if r.ratio > TARGET]
    print()
    print("all within 1.03" if not failed else f"above 1.03: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
