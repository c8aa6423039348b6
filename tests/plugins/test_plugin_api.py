"""Embedding: a program registers a plugin object at run time, without
packaging it, and the pipeline uses it; a backend without a lowering for
its op says so, naming the op and the backends that have one."""

from __future__ import annotations

import pytest

import modelspec
from modelspec import plugins
from modelspec.hookspec import hookimpl
from modelspec.ops.base import Cost, OpSpec, ParamSpec


class Scale(OpSpec):
    """`scale(x)`: multiplies the last dimension by a learned vector."""

    name = "scale"
    summary = "learned per-feature scale"
    shape_rule = "[*, d] -> [*, d]"

    def infer(self, inputs, args):
        return inputs[0]

    def params(self, inputs, args, out):
        return [ParamSpec("weight", (inputs[0].shape[-1].value,), init="ones")]

    def cost(self, inputs, args, out):
        return Cost(flops=out.numel())


class ScalePlugin:
    """A plugin can be any object whose methods are hook implementations."""

    @hookimpl
    def mspec_ops(self):
        return [Scale()]


SPEC = """model Scaled() {
    input x: float[B, 8]
    output y = x |> scale() |> linear(2)
}
"""


@pytest.fixture
def fresh_manager(monkeypatch):
    monkeypatch.setattr(plugins, "_default", plugins.PluginManager(allow=()))


def test_a_registered_object_adds_its_op_to_check_and_summary(fresh_manager):
    assert [d.code for d in modelspec.check(SPEC, name="s.mspec")] == ["E0202"]
    name = modelspec.register_plugin(ScalePlugin(), name="scale-plugin")
    assert name == "scale-plugin"
    program = modelspec.load(SPEC, name="s.mspec")
    [scale] = [node for node in program.model("Scaled").graph.nodes if node.op == "scale"]
    assert [(p.name, p.shape) for p in scale.params] == [("weight", (8,))]
    assert program.summary("Scaled").parameters == 8 + 8 * 2 + 2
    assert plugins.registry().info["scale-plugin"].origin == "registered at run time"
    modelspec.unregister_plugin("scale-plugin")
    assert plugins.registry().op("scale") is None


def test_registering_twice_or_with_a_wrong_signature_raises_naming_it(fresh_manager):
    modelspec.register_plugin(ScalePlugin(), name="scale-plugin")
    with pytest.raises(modelspec.PluginError, match="`scale-plugin` is already registered"):
        modelspec.register_plugin(ScalePlugin(), name="scale-plugin")

    class Wrong:
        @hookimpl
        def mspec_ops(self, spec_file):
            return []

    with pytest.raises(modelspec.PluginError, match="spec_file"):
        modelspec.register_plugin(Wrong(), name="wrong")
    assert "wrong" not in plugins.registry().info


class Relu(OpSpec):
    name = "relu"

    def infer(self, inputs, args):
        return inputs[0]


class TakesRelu:
    @hookimpl
    def mspec_ops(self):
        return [Scale(), Relu()]


class TakesAdam:
    @hookimpl
    def mspec_train_components(self):
        from modelspec.train.components import Component

        return [Component("optimizer", "adam")]


class TakesTorchLowering:
    @hookimpl
    def mspec_lowerings(self):
        from modelspec_torch.lowerings import LOWERINGS

        return [LOWERINGS[0]]


@pytest.mark.parametrize(
    ("plugin", "taken"),
    [
        (TakesRelu(), "op `relu` is already registered by `modelspec.ops.builtin`"),
        (TakesAdam(), "component `optimizer adam` is already registered by `modelspec.train.components`"),
        (TakesTorchLowering(), "is already registered by `torch`"),
    ],
)
def test_registering_a_taken_name_raises_naming_it_and_registers_nothing(fresh_manager, plugin, taken):
    with pytest.raises(modelspec.PluginError, match="the plugin `taker` cannot be registered: ") as caught:
        modelspec.register_plugin(plugin, name="taker")
    assert taken in str(caught.value)
    registry = plugins.registry()
    assert "taker" not in registry.info and registry.problems == []
    assert registry.op("scale") is None and registry.op_owner["relu"] == "modelspec.ops.builtin"
    assert modelspec.register_plugin(ScalePlugin(), name="taker") == "taker"  # the name is free again


def test_an_isolated_manager_does_not_touch_the_process_registry():
    manager = modelspec.PluginManager(entry_points=False)
    manager.register(ScalePlugin(), name="scale-plugin")
    assert manager.registry.op("scale") is not None
    assert plugins.registry().op("scale") is None


def test_compiling_an_op_no_backend_lowers_names_op_and_backends(fresh_manager):
    from modelspec.diagnostics import CompileError

    modelspec.register_plugin(ScalePlugin(), name="scale-plugin")
    with pytest.raises(CompileError) as caught:
        modelspec.compile_source(SPEC, "Scaled")
    [d] = caught.value.diagnostics
    assert d.code == "E0603" and "`scale`" in d.message and "torch" in d.message
