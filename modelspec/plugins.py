"""The plugin manager and the registry built from its hooks.

`registry()` collects every op and train component from the registered
plugins once per process. Built-ins are registered first, through the same
hooks; then installed packages from the entry-point group `modelspec`.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field

import pluggy

from modelspec import hookspec

# Modules that implement the built-in hooks, in registration order.
BUILTIN_PLUGINS = (
    "modelspec.ops.builtin",
    "modelspec.train.components",
)


@dataclass
class PluginProblem:
    plugin: str
    message: str


@dataclass
class Registry:
    ops: dict = field(default_factory=dict)  # name -> OpSpec
    op_owner: dict = field(default_factory=dict)  # name -> plugin name
    components: dict = field(default_factory=dict)  # (kind, name) -> Component
    component_owner: dict = field(default_factory=dict)
    problems: list[PluginProblem] = field(default_factory=list)
    plugins: set[str] = field(default_factory=set)  # names a spec's `use "..."` may require
    backends: dict = field(default_factory=dict)  # name -> backend object
    backend_owner: dict = field(default_factory=dict)
    lowerings: dict = field(default_factory=dict)  # (backend, op) -> lowering
    lowering_owner: dict = field(default_factory=dict)

    def backend(self, name: str):
        return self.backends.get(name)

    def backends_lowering(self, op: str) -> list[str]:
        return sorted(b for b, o in self.lowerings if o == op)

    def op(self, name: str):
        return self.ops.get(name)

    def component(self, kind: str, name: str):
        return self.components.get((kind, name))

    def component_names(self, kind: str) -> list[str]:
        return sorted(n for k, n in self.components if k == kind)


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspec.PROJECT)
    pm.add_hookspecs(hookspec)
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points:
        try:
            pm.load_setuptools_entrypoints(hookspec.PROJECT)
        except Exception:  # a broken third-party plugin must not stop the built-ins
            pass
    return pm


def build_registry(pm: pluggy.PluginManager) -> Registry:
    registry = Registry()
    for name, plugin in pm.list_name_plugin():
        registry.plugins.add(name)
        dist = pm.get_plugin(name) and dict(pm.list_plugin_distinfo()).get(plugin)
        if dist is not None:
            registry.plugins.add(dist.project_name)
    for impl in pm.hook.mspec_ops.get_hookimpls():
        owner = impl.plugin_name
        try:
            ops = impl.function() or []
        except Exception as exc:
            registry.problems.append(PluginProblem(owner, f"`mspec_ops` raised {type(exc).__name__}: {exc}"))
            continue
        for op in ops:
            if op.name in registry.ops:
                registry.problems.append(
                    PluginProblem(
                        owner,
                        f"op `{op.name}` is already registered by `{registry.op_owner[op.name]}`",
                    )
                )
                continue
            registry.ops[op.name] = op
            registry.op_owner[op.name] = owner
    for impl in pm.hook.mspec_train_components.get_hookimpls():
        owner = impl.plugin_name
        try:
            components = impl.function() or []
        except Exception as exc:
            registry.problems.append(
                PluginProblem(owner, f"`mspec_train_components` raised {type(exc).__name__}: {exc}")
            )
            continue
        for component in components:
            key = (component.kind, component.name)
            if key in registry.components:
                registry.problems.append(
                    PluginProblem(
                        owner,
                        f"{component.kind} `{component.name}` is already registered by "
                        f"`{registry.component_owner[key]}`",
                    )
                )
                continue
            registry.components[key] = component
            registry.component_owner[key] = owner
    _collect(pm.hook.mspec_backends, registry, registry.backends, registry.backend_owner, lambda b: b.name, "backend")
    _collect(
        pm.hook.mspec_lowerings,
        registry,
        registry.lowerings,
        registry.lowering_owner,
        lambda lw: (lw.backend, lw.op),
        "lowering",
    )
    return registry


def _collect(hook, registry: Registry, table: dict, owners: dict, key_of, what: str) -> None:
    """Gather one hook's registrations; a raising plugin or a taken name is a problem, not a crash."""
    for impl in hook.get_hookimpls():
        owner = impl.plugin_name
        try:
            items = impl.function() or []
        except Exception as exc:
            registry.problems.append(PluginProblem(owner, f"`{hook.name}` raised {type(exc).__name__}: {exc}"))
            continue
        for item in items:
            key = key_of(item)
            if key in table:
                taken = f"{what} {key!r} is already registered by `{owners[key]}`"
                registry.problems.append(PluginProblem(owner, taken))
                continue
            table[key] = item
            owners[key] = owner


@functools.cache
def registry() -> Registry:
    """The process-wide registry (built on first use)."""
    return build_registry(make_plugin_manager())
