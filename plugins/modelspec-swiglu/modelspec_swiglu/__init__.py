"""The SwiGLU feed-forward for modelspec.

`modelspec_swiglu.op` describes the op `swiglu` (arguments, shape rule,
parameters, cost); `modelspec_swiglu.lowering` lowers it for the torch
backend with the template in `templates/ops/swiglu.j2`; `modelspec_swiglu.plugin`
registers both through modelspec's hooks.
"""

__version__ = "0.1.0"
