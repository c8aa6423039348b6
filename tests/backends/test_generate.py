"""Sampling with a KV cache, and `mspec generate`."""

import pytest
import torch

import modelspec
from modelspec.cli import main
from modelspec_torch.generate import Tokenizer, kv_cache, sample

TINY = """
import "{root}/specs/gpt2.mspec"
model Tiny = GPT2(vocab=256, ctx=32, d=64, heads=4, layers=2, p=0.0)
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    folder = tmp_path_factory.mktemp("tiny")
    spec = folder / "tiny.mspec"
    spec.write_text(TINY.format(root=root))
    module = modelspec.build(spec, "Tiny", seed=3).eval()
    return spec, module


def test_cached_decoding_gives_the_same_logits_as_the_whole_sequence(tiny):
    _, module = tiny
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = module(tokens)
        with kv_cache(module) as cache:
            pieces = [module(tokens[:, :5])]
            for i in range(5, 12):
                cache.advance(i)
                pieces.append(module(tokens[:, i : i + 1]))
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


def test_cache_is_switched_off_afterwards(tiny):
    _, module = tiny
    with kv_cache(module):
        pass
    assert all(getattr(m, "past", None) is None for m in module.modules())


def test_sampling_with_and_without_cache_agree_past_the_context(tiny):
    _, module = tiny
    prompt = list(b"hello")
    with_cache = sample(module, prompt, 45, context=32, greedy=True, use_cache=True)
    without = sample(module, prompt, 45, context=32, greedy=True, use_cache=False)
    assert with_cache == without and len(with_cache[0]) == 50


def test_sampling_is_seeded(tiny):
    _, module = tiny
    a = sample(module, [1, 2, 3], 10, context=32, temperature=0.8, top_k=20, samples=3, seed=5)
    b = sample(module, [1, 2, 3], 10, context=32, temperature=0.8, top_k=20, samples=3, seed=5)
    assert a == b and len(a) == 3


def test_cached_step_costs_one_position(tiny):
    """After the prompt, each step runs the model over one new position only."""
    _, module = tiny
    seen = []
    handle = module.wte.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        sample(module, list(b"a longer prompt"), 5, context=32, greedy=True, use_cache=True)
    finally:
        handle.remove()
    assert seen == [15, 1, 1, 1, 1]


def test_tokenizers():
    chars = Tokenizer("char", "abc ")
    assert chars.decode(chars.encode("a cab")) == "a cab"
    with pytest.raises(ValueError):
        chars.encode("xyz")
    assert Tokenizer.from_json(chars.to_json()) == chars
    assert Tokenizer("byte").decode(Tokenizer("byte").encode("héllo")) == "héllo"


def test_cli_generate(tiny, tmp_path, capsys):
    from safetensors.torch import save_model

    spec, module = tiny
    weights = tmp_path / "tiny.safetensors"
    save_model(module, str(weights), metadata={"modelspec.tokenizer": Tokenizer("byte").to_json()})
    args = ["generate", str(spec), "--checkpoint", str(weights), "--prompt", "hi", "--max-new-tokens", "8"]
    assert main([*args, "--greedy"]) == 0
    first = capsys.readouterr().out
    assert main([*args, "--greedy"]) == 0
    assert capsys.readouterr().out == first and first.startswith("hi")
    assert main([*args, "--samples", "2", "--top-k", "5", "--temperature", "0.7"]) == 0
    assert capsys.readouterr().out.count("--- sample") == 2


def test_cli_generate_bad_checkpoint(tiny, tmp_path, capsys):
    spec, _ = tiny
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert main(["generate", str(spec), "--checkpoint", str(bad), "--prompt", "hi"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(other))
    assert main(["generate", str(spec), "--checkpoint", str(other), "--prompt", "hi"]) == 1
    assert "does not fit model" in capsys.readouterr().err


ROPE = """
model RoPE(vocab: int = 64, d: int = 32, heads: int = 4) {
    input tokens: int64[B, T]
    x = embedding(tokens, vocab, d, name=wte)
    q = x |> linear(d, bias=false) |> split_heads(heads) |> rotary(base=500.0)
    k = x |> linear(d, bias=false) |> split_heads(heads) |> rotary(base=500.0)
    v = x |> linear(d, bias=false) |> split_heads(heads)
    y = attention(q, k, v, causal=true) |> merge_heads
    output logits = (x + y) |> linear(vocab)
}
"""


def test_rotary_positions_decode_with_the_cache():
    """Rotary modules count positions from the tokens already decoded, so a
    rotary model (LLaMA's positions) decodes one position per step."""
    from modelspec_torch.generate import cacheable

    module = modelspec.build(modelspec.load(ROPE, name="rope.mspec"), "RoPE", seed=1).eval()
    assert cacheable(module)
    tokens = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = module(tokens)
        with kv_cache(module) as cache:
            pieces = [module(tokens[:, :4])]
            for i in range(4, 10):
                cache.advance(i)
                pieces.append(module(tokens[:, i : i + 1]))
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
    seen = []
    handle = module.wte.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        cached = sample(module, [1, 2, 3, 4], 6, context=16, greedy=True, use_cache=True)
    finally:
        handle.remove()
    assert seen == [4, 1, 1, 1, 1, 1]
    assert cached == sample(module, [1, 2, 3, 4], 6, context=16, greedy=True, use_cache=False)
