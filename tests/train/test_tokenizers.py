"""Subword tokenizers for `text` data: a HuggingFace `tokenizers` BPE trained here from text in
a temporary folder, and a tiktoken BPE file written here; a short run with each, and
`mspec generate` decoding with the tokenizer stored in the checkpoint. Both packages are in
the `dev` extra; without them a regime that names one fails with the package to install."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from modelspec.api import compile_program
from modelspec.cli import main
from modelspec.diagnostics import Severity
from modelspec.train.loop import Options, Trainer, TrainError
from modelspec.train.text_tokenizers import TokenizerError, load_file_tokenizer, tokenizer_from_json

TEXT = "".join(f"def add_{i}(a, b):\n    return a + b * {i}\n\n" for i in range(200))

# A bigram language model: small and fast, but a real [B, T] -> [B, T, vocab] model.
MODEL = """\
model Bigram(vocab: int = 320) {
    input tokens: int64[B, T]
    assert T <= 32, "the context"
    output logits = embedding(tokens, vocab, 32, name=wte) |> linear(vocab, name=head)
}
"""


def regime(tokenizer: str, file: str) -> str:
    return f"""
train lm {{
    model      Bigram()
    data       text(path="corpus.txt", tokenizer={tokenizer}, tokenizer_file="{file}", block=16, batch=8)
    loss       cross_entropy(logits, target)
    optimizer  adam(lr=1e-2)
    steps      30
    seed       0
}}
"""


def hf_bpe(folder: Path, vocab: int = 300) -> Path:
    """A byte-level BPE trained on TEXT, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([TEXT], trainer=trainer)
    path = folder / "bpe.json"
    tokenizer.save(str(path))
    return path


def tiktoken_file(folder: Path) -> Path:
    """Ranks: the 256 bytes, then a few merges of the text's commonest pieces."""
    merges = [b"  ", b"    ", b"re", b"ret", b"retu", b"retur", b"return", b"de", b"def", b"ad", b"add"]
    tokens = [bytes([i]) for i in range(256)] + merges
    path = folder / "tiny.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {rank}\n" for rank, t in enumerate(tokens)))
    return path


def spec(folder: Path, tokenizer: str, file: Path) -> Path:
    (folder / "corpus.txt").write_text(TEXT, encoding="utf-8")
    path = folder / "lm.mspec"
    path.write_text(MODEL + regime(tokenizer, file.name), encoding="utf-8")
    return path


def trainer(path: Path, out: Path) -> Trainer:
    program, diagnostics, sources = compile_program(path)
    assert not [d for d in diagnostics if d.severity is Severity.ERROR], diagnostics
    return Trainer(program, program.trains["lm"], Options(out=out, progress=False), sources=dict(sources.texts))


@pytest.mark.parametrize("kind", ["tokenizers", "tiktoken"])
def test_train_then_generate_with_the_stored_tokenizer(kind, tmp_path, capsys):
    file = hf_bpe(tmp_path) if kind == "tokenizers" else tiktoken_file(tmp_path)
    path = spec(tmp_path, kind, file)
    result = trainer(path, tmp_path / "runs").run()
    assert result.step == 30
    checkpoint = result.folder / "checkpoints" / "step-00000030"
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as handle:
        stored = tokenizer_from_json(handle.metadata()["modelspec.tokenizer"])
    original = load_file_tokenizer(kind, file)
    assert stored.kind == kind and stored.size == original.size
    # subwords, not characters: the text is cut into fewer tokens than it has characters
    ids = original.encode(TEXT[:200])
    assert stored.encode(TEXT[:200]) == ids and len(ids) < 150
    assert stored.decode(ids) == TEXT[:200]

    file.unlink()  # generate needs only the checkpoint
    prompt = "def add_7(a, b):\n"
    args = ["generate", str(path), "--checkpoint", str(checkpoint), "--prompt", prompt, "--max-new-tokens", "12"]
    assert main([*args, "--greedy"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(prompt) and len(text) > len(prompt) + 12  # 12 subword tokens: more characters
    continuation = original.encode(text[len(prompt) :].rstrip("\n"))
    assert len(continuation) <= 13


def test_a_missing_package_names_what_to_install(tmp_path, monkeypatch):
    path = spec(tmp_path, "tokenizers", hf_bpe(tmp_path))
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import fails as if not installed
    with pytest.raises(TrainError, match=r"needs the `tokenizers` package.*pip install tokenizers"):
        trainer(path, tmp_path / "runs").run()
    assert not (tmp_path / "runs").exists()


def test_missing_and_damaged_tokenizer_files(tmp_path):
    path = spec(tmp_path, "tiktoken", tmp_path / "absent.tiktoken")
    with pytest.raises(TrainError, match=r"tokenizer file `absent.tiktoken` \(.*absent.tiktoken\) does not exist"):
        trainer(path, tmp_path / "runs").run()
    (tmp_path / "bad.tiktoken").write_text("QQ== 0\nnot-base64!! 1\n")
    with pytest.raises(TokenizerError, match=r"bad.tiktoken:2: not a `base64-token rank` line"):
        load_file_tokenizer("tiktoken", tmp_path / "bad.tiktoken")
    (tmp_path / "bad.json").write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(TokenizerError, match=r"bad.json is not a `tokenizers` JSON file"):
        load_file_tokenizer("tokenizers", tmp_path / "bad.json")


def test_the_checker_wants_a_file_for_subword_tokenizers(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT)
    text = MODEL + regime("tiktoken", "x.tiktoken").replace(', tokenizer_file="x.tiktoken"', "")
    text += regime("char", "x.json").replace("train lm", "train lm2")
    path = tmp_path / "lm.mspec"
    path.write_text(text)
    _, diagnostics, _ = compile_program(path)
    messages = [d.message for d in diagnostics if d.severity is Severity.ERROR]
    assert any("`tokenizer=tiktoken` needs `tokenizer_file`" in m for m in messages), messages
    assert any("`tokenizer=char` reads no `tokenizer_file`" in m for m in messages), messages
