"""Loading generated source and instantiating the model, safely.

The source is compiled under a file name registered in `linecache`, so a
traceback inside the model shows the generated line (and its spec-line
comment). A build whose parameters could not fit in memory is refused
before anything is allocated.
"""

from __future__ import annotations

import contextlib
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
        available = _meminfo_available()
        if available is not None:
            return available
        try:  # free pages only: an underestimate where the kernel keeps a page cache it would give back
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    """Linux's MemAvailable (free memory plus the cache it can reclaim), in bytes; None where there is none."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key == "MemAvailable":
                    amount, _, unit = value.strip().partition(" ")
                    return int(amount) * (1024 if unit == "kB" else 1)
    except (OSError, ValueError):
        pass
    return None


# Initialisers torch cannot run in half precision (QR has no float16/bfloat16 kernels): a model that
# declares one is built in float32 and converted, as it was before models were built in their dtype.
FLOAT32_ONLY_INITS = {"orthogonal"}
HALF_DTYPES = {torch.float16, torch.bfloat16}


def parameter_bytes(program: Program, model: str, dtype: str) -> int:
    from modelspec.summary import graph_params

    parameters, _, buffers = graph_params(program.models[model].graph)
    return (parameters + buffers) * DTYPE_BYTES.get(dtype, 4)


def _inits(graph) -> set[str]:
    """The initialisers the parameters of `graph` (and its blocks and repeats) declare."""
    names = set()
    for node in graph.nodes:
        names |= {p.init for p in node.params}
        for sub in ([node.body] if node.body is not None else []) + list(node.iterations):
            names |= _inits(sub)
    return names


def builds_in_float32(program: Program, model: str, dtype: torch.dtype | None) -> bool:
    """Whether `build` makes the model in float32 and converts it to `dtype` afterwards."""
    return dtype in HALF_DTYPES and bool(_inits(program.models[model].graph) & FLOAT32_ONLY_INITS)


def build_bytes(program: Program, model: str, dtype: torch.dtype | None) -> int:
    """The most memory `build` holds at once: the parameters in `dtype`, plus their float32 copy when the
    model is built in float32 first (`.to(dtype)` allocates each converted tensor before freeing the old)."""
    name = str(dtype or torch.get_default_dtype()).replace("torch.", "")
    needed = parameter_bytes(program, model, name)
    if builds_in_float32(program, model, dtype):
        needed += parameter_bytes(program, model, "float32")
    return needed


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype | None):
    """Floating-point tensors made inside are `dtype` (None: unchanged): the model is built in its dtype, never
    in float32 first. torch's default dtype is global to the process; it is restored on the way out."""
    if dtype is None:
        yield
        return
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


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
    if torch_dtype is not None and not (isinstance(torch_dtype, torch.dtype) and torch_dtype.is_floating_point):
        raise ValueError(f"dtype {torch_dtype!r} is not a floating-point dtype: use one of {', '.join(TORCH_DTYPES)}")
    if device.type != "meta":
        needed = build_bytes(program, model, torch_dtype)
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
    in_float32 = builds_in_float32(program, model, torch_dtype)
    with torch.device(device), default_dtype(None if in_float32 else torch_dtype):
        module = cls()
    if torch_dtype is not None:
        # Converts a float32 build; otherwise a no-op but for tensors a lowering made in float32 on purpose.
        module = module.to(torch_dtype)
    module.modelspec_source = source
    if compile:
        module = torch.compile(module)
    return module
