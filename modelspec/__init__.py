"""modelspec: a declarative model-spec compiler for deep learning.

The public API (see `modelspec.api`): `load`, `check`, `Program.summary`.
"""

from modelspec.api import SpecError, check, load
from modelspec.diagnostics import Diagnostic

__all__ = ["Diagnostic", "SpecError", "check", "load"]
__version__ = "0.1.0"
