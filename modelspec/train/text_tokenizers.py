"""Subword tokenizers for `text` data: a HuggingFace `tokenizers` JSON file or a
tiktoken BPE file, both read from local files (nothing is downloaded).

    tokenizer = load_file_tokenizer("tokenizers", Path("bpe.json"))
    ids = tokenizer.encode("def f(x):")
    text = tokenizer.decode(ids)
    restored = tokenizer_from_json(tokenizer.to_json())   # what a checkpoint stores

Both packages are optional: a regime that names one when it is not installed
stops with an error saying what to install. `to_json` holds the whole
tokenizer (the HuggingFace JSON, or tiktoken's ranks, pattern and special
tokens), so a checkpoint decodes without the original file.
`tokenizer_from_json` also reads the built-in `char` and `byte` tokenizers.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from modelspec_torch.generate import Tokenizer

# The split pattern of GPT-2's BPE (tiktoken's r50k_base, p50k_base). A `.tiktoken` file holds
# only the merge ranks; the encodings tiktoken names by file stem split text their own way.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
PATTERNS = {"r50k_base": GPT2_PATTERN, "p50k_base": GPT2_PATTERN, "cl100k_base": CL100K_PATTERN}


class TokenizerError(Exception):
    """A tokenizer that cannot be loaded; the message names the file or the package."""


def _require(package: str, kind: str):
    try:
        return __import__(package)
    except ImportError:
        raise TokenizerError(
            f"`tokenizer={kind}` needs the `{package}` package, which is not installed: pip install {package}"
        ) from None


class HuggingFaceTokenizer:
    """A `tokenizers` tokenizer (a `tokenizer.json` file, as `Tokenizer.save` writes it)."""

    kind = "tokenizers"

    def __init__(self, json_text: str, source: str = "the checkpoint"):
        tokenizers = _require("tokenizers", self.kind)
        try:
            self.backend = tokenizers.Tokenizer.from_str(json_text)
        except Exception as exc:  # tokenizers raises its own Exception subclasses
            raise TokenizerError(f"{source} is not a `tokenizers` JSON file ({exc})") from None
        self.json_text = json_text

    @property
    def size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode([i for i in ids if i < self.size], skip_special_tokens=False)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "json": self.json_text})


class TiktokenTokenizer:
    """A tiktoken BPE: merge ranks (a `.tiktoken` file: one `base64-token rank` per line), the
    split pattern (by the file's stem for the encodings tiktoken names, else GPT-2's) and special
    tokens (none)."""

    kind = "tiktoken"

    def __init__(self, ranks_text: str, name: str, pattern: str, source: str = "the checkpoint"):
        tiktoken = _require("tiktoken", self.kind)
        ranks = {}
        for number, line in enumerate(ranks_text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except (ValueError, binascii.Error):
                raise TokenizerError(f"{source}:{number}: not a `base64-token rank` line of a .tiktoken file") from None
        if not ranks:
            raise TokenizerError(f"{source} holds no tokens")
        try:
            self.backend = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        except Exception as exc:  # tiktoken's checks raise ValueError/AssertionError
            raise TokenizerError(f"{source}: tiktoken refuses these ranks ({exc})") from None
        self.ranks_text, self.name, self.pattern = ranks_text, name, pattern

    @property
    def size(self) -> int:
        return self.backend.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.backend.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode([i for i in ids if i < self.size], errors="replace")

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "name": self.name, "pattern": self.pattern, "ranks": self.ranks_text})


def load_file_tokenizer(kind: str, path: Path, shown: str | None = None):
    """The `kind` ("tokenizers" or "tiktoken") tokenizer of a local file; TokenizerError."""
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer file {shown} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"tokenizer file {shown} cannot be read ({exc})") from None
    if kind == "tokenizers":
        return HuggingFaceTokenizer(text, source=shown)
    if kind == "tiktoken":
        name = path.name.removesuffix(".tiktoken")
        return TiktokenTokenizer(text, name, PATTERNS.get(name, GPT2_PATTERN), source=shown)
    raise TokenizerError(f"unknown tokenizer kind {kind!r}")


def tokenizer_from_json(text: str):
    """The tokenizer a checkpoint stores (`to_json` of any kind); TokenizerError or ValueError."""
    data = json.loads(text)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "tokenizers":
        return HuggingFaceTokenizer(data["json"])
    if kind == "tiktoken":
        return TiktokenTokenizer(data["ranks"], data["name"], data["pattern"])
    return Tokenizer.from_json(text)
