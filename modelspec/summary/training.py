"""`summary --training`: an estimate of one training step's memory.

parameters + gradients (trainable ones) + optimizer state (per the
regime's optimizer) + activations kept for the backward pass (every
intermediate output, for the regime's batch). An estimate: frameworks free
some activations early and keep some temporaries, so real use differs.
"""

from __future__ import annotations

from modelspec.diagnostics import CompileError, error
from modelspec.ir.graph import Program
from modelspec.summary import Summary, activation_elements, bind_sizes


def _regime_for(program: Program, model: str):
    for spec in program.trains.values():
        target = getattr(spec, "model", None)
        name = getattr(target, "name", target)
        if name == model:
            return spec
    return None


def training_memory(program: Program, model: str, summary: Summary, dtype: str = "float32") -> dict:
    from modelspec.ir.types import DTYPE_BYTES
    from modelspec.plugins import registry

    notes = []
    regime = _regime_for(program, model)
    batch = summary.bindings.get("B", 1)
    state_tensors = 2
    if regime is None:
        notes.append("no train block uses this model: assuming Adam (2 state tensors per parameter)")
    else:
        data = getattr(regime, "data", None)
        batch = getattr(getattr(data, "args", {}), "get", lambda *_: None)("batch") or batch
        optimizer = getattr(regime, "optimizer", None)
        if isinstance(optimizer, dict):
            optimizer = next(iter(optimizer.values()), None)
        component = registry().component("optimizer", getattr(optimizer, "name", "")) if optimizer else None
        if component is not None:
            state_tensors = component.state_tensors(component.Args.model_validate(optimizer.args))
            notes.append(f"optimizer `{optimizer.name}` keeps {state_tensors} state tensor(s) per parameter")
    model_ir = program.models[model]
    given = {}
    bindings, _ = bind_sizes(model_ir, given) if "B" not in summary.bindings else (dict(summary.bindings), [])
    bindings["B"] = batch
    try:
        activations = activation_elements(model_ir.graph, bindings)
    except CompileError:
        raise CompileError(error("E0501", "activation sizes are unknown: give the inputs with --input", None)) from None
    size = DTYPE_BYTES[dtype]
    out = {
        "dtype": dtype,
        "batch": batch,
        "parameters_bytes": summary.parameters * size,
        "gradients_bytes": summary.trainable_parameters * size,
        "optimizer_state_bytes": summary.trainable_parameters * size * state_tensors,
        "activations_bytes": activations * size,
        "notes": notes,
    }
    out["total_bytes"] = sum(v for k, v in out.items() if k.endswith("_bytes"))
    return out
