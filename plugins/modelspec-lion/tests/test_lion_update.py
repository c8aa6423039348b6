"""`modelspec_lion.Lion` against an independent NumPy computation of the
published update rule (Chen et al. 2023, Algorithm 2), in float64:

    c     = beta1 * m + (1 - beta1) * g
    theta = theta - lr * (sign(c) + wd * theta)
    m     = beta2 * m + (1 - beta2) * g
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from modelspec_lion.optimizer import Lion


def numpy_lion(theta, grads, lr, betas, wd):
    """Every step of the paper's rule, written out in NumPy; returns (theta, m)."""
    beta1, beta2 = betas
    theta = np.array(theta, dtype=np.float64)
    m = np.zeros_like(theta)
    for g in grads:
        c = beta1 * m + (1 - beta1) * g
        theta = theta - lr * (np.sign(c) + wd * theta)
        m = beta2 * m + (1 - beta2) * g
    return theta, m


def random_grads(rng, shape, steps):
    # Gradients of changing sign and scale, so that m and g often disagree in sign.
    return [rng.standard_normal(shape) * rng.uniform(0.01, 10.0) for _ in range(steps)]


@pytest.mark.parametrize("wd", [0.0, 0.3])
@pytest.mark.parametrize("betas", [(0.9, 0.99), (0.95, 0.98), (0.0, 0.5)])
def test_steps_follow_the_published_rule(betas, wd):
    rng = np.random.default_rng(0)
    theta0 = rng.standard_normal((7, 5))
    grads = random_grads(rng, theta0.shape, steps=12)
    param = torch.nn.Parameter(torch.tensor(theta0))
    optimizer = Lion([param], lr=3e-2, betas=betas, weight_decay=wd)
    for g in grads:
        param.grad = torch.tensor(g)
        optimizer.step()
    expected_theta, expected_m = numpy_lion(theta0, grads, 3e-2, betas, wd)
    np.testing.assert_allclose(param.detach().numpy(), expected_theta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(optimizer.state[param]["exp_avg"].numpy(), expected_m, rtol=1e-12, atol=1e-14)


def test_every_coordinate_moves_by_the_learning_rate():
    """The sign update: one step from m = 0 moves each coordinate by exactly lr,
    whatever the gradient's scale (0 where the gradient is 0)."""
    param = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    param.grad = torch.tensor([1e-8, -3.0, 0.0, 250.0], dtype=torch.float64)
    Lion([param], lr=0.5).step()
    assert param.detach().tolist() == [-0.5, 0.5, 0.0, -0.5]


def test_groups_keep_their_own_rate_and_decay():
    """Two groups (as `no_decay` makes them): each follows the rule with its own settings."""
    rng = np.random.default_rng(1)
    a0, b0 = rng.standard_normal(6), rng.standard_normal(3)
    grads_a, grads_b = random_grads(rng, 6, 5), random_grads(rng, 3, 5)
    a, b = torch.nn.Parameter(torch.tensor(a0)), torch.nn.Parameter(torch.tensor(b0))
    optimizer = Lion([{"params": [a]}, {"params": [b], "weight_decay": 0.0, "lr": 1e-3}], lr=1e-2, weight_decay=0.5)
    for ga, gb in zip(grads_a, grads_b):
        a.grad, b.grad = torch.tensor(ga), torch.tensor(gb)
        optimizer.step()
    np.testing.assert_allclose(a.detach().numpy(), numpy_lion(a0, grads_a, 1e-2, (0.9, 0.99), 0.5)[0], rtol=1e-12)
    np.testing.assert_allclose(b.detach().numpy(), numpy_lion(b0, grads_b, 1e-3, (0.9, 0.99), 0.0)[0], rtol=1e-12)


def test_float32_parameters_match_the_rule_to_float32_precision():
    rng = np.random.default_rng(2)
    theta0 = rng.standard_normal(50)
    grads = random_grads(rng, 50, 8)
    param = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float32))
    optimizer = Lion([param], lr=1e-3, weight_decay=0.1)
    for g in grads:
        param.grad = torch.tensor(g, dtype=torch.float32)
        optimizer.step()
    expected, _ = numpy_lion(theta0.astype(np.float32), [g.astype(np.float32) for g in grads], 1e-3, (0.9, 0.99), 0.1)
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-6, atol=1e-6)


def test_parameters_without_gradients_are_left_alone():
    frozen = torch.nn.Parameter(torch.ones(3))
    moving = torch.nn.Parameter(torch.ones(3))
    optimizer = Lion([frozen, moving], lr=0.1, weight_decay=1.0)
    moving.grad = torch.ones(3)
    optimizer.step()
    assert torch.equal(frozen.detach(), torch.ones(3)) and frozen not in optimizer.state
    assert not torch.equal(moving.detach(), torch.ones(3))


def test_closure_is_evaluated_with_gradients_enabled():
    param = torch.nn.Parameter(torch.tensor([2.0]))
    optimizer = Lion([param], lr=0.25)

    def closure():
        optimizer.zero_grad()
        loss = (param**2).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss.item() == 4.0 and param.item() == 1.75


def test_state_dict_round_trip_continues_exactly():
    """Stop after 3 steps, load the state into a fresh optimizer and a copy of the
    weights, go on: bitwise what an uninterrupted optimizer gives."""
    torch.manual_seed(0)
    grads = [torch.randn(4, 3) for _ in range(6)]
    start = torch.randn(4, 3)

    def run(steps, param, optimizer):
        for g in steps:
            param.grad = g.clone()
            optimizer.step()

    whole = torch.nn.Parameter(start.clone())
    run(grads, whole, Lion([whole], lr=1e-2, weight_decay=0.1))

    first = torch.nn.Parameter(start.clone())
    optimizer = Lion([first], lr=1e-2, weight_decay=0.1)
    run(grads[:3], first, optimizer)
    saved = optimizer.state_dict()
    resumed = torch.nn.Parameter(first.detach().clone())
    fresh = Lion([resumed], lr=1e-2, weight_decay=0.1)
    fresh.load_state_dict(saved)
    run(grads[3:], resumed, fresh)
    assert torch.equal(resumed.detach(), whole.detach())


@pytest.mark.parametrize(
    "options,message",
    [
        ({"lr": 0.0}, "`lr` must be greater than 0"),
        ({"betas": (0.9, 1.0)}, "`betas` must be two numbers in [0, 1)"),
        ({"weight_decay": -0.1}, "`weight_decay` must be 0 or more"),
    ],
)
def test_bad_settings_are_refused_by_name(options, message):
    with pytest.raises(ValueError) as excinfo:
        Lion([torch.nn.Parameter(torch.zeros(1))], **options)
    assert message in str(excinfo.value)


def test_sparse_gradients_are_refused():
    param = torch.nn.Parameter(torch.zeros(3))
    param.grad = torch.zeros(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        Lion([param]).step()
