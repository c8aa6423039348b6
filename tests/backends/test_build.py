"""`modelspec_torch.build`: the model is made in its dtype, and refused (E0604) before allocation when the
memory it needs at its peak is more than the device has free."""

import os
from pathlib import Path

import pytest
import torch

import modelspec
import modelspec_torch.build as build_module
from modelspec.diagnostics import CompileError
from modelspec_torch.build import available_memory, build, build_bytes

SPECS = Path(__file__).resolve().parents[2] / "specs"

ORTHOGONAL = """
model M() {
    input x: float[B, 16]
    output y = x |> linear(32, init=orthogonal(), name=fc)
}
"""


def held_bytes(module) -> int:
    tensors = {t.data_ptr(): t for t in [*module.parameters(), *module.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def dtypes_while_built(monkeypatch) -> list[set]:
    """Records the parameters' dtypes at the end of the generated constructor, before `build` converts."""
    seen: list[set] = []
    load = build_module.load_module_class

    def spying(source, class_name, label):
        cls = load(source, class_name, label)

        class Spy(cls):
            def __init__(self):
                super().__init__()
                seen.append({p.dtype for p in self.parameters()})

        return Spy

    monkeypatch.setattr(build_module, "load_module_class", spying)
    return seen


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_build_is_made_in_its_dtype_and_the_estimate_is_what_it_holds(dtype, monkeypatch):
    program = modelspec.load(SPECS / "gpt_tiny.mspec")
    seen = dtypes_while_built(monkeypatch)
    module = build(program, "GPTTiny", dtype=dtype)
    assert seen == [{dtype}]  # never a float32 copy first
    assert {p.dtype for p in module.parameters()} == {dtype}
    assert build_bytes(program, "GPTTiny", dtype) == held_bytes(module)
    assert build_bytes(program, "GPTTiny", dtype) * 2 == build_bytes(program, "GPTTiny", None)
    assert torch.get_default_dtype() == torch.float32  # restored


def test_the_refusal_uses_the_estimate_of_the_dtype(monkeypatch):
    program = modelspec.load(SPECS / "gpt_tiny.mspec")
    needed = build_bytes(program, "GPTTiny", torch.bfloat16)
    monkeypatch.setattr(build_module, "available_memory", lambda device: needed)
    build(program, "GPTTiny", dtype="bfloat16")  # it fits exactly
    with pytest.raises(CompileError) as info:
        build(program, "GPTTiny")  # float32: twice as much
    (d,) = info.value.diagnostics
    assert d.code == "E0604" and "nothing was allocated" in d.message
    monkeypatch.setattr(build_module, "available_memory", lambda device: needed - 1)
    with pytest.raises(CompileError):
        build(program, "GPTTiny", dtype="bfloat16")


def test_an_initialiser_without_half_kernels_builds_in_float32_and_counts_both_copies(monkeypatch):
    """torch's QR (orthogonal) has no bfloat16 kernel: that model is built in float32 and converted, so
    its peak is both copies."""
    program = modelspec.load(ORTHOGONAL)
    seen = dtypes_while_built(monkeypatch)
    module = build(program, "M", dtype="bfloat16")
    assert seen == [{torch.float32}]
    assert module.fc.weight.dtype == torch.bfloat16
    fc = module.fc.weight.float()
    torch.testing.assert_close(fc.T @ fc, torch.eye(16), atol=0.02, rtol=0)  # orthogonal columns
    float32 = build_bytes(program, "M", torch.float32)
    assert build_bytes(program, "M", torch.bfloat16) == float32 + float32 // 2


def test_the_default_dtype_is_restored_when_the_constructor_fails(monkeypatch):
    def failing(source, class_name, label):
        class Failing(torch.nn.Module):
            def __init__(self):
                raise RuntimeError("boom")

        return Failing

    monkeypatch.setattr(build_module, "load_module_class", failing)
    with pytest.raises(RuntimeError, match="boom"):
        build(modelspec.load(SPECS / "mlp_digits.mspec"), "MLP", dtype="bfloat16")
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize("dtype", [torch.int64, "bf16"])
def test_a_dtype_that_is_not_a_float_is_refused_naming_it(dtype):
    with pytest.raises(ValueError, match="dtype .*(int64|bf16).*bfloat16"):
        build(modelspec.load(SPECS / "mlp_digits.mspec"), "MLP", dtype=dtype)


MEMINFO = """MemTotal:       16000000 kB
MemFree:          200000 kB
MemAvailable:    9000000 kB
Buffers:          100000 kB
"""


def test_free_cpu_memory_is_memavailable_not_memfree(tmp_path, monkeypatch):
    """MemFree leaves out the page cache the kernel gives back on demand: a model that fits would be refused."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    assert build_module._meminfo_available(str(meminfo)) == 9_000_000 * 1024
    meminfo.write_text(MEMINFO.replace("MemAvailable:    9000000 kB\n", ""))  # kernels before 3.14
    assert build_module._meminfo_available(str(meminfo)) is None
    assert build_module._meminfo_available(str(tmp_path / "missing")) is None

    monkeypatch.setattr(build_module, "_meminfo_available", lambda: 12345)
    assert available_memory(torch.device("cpu")) == 12345
    monkeypatch.setattr(build_module, "_meminfo_available", lambda: None)  # no /proc: free pages, as before
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        assert available_memory(torch.device("cpu")) == os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
