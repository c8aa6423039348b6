"""Sampling text from a language-model spec, with a KV cache.

The generated `Attention` modules keep the keys and values of earlier
positions while `kv_cache(model)` is active, and `Positions` and `Rotary`
modules count from the tokens already decoded; so after the prompt, each new
token runs the model over one position. A model whose position-dependent ops
cannot cache (`positional_encoding`, the encoder-decoder's
`MultiheadAttention`) is run over the whole prefix each step instead:
slower, same tokens.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import torch

# ---- tokenizers ---------------------------------------------------------------------------


@dataclass
class Tokenizer:
    """Byte-level (vocabulary 256) or character-level (a stored vocabulary)."""

    kind: str  # "byte" or "char"
    vocab: str = ""

    def encode(self, text: str) -> list[int]:
        if self.kind == "byte":
            return list(text.encode("utf-8"))
        index = {c: i for i, c in enumerate(self.vocab)}
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:5])
            raise ValueError(f"the prompt has characters the model never saw: {shown}")
        return [index[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        if self.kind == "byte":
            return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
        return "".join(self.vocab[i] if i < len(self.vocab) else "\ufffd" for i in ids)

    @property
    def size(self) -> int:
        return 256 if self.kind == "byte" else len(self.vocab)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "vocab": self.vocab})

    @staticmethod
    def from_json(text: str) -> Tokenizer:
        data = json.loads(text)
        if data.get("kind") not in ("byte", "char"):
            raise ValueError(f"unknown tokenizer kind {data.get('kind')!r}")
        return Tokenizer(data["kind"], data.get("vocab", ""))


# ---- the cache ----------------------------------------------------------------------------


def cacheable(module: torch.nn.Module) -> bool:
    """Whether every position-dependent op of the model can decode with a cache."""
    return not any(type(m).__name__ in ("SinusoidalPositions", "MultiheadAttention") for m in module.modules())


class Cache:
    """Switches a generated model's attention into caching keys and values."""

    def __init__(self, module: torch.nn.Module):
        self.attentions = [m for m in module.modules() if getattr(m, "caches_keys_and_values", False)]
        # Modules that number positions: they start at the tokens already decoded.
        self.positions = [m for m in module.modules() if type(m).__name__ in ("Positions", "Rotary")]

    def reset(self) -> None:
        """Forget every cached position (the next call starts at position 0)."""
        for m in self.attentions:
            m.past = []
        self.advance(0)

    def advance(self, decoded: int) -> None:
        """The next call's first token sits at position `decoded`."""
        for m in self.positions:
            m.offset = decoded

    def close(self) -> None:
        for m in self.attentions:
            m.past = None
        self.advance(0)


@contextlib.contextmanager
def kv_cache(module: torch.nn.Module):
    """Within the block, attention keeps past keys and values (see Cache)."""
    cache = Cache(module)
    cache.reset()
    try:
        yield cache
    finally:
        cache.close()


# ---- sampling -----------------------------------------------------------------------------


def _logits(output) -> torch.Tensor:
    if isinstance(output, dict):
        output = output.get("logits", next(iter(output.values())))
    return output[:, -1, :].float()


def _pick(logits: torch.Tensor, greedy: bool, temperature: float, top_k: int | None, generator) -> torch.Tensor:
    if greedy:
        return logits.argmax(dim=-1)
    logits = logits / max(temperature, 1e-6)
    if top_k is not None and top_k < logits.size(-1):
        threshold = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    probabilities = torch.softmax(logits, dim=-1)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample(
    module: torch.nn.Module,
    prompt: list[int],
    max_new_tokens: int,
    *,
    context: int,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    samples: int = 1,
    seed: int = 0,
    use_cache: bool | None = None,
) -> list[list[int]]:
    """Continue `prompt` by `max_new_tokens` tokens, `samples` times.

    `context` is the longest sequence the model takes; beyond it the oldest
    tokens are dropped (and the cache rebuilt from the last `context`).
    """
    device = next(module.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    module.eval()
    tokens = torch.tensor([prompt] * samples, dtype=torch.long, device=device)
    use_cache = cacheable(module) if use_cache is None else use_cache
    if not use_cache:
        for _ in range(max_new_tokens):
            logits = _logits(module(tokens[:, -context:]))
            tokens = torch.cat([tokens, _pick(logits, greedy, temperature, top_k, generator)[:, None]], dim=1)
        return tokens.tolist()
    with kv_cache(module) as cache:
        window = tokens[:, -context:]
        logits = _logits(module(window))  # the prompt, in one pass
        decoded = window.size(1)
        for step in range(max_new_tokens):
            chosen = _pick(logits, greedy, temperature, top_k, generator)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)
            if step == max_new_tokens - 1:
                break
            if decoded >= context:
                # The window is full: positions shift, so the cache starts again from the last `context` tokens.
                cache.reset()
                logits = _logits(module(tokens[:, -context:]))
                continue
            cache.advance(decoded)
            logits = _logits(module(chosen[:, None]))
            decoded += 1
    return tokens.tolist()
