"""modelspec: a declarative model-spec compiler for deep learning.

The public API (see `modelspec.api`): `load`, `check`, `Program.summary`,
`compile_source`, `build`; plugins (see `modelspec.plugins`): `PluginManager`,
`register_plugin` (embed a plugin object without packaging it), `hookimpl`.
"""

from modelspec.api import SpecError, build, check, compile_source, load
from modelspec.diagnostics import Diagnostic
from modelspec.hookspec import hookimpl
from modelspec.plugins import PluginError, PluginManager, plugin_manager, register_plugin, unregister_plugin

__all__ = [
    "Diagnostic",
    "PluginError",
    "PluginManager",
    "SpecError",
    "build",
    "check",
    "compile_source",
    "hookimpl",
    "load",
    "plugin_manager",
    "register_plugin",
    "unregister_plugin",
]
__version__ = "0.1.0"
