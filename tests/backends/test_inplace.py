"""In-place activations and adds, and skipped dropout(p=0), in the generated forward.

Each tricky graph is built by modelspec and checked twice: the generated source
overwrites exactly what it may (a line is asserted in or out of place), and the
module computes what a plain out-of-place PyTorch function written here computes
with the same parameters: outputs, and the gradients of every parameter and of
the input. A wrong in-place op shows either way: as wrong values (a later reader
sees the overwritten tensor) or as autograd's "modified by an inplace operation"
error in backward (a tensor kept for backward was overwritten).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from spec_cases import as_tuple

import modelspec
from modelspec_torch import inplace
from modelspec_torch.codegen import lowerings


def build(text: str, model: str = "M"):
    module = modelspec.build(modelspec.load(text, name="m.mspec"), model, seed=0)
    return module.modelspec_source, module


def code_at(source: str, line: int, cls: str = "M") -> list[str]:
    """The statements (without their comments) that class `cls`'s forward generates for spec line `line`,
    but its `return` (which points at the line of the value it returns)."""
    body = source[source.index(f"class {cls}(") :]
    body = body[body.index("def forward") :]
    body = body[: body.find("\nclass ")] if "\nclass " in body else body
    lines = [text.strip() for text in body.splitlines() if text.endswith(f"m.mspec:{line}")]
    found = [text.split("  #")[0] for text in lines if not text.startswith(("#", "return "))]
    assert found, f"nothing generated for m.mspec:{line} in {cls}"
    return found


def check_against(module, reference, *inputs, train: bool = True, seed: int = 3):
    """Outputs and gradients (parameters and inputs) of `module` equal those of `reference(module, *inputs)`,
    a plain out-of-place function. Both see fresh copies of the inputs, which require grad."""
    module.train(train)
    params = [p for p in module.parameters()]
    results = []
    for run in (lambda *x: reference(module, *x), module):
        xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
        outputs = as_tuple(run(*xs))
        g = torch.Generator().manual_seed(seed)
        loss = sum((y * torch.randn(y.shape, generator=g)).sum() for y in outputs)
        wrt = params + [x for x in xs if x.requires_grad]
        grads = torch.autograd.grad(loss, wrt)
        results.append(([y.detach() for y in outputs], grads))
    (ref_out, ref_grads), (out, grads) = results
    assert len(out) == len(ref_out)
    for a, b in zip(out, ref_out):
        torch.testing.assert_close(a, b)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def x_of(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


# ---- what may be overwritten -------------------------------------------------------------------


def test_a_single_use_activation_after_linear_runs_in_place():
    source, module = build("""
        model M() {
            input x: float[B, 8]
            h = x |> linear(16)
            a = h |> relu
            output y = a |> linear(4)
        }""")
    assert code_at(source, 5) == ["relu = F.relu(h, inplace=True)"]
    check_against(module, lambda m, x: m.y(F.relu(m.h(x))), x_of(3, 8))


# Every op the backend calls `fresh`, then an in-place ReLU on its output: if the op kept its output for
# backward, autograd would refuse the backward; if it returned a view of its input or a parameter, the values
# or the input's gradient would be wrong.
FRESH = {
    "linear(6, name=p)": ("[B, 4, 5]", lambda m, x: m.p(x)),
    "conv1d(3, kernel=3, name=p)": ("[B, 4, 5]", lambda m, x: m.p(x)),
    "conv2d(3, kernel=3, padding=1, name=p)": ("[B, 4, 5, 5]", lambda m, x: m.p(x)),
    "conv_transpose2d(3, kernel=2, stride=2, name=p)": ("[B, 4, 5, 5]", lambda m, x: m.p(x)),
    "batchnorm1d(name=p)": ("[B, 4]", lambda m, x: m.p(x)),
    "batchnorm2d(name=p)": ("[B, 4, 5, 5]", lambda m, x: m.p(x)),
    "layernorm(name=p)": ("[B, 4, 5]", lambda m, x: m.p(x)),
    "groupnorm(2, name=p)": ("[B, 4, 5, 5]", lambda m, x: m.p(x)),
    "mul(2.0)": ("[B, 4, 5]", lambda m, x: x * 2.0),
}


@pytest.mark.parametrize("producer", list(FRESH))
def test_every_fresh_op_may_have_its_output_overwritten(producer):
    shape, first = FRESH[producer]
    source, module = build(f"""
        model M() {{
            input x: float{shape}
            h = x |> {producer}
            output y = h |> relu
        }}""")
    assert code_at(source, 5)[0].endswith(", inplace=True)")
    dims = [3 if d == "B" else int(d) for d in shape.strip("[]").split(", ")]
    check_against(module, lambda m, x: F.relu(first(m, x)), x_of(*dims))


def test_a_difference_and_a_sum_are_fresh():
    source, module = build("""
        model M() {
            input x: float[B, 8]
            d = (x |> linear(8, name=f)) - (x |> linear(8, name=g))
            output y = d + x
        }""")
    assert code_at(source, 5) == ["add = sub.add_(x)"]
    check_against(module, lambda m, x: (m.f(x) - m.g(x)) + x, x_of(3, 8))


def test_a_value_used_twice_is_not_overwritten():
    # relu(h) in place would change h before `h * 2` reads it
    source, module = build("""
        model M() {
            input x: float[B, 8]
            h = x |> linear(16)
            a = h |> relu
            b = h * 2.0
            output y = a + b
        }""")
    assert code_at(source, 5) == ["relu = F.relu(h)"]
    assert code_at(source, 7) == ["add = mul.add_(relu)"]  # the product is new and read once: it may take the sum
    check_against(module, lambda m, x: F.relu(m.h(x)) + m.h(x) * 2.0, x_of(3, 8))


def test_a_value_read_twice_by_one_node_is_not_overwritten():
    source, module = build("""
        model M() {
            input x: float[B, 8]
            h = x |> linear(16)
            output y = h + h
        }""")
    assert code_at(source, 5) == ["add = h + h"]
    check_against(module, lambda m, x: m.h(x) + m.h(x), x_of(3, 8))


FIRST = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "softmax(dim=-1)": lambda t: F.softmax(t, dim=-1),
    "gelu": F.gelu,
    "leaky_relu(0.1)": lambda t: F.leaky_relu(t, 0.1),
}


@pytest.mark.parametrize("before", list(FIRST))
@pytest.mark.parametrize("activation", ["relu", "leaky_relu(0.1)"])
def test_an_activation_after_one_that_keeps_a_tensor_for_backward_is_not_in_place(before, activation):
    """sigmoid, tanh, relu and softmax keep their output for backward; gelu and leaky_relu keep their
    input (and leaky_relu in place its output)."""
    source, module = build(f"""
        model M() {{
            input x: float[B, 8]
            s = x |> linear(16, name=h)
            t = s |> {before}
            output y = t |> {activation}
        }}""")
    assert ("inplace=True" in code_at(source, 5)[0]) == (before in ("relu", "leaky_relu(0.1)"))
    assert "inplace" not in code_at(source, 6)[0]
    second = FIRST[activation]
    check_against(module, lambda m, x: second(FIRST[before](m.h(x))), x_of(3, 8))


def test_a_value_that_is_an_output_and_used_later_is_not_overwritten():
    source, module = build("""
        model M() {
            input x: float[B, 8]
            output h = x |> linear(16)
            output y = h |> relu
        }""")
    assert code_at(source, 5) == ["relu = F.relu(h)"]
    check_against(module, lambda m, x: (m.h(x), F.relu(m.h(x))), x_of(3, 8))


def test_inputs_of_the_model_and_of_blocks_are_never_overwritten():
    source, module = build("""
        block Act() {
            input x: float[B, D]
            output y = x |> relu
        }
        model M() {
            input x: float[B, 8]
            a = x |> relu
            h = a |> linear(8)
            b = h |> Act
            output y = b + h
        }""")
    assert code_at(source, 4, cls="Act") == ["relu = F.relu(x)"]  # the block's input: the caller reads h again
    assert code_at(source, 8) == ["relu = F.relu(x)"]  # the model's input
    assert code_at(source, 11) == ["add = act + h"]  # a block's output may be anything (its input, a view)
    check_against(module, lambda m, x: F.relu(m.h(F.relu(x))) + m.h(F.relu(x)), x_of(3, 8))


def test_a_residual_whose_input_the_next_block_also_reads():
    """h feeds the residual branch, the sum, and the next block: the branch's output is
    overwritten (`g.add_(h)`), never h."""
    source, module = build("""
        block Mix() {
            input a: float[B, D]
            input b: float[B, D]
            output y = (a |> linear(D, name=fa)) + (b |> linear(D, name=fb))
        }
        model M() {
            input x: float[B, 8]
            h = x |> linear(8)
            r = (h |> linear(8, name=g)) + h
            output y = Mix(r, h, name=mix)
        }""")
    assert code_at(source, 10)[-1] == "add = g.add_(h)"
    assert code_at(source, 5, cls="Mix")[-1] == "add = fa.add_(fb)"

    def reference(m, x):
        h = m.h(x)
        r = m.g(h) + h
        return m.mix.fa(r) + m.mix.fb(h)

    check_against(module, reference, x_of(3, 8))


def test_a_residual_stream_read_by_a_norm_is_not_overwritten():
    """GPT-2's `x = x + attn; x = x + mlp(ln(x))`: the first sum is kept by the layernorm for backward,
    so the second sum overwrites the branch's output, not the stream."""
    source, module = build("""
        model M() {
            input x: float[B, 8]
            a = x |> linear(8, name=f)
            s = a + (x |> linear(8, name=g))
            output y = s + (s |> layernorm(name=ln) |> linear(8, name=k))
        }""")
    assert code_at(source, 5)[-1] == "add = f.add_(g)"
    assert code_at(source, 6)[-1] == "add_1 = k.add_(add)"

    def reference(m, x):
        s = m.f(x) + m.g(x)
        return s + m.k(m.ln(s))

    check_against(module, reference, x_of(3, 8))


def test_chains_of_in_place_ops_like_resnet():
    """bn + shortcut in place, then relu in place on the sum; a second relu on relu's result is not."""
    source, module = build("""
        model M() {
            input x: float[B, 4, 6, 6]
            h = x |> conv2d(4, kernel=3, padding=1, name=c) |> batchnorm2d(name=bn)
            s = h + (x |> conv2d(4, kernel=1, name=d))
            r = s |> relu
            output y = r |> relu
        }""")
    assert code_at(source, 5)[-1] == "add = bn.add_(d)"
    assert code_at(source, 6) == ["relu = F.relu(add, inplace=True)"]
    assert code_at(source, 7) == ["relu_1 = F.relu(relu)"]
    check_against(module, lambda m, x: F.relu(F.relu(m.bn(m.c(x)) + m.d(x))), x_of(2, 4, 6, 6))


def test_an_operand_is_overwritten_only_when_it_has_the_sums_shape():
    source, module = build("""
        model M() {
            input x: float[B, 8]
            q = x |> mean(dim=0, keepdim=true) |> linear(16, name=q)
            p = x |> linear(16, name=p)
            output y = q + p
        }""")
    assert code_at(source, 6) == ["add = p.add_(q)"]  # q is [1, 16]: the sum does not fit in it
    check_against(module, lambda m, x: m.q(x.mean(dim=0, keepdim=True)) + m.p(x), x_of(3, 8))


def test_a_negative_slope_leaky_relu_is_not_in_place():
    # autograd cannot run leaky_relu_'s backward from its result when the slope is negative
    source, module = build("""
        model M() {
            input x: float[B, 8]
            h = x |> linear(16, name=h)
            output y = h |> leaky_relu(-0.5)
        }""")
    assert code_at(source, 5) == ["leaky_relu = F.leaky_relu(h, negative_slope=-0.5)"]
    check_against(module, lambda m, x: F.leaky_relu(m.h(x), -0.5), x_of(3, 8))


def test_values_captured_and_carried_by_a_repeat_are_not_overwritten():
    source, module = build("""
        model M() {
            input x: float[B, 8]
            c = x |> linear(8, name=c)
            y = x
            repeat 3 as r {
                h = y |> linear(8, name=lin)
                y = (h |> relu) + c + y
            }
            output out = (c |> relu) + y
        }""")
    # relu's result is kept by relu; c and y are the iteration's inputs; the first sum is new and read once
    assert code_at(source, 8, cls="RLayer") == [
        "relu = F.relu(lin, inplace=True)",
        "add = relu + c",
        "add_1 = add.add_(y)",
    ]
    assert code_at(source, 10) == ["relu = F.relu(c)", "add = relu + y"]

    def reference(m, x):
        c = m.c(x)
        y = x
        for layer in m.r:
            y = F.relu(layer.lin(y)) + c + y
        return F.relu(c) + y

    check_against(module, reference, x_of(3, 8))


def test_in_place_ops_also_hold_in_eval_mode_and_without_grad():
    source, module = build("""
        model M() {
            input x: float[B, 4, 6, 6]
            s = (x |> conv2d(4, kernel=3, padding=1, name=c) |> batchnorm2d(name=bn)) + x
            output y = s |> relu
        }""")
    assert code_at(source, 4)[-1] == "add = bn.add_(x)"
    module.eval()
    x = x_of(2, 4, 6, 6)
    x_before = x.clone()
    with torch.no_grad():
        torch.testing.assert_close(module(x), F.relu(module.bn(module.c(x)) + x))
    assert torch.equal(x, x_before)  # the caller's tensor is untouched
    check_against(module, lambda m, x: F.relu(m.bn(m.c(x)) + x), x, train=False)


# ---- dropout with p = 0 --------------------------------------------------------------------------


def test_dropout_with_p_zero_is_skipped_and_keeps_its_spec_line():
    text = """
        model M(p: float = 0.0) {
            input x: float[B, 8]
            h = x |> linear(16) |> dropout(p)
            output y = h |> linear(4)
        }"""
    source, module = build(text)
    assert "dropout(" not in source[source.index("def forward") :]
    assert "        # dropout skipped: with these arguments it is the identity  m.mspec:4\n" in source
    assert code_at(source, 5) == ["y = self.y(h)"]
    check_against(module, lambda m, x: m.y(m.h(x)), x_of(3, 8))
    # p > 0 keeps the call, with the same submodules and state_dict keys
    source, kept = build(text.replace("p: float = 0.0", "p: float = 0.1"))
    assert code_at(source, 4)[-1] == "dropout = F.dropout(h, p=0.1, training=self.training)"
    assert list(kept.state_dict()) == list(module.state_dict()) == ["h.weight", "h.bias", "y.weight", "y.bias"]


def test_a_skipped_dropout_passes_its_input_on_for_the_in_place_rules():
    source, module = build("""
        model M() {
            input x: float[B, 8]
            h = x |> linear(16)
            d = h |> dropout(0.0)
            a = d |> relu
            output y = a + h
        }""")
    assert code_at(source, 6) == ["relu = F.relu(h)"]  # h is read again by the sum
    check_against(module, lambda m, x: F.relu(m.h(x)) + m.h(x), x_of(3, 8))

    source, module = build("""
        model M() {
            input x: float[B, 8]
            h = x |> linear(16, name=h)
            output y = h |> dropout(0.0) |> relu
        }""")
    assert code_at(source, 5) == ["relu = F.relu(h, inplace=True)"]
    check_against(module, lambda m, x: F.relu(m.h(x)), x_of(3, 8))


def test_a_skipped_dropout_may_be_an_output():
    source, module = build("""
        model M() {
            input x: float[B, 8]
            output y = x |> dropout(0.0)
        }""")
    assert source.rstrip().endswith("return x  # m.mspec:4")  # the line of the skipped dropout
    x = x_of(3, 8)
    assert module(x) is x


# ---- the plan, on its own --------------------------------------------------------------------------


def test_lowerings_that_say_nothing_are_neither_skipped_nor_overwritten():
    """A plugin's lowering without `skip`, `inplace` or `fresh` gets the plain forward."""
    graph = (
        modelspec.load("""
        model M() {
            input x: float[B, 8]
            h = x |> linear(8) |> dropout(0.0)
            output y = h |> relu
        }""")
        .models["M"]
        .graph
    )
    table = lowerings()
    built_in = inplace.plan(graph, table)
    assert list(built_in.same_as) == ["dropout"] and built_in.overwrite == {"relu": 0}
    plain = {op: dataclasses.replace(lw, skip=None, inplace=None, fresh=False) for op, lw in table.items()}
    plan = inplace.plan(graph, plain)
    assert plan.same_as == {} and plan.overwrite == {}
