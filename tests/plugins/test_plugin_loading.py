"""Discovery and loading: every way a third-party plugin can be broken is
reported naming it, and everything else keeps working."""

from __future__ import annotations

import sys

import pytest

from modelspec.plugins import BUILTIN_PLUGINS, PluginManager


def test_an_installed_plugin_is_discovered_with_its_distribution(fake_site):
    fake_site.add("doubler", fake_site.GOOD_OP, dist="mspec-doubler", version="1.2.3")
    registry = PluginManager().registry
    assert registry.op("double") is not None
    assert registry.op_owner["double"] == "doubler"
    info = registry.info["doubler"]
    assert (info.origin, info.distribution, info.version) == ("entry point", "mspec-doubler", "1.2.3")
    assert info.location and info.location.endswith(".py")
    assert {"doubler", "mspec-doubler"} <= registry.plugins  # what `use "..."` may name
    assert registry.problems == []


def test_a_plugin_that_fails_to_import_is_named_and_the_rest_loads(fake_site):
    fake_site.add("broken", "import no_such_module_anywhere\n")
    fake_site.add("doubler", fake_site.GOOD_OP)
    registry = PluginManager().registry
    assert registry.op("double") is not None and registry.op("linear") is not None
    [problem] = registry.problems
    assert problem.plugin == "broken"
    assert "cannot be imported" in problem.message and "no_such_module_anywhere" in problem.message
    assert not registry.info["broken"].loaded
    assert "broken" not in registry.plugins


def test_a_plugin_that_exits_while_importing_does_not_stop_modelspec(fake_site):
    fake_site.add("quitter", "raise SystemExit(3)\n")
    registry = PluginManager().registry
    assert [p.plugin for p in registry.problems] == ["quitter"]
    assert registry.op("linear") is not None


def test_a_hook_that_raises_is_named_with_the_hook(fake_site):
    fake_site.add(
        "raiser",
        """
        from modelspec.hookspec import hookimpl

        @hookimpl
        def mspec_ops():
            raise RuntimeError("boom")
        """,
    )
    registry = PluginManager().registry
    [problem] = registry.problems
    assert problem.plugin == "raiser"
    assert "`mspec_ops` raised RuntimeError: boom" in problem.message
    assert len([o for o in registry.op_owner.values() if o == "modelspec.ops.builtin"]) == 45


def test_a_name_already_taken_names_both_plugins_and_the_name(fake_site):
    fake_site.add(
        "thief",
        """
        from modelspec.hookspec import hookimpl
        from modelspec.ops.linear import Linear

        @hookimpl
        def mspec_ops():
            return [Linear()]
        """,
    )
    registry = PluginManager().registry
    [problem] = registry.problems
    assert problem.plugin == "thief"
    assert "op `linear` is already registered by `modelspec.ops.builtin`" in problem.message
    assert registry.op_owner["linear"] == "modelspec.ops.builtin"  # the first registration stays


HIJACK = """
    from modelspec.hookspec import hookimpl


    class Hijack:
        name = "torch"
        description = "not modelspec's"
        file_suffix = ".py"

        def generate(self, program, model):
            return "hijacked"


    @hookimpl
    def mspec_backends():
        return [Hijack()]
"""


def test_a_package_sorting_before_modelspec_cannot_take_a_builtin_name(fake_site):
    module = fake_site.add("torch", HIJACK, dist="aaa-hijack")
    registry = PluginManager().registry
    assert registry.info["torch"].distribution == "modelspec" and registry.info["torch"].builtin
    assert registry.backend("torch").description != "not modelspec's"
    [problem] = registry.problems
    assert problem.plugin == "torch"
    assert "taken by modelspec's built-in `modelspec_torch.plugin`" in problem.message
    assert f"aaa-hijack's entry point `{module}` was not loaded" in problem.message
    assert module not in sys.modules


def test_the_allowlist_applies_before_the_name_clash(fake_site, monkeypatch):
    module = fake_site.add("torch", HIJACK, dist="aaa-hijack")
    for manager in (PluginManager(allow=()), PluginManager(allow=("doubler",))):
        registry = manager.registry
        assert registry.problems == []  # left out: it loads nothing, so it clashes with nothing
        assert registry.info["torch"].builtin and registry.backend("torch").description != "not modelspec's"
    monkeypatch.setenv("MSPEC_LOAD_PLUGINS", "aaa-hijack")  # allowed: then it is a clash, and the built-in wins
    registry = PluginManager().registry
    assert [p.plugin for p in registry.problems] == ["torch"] and registry.info["torch"].builtin
    assert module not in sys.modules


def test_a_plugin_left_out_says_by_what(fake_site, monkeypatch):
    fake_site.add("doubler", fake_site.GOOD_OP)
    assert "MSPEC_LOAD_PLUGINS" not in PluginManager(allow=()).registry.info["doubler"].reason
    reason = PluginManager(allow=(), left_out="off (`--no-plugins`)").registry.info["doubler"].reason
    assert reason == "not loaded: off (`--no-plugins`)"
    monkeypatch.setenv("MSPEC_LOAD_PLUGINS", "")
    assert PluginManager().registry.info["doubler"].reason == "not loaded: not listed in MSPEC_LOAD_PLUGINS"


def test_builtin_modules_carry_modelspecs_distribution_version_and_file():
    import modelspec

    registry = PluginManager(entry_points=False).registry
    for name in BUILTIN_PLUGINS:
        info = registry.info[name]
        assert (info.distribution, info.version) == ("modelspec", modelspec.__version__)
        assert info.location == sys.modules[name].__file__ and info.location.endswith(".py")


def test_two_third_party_plugins_claiming_one_op(fake_site):
    fake_site.add("first", fake_site.GOOD_OP, dist="aaa-first")
    fake_site.add("second", fake_site.GOOD_OP, dist="bbb-second")
    registry = PluginManager().registry
    assert registry.op_owner["double"] == "first"
    [problem] = registry.problems
    assert problem.plugin == "second" and "`double` is already registered by `first`" in problem.message


def test_a_hook_implementation_with_a_wrong_signature_is_rejected_at_load(fake_site):
    fake_site.add(
        "badsig",
        """
        from modelspec.hookspec import hookimpl

        @hookimpl
        def mspec_ops(config):
            return []
        """,
    )
    manager = PluginManager()
    [problem] = manager.registry.problems
    assert problem.plugin == "badsig"
    assert "does not fit its specification" in problem.message and "config" in problem.message
    assert not manager.registry.info["badsig"].loaded
    assert manager.hooks.get_plugin("badsig") is None


def test_an_unknown_hook_name_is_rejected_at_load_naming_it(fake_site):
    fake_site.add(
        "typo",
        """
        from modelspec.hookspec import hookimpl

        @hookimpl
        def mspec_op():
            return []
        """,
    )
    [problem] = PluginManager().registry.problems
    assert problem.plugin == "typo" and "`mspec_op`" in problem.message and "mspec_ops" in problem.message


def test_a_hook_returning_the_wrong_things_is_reported_and_the_good_ones_kept(fake_site):
    fake_site.add(
        "sloppy",
        """
        from modelspec.hookspec import hookimpl
        from modelspec.ops.base import OpSpec

        class Fine(OpSpec):
            name = "fine"
            def infer(self, inputs, args):
                return inputs[0]

        @hookimpl
        def mspec_ops():
            return ["not an op", Fine()]

        @hookimpl
        def mspec_backends():
            return 42
        """,
    )
    registry = PluginManager().registry.load_all()
    assert registry.op("fine") is not None
    messages = sorted(p.message for p in registry.problems)
    assert len(messages) == 2
    assert "`mspec_backends` must return a list, not int" in messages[0]
    assert "`mspec_ops` returned 'not an op', which is not an `OpSpec`" in messages[1]


def test_allowlist_loads_only_the_named_plugins(fake_site, monkeypatch):
    fake_site.add("doubler", fake_site.GOOD_OP, dist="mspec-doubler")
    fake_site.add("broken", "import no_such_module_anywhere\n")
    monkeypatch.setenv("MSPEC_LOAD_PLUGINS", " mspec-doubler ,")  # by distribution name, spaces ignored
    registry = PluginManager().registry
    assert registry.op("double") is not None
    assert registry.problems == []  # the broken one was never imported
    assert "MSPEC_LOAD_PLUGINS" in registry.info["broken"].reason
    monkeypatch.setenv("MSPEC_LOAD_PLUGINS", "doubler")  # by entry-point name
    assert PluginManager().registry.op("double") is not None


def test_an_empty_allowlist_loads_no_third_party_plugin_but_every_builtin(fake_site, monkeypatch):
    fake_site.add("doubler", fake_site.GOOD_OP)
    monkeypatch.setenv("MSPEC_LOAD_PLUGINS", "")
    registry = PluginManager().registry
    assert registry.op("double") is None
    assert not registry.info["doubler"].loaded
    assert registry.backend("torch") is not None  # the torch backend is modelspec's own entry point
    assert registry.info["torch"].builtin
    assert len(registry.ops) == 45


def test_builtins_come_through_the_hooks_only():
    # Without the built-in plugin modules registered, modelspec knows no op and no optimizer:
    # nothing reaches the registry except through the hooks.
    manager = PluginManager(entry_points=False)
    for name in BUILTIN_PLUGINS:
        manager.unregister(name)
    registry = manager.registry
    assert registry.ops == {} and registry.components == {} and registry.backends == {}
    full = PluginManager(allow=()).registry
    assert set(full.op_owner.values()) == {"modelspec.ops.builtin"}
    assert set(full.component_owner.values()) == {"modelspec.train.components"}
    assert set(full.backend_owner.values()) == set(full.lowering_owner.values()) == {"torch"}


SMALL = "model M() {\n    input x: float[B, 4]\n    output y = x |> linear(3) |> relu\n}\n"


def test_without_the_hooks_nothing_compiles_or_builds(monkeypatch):
    # No private fallback: with an empty registry the torch backend has no lowering, and there is no backend.
    import modelspec
    from modelspec import plugins
    from modelspec.diagnostics import CompileError
    from modelspec_torch.build import build
    from modelspec_torch.codegen import generate_source

    program = modelspec.load(SMALL, name="m.mspec")  # checked with the built-in ops
    manager = PluginManager(entry_points=False)
    for name in BUILTIN_PLUGINS:
        manager.unregister(name)
    empty = manager.registry
    with pytest.raises(CompileError) as caught:
        generate_source(program, "M", registry=empty)
    assert [d.code for d in caught.value.diagnostics] == ["E0603"]
    assert "`linear` has no lowering in the `torch` backend" in caught.value.diagnostics[0].message
    monkeypatch.setattr(plugins, "registry", lambda: empty)
    with pytest.raises(CompileError) as caught:
        build(program, "M")
    assert [d.code for d in caught.value.diagnostics] == ["E0603"]
    with pytest.raises(ValueError, match="no backend named 'torch'"):
        modelspec.build(program, "M")
    with pytest.raises(ValueError, match="no backend named 'torch'"):
        modelspec.compile_source(program, "M")


def test_training_finds_the_torch_backend_through_the_registry(tmp_path, monkeypatch):
    from modelspec import plugins
    from modelspec.api import compile_program
    from modelspec.train.loop import Options, Trainer, TrainError

    spec = tmp_path / "m.mspec"
    spec.write_text(
        SMALL + "train t {\n    model M()\n    data synthetic(batch=4, samples=8)\n"
        "    loss mse(y, y)\n    optimizer sgd(lr=0.1)\n    epochs 1\n}\n",
        encoding="utf-8",
    )
    program, diagnostics, _ = compile_program(spec)
    assert diagnostics == []
    monkeypatch.setattr(plugins, "registry", lambda: PluginManager(entry_points=False).registry)  # no torch
    with pytest.raises(TrainError, match="training needs the torch backend: no backend named 'torch'"):
        Trainer(program, program.trains["t"], Options(out=tmp_path / "runs", progress=False)).run()
