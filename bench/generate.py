"""Benchmark: the cost of one decoded token against the length of the prefix.

With the KV cache, a new token costs one position's projections plus its
attention over the keys so far, so the time per token grows only with that
attention (linearly and slowly), not with a recomputation of the prefix.
The same module decodes without the cache for reference.

    python bench/generate.py            # a GPT-2-layout model, d=128, 4 layers, 1 thread
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import modelspec
from modelspec_torch.generate import sample

ROOT = Path(__file__).resolve().parent.parent
SPEC = f'''import "{(ROOT / "specs" / "gpt_tiny.mspec").as_posix()}"
model Bench = GPTTiny(vocab=96, ctx=2048, d=128, heads=4, layers=4, p=0.0)
'''


def per_token(module, prefix: int, tokens: int, use_cache: bool) -> float:
    """Seconds per decoded token after `prefix` tokens (the prompt's own pass subtracted)."""
    prompt = [1] * prefix
    sample(module, prompt, 2, context=2048, greedy=True, use_cache=use_cache)  # warm-up
    start = time.perf_counter()
    sample(module, prompt, 1, context=2048, greedy=True, use_cache=use_cache)
    one = time.perf_counter() - start
    start = time.perf_counter()
    sample(module, prompt, tokens + 1, context=2048, greedy=True, use_cache=use_cache)
    return (time.perf_counter() - start - one) / tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens decoded per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    module = modelspec.build(modelspec.load(SPEC), "Bench", seed=0)
    print(f"torch {torch.__version__}, 1 thread\n")
    print("| prefix | with the cache, ms/token | without, ms/token |")
    print("|---:|---:|---:|")
    for prefix in (16, 512, 1536):
        cached = per_token(module, prefix, args.tokens, True)
        full = per_token(module, prefix, max(4, args.tokens // 16), False)
        print(f"| {prefix} | {cached * 1e3:.2f} | {full * 1e3:.2f} |")


if __name__ == "__main__":
    main()
