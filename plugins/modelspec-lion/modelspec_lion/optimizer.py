"""Lion, "EvoLved Sign Momentum" (Chen et al., 2023, "Symbolic Discovery of
Optimization Algorithms", Algorithm 2), as a `torch.optim.Optimizer`.

For each parameter theta with gradient g and momentum m (zero at first):

    c     = beta1 * m + (1 - beta1) * g          # interpolation used for the update
    theta = theta - lr * (sign(c) + wd * theta)  # decoupled weight decay, as AdamW
    m     = beta2 * m + (1 - beta2) * g          # momentum kept for the next step

Every coordinate moves by exactly lr (plus the decay), whatever the gradient's
scale. The only state is `exp_avg` (m), one tensor per parameter, so a
checkpoint of `state_dict()` resumes bitwise exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class Lion(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ):
        if not lr > 0.0:
            raise ValueError(f"Lion: `lr` must be greater than 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Lion: `betas` must be two numbers in [0, 1), got {betas}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Lion: `weight_decay` must be 0 or more, got {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, weight_decay = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                exp_avg = state["exp_avg"]
                # Decay first: it uses theta before this step's update, as in the paper.
                if weight_decay != 0.0:
                    param.mul_(1.0 - lr * weight_decay)
                # c = beta1 * m + (1 - beta1) * g  (lerp: m + (1 - beta1) * (g - m))
                update = exp_avg.lerp(grad, 1.0 - beta1)
                param.add_(update.sign_(), alpha=-lr)
                exp_avg.lerp_(grad, 1.0 - beta2)
        return loss
