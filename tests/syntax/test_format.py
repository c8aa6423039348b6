"""`format_source` and `mspec fmt`: the canonical layout, comments kept,
idempotence, and meaning kept (same AST, same checked IR)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from modelspec.cli import cli
from modelspec.diagnostics import CompileError
from modelspec.syntax import comments, decode, parse
from modelspec.syntax.format import MAX_WIDTH, format_source, strip_spans
from modelspec.syntax.parser import _lark

ROOT = Path(__file__).resolve().parents[2]


def fmt(text: str) -> str:
    out = format_source(text, "t.mspec")
    assert format_source(out, "t.mspec") == out, "not idempotent"
    return out


def dedent(text: str) -> str:
    """Golden texts are written flush left after a leading newline."""
    return text[1:] if text.startswith("\n") else text


# ---- golden examples: input -> exact output ------------------------------------------

GOLDEN = {
    "model, params, input, output, let": (
        """
model   MLP ( hidden : int=128 , classes:int = 10,p: float=.5 ) { input image : float [ B , 1 , 28 , 28 ]
   h=image|>flatten|>linear(hidden)|>relu
\tlogits = ( ( h ) )
   output logits
   output probs=logits|>softmax(dim=-1)  }
""",
        """
model MLP(hidden: int = 128, classes: int = 10, p: float = .5) {
    input image: float[B, 1, 28, 28]
    h = image |> flatten |> linear(hidden) |> relu
    logits = h
    output logits
    output probs = logits |> softmax(dim=-1)
}
""",
    ),
    "numbers and strings exactly as written": (
        """
model M(v: int = 50_257, eps: float = 1e-5, big: float = 2.5E+3, half: float = 0.50) {
    input x: float[B, 4]
    assert v > 1_000, "a \\"quoted\\" # not a comment\\n"
    output y = x
}
""",
        """
model M(v: int = 50_257, eps: float = 1e-5, big: float = 2.5E+3, half: float = 0.50) {
    input x: float[B, 4]
    assert v > 1_000, "a \\"quoted\\" # not a comment\\n"
    output y = x
}
""",
    ),
    "block and no params": (
        """
block Empty {}
block Res(d: int) { input x: float[B, d] output y = x + (x |> layernorm |> linear(d)) }
model N { input x: float[B, 4] output y = x |> Res(4) }
""",
        """
block Empty() {}

block Res(d: int) {
    input x: float[B, d]
    output y = x + (x |> layernorm |> linear(d))
}

model N() {
    input x: float[B, 4]
    output y = x |> Res(4)
}
""",
    ),
    "variants, short and long": (
        """
model GPT3 = GPT( ctx = 2048 , d=12288,heads=96, layers=96 , )
model Wide = Base(width=1024, depth=48, heads=16, dropout=0.1, vocab=50257, ctx=2048, name="a wide one")
""",
        """
model GPT3 = GPT(ctx=2048, d=12288, heads=96, layers=96)

model Wide = Base(
    width=1024,
    depth=48,
    heads=16,
    dropout=0.1,
    vocab=50257,
    ctx=2048,
    name="a wide one",
)
""",
    ),
    "long parameter list, one a line": (
        """
model GPT(vocab: int = 50257, ctx: int = 1024, d: int = 768,
          heads: int = 12, layers: int = 12, p: float = 0.1) {
    input tokens: int64[B, T]
    output y = tokens
}
""",
        """
model GPT(
    vocab: int = 50257,
    ctx: int = 1024,
    d: int = 768,
    heads: int = 12,
    layers: int = 12,
    p: float = 0.1,
) {
    input tokens: int64[B, T]
    output y = tokens
}
""",
    ),
    "repeat": (
        """
model M(n: int = 2) {
    input x: float[B, 4]
    repeat n as layers[i] { x = x |> linear(4 * (i + 1)) }
    repeat n as stack {
        x = x |> relu
    }
    repeat 2 * n { x = x |> relu }
    repeat 0 {}
    output y = x
}
""",
        """
model M(n: int = 2) {
    input x: float[B, 4]
    repeat n as layers[i] {
        x = x |> linear(4 * (i + 1))
    }
    repeat n as stack {
        x = x |> relu
    }
    repeat 2 * n {
        x = x |> relu
    }
    repeat 0 {}
    output y = x
}
""",
    ),
    "if, else if, else": (
        """
model M(d: int = 8, deep: bool = false) {
    input x: float[B, d]
    if deep { h = x |> linear(d) } else if d > 4 { h = x |> relu } else { h = x }
    if not deep { assert d > 0 }
    if d == 8 { g = x } else { if deep { g = x |> relu } }
    output y = h
}
""",
        """
model M(d: int = 8, deep: bool = false) {
    input x: float[B, d]
    if deep {
        h = x |> linear(d)
    } else if d > 4 {
        h = x |> relu
    } else {
        h = x
    }
    if not deep {
        assert d > 0
    }
    if d == 8 {
        g = x
    } else if deep {
        g = x |> relu
    }
    output y = h
}
""",
    ),
    "gan and train, aligned": (
        """
gan DCGAN { generator Generator()  discriminator Discriminator() }
train dcgan {
    model DCGAN
    data digits(batch=128, size=16)
    loss bce
    optimizer generator: adam(lr=2e-4), discriminator: adam(lr=2e-4)
    epochs 20
}
""",
        """
gan DCGAN {
    generator      Generator()
    discriminator  Discriminator()
}

train dcgan {
    model      DCGAN
    data       digits(batch=128, size=16)
    loss       bce
    optimizer  generator: adam(lr=2e-4), discriminator: adam(lr=2e-4)
    epochs     20
}
""",
    ),
    "long labelled values, one label a line": (
        """
train t {
    optimizer generator: adam(lr=2e-4, betas=(0.5, 0.999)), discriminator: adam(lr=2e-4, betas=(0.5, 0.999))
    epochs 1
}
""",
        """
train t {
    optimizer  generator: adam(lr=2e-4, betas=(0.5, 0.999)),
               discriminator: adam(lr=2e-4, betas=(0.5, 0.999))
    epochs     1
}
""",
    ),
    "imports and uses first, in order": (
        """
import "a.mspec"
use "plugin_one"
import "std/transformer.mspec"
model M() { input x: float[B, 4] output y = x }
""",
        """
import "a.mspec"
use "plugin_one"
import "std/transformer.mspec"

model M() {
    input x: float[B, 4]
    output y = x
}
""",
    ),
    "imports written after declarations move up": (
        """
model M() { input x: float[B, 4] output y = x }
import "late.mspec"  # late
""",
        """
import "late.mspec"  # late

model M() {
    input x: float[B, 4]
    output y = x
}
""",
    ),
    "operators and minimal parentheses": (
        """
model M() {
    a = ((1 + 2)) * 3 - (4 - 5) - (6 + 7)
    b = 1 - (2 - 3) + (1 + 2) + 1 * (2 * 3) / (4 / 5) // (6 % 7)
    c = -2 ** 2 + (-2) ** 2 + 2 ** -1 + 2 ** 3 ** 2 + (2 ** 3) ** 2 + -(-d) + +d
    e = (a < b) == (c >= d)
    f = not (a and b) or (not a) and (b or c)
    g = not (a == b)
    h = x + (x |> layernorm) + (x |> f).out + (a + b).out + (f)(x) + (-x).y
    k = (a + b |> f) |> g |> (h)
    l = ((1, 2), (3,), (), [1, [2, 3], []], (a + b,))
    m = f(g(x, k=a + b), 64 * 6 * 6 -> 128, x |> relu -> y |> tanh, flag=true, off=false)
}
""",
        """
model M() {
    a = (1 + 2) * 3 - (4 - 5) - (6 + 7)
    b = 1 - (2 - 3) + (1 + 2) + 1 * (2 * 3) / (4 / 5) // (6 % 7)
    c = -2 ** 2 + (-2) ** 2 + 2 ** -1 + 2 ** 3 ** 2 + (2 ** 3) ** 2 + -(-d) + +d
    e = (a < b) == (c >= d)
    f = not (a and b) or not a and (b or c)
    g = not (a == b)
    h = x + (x |> layernorm) + (x |> f).out + (a + b).out + f(x) + (-x).y
    k = (a + b) |> f |> g |> h
    l = ((1, 2), (3,), (), [1, [2, 3], []], (a + b,))
    m = f(g(x, k=a + b), 64 * 6 * 6 -> 128, x |> relu -> y |> tanh, flag=true, off=false)
}
""",
    ),
    "long pipes break before each |>": (
        """
model CNN(classes: int = 10) {
    input image: float[B, 3, 32, 32]
    features = image |> conv2d(32, kernel=3, padding=1) |> relu |> maxpool(2) |> conv2d(64, kernel=3, padding=1) |> relu
    repeat 1 {
output logits = features |> flatten |> linear(128) |> relu |> linear(classes) |> dropout(0.5) |> log_softmax(dim=-1)
    }
}
""",
        """
model CNN(classes: int = 10) {
    input image: float[B, 3, 32, 32]
    features = image
        |> conv2d(32, kernel=3, padding=1)
        |> relu
        |> maxpool(2)
        |> conv2d(64, kernel=3, padding=1)
        |> relu
    repeat 1 {
        output logits = features
            |> flatten
            |> linear(128)
            |> relu
            |> linear(classes)
            |> dropout(0.5)
            |> log_softmax(dim=-1)
    }
}
""",
    ),
    "a short broken pipe is joined": (
        """
model M() {
    input x: float[B, 4]
    output y = x
        |> relu
        |> tanh
}
""",
        """
model M() {
    input x: float[B, 4]
    output y = x |> relu |> tanh
}
""",
    ),
    "long sums break before each + and -": (
        """
model M() {
x = embedding(tokens, vocab, d, name=word_embeddings) + embedding(positions(T), ctx, d, name=position_embeddings) - 1
}
""",
        """
model M() {
    x = embedding(tokens, vocab, d, name=word_embeddings)
        + embedding(positions(T), ctx, d, name=position_embeddings)
        - 1
}
""",
    ),
    "blank lines: at most one kept, one between declarations": (
        """


model A() {

    input x: float[B, 4]


    h = x
    g = x

    output y = x

}
model B() { input x: float[B, 4] output y = x }



""",
        """
model A() {
    input x: float[B, 4]

    h = x
    g = x

    output y = x
}

model B() {
    input x: float[B, 4]
    output y = x
}
""",
    ),
    "comments everywhere": (
        """
# header line 1
# header line 2

import "std/transformer.mspec"  # the library
# about M
model M(a: int = 1,  # first
        # before b
        b: int = 2) {  # open M
    # leading
    input x: float[B, 4]   # trailing
    h = x
        |> linear(4)  # stage one
        # before two
        |> relu
    y = f(a,  # inside a call
          b)
    if a > 1 {  # then
        z = 1
    }  # after then
    else {
        z = 2  # two
        # end of else
    }  # after if
    # end of M
}  # after M
# between
gan G { generator A()  # gen
  # before disc
  discriminator B() }
train t {  # settings
    optimizer g: adam(1),  # for g
              d: adam(2)
    loss bce # l
    # end of train
}
# the end
""",
        """
# header line 1
# header line 2

import "std/transformer.mspec"  # the library

# about M
model M(
    a: int = 1,  # first
    # before b
    b: int = 2,
) {  # open M
    # leading
    input x: float[B, 4]  # trailing
    h = x
        |> linear(4)  # stage one
        # before two
        |> relu
    y = f(a, b)  # inside a call
    if a > 1 {  # then
        z = 1
        # after then
    } else {
        z = 2  # two
        # end of else
    }  # after if
    # end of M
}  # after M

# between
gan G {
    generator      A()  # gen
    # before disc
    discriminator  B()
}

train t {  # settings
    optimizer  g: adam(1),  # for g
               d: adam(2)
    loss       bce  # l
    # end of train
}
# the end
""",
    ),
    "comments only": (
        "\n\n# one\n\n\n# two\n",
        "# one\n\n# two\n",
    ),
    "empty file": ("\n\n  \n", ""),
    "windows line endings": (
        "model M() {\r\n    input x: float[B, 4]  # c\r\n\r\n    output y = x\r\n}\r\n",
        "model M() {\n    input x: float[B, 4]  # c\n\n    output y = x\n}\n",
    ),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden(name):
    source, expected = GOLDEN[name]
    assert fmt(dedent(source)) == dedent(expected)


def test_every_line_fits_or_cannot_be_broken():
    text = dedent(GOLDEN["long pipes break before each |>"][1])
    assert all(len(line) <= MAX_WIDTH for line in text.splitlines())


def test_syntax_error_raises_compile_error():
    with pytest.raises(CompileError) as info:
        format_source("model M( {", "bad.mspec")
    assert info.value.diagnostics[0].code == "E0001"
    assert info.value.diagnostics[0].primary.span.file == "bad.mspec"


# ---- a corpus of varied specs -----------------------------------------------------------

CORPUS = {
    "mlp": """
# A two-layer network on 28x28 digits.
model MLP(hidden: int = 128, classes: int = 10) {
    input image: float[B, 1, 28, 28]
    output logits = image |> flatten |> linear(hidden) |> relu |> linear(classes)
}
""",
    "cnn": """
model CNN(classes: int = 10) {
    input image: float[B, 3, 32, 32]   # CIFAR-sized
    features = image
        |> conv2d(32, kernel=3, padding=1) |> relu |> maxpool(2)
        # second stage
        |> conv2d(64, kernel=3, padding=1) |> relu |> maxpool(2)
    output logits = features |> flatten |> linear(64*8*8 -> 128) |> relu |> linear(classes)
}
""",
    "gpt": """
block Attention(heads: int, p: float = 0.0) {
    input x: float[B, T, D]
    assert D % heads == 0, "heads must divide the width"
    output y = x |> multihead_attention(heads, causal=true) |> dropout(p)
}

model GPT(vocab: int = 50_257, ctx: int = 1024, d: int = 768,
          heads: int = 12, layers: int = 12, p: float = 0.1) {
    input tokens: int64[B, T]
    assert T <= ctx
    x = embedding(tokens, vocab, d, name=wte) + embedding(positions(T), ctx, d)
    x = dropout(x, p)
    repeat layers {
        x = x + (x |> layernorm |> Attention(heads, p=p) |> dropout(p))
        x = x + (x |> layernorm |> linear(4*d) |> gelu |> linear(d) |> dropout(p))
    }
    output logits = x |> layernorm |> linear(vocab, bias=false, tie=wte)
}

model GPT3 = GPT(ctx=2048, d=12288, heads=96, layers=96)
""",
    "conditions": """
model Switch(d: int = 64, deep: bool = false, scale: float = 1e-5, p: float = .5) {
    input x: float[B, 16]
    assert d > 0 and (d % 2 == 0 or d == 1), "d must be even"
    assert not (d > 4096)
    if deep and d >= 2 ** 5 {
        h = x |> linear(d) |> relu |> linear(d)
    } else if not deep {  # shallow
        h = x |> linear(d)
    } else {
        h = x |> linear(-(-d))
    }
    k = -2 ** 2 + (-2) ** 2 - 2 ** -1 * 4 // 3 % 5
    output y = h |> dropout(p)
}
""",
    "repeat": """
model Deep(depth: int = 4, width: int = 32) {
    input x: float[B, width]
    repeat depth as layers[i] {
        x = x + (x |> layernorm |> linear(width * 2) |> gelu |> linear(width))
    }


    repeat 2 { x = x |> relu }   # two more
    output y = x
}
""",
    "records": """
block Heads(n: int) {
    input x: float[B, T, D]
    output a = x |> linear(n)
    output b = x |> linear(2 * n)
}

model Shapes() {
    input x: float[B, 8, 4]
    t = x |> transpose(1, 2) |> permute(0, 2, 1) |> reshape(B, 32)
    h = x |> Heads(3)
    output first = h.a
    output second = (x |> Heads(5)).b
    output flat = t
}
""",
    "ugly": """
model   Ugly ( a : int=1 , b:float = 2.0 ) { input x : float [ B , 4 ]
   y=x|>linear(a+1)|>relu
\tz = ( ( y ) )
   output out=z|>linear(  4  )
                                 }
model Ugly2=Ugly(a=3,b=4.5)
""",
    "train": """
model MLP(hidden: int = 128, classes: int = 10) {
    input image: float[B, 64]
    output logits = image |> linear(hidden) |> relu |> linear(classes)
}

train mlp_sgd {
    model MLP()
    data digits(batch=64, split=0.8, shuffle=true)
    loss cross_entropy(logits, label)   # against the digit
    optimizer sgd(lr=0.01, momentum=0.9)
    schedule step(10, gamma=0.5)
    epochs 10
    metrics [accuracy, top_k(3)]
}
""",
    "gan": """
model Generator(z: int = 16) {
    input noise: float[B, z]
    output image = noise |> linear(64) |> tanh
}
model Discriminator() {
    input image: float[B, 64]
    output p = image |> linear(1) |> sigmoid
}
gan Pair { generator Generator()  discriminator Discriminator() }
train pair {
    model Pair
    data synthetic(batch=8)
    loss bce
    optimizer generator: adam(lr=2e-4, betas=(0.5, 0.999)), discriminator: adam(lr=2e-4, betas=(0.5, 0.999))
    epochs 1
}
""",
    "residual sums": """
model Sum(d: int = 16) {
    input x: float[B, d]
    # three branches, summed
    y = (x |> linear(d, name=first_branch_of_the_sum)) + (x |> linear(d, name=second_branch)) - (x |> relu)
    output out = (y + x) |> layernorm
}
""",
    "commented everywhere": GOLDEN["comments everywhere"][0],
    "operators": GOLDEN["operators and minimal parentheses"][0],
}

CORPUS = {name: dedent(text) for name, text in CORPUS.items()}


def _parses(path: Path) -> bool:
    try:
        parse(decode(path.read_bytes(), str(path)), str(path))
    except CompileError:
        return False
    return True


def all_spec_files() -> list[Path]:
    """Specs in the tree now; others add to these folders as the project grows."""
    found = set(ROOT.glob("specs/**/*.mspec")) | set(ROOT.glob("modelspec/std/*.mspec"))
    return sorted(found)


def spec_files() -> list[Path]:
    return [p for p in all_spec_files() if _parses(p)]


def unparseable_spec_files() -> list[Path]:
    return [p for p in all_spec_files() if not _parses(p)]


def _read_spec(path: Path) -> str:
    return decode(path.read_bytes(), str(path))


@pytest.mark.parametrize("path", unparseable_spec_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_spec_with_syntax_errors_is_refused_not_formatted(path):
    with pytest.raises(CompileError):
        format_source(decode(path.read_bytes(), str(path)), str(path))


def _comment_texts(text: str) -> list[str]:
    return [c.text.rstrip() for c in comments(text)]


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_is_idempotent_and_keeps_comments_in_order(name):
    text = CORPUS[name]
    out = fmt(text)
    assert _comment_texts(out) == _comment_texts(text)
    assert strip_spans(parse(out).module) == strip_spans(parse(text).module)


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_spec_files_are_idempotent(path):
    text = _read_spec(path)
    out = format_source(text, str(path))
    assert format_source(out, str(path)) == out
    assert sorted(_comment_texts(out)) == sorted(_comment_texts(text))


# ---- meaning: the checked IR is the same --------------------------------------------------


def drop_spans(value):
    if isinstance(value, dict):
        return {k: drop_spans(v) for k, v in value.items() if k not in ("span", "input_spans")}
    if isinstance(value, list):
        return [drop_spans(v) for v in value]
    return value


def _ir(text: str, name: str):
    from modelspec.api import compile_program

    program, diagnostics, _ = compile_program(text, name)
    return diagnostics, drop_spans(json.loads(program.to_json()))


def _assert_same_ir(text: str, name: str) -> None:
    diagnostics, before = _ir(text, name)
    after_diagnostics, after = _ir(format_source(text, name), name)
    # A spec with mistakes keeps exactly its mistakes; a clean one its IR.
    assert [(d.code, d.message) for d in after_diagnostics] == [(d.code, d.message) for d in diagnostics]
    assert after == before


def test_drop_spans():
    value = {"a": 1, "span": {"line": 1}, "b": [{"input_spans": {}, "c": {"span": 2, "d": 3}}]}
    assert drop_spans(value) == {"a": 1, "b": [{"c": {"d": 3}}]}


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_means_the_same(name):
    _assert_same_ir(CORPUS[name], f"{name.replace(' ', '_')}.mspec")


def test_most_of_the_corpus_checks_cleanly():
    # The IR comparison above is only worth something if it runs.
    clean = [name for name, text in CORPUS.items() if not _ir(text, "c.mspec")[0]]
    assert len(clean) >= 10, clean


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_spec_files_mean_the_same(path):
    _assert_same_ir(_read_spec(path), str(path))


# ---- property: formatting any expression keeps its AST ------------------------------------

NAMES = st.sampled_from(["x", "y", "d", "heads", "f", "notx", "and_", "B"])
ATOMS = st.one_of(
    NAMES,
    st.sampled_from(["0", "1", "2", "10", "50_257", "0.5", ".5", "1e-5", "2E+3", "true", "false", '"s"', '"a#b"']),
)
BINARY = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "==", "<", ">=", "!=", "and", "or", "|>"])
SPACE = st.sampled_from(["", " ", "  ", "\n", " \t"])


def _extend(children):
    maybe_paren = st.one_of(children, children.map(lambda s: f"({s})"))
    arg = st.one_of(
        children,
        st.tuples(NAMES, children).map(lambda t: f"{t[0]}={t[1]}"),
        st.tuples(children, children).map(lambda t: f"{t[0]} -> {t[1]}"),
    )
    args = st.lists(arg, max_size=3).map(", ".join)
    return st.one_of(
        st.tuples(maybe_paren, SPACE, BINARY, SPACE, maybe_paren).map(lambda t: f"{t[0]}{t[1]} {t[2]} {t[3]}{t[4]}"),
        st.tuples(st.sampled_from(["-", "+", "not ", "- "]), maybe_paren).map("".join),
        st.tuples(maybe_paren, NAMES).map(lambda t: f"{t[0]} |> {t[1]}"),
        st.tuples(maybe_paren, NAMES, args).map(lambda t: f"{t[0]} |> {t[1]}({t[2]})"),
        st.tuples(maybe_paren, args).map(lambda t: f"{t[0]} |> ({t[1] or 'f'})"),
        st.tuples(NAMES, args).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(maybe_paren, NAMES).map(lambda t: f"{t[0]}.{t[1]}"),
        st.lists(children, max_size=3).map(lambda xs: "(" + ", ".join(xs) + ("," if len(xs) == 1 else "") + ")"),
        st.lists(children, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        children.map(lambda s: f"(({s}))"),
    )


EXPRESSIONS = st.recursive(ATOMS, _extend, max_leaves=14)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(EXPRESSIONS, st.sampled_from(["let", "output", "setting", "default", "dim", "assert", "repeat"]))
def test_formatting_an_expression_keeps_its_ast(expr, where):
    text = {
        "let": f"model M() {{\n    n = {expr}\n}}\n",
        "output": f"model M() {{ output n = {expr} }}\n",
        "setting": f"train t {{ epochs {expr} loss {expr} }}\n",
        "default": f"model M(a: int = {expr}) {{ }}\n",
        "dim": f"model M() {{ input x: float[{expr}, {expr}] }}\n",
        "assert": f'model M() {{ assert {expr}, "m" }}\n',
        "repeat": f"block M() {{ repeat {expr} as h[i] {{ if {expr} {{ n = 1 }} }} }}\n",
    }[where]
    try:
        before = parse(text).module
    except CompileError:
        assume(False)
    out = format_source(text)
    assert strip_spans(parse(out).module) == strip_spans(before)
    assert format_source(out) == out


COMMENT_PLACES = st.sampled_from(["  # c{}\n", "\n# c{}\n", "\n\n    # c{}\n\n", "# c{}\n"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_comments_written_anywhere_are_kept_in_order(data):
    name = data.draw(st.sampled_from(sorted(CORPUS)))
    text = CORPUS[name]
    ends = sorted({t.end_pos for t in _lark().lex(text)})
    places = data.draw(st.lists(st.sampled_from(ends), min_size=1, max_size=6, unique=True))
    for k, end in enumerate(sorted(places, reverse=True)):
        text = text[:end] + data.draw(COMMENT_PLACES).format(k) + text[end:]
    out = fmt(text)
    assert _comment_texts(out) == _comment_texts(text)
    assert strip_spans(parse(out).module) == strip_spans(parse(text).module)


# ---- the command ----------------------------------------------------------------------------

UNFORMATTED = "model M(){input x:float[B,4] output y=x|>relu}\n"
FORMATTED = "model M() {\n    input x: float[B, 4]\n    output y = x |> relu\n}\n"


def run(*args, input=None):
    return CliRunner().invoke(cli, ["fmt", *args], input=input)


def test_fmt_rewrites_in_place_and_leaves_no_temporary_file(tmp_path):
    spec = tmp_path / "m.mspec"
    spec.write_text(UNFORMATTED)
    result = run(str(spec))
    assert result.exit_code == 0, result.output
    assert spec.read_text() == FORMATTED
    assert "reformatted" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mspec"]


def test_fmt_keeps_file_mode(tmp_path):
    spec = tmp_path / "m.mspec"
    spec.write_text(UNFORMATTED)
    spec.chmod(0o640)
    assert run(str(spec)).exit_code == 0
    assert spec.stat().st_mode & 0o777 == 0o640


def test_fmt_does_not_touch_formatted_files(tmp_path):
    spec = tmp_path / "m.mspec"
    spec.write_text(FORMATTED)
    before = spec.stat()
    result = run(str(spec))
    assert result.exit_code == 0
    after = spec.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_fmt_check_lists_files_and_writes_nothing(tmp_path):
    bad, good = tmp_path / "bad.mspec", tmp_path / "good.mspec"
    bad.write_text(UNFORMATTED)
    good.write_text(FORMATTED)
    result = run("--check", str(bad), str(good))
    assert result.exit_code == 1
    assert f"would reformat: {bad}" in result.stdout
    assert str(good) not in result.stdout
    assert bad.read_text() == UNFORMATTED

    result = run("--check", str(good))
    assert result.exit_code == 0
    assert "would reformat" not in result.output


def test_fmt_reports_syntax_errors_and_leaves_the_file(tmp_path):
    broken, fine = tmp_path / "broken.mspec", tmp_path / "fine.mspec"
    broken.write_text("model M() {\n    x = \n}\n")
    fine.write_text(UNFORMATTED)
    result = run(str(broken), str(fine))
    assert result.exit_code == 1
    assert "error[E0001]" in result.stderr
    assert f"{broken}:3:1" in result.stderr
    assert broken.read_text() == "model M() {\n    x = \n}\n"
    assert fine.read_text() == FORMATTED  # the other files are still done


def test_fmt_reports_non_utf8_and_unreadable_files(tmp_path):
    binary = tmp_path / "binary.mspec"
    binary.write_bytes(b"model \xff M")
    result = run(str(binary), str(tmp_path / "missing.mspec"))
    assert result.exit_code == 1
    assert "error[E0004]" in result.stderr
    assert "error[E0005]" in result.stderr
    assert binary.read_bytes() == b"model \xff M"


def test_fmt_stdin_to_stdout():
    result = run("-", input=UNFORMATTED)
    assert result.exit_code == 0
    assert result.stdout == FORMATTED
    result = run("--check", "-", input=UNFORMATTED)
    assert result.exit_code == 1
    assert "would reformat: -" in result.stdout


def test_fmt_stdin_syntax_error():
    result = run("-", input="model {")
    assert result.exit_code == 1
    assert "<stdin>:1:7" in result.stderr
    assert result.stdout == ""


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_fmt_through_a_symlink_rewrites_the_target(tmp_path):
    target = tmp_path / "real.mspec"
    target.write_text(UNFORMATTED)
    link = tmp_path / "link.mspec"
    link.symlink_to(target)
    assert run(str(link)).exit_code == 0
    assert link.is_symlink()
    assert target.read_text() == FORMATTED


def test_fmt_is_listed_in_help():
    result = CliRunner().invoke(cli, ["--help"])
    assert "fmt" in result.output


def test_shipped_specs_are_formatted():
    """`mspec fmt --check` is clean on every shipped spec and the standard library."""
    from modelspec.cli import main

    files = [str(p) for p in sorted(ROOT.glob("specs/*.mspec")) + sorted(ROOT.glob("modelspec/std/*.mspec"))]
    assert main(["fmt", "--check", *files]) == 0
