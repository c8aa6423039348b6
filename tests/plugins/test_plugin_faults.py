"""A plugin's op that breaks while checking a call is reported at the spec
line that called it (E0105), marked as the plugin's fault, never a traceback."""

from __future__ import annotations

import pytest

from modelspec.api import check
from modelspec.plugins import PluginManager

FAULTY = """
    from modelspec.hookspec import hookimpl
    from modelspec.ir.types import TensorType
    from modelspec.ops.base import OpSpec


    class Explode(OpSpec):
        name = "explode"

        def infer(self, inputs, args):
            return 1 / 0


    class Stringly(OpSpec):
        name = "stringly"

        def infer(self, inputs, args):
            return "[B, 4]"


    class BadParams(OpSpec):
        name = "bad_params"

        def infer(self, inputs, args):
            return inputs[0]

        def params(self, inputs, args, out):
            return {"weight": (4, 4)}


    class BadCost(OpSpec):
        name = "bad_cost"

        def infer(self, inputs, args):
            return inputs[0]

        def cost(self, inputs, args, out):
            raise KeyError("flops")


    class Sizes(OpSpec):
        name = "sizes"

        def infer(self, inputs, args):
            return [4, 4]  # sizes, not a type


    class BadDtype(OpSpec):
        name = "bad_dtype"

        def infer(self, inputs, args):
            return TensorType("float33", inputs[0].shape)


    class Negative(OpSpec):
        name = "negative"

        def infer(self, inputs, args):
            return TensorType("float", (inputs[0].shape[0], 4 - 7))


    class SecondNegative(OpSpec):
        name = "second_negative"

        def infer(self, inputs, args):
            return (inputs[0], TensorType("float", (-1,)))


    @hookimpl
    def mspec_ops():
        return [Explode(), Stringly(), BadParams(), BadCost(), Sizes(), BadDtype(), Negative(), SecondNegative()]
"""

SPEC = """use "faulty"

model M() {{
    input x: float[B, 4]
    output y = x |> {op}()
}}
"""


@pytest.mark.parametrize(
    "op, stage, what",
    [
        ("explode", "shape rule (`infer`)", "raised ZeroDivisionError: division by zero"),
        ("stringly", "shape rule (`infer`)", "returned '[B, 4]', not a tensor type"),
        ("sizes", "shape rule (`infer`)", "returned [4, 4]: item 0 (4) is not a tensor type (`TensorType`)"),
        ("bad_dtype", "shape rule (`infer`)", "returned float33[B, 4]: its dtype 'float33' is not one of float,"),
        ("negative", "shape rule (`infer`)", "returned float[B, -3]: its dimension 1 is -3, a negative size"),
        (
            "second_negative",
            "shape rule (`infer`)",
            "returned (float[B, 4], float[-1]): output 1's dimension 0 is -1, a negative size",
        ),
        ("bad_params", "parameters (`params`)", "not a list of `ParamSpec`"),
        ("bad_cost", "cost (`cost`)", "raised KeyError: 'flops'"),
    ],
)
def test_a_failing_plugin_op_is_blamed_at_the_calling_line(fake_site, op, stage, what):
    fake_site.add("faulty", FAULTY, dist="mspec-faulty", version="0.3.1")
    diagnostics = check(SPEC.format(op=op), name="net.mspec")
    [d] = diagnostics
    assert d.code == "E0105"
    assert (d.span.file, d.span.line) == ("net.mspec", 5)
    assert f"the op `{op}` of the plugin `faulty` (mspec-faulty 0.3.1) failed: its {stage}" in d.message
    assert what in d.message
    assert any("fault in the plugin `faulty`, not in the spec" in note for note in d.notes)


def test_the_cli_shows_the_fault_with_the_source_line(fake_site, capsys, tmp_path, monkeypatch):
    from modelspec.cli import main

    fake_site.add("faulty", FAULTY)
    spec = tmp_path / "net.mspec"
    spec.write_text(SPEC.format(op="explode"), encoding="utf-8")
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "error[E0105]" in err and "net.mspec:5:" in err and "x |> explode()" in err
    assert "Traceback" not in err and "internal error" not in err


def test_a_spec_requiring_a_plugin_that_failed_says_why(fake_site):
    fake_site.add("faulty", "import no_such_module_anywhere\n")
    [d] = check(SPEC.format(op="explode"), name="net.mspec")
    assert d.code == "E0104"
    assert "installed but failed to load: ModuleNotFoundError" in d.message


def test_a_spec_requiring_a_plugin_left_out_by_the_allowlist_says_so(fake_site, monkeypatch):
    fake_site.add("faulty", FAULTY)
    monkeypatch.setenv("MSPEC_LOAD_PLUGINS", "")
    diagnostics = check(SPEC.format(op="explode"), name="net.mspec")
    assert diagnostics[0].code == "E0104"
    assert "not listed in MSPEC_LOAD_PLUGINS" in diagnostics[0].message


def test_use_accepts_the_distribution_name_too(fake_site):
    fake_site.add("doubler", fake_site.GOOD_OP, dist="mspec-doubler")
    text = 'use "mspec-doubler"\nmodel M() {\n    input x: float[B, 4]\n    output y = x |> double()\n}\n'
    assert check(text, name="m.mspec") == []


def test_a_missing_known_plugin_names_its_package():
    registry = PluginManager(entry_points=False).registry
    assert "modelspec-swiglu" in registry.hint(plugin="swiglu")
    assert "modelspec-swiglu" in registry.hint(op="swiglu")
    assert "modelspec-lion" in registry.hint(component=("optimizer", "lion"))
    assert "modelspec-onnx" in registry.hint(backend="onnx")
    assert registry.hint(op="no_such_op") is None
