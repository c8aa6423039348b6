"""modelspec: a declarative model-spec compiler for deep learning.

The public API (see `modelspec.api`): `load`, `check`, `Program.summary`,
`compile_source`, `build`, `train`; plugins (see `modelspec.plugins`): `PluginManager`,
`register_plugin` (embed a plugin object without packaging it), `hookimpl`.

`modelspec.train(...)` runs a `train` block (`modelspec.api.train`); the same
name is the training runtime's package, whose module is callable (see
`modelspec/train/__init__.py`), so `modelspec.train.loop` works too.
"""

from modelspec import train  # the training package, callable: modelspec.train(path) (see above)
from modelspec.api import SpecError, TrainSetupError, build, check, compile_source, load
from modelspec.diagnostics import Diagnostic
from modelspec.hookspec import hookimpl
from modelspec.plugins import (
    PluginError,
    PluginManager,
    plugin_manager,
    register_plugin,
    unregister_plugin,
)

__all__ = [
    "Diagnostic",
    "PluginError",
    "PluginManager",
    "SpecError",
    "TrainSetupError",
    "build",
    "check",
    "compile_source",
    "hookimpl",
    "load",
    "plugin_manager",
    "register_plugin",
    "train",
    "unregister_plugin",
]
__version__ = "0.1.0"
