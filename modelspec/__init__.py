"""modelspec: a declarative model-spec compiler for deep learning.

The public API (see `modelspec.api`): `load`, `check`, `Program.summary`,
`compile_source`, `build`.
"""

from modelspec.api import SpecError, build, check, compile_source, load
from modelspec.diagnostics import Diagnostic

__all__ = ["Diagnostic", "SpecError", "build", "check", "compile_source", "load"]
__version__ = "0.1.0"
