"""Elaboration: names, types, shapes, blocks, repeats, asserts."""

from pathlib import Path

import pytest

from modelspec.api import compile_program


def run(text):
    program, diagnostics, _ = compile_program(text, "t.mspec")
    return program, diagnostics


def codes(text):
    return [d.code for d in run(text)[1]]


def test_shapes_flow_through_a_chain():
    program, diags = run(
        """
        model M(h: int = 32) {
            input x: float[B, 8]
            y = x |> linear(h) |> relu
            output z = y |> linear(3)
        }"""
    )
    assert diags == []
    graph = program.models["M"].graph
    assert str(graph.output_types["z"]) == "float[B, 3]"
    assert [n.op for n in graph.nodes] == ["linear", "relu", "linear"]


def test_binding_names_the_one_layer_it_creates():
    program, _ = run(
        """
        model M() {
            input x: float[B, 8]
            hidden = x |> linear(4) |> relu
            output z = hidden |> linear(2) |> relu
        }"""
    )
    names = [n.name for n in program.models["M"].graph.nodes]
    assert names == ["hidden", "relu", "z", "relu_1"]


def test_explicit_names_and_clashes():
    _, diags = run(
        """
        model M() {
            input x: float[B, 8]
            a = x |> linear(4, name=fc)
            output z = a |> linear(2, name=fc)
        }"""
    )
    assert [d.code for d in diags] == ["E0209"]
    assert diags[0].span.line == 5


def test_linear_declared_input_mismatch_points_at_the_declaration():
    _, diags = run(
        """
        model M() {
            input x: float[B, 4096]
            output z = x |> linear(2304 -> 128)
        }"""
    )
    (d,) = diags
    assert d.code == "E0301"
    assert "declares 2304 input features but receives 4096" in d.message
    assert (d.span.line, d.span.column) == (4, 36)
    assert d.secondary and d.secondary[0].span.line == 3


def test_unknown_layer_suggests_a_near_name():
    (d,) = run("model M() { input x: float[B, 4]  output y = x |> lineer(3) }")[1]
    assert d.code == "E0202"
    assert "linear" in d.help


def test_unknown_argument_suggests_a_near_name():
    (d,) = run("model M() { input x: float[B, 4]  output y = x |> linear(3, biass=false) }")[1]
    assert d.code == "E0203"
    assert "`bias`" in d.help


def test_wrong_argument_type():
    (d,) = run("model M() { input x: float[B, 4]  output y = x |> linear(3.5) }")[1]
    assert d.code == "E0207"


def test_several_mistakes_are_all_reported():
    diags = run(
        """
        model M() {
            input x: float[B, 4]
            a = x |> nope
            b = x |> linear(2, bogus=1)
            c = a |> relu
            output y = b |> relu
        }"""
    )[1]
    # `c` uses the failed `a` silently: one mistake, one diagnostic.
    assert [d.code for d in diags] == ["E0202", "E0203"]


def test_block_binds_input_sizes_and_checks_asserts():
    program, diags = run(
        """
        block Head(heads: int) {
            input x: float[B, T, D]
            assert D % heads == 0, "width must divide into heads"
            output y = x |> linear(D)
        }
        model M() {
            input x: float[B, T, 12]
            a = x |> Head(4)
            output y = a |> Head(5)
        }"""
    )
    (d,) = diags
    assert d.code == "E0308"
    assert d.message == "assertion failed: width must divide into heads"
    assert "`D` is 12" in d.notes and "`heads` is 5" in d.notes
    assert d.span.line == 4
    assert any(label.span.line == 10 for label in d.secondary)  # the call site


def test_block_input_type_mismatch():
    (d,) = run(
        """
        block B1() {
            input x: float[B, 3, H, W]
            output y = x |> relu
        }
        model M() {
            input x: float[B, 1, 8, 8]
            output y = x |> B1
        }"""
    )[1]
    assert d.code == "E0304"
    assert d.span.line == 8


def test_recursive_block_is_reported():
    assert "E0315" in codes(
        """
        block R() { input x: float[B, 4]  output y = x |> R }
        model M() { input x: float[B, 4]  output y = x |> R }"""
    )


def test_repeat_with_stable_types_is_counted_once():
    program, diags = run(
        """
        model M(n: int = 1000000) {
            input x: float[B, 16]
            repeat n as layers { x = x |> linear(16) |> relu }
            output y = x
        }"""
    )
    assert diags == []
    (node,) = program.models["M"].graph.nodes
    assert node.counts == [1000000] and len(node.iterations) == 1
    assert program.summary("M").parameters == 1000000 * (16 * 16 + 16)


def test_repeat_whose_first_iteration_changes_the_type():
    program, diags = run(
        """
        model M() {
            input x: float[B, 3]
            repeat 4 as stack { x = x |> linear(8) }
            output y = x
        }"""
    )
    assert diags == []
    (node,) = program.models["M"].graph.nodes
    assert node.counts == [1, 3]
    assert program.summary("M").parameters == (3 * 8 + 8) + 3 * (8 * 8 + 8)


def test_repeat_index_unrolls():
    program, diags = run(
        """
        model M() {
            input x: float[B, 4]
            repeat 3 as stack[i] {
                if i == 0 { x = x |> linear(8) } else { x = x |> relu }
            }
            output y = x
        }"""
    )
    assert diags == []
    (node,) = program.models["M"].graph.nodes
    assert sum(node.counts) == 3 and node.counts[0] == 1


def _counting_ops(monkeypatch) -> list[str]:
    from modelspec.semantics.elaborate import Elaborator

    calls: list[str] = []
    original = Elaborator.apply_op

    def apply_op(self, op_name, *args, **kwargs):
        calls.append(op_name)
        return original(self, op_name, *args, **kwargs)

    monkeypatch.setattr(Elaborator, "apply_op", apply_op)
    return calls


def test_a_type_stable_repeat_elaborates_its_body_once(monkeypatch):
    calls = _counting_ops(monkeypatch)
    program, diags = run("model M() { input x: float[B, 4]  repeat 5 { x = x |> relu }  output y = x }")
    assert diags == [] and calls == ["relu"]
    (node,) = program.models["M"].graph.nodes
    assert node.counts == [5] and len(node.iterations) == 1


def test_nested_repeats_cost_one_body_each(monkeypatch):
    calls = _counting_ops(monkeypatch)
    depth = 40
    text = "model M() { input x: float[B, 4]  " + "repeat 2 { " * depth + "x = x |> relu" + " }" * depth
    program, diags = run(text + "  output y = x }")
    assert diags == [] and calls == ["relu"]
    node, count = program.models["M"].graph.nodes[0], 1
    while node.op == "repeat":
        assert node.counts == [2] and len(node.iterations) == 1
        count *= 2
        node = node.iterations[0].nodes[0]
    assert count == 2**depth


def test_nested_repeats_whose_types_change(monkeypatch):
    calls = _counting_ops(monkeypatch)
    program, diags = run(
        "model M() { input x: float[B, 3]  repeat 3 { repeat 2 { x = x |> linear(8) } }  output y = x }"
    )
    assert diags == []
    outer = program.models["M"].graph.nodes[0]
    assert outer.counts == [1, 2]  # the first outer iteration takes 3 features, the rest 8
    assert [it.nodes[0].counts for it in outer.iterations] == [[1, 1], [2]]
    assert len(calls) == 3  # 3 -> 8, 8 -> 8 inside the first; 8 -> 8 inside the second
    assert program.summary("M").parameters == (3 * 8 + 8) + 5 * (8 * 8 + 8)


def test_an_indexed_repeat_too_long_to_unroll_is_refused_before_elaborating(monkeypatch):
    calls = _counting_ops(monkeypatch)
    (d,) = run("model M() { input x: float[B, 4]  repeat 10**12 as r[i] { x = x |> dropout(0.0 * i) }  output y = x }")[
        1
    ]
    assert d.code == "E0312" and "4096" in d.message and calls == []


def test_fresh_names_are_the_first_free_suffix():
    from modelspec.ir.graph import Graph
    from modelspec.semantics.elaborate import Builder

    b = Builder(Graph(name="g"))
    assert [b.fresh("relu") for _ in range(4)] == ["relu", "relu_1", "relu_2", "relu_3"]
    b.used.update({"relu_4", "relu_6"})  # taken by `name=`
    assert [b.fresh("relu") for _ in range(2)] == ["relu_5", "relu_7"]
    b.release("relu_2")  # a layer renamed after its binding
    b.release("relu_6")
    assert [b.fresh("relu") for _ in range(3)] == ["relu_2", "relu_6", "relu_8"]
    assert b.fresh("class") == "class_" and b.fresh("class") == "class__1"


def test_repeat_count_must_be_known():
    (d,) = run("model M() { input x: float[B, 4]  repeat B { x = x |> relu }  output y = x }")[1]
    assert d.code == "E0310"


def test_symbolic_assert_becomes_a_constraint():
    program, diags = run(
        """
        model M(ctx: int = 16) {
            input t: int64[B, T]
            assert T <= ctx
            output y = t |> embedding(10, 4)
        }"""
    )
    assert diags == []
    (c,) = program.models["M"].graph.constraints
    assert (str(c.left), c.op, str(c.right)) == ("T", "<=", "16")


def test_variant_overrides_hyperparameters():
    program, diags = run(
        """
        model M(h: int = 4) { input x: float[B, 2]  output y = x |> linear(h) }
        model Wide = M(h=64)
        """
    )
    assert diags == []
    assert str(program.models["Wide"].graph.output_types["y"]) == "float[B, 64]"


VARIANT_BASE = """
model M(h: int = 4, w: int = 2, k: int = 3) {
    input x: float[B, 2]
    output y = x |> linear(h * 100 + w * 10 + k)
}
"""


def test_variant_of_a_variant():
    """Its arguments override the base variant's, which override the model's defaults."""
    program, diags = run(VARIANT_BASE + "model A = M(h=5, k=9)\nmodel Tiny = A(w=7, k=1)\nmodel Pos = Tiny(6)\n")
    assert diags == []
    hyper = {n: program.models[n].hyperparameters for n in ("A", "Tiny", "Pos")}
    assert hyper == {
        "A": {"h": 5, "w": 2, "k": 9},
        "Tiny": {"h": 5, "w": 7, "k": 1},
        "Pos": {"h": 6, "w": 7, "k": 1},
    }
    assert str(program.models["Tiny"].graph.output_types["y"]) == "float[B, 571]"
    assert program.models["Tiny"].base == "M"
    assert program.models["Tiny"].span.line == 7  # the variant's own declaration


def test_variant_of_a_variant_declared_before_its_base():
    program, diags = run(VARIANT_BASE + "model Tiny = A(w=7)\nmodel A = M(h=5)\n")
    assert diags == []
    assert program.models["Tiny"].hyperparameters == {"h": 5, "w": 7, "k": 3}


def test_variant_of_the_shipped_gpt3(tmp_path):
    gpt2 = (Path(__file__).resolve().parents[2] / "specs" / "gpt2.mspec").read_text()
    (tmp_path / "gpt2.mspec").write_text(gpt2)
    (tmp_path / "gpt3.mspec").write_text(
        'import "gpt2.mspec"\nmodel GPT3 = GPT2(ctx=2048, d=12288, heads=96, layers=96)\n'
    )
    spec = tmp_path / "tiny.mspec"
    spec.write_text('import "gpt3.mspec"\nmodel Tiny = GPT3(vocab=97, d=64, heads=4, layers=2)\n')
    program, diags, _ = compile_program(spec)
    assert diags == []
    hyper = program.models["Tiny"].hyperparameters
    assert (hyper["vocab"], hyper["d"], hyper["heads"], hyper["layers"], hyper["ctx"]) == (97, 64, 4, 2, 2048)


def test_a_base_variant_mistake_is_reported_once():
    (d,) = run(VARIANT_BASE + "model A = M(hh=5)\nmodel Tiny = A(w=7)\nmodel Tinier = Tiny(k=1)\n")[1]
    assert d.code == "E0203" and d.span.line == 6


@pytest.mark.parametrize("cycle", ["model A = B()\nmodel B = A()\n", "model A = A(h=1)\n"])
def test_a_variant_based_on_itself(cycle):
    (d,) = run(VARIANT_BASE + cycle)[1]
    assert d.code == "E0315" and "variant `A` is based on itself" in d.message


def test_variant_with_unknown_parameter():
    (d,) = run(
        """
        model M(h: int = 4) { input x: float[B, 2]  output y = x |> linear(h) }
        model Wide = M(hh=64)
        """
    )[1]
    assert d.code == "E0203" and "`h`" in d.help


def test_hyperparameter_type_is_checked():
    (d,) = run(
        """
        model M(h: int = 4) { input x: float[B, 2]  output y = x |> linear(h) }
        model Bad = M(h=2.5)
        """
    )[1]
    assert d.code == "E0207"


def test_tensor_arithmetic_broadcasts_and_scalars():
    program, diags = run(
        """
        model M() {
            input x: float[B, T, 8]
            input bias: float[8]
            output y = (x + bias) * 0.5 - 1
        }"""
    )
    assert diags == []
    assert str(program.models["M"].graph.output_types["y"]) == "float[B, T, 8]"


def test_constant_arithmetic_errors():
    assert codes("model M(n: int = 4 // 0) { input x: float[B, 2]  output y = x }") == ["E0311"]
    assert codes("model M(n: int = 10 ** 10 ** 10) { input x: float[B, 2]  output y = x }") == ["E0311"]


def test_model_without_output():
    assert codes("model M() { input x: float[B, 2] }") == ["E0314"]


def test_gan_types_must_agree():
    (d,) = run(
        """
        model G() { input z: float[B, 4]  output image = z |> linear(16) |> reshape(B, 1, 4, 4) }
        model D() { input image: float[B, 3, 4, 4]  output p = image |> flatten |> linear(1) }
        gan Pair { generator G()  discriminator D() }
        """
    )[1]
    assert d.code == "E0305"
    assert "float[B, 1, 4, 4]" in d.message and "float[B, 3, 4, 4]" in d.message
    assert len(d.secondary) == 2


def test_duplicate_declarations():
    (d,) = run(
        """
        model M() { input x: float[B, 2]  output y = x }
        model M() { input x: float[B, 2]  output y = x }
        """
    )[1]
    assert d.code == "E0103" and d.span.line == 3


def test_tie_must_name_an_existing_layer_of_the_same_shape():
    (d,) = run(
        """
        model M() {
            input t: int64[B, T]
            x = t |> embedding(100, 8, name=emb)
            output y = x |> linear(100, bias=false, tie=emb2)
        }"""
    )[1]
    assert d.code == "E0201" and "`emb`" in d.help
    (d,) = run(
        """
        model M() {
            input t: int64[B, T]
            x = t |> embedding(100, 8, name=emb)
            output y = x |> linear(50, bias=false, tie=emb)
        }"""
    )[1]
    assert d.code == "E0301"


@pytest.mark.parametrize(
    "body,code",
    [
        ("output y = x |> linear(2) |> undefined_thing", "E0202"),
        ("output y = q", "E0201"),
        ("output y = x |> linear(2, 3, 4)", "E0205"),
        ("output y = x |> linear()", "E0204"),
        ("output y = x |> linear(0)", "E0208"),
        ("output y = relu", "E0307"),
        ("output y = 3", "E0307"),
        ("output y = x |> embedding(10, 4)", "E0302"),
    ],
)
def test_error_codes(body, code):
    assert codes(f"model M() {{ input x: float[B, 2]  {body} }}") == [code]


def test_names_in_uncalled_blocks_are_still_resolved():
    diags = run(
        """
        block Foo(n: int) {
            input x: float[B, T, D]
            y = x |> linar(n) |> relu
            output z = y + w
        }"""
    )[1]
    assert [(d.code, d.span.line) for d in diags] == [("E0202", 4), ("E0201", 5)]
    assert diags[0].help == "did you mean `linear`?"
