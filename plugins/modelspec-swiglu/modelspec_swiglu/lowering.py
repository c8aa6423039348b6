"""The torch lowering of `swiglu`: three `nn.Linear` in an `nn.ModuleDict`
(state_dict keys `w1.weight`, `w2.weight`, `w3.weight`, as the op declares)
and one line of forward:

    self.feed_forward = nn.ModuleDict({"w1": nn.Linear(96, 256, bias=False), ...})
    y = self.feed_forward.w2(F.silu(self.feed_forward.w1(x)) * self.feed_forward.w3(x))

The macros are in this package's templates/ops/swiglu.j2; names come from here.
"""

from __future__ import annotations

from modelspec_torch.lowerings import Lowering, Site


def swiglu(site: Site) -> dict:
    attrs = site.attrs
    return {
        "width": site.input_types[0].shape[-1].value,
        "hidden": attrs["hidden"],
        "bias": attrs["bias"],
        "module": site.module,
        "x": site.x,
    }


# `package`: the backend reads the macros from this package's templates/ops/. `fresh`: the output is w2's,
# a new tensor that autograd does not keep for backward, so the backend may add a residual into it in place.
LOWERING = Lowering(
    "swiglu", "swiglu.j2", "forward_swiglu", swiglu, init="init_swiglu", package="modelspec_swiglu", fresh=True
)
