"""The parser: AST shapes, positions, and every kind of syntax error."""

import pytest

from modelspec.diagnostics import CompileError
from modelspec.syntax import ast, comments, decode, parse


def parse_error(text):
    with pytest.raises(CompileError) as info:
        parse(text, "t.mspec")
    (d,) = info.value.diagnostics
    return d


def test_model_with_params_inputs_and_pipe():
    module = parse(
        "model MLP(hidden: int = 1_28, p: float = 2e-4) {\n"
        "    input image: float[B, 1, 28, 28]\n"
        "    output logits = image |> flatten |> linear(64*6*6 -> hidden)\n"
        "}\n",
        "t.mspec",
    ).module
    (decl,) = module.decls
    assert isinstance(decl, ast.ModelDecl) and decl.kind == "model"
    assert [p.name for p in decl.params] == ["hidden", "p"]
    assert decl.params[0].default.value == 128 and decl.params[0].default.text == "1_28"
    assert decl.params[1].default.value == 2e-4
    inp, out = decl.body
    assert [d.value if isinstance(d, ast.Int) else d.id for d in inp.type.dims] == ["B", 1, 28, 28]
    pipe = out.value
    assert isinstance(pipe, ast.Pipe) and len(pipe.stages) == 2  # flat, not nested
    call = pipe.stages[1]
    assert isinstance(call.args[0], ast.ArrowArg)
    assert (call.span.line, call.span.column) == (3, 41)


def test_long_pipe_chains_stay_flat():
    text = "model M() { input x: float[B, 4]  output y = x" + " |> relu" * 5000 + " }"
    (decl,) = parse(text).module.decls
    assert len(decl.body[1].value.stages) == 5000


def test_precedence():
    (decl,) = parse("model M(a: int = 1 + 2 * 3 ** 2 ** 2, b: bool = not 1 < 2 or true) { }").module.decls
    a = decl.params[0].default
    assert a.op == "+" and a.right.op == "*" and a.right.right.op == "**" and a.right.right.right.op == "**"
    b = decl.params[1].default
    assert b.op == "or" and isinstance(b.left, ast.Unary)


def test_repeat_if_assert_variant_gan_train():
    module = parse(
        """
        import "std/transformer.mspec"
        use "some-plugin"
        block B(n: int) {
            input x: float[B, T, D]
            assert D % n == 0, "msg"
            repeat n as h[i] { if i == 0 { x = x } else if i == 1 { x = x } else { x = x } }
            output y = x
        }
        model G = M(d=1)
        gan P { generator G()  discriminator D() }
        train t {
            model     M()
            optimizer generator: adam(lr=1e-3), discriminator: sgd(lr=0.1)
            metrics   [accuracy, top_k(5)]
        }
        """
    ).module
    assert module.imports[0].path == "std/transformer.mspec"
    assert module.uses[0].plugin == "some-plugin"
    block, variant, gan, train = module.decls
    repeat = block.body[2]
    assert (repeat.name, repeat.index) == ("h", "i")
    if_stmt = repeat.body[0]
    assert isinstance(if_stmt.orelse[0], ast.If)
    assert block.body[1].message == "msg"
    assert isinstance(variant, ast.Variant) and variant.base == "M"
    assert [i.role for i in gan.items] == ["generator", "discriminator"]
    assert [s.key for s in train.settings] == ["model", "optimizer", "metrics"]
    assert [lv.label for lv in train.settings[1].value] == ["generator", "discriminator"]


def test_string_escapes():
    (imp,) = parse('import "a\\"b\\\\c.mspec"').module.imports
    assert imp.path == 'a"b\\c.mspec'
    d = parse_error('import "a\\qb"')
    assert d.code == "E0003"


def test_comments_are_collected_for_the_formatter():
    found = comments("# one\nmodel M() { # two\n}\n")
    assert [(c.line, c.text) for c in found] == [(1, "# one"), (2, "# two")]


@pytest.mark.parametrize(
    "text,code,line,column,message",
    [
        ("model M( {", "E0001", 1, 10, "unexpected `{`"),
        ("model M() {\n  input x: float[B]\n", "E0001", 3, 1, "unexpected end of file"),
        ("model M() { output y = x $ 2 }", "E0002", 1, 26, "unexpected character `$`"),
        ('import "abc\nmodel M() {}', "E0003", 1, 8, "unterminated string"),
        ("model M(n: int = " + "9" * 50 + ") {}", "E0007", 1, 18, "integer literal is too large"),
        ("model M() { output y = x\x00 }", "E0002", 1, 25, "unexpected character `\\x00`"),
    ],
)
def test_syntax_errors_point_at_the_mistake(text, code, line, column, message):
    d = parse_error(text)
    assert (d.code, d.span.line, d.span.column, d.message) == (code, line, column, message)


def test_deep_nesting_is_refused_not_crashed():
    d = parse_error("model M(n: int = " + "(1 + " * 10000 + "1" + ")" * 10000 + ") {}")
    assert d.code == "E0006"
    # Redundant parentheses build no tree, so any depth of them is fine.
    (decl,) = parse("model M(n: int = " + "(" * 10000 + "1" + ")" * 10000 + ") {}").module.decls
    assert decl.params[0].default.value == 1
    d = parse_error("model M(n: int = " + "-" * 5000 + "1) {}")
    assert d.code == "E0006"


def test_non_utf8_is_reported_where_the_byte_is():
    with pytest.raises(CompileError) as info:
        decode(b"model M() {\n  \xff\n}", "t.mspec")
    (d,) = info.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("E0004", 2, 3)


def test_empty_file_is_a_valid_module():
    assert parse("").module.decls == ()
    assert parse("# only a comment\n").module.decls == ()
