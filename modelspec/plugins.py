"""The plugin manager and the registry built from its hooks.

Everything modelspec knows how to do comes through the hooks of
`modelspec.hookspec`: the built-in ops and train components are plain
modules registered first (`BUILTIN_PLUGINS`), the built-in torch backend is
an entry point of modelspec's own distribution, and third-party packages
are entry points of the group `modelspec`. No other path exists.

A broken plugin never stops the others: a module that fails to import, a
hook implementation with a wrong signature or an unknown hook name, a hook
that raises or returns something that is not what its spec asks for, and a
name that another plugin already registered are each recorded as a
`PluginProblem` naming the plugin, and the rest of the registry is built.

`MSPEC_LOAD_PLUGINS` (a comma-separated allowlist of entry-point or
distribution names; empty: none) and `mspec --no-plugins` start without
third-party plugins; the built-ins always load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field

import pluggy

from modelspec import hookspec

# Modules that implement the built-in hooks, in registration order.
BUILTIN_PLUGINS = (
    "modelspec.ops.builtin",
    "modelspec.train.components",
)
# The distribution whose own entry points (the torch backend) are built-in.
BUILTIN_DISTRIBUTION = "modelspec"
ALLOWLIST_VARIABLE = "MSPEC_LOAD_PLUGINS"


@dataclass(frozen=True)
class Provider:
    """A plugin package we know of, for "install X" hints when it is missing."""

    package: str
    ops: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()  # (kind, name)
    backends: tuple[str, ...] = ()

    @property
    def install(self) -> str:
        return f"pip install {self.package}  (from a modelspec checkout: pip install plugins/{self.package})"


# The plugin packages maintained beside modelspec, by the name a spec's `use "..."` gives.
KNOWN_PROVIDERS = {
    "swiglu": Provider("modelspec-swiglu", ops=("swiglu",)),
    "lion": Provider("modelspec-lion", components=(("optimizer", "lion"),)),
    "onnx": Provider("modelspec-onnx", backends=("onnx",)),
}


@dataclass
class PluginProblem:
    plugin: str
    message: str
    hook: str | None = None  # the hook whose result was wrong; None: the plugin did not load

    @property
    def may_hide_a_backend(self) -> bool:
        """Whether this problem could be why a backend is missing."""
        return self.hook in (None, "mspec_backends")

    def __str__(self) -> str:
        return f"plugin `{self.plugin}`: {self.message}"


@dataclass
class PluginInfo:
    """Where a plugin came from, for `mspec plugins` and diagnostics."""

    name: str
    origin: str  # "built-in", "entry point", "registered at run time"
    distribution: str | None = None
    version: str | None = None
    target: str | None = None  # the module (entry point value) or object
    location: str | None = None
    loaded: bool = True
    reason: str = ""  # why it is not loaded

    @property
    def builtin(self) -> bool:
        return self.origin == "built-in"


@dataclass
class Registry:
    ops: dict = field(default_factory=dict)  # name -> OpSpec
    op_owner: dict = field(default_factory=dict)  # name -> plugin name
    components: dict = field(default_factory=dict)  # (kind, name) -> Component
    component_owner: dict = field(default_factory=dict)
    problems: list[PluginProblem] = field(default_factory=list)
    plugins: set[str] = field(default_factory=set)  # names a spec's `use "..."` may require
    info: dict[str, PluginInfo] = field(default_factory=dict)  # every plugin seen, loaded or not
    # Backends and lowerings are collected on first use: their modules may be
    # heavy (onnx, numpy), and checking a spec never needs them.
    _backend_tables: dict | None = field(default=None, repr=False)
    _collect_backends: object = field(default=None, repr=False)

    def _backend_table(self, name: str) -> dict:
        if self._backend_tables is None:
            self._backend_tables = {"backends": {}, "backend_owner": {}, "lowerings": {}, "lowering_owner": {}}
            if self._collect_backends is not None:
                self._collect_backends(self)
        return self._backend_tables[name]

    @property
    def backends(self) -> dict:  # name -> backend object
        return self._backend_table("backends")

    @property
    def backend_owner(self) -> dict:
        return self._backend_table("backend_owner")

    @property
    def lowerings(self) -> dict:  # (backend, op) -> lowering
        return self._backend_table("lowerings")

    @property
    def lowering_owner(self) -> dict:
        return self._backend_table("lowering_owner")

    def load_all(self) -> Registry:
        """Collect the lazily collected tables too (and so their problems)."""
        self._backend_table("backends")
        return self

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

    def is_builtin(self, plugin: str) -> bool:
        info = self.info.get(plugin)
        return info is not None and info.builtin

    def describe(self, plugin: str) -> str:
        """`name (distribution version)` for messages."""
        info = self.info.get(plugin)
        if info is None or not info.distribution:
            return f"`{plugin}`"
        return f"`{plugin}` ({info.distribution} {info.version or ''})".replace(" )", ")")

    def problems_of(self, plugin: str) -> list[PluginProblem]:
        return [p for p in self.problems if p.plugin == plugin]

    def why_missing(self, plugin: str) -> str | None:
        """For a plugin a spec requires that did not load: why, when known."""
        for name, info in self.info.items():
            if plugin in (name, info.distribution, _normalise(info.distribution or "")):
                if not info.loaded:
                    return info.reason
        return None

    def hint(self, *, plugin: str | None = None, op: str | None = None, component=None, backend=None) -> str | None:
        """Which package provides a missing plugin, op, component or backend, when known."""
        for use_name, provider in KNOWN_PROVIDERS.items():
            if (
                plugin in (use_name, provider.package)
                or op in provider.ops
                or component in provider.components
                or backend in provider.backends
            ):
                why = self.why_missing(use_name) or self.why_missing(provider.package)
                if why:
                    return f"the plugin `{use_name}` ({provider.package}) is installed but {why}"
                return f"provided by the plugin package `{provider.package}`: {provider.install}"
        return None


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def allowlist_from_environment() -> frozenset[str] | None:
    """`MSPEC_LOAD_PLUGINS`: None when unset (load all), else the names it lists."""
    value = os.environ.get(ALLOWLIST_VARIABLE)
    if value is None:
        return None
    return frozenset(name.strip() for name in value.split(",") if name.strip())


class PluginError(Exception):
    """A plugin object given to `PluginManager.register` cannot be registered."""


class PluginManager:
    """The pluggy manager with where each plugin came from.

    `PluginManager()` loads the built-ins and the installed entry points
    (filtered by `allow`, default: `MSPEC_LOAD_PLUGINS`); `register(obj)`
    adds a plugin object at run time without packaging it; `registry` is
    what the compiler reads, rebuilt after every change.
    """

    def __init__(
        self,
        *,
        entry_points: bool = True,
        allow: Collection[str] | None = None,
        use_environment=True,
        left_out: str | None = None,
    ):
        """`left_out`: why a plugin that `allow` leaves out is not loaded, as
        `mspec plugins` and E0104 say it (`mspec --no-plugins` gives its own)."""
        self.hooks = pluggy.PluginManager(hookspec.PROJECT)
        self.hooks.add_hookspecs(hookspec)
        self.info: dict[str, PluginInfo] = {}
        self.problems: list[PluginProblem] = []
        self._registry: Registry | None = None
        from modelspec import __version__

        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            info = PluginInfo(
                module_name,
                "built-in",
                distribution=BUILTIN_DISTRIBUTION,
                version=__version__,
                target=module_name,
                location=getattr(module, "__file__", None),
            )
            self._register(module, module_name, info)
        if left_out is None:
            left_out = "not in the allowlist given to the PluginManager (`allow`)"
        if use_environment and allow is None:
            allow = allowlist_from_environment()
            left_out = f"not listed in {ALLOWLIST_VARIABLE}"
        self._left_out = left_out
        if entry_points:
            self.load_entry_points(allow)

    # ---- loading ---------------------------------------------------------------------

    def load_entry_points(self, allow: Collection[str] | None = None) -> None:
        """Import and register every entry point of the group `modelspec`.

        Entry points of modelspec's own distribution are built-in and always
        load; others only when `allow` is None or names them.
        """
        allowed = None if allow is None else {_normalise(a) for a in allow}

        def distribution(entry) -> str:
            return entry.dist.name if entry.dist else ""

        def is_builtin(entry) -> bool:
            return _normalise(distribution(entry)) == BUILTIN_DISTRIBUTION

        # modelspec's own entry points first: no installed package can take a built-in's name.
        for entry in sorted(_entry_points(), key=lambda e: (not is_builtin(e), distribution(e), e.name)):
            dist = entry.dist.name if entry.dist else None
            builtin = is_builtin(entry)
            info = PluginInfo(
                entry.name,
                "built-in" if builtin else "entry point",
                distribution=dist,
                version=entry.dist.version if entry.dist else None,
                target=entry.value,
            )
            listed = allowed is None or {_normalise(entry.name), _normalise(dist or "")} & allowed
            if not builtin and not listed:
                # Left out by the allowlist: it loads nothing, so it cannot clash with anything.
                if entry.name not in self.info:
                    info.loaded, info.reason = False, f"not loaded: {self._left_out}"
                    self.info[entry.name] = info
                continue
            if entry.name in self.info:
                first = self.info[entry.name]
                if (first.distribution, first.target) == (dist, entry.value):
                    continue  # the same distribution found twice on sys.path
                owner = first.distribution or first.origin
                if first.builtin:
                    owner = f"modelspec's built-in `{first.target or first.name}`"
                self.problems.append(
                    PluginProblem(
                        entry.name,
                        f"the name is taken by {owner}; {dist}'s entry point `{entry.value}` was not loaded",
                    )
                )
                continue
            try:
                plugin = entry.load()
            except BaseException as exc:  # any failure of third-party code, even SystemExit
                if isinstance(exc, KeyboardInterrupt):
                    raise
                info.loaded, info.reason = False, f"failed to load: {type(exc).__name__}: {exc}"
                self.info[entry.name] = info
                self.problems.append(PluginProblem(entry.name, f"cannot be imported ({type(exc).__name__}: {exc})"))
                continue
            info.location = getattr(plugin, "__file__", None)
            try:
                self._register(plugin, entry.name, info)
            except PluginError as exc:
                info.loaded, info.reason = False, f"was rejected: {exc}"
                self.info[entry.name] = info
                self.problems.append(PluginProblem(entry.name, str(exc)))

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object (a module, class or instance with hook
        implementations) at run time; returns its name. Raises PluginError
        when its hook implementations do not fit the hook specifications, or
        when a name it registers (an op, a component...) is already taken."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.info:
            raise PluginError(f"a plugin named `{name}` is already registered ({self.info[name].origin})")
        self._register(plugin, name, PluginInfo(name, "registered at run time", target=repr(plugin)))
        taken = self._taken(name)
        if taken:
            # At run time the caller is there to hear it: refuse rather than record a problem.
            self.unregister(name)
            raise PluginError(f"the plugin `{name}` cannot be registered: {'; '.join(taken)}")
        return name

    def _taken(self, name: str) -> list[str]:
        """The names plugin `name` registers that another plugin, registered before it, holds."""
        current = self.registry
        taken = []
        for hook_name, _, owners, key_of, what, valid, _ in HOOK_TABLES:
            impls = [i for i in getattr(self.hooks.hook, hook_name).get_hookimpls() if i.plugin_name == name]
            for impl in impls:  # none: a lazily collected table (backends) is not collected for nothing
                try:
                    items = impl.function()
                except Exception:
                    continue  # the registry reports it as this plugin's problem
                for item in items if isinstance(items, list | tuple) else ():
                    owner = getattr(current, owners).get(key_of(item)) if valid(item) else None
                    if owner is not None and owner != name:
                        key = key_of(item)
                        shown = key if isinstance(key, str) else " ".join(key)
                        taken.append(f"{what} `{shown}` is already registered by `{owner}`")
        return taken

    def unregister(self, name: str) -> None:
        plugin = self.hooks.get_plugin(name)
        if plugin is not None:
            self.hooks.unregister(plugin, name=name)
        self.info.pop(name, None)
        self._registry = None

    def _register(self, plugin: object, name: str, info: PluginInfo) -> None:
        try:
            self.hooks.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"has a hook implementation that does not fit its specification: {exc}") from None
        except ValueError as exc:  # pluggy: the object or name is registered already
            raise PluginError(str(exc)) from None
        unknown = [c.name for c in self.hooks.get_hookcallers(plugin) or [] if not c.has_spec()]
        if unknown:
            self.hooks.unregister(plugin, name=name)
            known = ", ".join(n for n in dir(hookspec) if n.startswith("mspec_"))
            raise PluginError(
                f"implements {', '.join(f'`{u}`' for u in unknown)}, not a modelspec hook (hooks: {known})"
            )
        if not self.hooks.get_hookcallers(plugin):
            self.hooks.unregister(plugin, name=name)
            raise PluginError("implements no modelspec hook (mark its functions with `modelspec.hookspec.hookimpl`)")
        self.info[name] = info
        self._registry = None

    # ---- what the compiler reads ----------------------------------------------------

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = build_registry(self.hooks, self.info, self.problems)
        return self._registry


def _entry_points():
    return importlib.metadata.entry_points(group=hookspec.PROJECT)


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """A bare pluggy manager with the built-ins (and entry points): for tests."""
    return PluginManager(entry_points=load_entry_points).hooks


# ---- building the registry from the hooks ----------------------------------------------


def _is_op(item) -> bool:
    from modelspec.ops.base import OpSpec

    return isinstance(item, OpSpec) and isinstance(getattr(item, "name", None), str) and item.name.isidentifier()


def _is_component(item) -> bool:
    from modelspec.train.components import Component

    return isinstance(item, Component) and isinstance(item.name, str) and isinstance(item.kind, str)


def _is_backend(item) -> bool:
    return isinstance(getattr(item, "name", None), str) and callable(getattr(item, "generate", None))


def _is_lowering(item) -> bool:
    return isinstance(getattr(item, "backend", None), str) and isinstance(getattr(item, "op", None), str)


HOOK_TABLES = (
    # hook, registry table, owner table, key of an item, what it is, the check an item must pass, expected
    ("mspec_ops", "ops", "op_owner", lambda op: op.name, "op", _is_op, "an `OpSpec` with a name"),
    (
        "mspec_train_components",
        "components",
        "component_owner",
        lambda c: (c.kind, c.name),
        "component",
        _is_component,
        "a `Component`",
    ),
    ("mspec_backends", "backends", "backend_owner", lambda b: b.name, "backend", _is_backend, "a backend"),
    (
        "mspec_lowerings",
        "lowerings",
        "lowering_owner",
        lambda lw: (lw.backend, lw.op),
        "lowering",
        _is_lowering,
        "a lowering (with `backend` and `op`)",
    ),
)


def build_registry(
    pm: pluggy.PluginManager, info: dict[str, PluginInfo] | None = None, problems: list[PluginProblem] | None = None
) -> Registry:
    registry = Registry(problems=list(problems or []), info=dict(info or {}))
    for name, plugin in pm.list_name_plugin():
        registry.plugins.add(name)
        known = registry.info.get(name)
        if known is not None and known.distribution:
            registry.plugins.add(known.distribution)
            registry.plugins.add(_normalise(known.distribution))
        registry.info.setdefault(name, PluginInfo(name, "registered at run time", target=repr(plugin)))

    def collect(registry: Registry, hooks: tuple) -> None:
        for hook_name, table, owners, key_of, what, valid, expected in hooks:
            hook = getattr(pm.hook, hook_name)
            _collect(hook, registry, getattr(registry, table), getattr(registry, owners), key_of, what, valid, expected)

    collect(registry, HOOK_TABLES[:2])  # ops and train components: every command needs them
    registry._collect_backends = lambda r: collect(r, HOOK_TABLES[2:])
    return registry


def _collect(hook, registry: Registry, table: dict, owners: dict, key_of, what: str, valid, expected: str) -> None:
    """Gather one hook's registrations; a raising plugin, a wrong item or a taken name is a problem, not a crash."""
    for impl in hook.get_hookimpls():
        owner = impl.plugin_name
        try:
            items = impl.function()
        except Exception as exc:
            registry.problems.append(
                PluginProblem(owner, f"`{hook.name}` raised {type(exc).__name__}: {exc}", hook.name)
            )
            continue
        if items is None:
            continue
        if not isinstance(items, list | tuple):
            registry.problems.append(
                PluginProblem(owner, f"`{hook.name}` must return a list, not {type(items).__name__}", hook.name)
            )
            continue
        for item in items:
            if not valid(item):
                registry.problems.append(
                    PluginProblem(
                        owner, f"`{hook.name}` returned {item!r:.80}, which is not {expected}; ignored", hook.name
                    )
                )
                continue
            key = key_of(item)
            if key in table:
                shown = key if isinstance(key, str) else " ".join(key)
                taken = f"{what} `{shown}` is already registered by `{owners[key]}`; this one is ignored"
                registry.problems.append(PluginProblem(owner, taken, hook.name))
                continue
            table[key] = item
            owners[key] = owner


# ---- the process-wide manager ----------------------------------------------------------

_default: PluginManager | None = None
_default_options: dict = {}


def configure(*, entry_points: bool = True, allow: Collection[str] | None = None, left_out: str | None = None) -> None:
    """Set how the process-wide manager loads plugins (`mspec --no-plugins`
    calls `configure(allow=(), left_out=...)`); takes effect on next use."""
    global _default
    _default = None
    _default_options.clear()
    _default_options.update(entry_points=entry_points, allow=allow, left_out=left_out)


def plugin_manager() -> PluginManager:
    """The process-wide plugin manager (built on first use)."""
    global _default
    if _default is None:
        _default = PluginManager(**_default_options)
    return _default


def registry() -> Registry:
    """The process-wide registry."""
    return plugin_manager().registry


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object with the process-wide manager (embedding: no packaging needed)."""
    return plugin_manager().register(plugin, name)


def unregister_plugin(name: str) -> None:
    plugin_manager().unregister(name)
