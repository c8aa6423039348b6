"""Loading generated source and instantiating the model, safely.

The source is compiled under a file name registered in `linecache`, so a
traceback inside the model shows the generated line (and its spec-line
comment). A build whose parameters could not fit in memory is refused
before anything is allocated.
"""

from __future__ import annotations

import hashlib
import linecache
import os

import torch

from modelspec.diagnostics import CompileError, error
from modelspec.ir.graph import Program
from modelspec.ir.types import DTYPE_BYTES
from modelspec_torch.codegen import generate_source

TORCH_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def load_module_class(source: str, class_name: str, label: str):
    """Execute generated source as a module and return the class `class_name`."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    filename = f"<modelspec {label} {digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace = {"__name__": f"modelspec_generated_{digest}", "__file__": filename}
    exec(compile(source, filename, "exec"), namespace)  # the source is ours: generated from checked IR
    return namespace[class_name]


def available_memory(device: torch.device) -> int | None:
    """Bytes that could hold new tensors on `device`, or None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    if device.type == "cpu":
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def parameter_bytes(program: Program, model: str, dtype: str) -> int:
    from modelspec.summary import graph_params

    parameters, _, buffers = graph_params(program.models[model].graph)
    return (parameters + buffers) * DTYPE_BYTES.get(dtype, 4)


def build(
    program: Program,
    model: str,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    seed: int | None = 0,
    compile: bool = False,
):
    """Instantiate `model` of `program` as an `nn.Module` (see modelspec.build)."""
    device = torch.device(device)
    if isinstance(dtype, str):
        if dtype not in TORCH_DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(TORCH_DTYPES)}")
        torch_dtype = TORCH_DTYPES[dtype]
    else:
        torch_dtype = dtype
    dtype_name = str(torch_dtype or torch.get_default_dtype()).replace("torch.", "")
    if device.type != "meta":
        needed = parameter_bytes(program, model, dtype_name)
        free = available_memory(device)
        if free is not None and needed > free:
            raise CompileError(
                error(
                    "E0604",
                    f"model `{model}` needs {needed / 2**30:,.1f} GiB for its parameters but {device} has "
                    f"{free / 2**30:,.1f} GiB free; nothing was allocated",
                    None,
                    help="build it on the meta device to inspect it (`device='meta'`)",
                )
            )
    from modelspec.plugins import registry

    source, class_name = generate_source(program, model, registry=registry())
    cls = load_module_class(source, class_name, model)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device):
        module = cls()
    if torch_dtype is not None:
        module = module.to(torch_dtype)
    module.modelspec_source = source
    if compile:
        module = torch.compile(module)
    return module
