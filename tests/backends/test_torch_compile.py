"""Every shipped spec's module compiles under `torch.compile(fullgraph=True)`, as one
graph, and computes what it computes eagerly.

The graph-break check runs Dynamo with the "aot_eager" backend (AOTAutograd traces
the forward, and in training mode the backward, then runs them with eager kernels):
that finds every graph break, in seconds on a CPU. Inductor, which also generates
and compiles C++ kernels, is exercised on two small models (marked slow).
`fullgraph=True` turns any graph break into an error; the compile counter also
catches a second compiled frame.
"""

from __future__ import annotations

import pytest
import torch
from spec_cases import CASES, as_tuple, inputs, load, perturb_
from torch._dynamo.testing import CompileCounterWithBackend

import modelspec


def built(case, train: bool = False):
    module = perturb_(modelspec.build(load(case.source), case.model, seed=0))
    return module.train(train)


def compiled_once(module, backend: str = "aot_eager", **options):
    torch._dynamo.reset()
    counter = CompileCounterWithBackend(backend)
    return torch.compile(module, backend=counter, fullgraph=True, **options), counter


def assert_all_close(got, expected, **tolerances) -> None:
    got, expected = as_tuple(got), as_tuple(expected)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **tolerances)


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_one_graph_in_eval_mode_with_the_eager_output(case):
    module = built(case).eval()
    x = inputs(case)
    with torch.no_grad():
        eager = module(*x)
        compiled, counter = compiled_once(module)
        got = compiled(*x)
    assert counter.frame_count == 1
    assert_all_close(got, eager)


@pytest.mark.parametrize("case", [c.param(slow=c.gradients == "slow") for c in CASES if c.gradients != "no"])
def test_one_graph_in_training_mode_with_the_eager_gradients(case):
    """Forward and backward through AOTAutograd. Dropout draws differently when
    compiled, so outputs are compared on batch-norm models only (no dropout)."""
    module = built(case, train=True)
    x = inputs(case)
    compiled, counter = compiled_once(module)
    out = as_tuple(compiled(*x))
    sum(y.float().square().mean() for y in out).backward()
    assert counter.frame_count == 1
    assert all(p.grad is not None for p in module.parameters())
    if case.train:
        eager = built(case, train=True)
        expected = as_tuple(eager(*x))
        assert_all_close(out, expected)
        sum(y.square().mean() for y in expected).backward()
        for (name, p), q in zip(module.named_parameters(), eager.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_gpt2_compiles_once_for_every_sequence_length():
    """With dynamic shapes the positions and the causal attention follow T symbolically:
    no recompilation for a second and third length. (Dynamo may restart its first
    analysis once under dynamic=True, which the counter sees as an empty extra frame,
    so the check is that later lengths compile nothing.)"""
    case = next(c for c in CASES if c.id == "gpt2-tiny")
    module = built(case).eval()
    g = torch.Generator().manual_seed(3)
    compiled, counter = compiled_once(module, dynamic=True)
    frames = []
    with torch.no_grad():
        for length in (5, 17, 32):
            tokens = torch.randint(0, 97, (2, length), generator=g)
            assert_all_close(compiled(tokens), module(tokens))
            frames.append(counter.frame_count)
    assert frames[0] == frames[1] == frames[2]
    assert sum(len(graph.graph.nodes) > 0 for graph in counter.graphs) == 1


@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["cnn", "gpt2-tiny"])
def test_inductor_output_is_the_eager_output(case_id):
    case = next(c for c in CASES if c.id == case_id)
    module = built(case).eval()
    x = inputs(case)
    compiled, counter = compiled_once(module, backend="inductor")
    with torch.no_grad():
        got, eager = compiled(*x), module(*x)
    assert counter.frame_count == 1
    # Inductor fuses and reorders reductions (layer norm, softmax, matmul epilogues).
    assert_all_close(got, eager, rtol=1e-4, atol=1e-5)
