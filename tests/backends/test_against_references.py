"""The torch backend's modules against independent, hand-written PyTorch references.

For every model of every shipped spec (small variants of the big ones): build
it with modelspec, copy its weights into the reference by name (tests/reference/
mapping.py), and check that the two compute the same outputs and gradients on
the same seeded inputs, in float32. Also: the built module's state_dict is the
IR's parameter paths, its parameter count is the summary's, and at full size
(on the meta device, so GPT-3 costs nothing) its layout is the reference's.

Tolerances: outputs use torch.testing's float32 defaults (rtol 1.3e-6,
atol 1e-5). Gradients use rtol 1e-5 and atol 1e-5 of the model's largest
gradient: the two sides add the same terms in different orders (a fused
c_attn against separate q, k, v; attention written out against
scaled_dot_product_attention), and some gradients are zero analytically but
rounding noise in float32 on both sides (the key bias: softmax ignores a
shift common to all keys). The convolutional models agree bit for bit; the
transformers to within 8e-7 of their largest gradient.
"""

from __future__ import annotations

import math

import pytest
import torch
from reference import transformer as reference_transformer
from reference.mapping import REFERENCES, reference_for
from spec_cases import CASES, FULL_SIZE, SPECS, Case, as_tuple, inputs, ir_state, load, perturb_

import modelspec

IR_DTYPES = {"float": torch.float32, "int64": torch.int64}


def build_pair(case: Case):
    """(program, modelspec module, reference module, mapping) with the same weights."""
    program = load(case.source)
    model = program.model(case.model)
    module = perturb_(modelspec.build(program, case.model, seed=0))
    reference = reference_for(model)
    torch.manual_seed(0)
    ref = reference.build(model.hyperparameters)
    ref.load_state_dict(reference.state_dict(module.state_dict()), strict=True)
    return program, module, ref, reference


def loss_of(outputs: tuple, seed: int = 2) -> torch.Tensor:
    """A fixed random linear function of every output (a plain sum hides some mistakes)."""
    g = torch.Generator().manual_seed(seed)
    return sum((y * torch.randn(y.shape, generator=g)).sum() for y in outputs)


def assert_grad_close(actual: torch.Tensor, expected: torch.Tensor, scale: float, name: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_state_dict_is_the_ir_parameter_paths(case):
    program = load(case.source)
    module = modelspec.build(program, case.model, device="meta")  # the same layout, nothing allocated
    expected = ir_state(program.model(case.model).graph)
    state = module.state_dict()
    assert sorted(state) == sorted(expected)
    for name, param in expected.items():
        assert tuple(state[name].shape) == param.shape, name
        assert state[name].dtype == IR_DTYPES[param.dtype], name


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_parameter_count_is_the_summary_and_the_reference(case):
    program = load(case.source)
    model = program.model(case.model)
    module = modelspec.build(program, case.model, device="meta")
    with torch.device("meta"):
        ref = reference_for(model).build(model.hyperparameters)
    summary = program.summary(case.model)
    assert sum(p.numel() for p in module.parameters()) == summary.parameters  # tied ones once
    assert sum(p.numel() for p in ref.parameters()) == summary.parameters
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == summary.trainable_parameters
    state = module.state_dict()
    assert sum(b.numel() for name, b in module.named_buffers() if name in state) == summary.buffers


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_outputs_match_the_reference_in_eval_mode(case):
    _, module, ref, _ = build_pair(case)
    module.eval()
    ref.eval()
    x = inputs(case)
    with torch.no_grad():
        got, expected = as_tuple(module(*x)), as_tuple(ref(*x))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("case", [c.param(slow=c.gradients == "slow") for c in CASES if c.gradients != "no"])
def test_gradients_match_the_reference(case):
    """Every parameter's gradient of the same loss; for batch-norm models in training
    mode (batch statistics), where the running statistics must also agree after the step."""
    _, module, ref, reference = build_pair(case)
    module.train(case.train)
    ref.train(case.train)
    x = inputs(case)
    got, expected = as_tuple(module(*x)), as_tuple(ref(*x))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    loss_of(got).backward()
    loss_of(expected).backward()

    grads = {name: p.grad for name, p in module.named_parameters(remove_duplicate=False)}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    mapped = reference.state_dict(grads)
    ref_grads = {name: p.grad for name, p in ref.named_parameters(remove_duplicate=False)}
    assert sorted(mapped) == sorted(ref_grads)
    scale = max(g.abs().max().item() for g in ref_grads.values())
    for name, grad in mapped.items():
        assert_grad_close(grad, ref_grads[name], scale, name)

    if case.train:
        ref_state = ref.state_dict()
        for name, tensor in reference.state_dict(module.state_dict()).items():
            if "running" in name or "num_batches" in name:
                torch.testing.assert_close(tensor, ref_state[name], msg=lambda m, n=name: f"{n}: {m}")


def test_every_shipped_model_has_a_reference_and_a_case():
    program_of = {model: load(str(SPECS / file)) for file, model in FULL_SIZE}
    assert {"MLP", "CNN", "Generator", "Discriminator", "ResNet18", "VGG16"} <= set(program_of)
    assert {"BertBase", "GPT2", "GPT3", "Transformer"} <= set(program_of)
    tested = {load(case.source).model(case.model).base for case in CASES}
    for model, program in program_of.items():
        base = program.model(model).base
        assert base in REFERENCES, f"{model}: no reference in tests/reference/mapping.py"
        assert base in tested, f"{model}: no case in tests/backends/spec_cases.py"


@pytest.mark.parametrize("file,model", FULL_SIZE, ids=[m for _, m in FULL_SIZE])
def test_full_size_layout_is_the_reference_layout(file, model):
    """At the declared size: the same tensors, under the mapping, with the same shapes,
    and the reference's parameter count is the summary's (GPT-3: 174.6 billion)."""
    program = load(str(SPECS / file))
    spec_model = program.model(model)
    module = modelspec.build(program, model, device="meta")
    reference = reference_for(spec_model)
    with torch.device("meta"):
        ref = reference.build(spec_model.hyperparameters)
    mapped = {name: tuple(t.shape) for name, t in reference.state_dict(module.state_dict()).items()}
    assert mapped == {name: tuple(t.shape) for name, t in ref.state_dict().items()}
    assert sum(p.numel() for p in ref.parameters()) == program.summary(model).parameters


def test_sinusoidal_table_is_the_papers_formula():
    """The generated position table at the base model's full length (512) against the
    reference's, computed in float64: the generated one is computed in float32, whose
    rounding of pos * frequency grows with pos (about 3e-5 rad at pos 511)."""
    program = load(str(SPECS / "transformer.mspec"))
    module = modelspec.build(program, "Transformer", device="meta")
    source_table = [b for name, b in module.named_buffers() if name.startswith("positional_encoding")]
    assert len(source_table) == 2  # source and target sides; non-persistent, not in the state_dict
    generated = dict(module.named_modules())["positional_encoding"]
    table = type(generated)(512, 512).weight  # the generated class, built on the CPU
    expected = reference_transformer.PositionalEncoding(512, 0.0, 512).pe[0]
    torch.testing.assert_close(table[:64], expected[:64])
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-4)
    assert math.isclose(table[1, 0].item(), math.sin(1.0), rel_tol=1e-6)
