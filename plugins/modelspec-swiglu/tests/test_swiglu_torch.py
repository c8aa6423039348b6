"""The torch lowering of `swiglu` against an independent plain-PyTorch
computation (matrix products written out, silu as a * sigmoid(a), in float64):
same weights, same outputs and gradients. Also: the generated source imports
torch only and points back to the spec, the state_dict uses LLaMA's names,
initialisers apply, and the module compiles as one graph under
`torch.compile(fullgraph=True)`."""

from __future__ import annotations

import ast

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import modelspec
from modelspec.plugins import registry
from modelspec_torch.codegen import generate_source

# Odd sizes, so that a transposed or swapped weight cannot go unnoticed.
D, HIDDEN = 9, 41


def spec_text(bias: bool, init: str = "") -> str:
    return (
        'use "swiglu"\n\n'
        "model Ffn() {\n"
        f"    input x: float[B, T, {D}]\n"
        f"    output y = x |> swiglu({D} -> {HIDDEN}, bias={str(bias).lower()}{init}, name=ffn)\n"
        "}\n"
    )


def load(tmp_path, bias: bool, init: str = ""):
    path = tmp_path / "ffn.mspec"
    path.write_text(spec_text(bias, init), encoding="utf-8")
    return modelspec.load(path)


def reference(x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """Shazeer's FFN_SwiGLU, written out: (silu(x W1^T + b1) * (x W3^T + b3)) W2^T + b2."""
    gate = x @ weights["w1.weight"].T + weights.get("w1.bias", 0.0)
    value = x @ weights["w3.weight"].T + weights.get("w3.bias", 0.0)
    hidden = gate * torch.sigmoid(gate) * value
    return hidden @ weights["w2.weight"].T + weights.get("w2.bias", 0.0)


def perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Distinct random values everywhere (biases too, which start at zero under `init=`)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    return module


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_outputs_and_gradients_match_the_reference(tmp_path, bias):
    module = perturbed(modelspec.build(load(tmp_path, bias), "Ffn", seed=0))
    x = torch.randn(3, 7, D, generator=torch.Generator().manual_seed(2))
    weight = torch.randn(3, 7, D, generator=torch.Generator().manual_seed(3))  # a random linear loss

    y = module(x)
    (y * weight).sum().backward()

    ours = {name.removeprefix("ffn."): p for name, p in module.named_parameters()}
    theirs = {name: p.detach().double().requires_grad_() for name, p in ours.items()}
    expected = reference(x.double(), theirs)
    (expected * weight.double()).sum().backward()

    torch.testing.assert_close(y, expected.float(), rtol=1e-5, atol=1e-5)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name].grad, theirs[name].grad.float(), rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_state_dict_has_llamas_names(tmp_path, bias):
    module = modelspec.build(load(tmp_path, bias), "Ffn", device="meta")
    shapes = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    expected = {"ffn.w1.weight": (HIDDEN, D), "ffn.w2.weight": (D, HIDDEN), "ffn.w3.weight": (HIDDEN, D)}
    if bias:
        expected |= {"ffn.w1.bias": (HIDDEN,), "ffn.w2.bias": (D,), "ffn.w3.bias": (HIDDEN,)}
    assert shapes == expected


def test_generated_source_is_plain_torch_and_points_to_the_spec(tmp_path):
    program = load(tmp_path, bias=False)
    source, _ = generate_source(program, "Ffn", registry=registry())
    tree = ast.parse(source)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"torch", "torch.nn.functional"}
    lines = source.splitlines()
    (init,) = [line.strip() for line in lines if line.strip().startswith("self.ffn = ")]
    assert init.startswith('self.ffn = nn.ModuleDict({"w1": nn.Linear(9, 41, bias=False), ')
    assert init.endswith("# ffn.mspec:5")
    (forward,) = [line.strip() for line in lines if "self.ffn.w2(" in line]
    assert forward == "ffn = self.ffn.w2(F.silu(self.ffn.w1(x)) * self.ffn.w3(x))  # [B, T, 9]  ffn.mspec:5"
    # `mspec compile` writes the same source (the process registry holds the plugin's lowering).
    assert modelspec.compile_source(program, "Ffn") == source


def test_default_initialisation_is_nn_linears(tmp_path):
    """kaiming_uniform(a=sqrt(5)): every weight within 1/sqrt(fan_in), biases too; seeded builds agree."""
    module = modelspec.build(load(tmp_path, bias=True), "Ffn", seed=0)
    again = modelspec.build(load(tmp_path, bias=True), "Ffn", seed=0)
    for name, p in module.named_parameters():
        fan_in = HIDDEN if "w2" in name else D  # w2 maps hidden -> D
        assert p.abs().max() <= fan_in**-0.5, name
        assert p.std() > 0.2 * fan_in**-0.5, name  # not left at zero
        assert torch.equal(p, dict(again.named_parameters())[name]), name


def test_init_sets_the_weights_and_zeroes_the_biases(tmp_path):
    torch.manual_seed(0)
    module = modelspec.build(load(tmp_path, bias=True, init=", init=normal(0.02)"), "Ffn", seed=0)
    for name, p in module.named_parameters():
        if name.endswith("bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
        else:
            assert 0.015 < p.std().item() < 0.025, name


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_one_graph_under_torch_compile(tmp_path, train):
    module = perturbed(modelspec.build(load(tmp_path, bias=True), "Ffn", seed=0)).train(train)
    x = torch.randn(2, 5, D, generator=torch.Generator().manual_seed(4))
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(module, backend=counter, fullgraph=True)
    got = compiled(x)
    if train:
        got.square().sum().backward()
    assert counter.frame_count == 1
    torch.testing.assert_close(got, module(x))
