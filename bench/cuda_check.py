"""Checks of `mspec train` on a GPU: what the CPU test suite cannot run.

The test suite runs on the CPU. On an accelerator the training runtime takes
paths of its own: fp16 with a gradient scaler, bf16 autocast on CUDA, the
plain step leaving its losses on the device (`Trainer.settle` reads them in
batches), batches copied to the device, fused optimizer kernels on CUDA. This
script runs each of them end to end and reports, as a markdown table:

  precision   specs/mlp_digits.mspec trained 4 epochs in fp32, bf16 and fp16:
              val_accuracy >= 0.9, every logged loss finite, samples/s;
  deferred    the plain step is used and reads no loss per step (read_each_step
              False); a NaN loss (sgd(lr=1e30)) stops the run naming its step,
              and the newest checkpoint on disk holds finite weights;
  resume      a run stopped after 30 steps and resumed ends with the weights of
              a run that never stopped (bitwise, or the largest difference);
  gpt_tiny    specs/gpt_tiny.mspec, 100 steps in bf16: loss falls, tokens/s.

    python bench/cuda_check.py                  # on a CUDA machine (about a minute)
    python bench/cuda_check.py --device cpu     # the same checks on the CPU (fp16 left out): the
                                                # script's own test, before spending GPU time

Exit status 1 when a check fails. This is a check, not a benchmark of ratios:
bench/train_loop.py --device cuda compares the Trainer with a hand loop.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def mlp_spec(folder: Path, precision: str, optimizer: str = "sgd(lr=0.05, momentum=0.9)", extra: str = "") -> Path:
    path = folder / f"mlp_{precision}.mspec"
    path.write_text(
        f'import "{(SPECS / "mlp_digits.mspec").as_posix()}"\n\n'
        "train check {\n    model      MLP()\n    data       digits(batch=64, split=0.8, shuffle=true, size=28)\n"
        f"    loss       cross_entropy(logits, label)\n    optimizer  {optimizer}\n    epochs     4\n"
        f"    metrics    [accuracy]\n    precision  {precision}\n{extra}}}\n",
        encoding="utf-8",
    )
    return path


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


class Report:
    def __init__(self):
        self.rows: list[tuple[str, str, str]] = []
        self.failed = False

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.rows.append((check, "ok" if ok else "FAILED", detail))
        self.failed |= not ok
        print(f"{check}: {'ok' if ok else 'FAILED'}: {detail}", file=sys.stderr, flush=True)


def check_precisions(report: Report, device: str, folder: Path) -> None:
    import modelspec

    precisions = ["fp32", "bf16"] + (["fp16"] if device.startswith("cuda") else [])
    for precision in precisions:
        started = time.perf_counter()
        result = modelspec.train(mlp_spec(folder, precision), "check", out=folder / "runs", device=device)
        seconds = time.perf_counter() - started
        lines = records(result.folder)
        losses = [r["loss"] for r in lines if "loss" in r]
        rates = [r["samples_per_s"] for r in lines if "samples_per_s" in r]
        accuracy = result.metrics.get("val_accuracy", math.nan)
        ok = accuracy >= 0.9 and losses and all(math.isfinite(v) for v in losses)
        detail = (
            f"val_accuracy {accuracy:.4f}, {len(losses)} loss lines, median {sorted(rates)[len(rates) // 2]:,.0f} "
            f"samples/s, {seconds:.1f} s in all"
        )
        report.add(f"precision {precision}", bool(ok), detail)


def check_deferred(report: Report, device: str, folder: Path) -> None:
    from modelspec.api import compile_program
    from modelspec.train import checkpoint as ckpt
    from modelspec.train.loop import Options, Trainer, TrainError

    program, _, sources = compile_program(mlp_spec(folder, "fp32"))
    trainer = Trainer(program, program.trains["check"], Options(out=folder / "plain", device=device, progress=False))
    trainer.start()
    plain = trainer.plain_step() is not None
    expected_reads = device == "cpu"
    report.add(
        "deferred: plain step",
        plain and trainer.read_each_step is expected_reads,
        f"plain step {'used' if plain else 'NOT used'}, "
        f"losses read {'each step' if trainer.read_each_step else 'in batches'}",
    )
    trainer.log.close()

    path = mlp_spec(folder, "fp32", optimizer="sgd(lr=1e30)", extra="    checkpoint every(steps=1)\n")
    program, _, sources = compile_program(path)
    trainer = Trainer(program, program.trains["check"], Options(out=folder / "nan", device=device, progress=False))
    try:
        trainer.run()
        report.add("deferred: NaN stops the run", False, "the run finished")
        return
    except TrainError as exc:
        message = str(exc)
    newest, _ = ckpt.latest_valid(trainer.checkpoints, trainer.spec_hash)
    finite = False
    if newest is not None:
        ckpt.load(newest, trainer.model, trainer.spec_hash)
        finite = all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())
    ok = "at step" in message and newest is not None and finite
    detail = f"{message.split(':')[0]}; newest checkpoint {newest and newest.name}"
    report.add("deferred: NaN stops the run", ok, detail)


def check_resume(report: Report, device: str, folder: Path) -> None:
    import modelspec

    path = mlp_spec(folder, "fp32")
    whole = modelspec.train(path, "check", out=folder / "whole", device=device)
    part = modelspec.train(path, "check", out=folder / "parts", device=device, max_steps=30)
    resumed = modelspec.train(path, "check", out=folder / "parts", device=device, resume=part.folder)
    from safetensors.torch import load_file

    a = load_file(str(whole.folder / "checkpoints" / f"step-{whole.step:08d}" / "model.safetensors"))
    b = load_file(str(resumed.folder / "checkpoints" / f"step-{resumed.step:08d}" / "model.safetensors"))
    largest = max((x.float() - b[k].float()).abs().max().item() for k, x in a.items())
    bitwise = all(torch.equal(x, b[k]) for k, x in a.items())
    report.add(
        "resume",
        whole.step == resumed.step and (bitwise or largest < 1e-4),
        f"{'bitwise equal' if bitwise else f'largest difference {largest:.2e}'} after {whole.step} steps",
    )


def check_gpt_tiny(report: Report, device: str, folder: Path) -> None:
    import modelspec

    path = folder / "gpt_bf16.mspec"
    path.write_text(
        f'import "{(SPECS / "gpt_tiny.mspec").as_posix()}"\n\n'
        "train gpt_bf16 {\n    model      GPTTiny()\n"
        '    data       text(path="stdlib:json", tokenizer=char, block=64, batch=16)\n'
        "    loss       cross_entropy(logits, target)\n"
        "    optimizer  adamw(lr=1e-3, weight_decay=0.1, no_decay=[bias, norm])\n"
        "    schedule   cosine(warmup=20)\n    steps      100\n    clip_grad  1.0\n    precision  bf16\n"
        "    metrics    perplexity\n    seed       0\n}\n",
        encoding="utf-8",
    )
    started = time.perf_counter()
    result = modelspec.train(path, "gpt_bf16", out=folder / "gpt", device=device)
    seconds = time.perf_counter() - started
    lines = records(result.folder)
    losses = [r["loss"] for r in lines if "loss" in r]
    rates = [r["samples_per_s"] for r in lines if "samples_per_s" in r]
    ok = len(losses) >= 2 and losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)
    report.add(
        "gpt_tiny bf16",
        ok,
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in {result.step} steps, median "
        f"{sorted(rates)[len(rates) // 2]:,.1f} sequences/s, val perplexity "
        f"{result.metrics.get('val_perplexity', math.nan):.2f}, {seconds:.1f} s in all",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("CUDA is not available here: run with --device cpu to check the script itself")
    where = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "CPU"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"torch {torch.__version__}, device {args.device} ({where}), {when}")
    report = Report()
    with tempfile.TemporaryDirectory(prefix="mspec-cuda-check-") as out:
        folder = Path(out)
        for check in (check_precisions, check_deferred, check_resume, check_gpt_tiny):
            try:
                check(report, args.device, folder)
            except Exception as exc:  # a check that crashes is a failed check; the others still run
                report.add(check.__name__.removeprefix("check_"), False, f"{type(exc).__name__}: {exc}")
    print("\n| check | result | detail |\n|---|---|---|")
    for row in report.rows:
        print("| " + " | ".join(row) + " |")
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
