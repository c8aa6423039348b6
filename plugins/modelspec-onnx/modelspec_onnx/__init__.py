"""modelspec-onnx: an ONNX backend for modelspec that writes `.onnx` files straight from the IR.

    mspec compile specs/cnn.mspec -b onnx -o cnn.onnx [--checkpoint runs/.../step-00001200]

    from modelspec_onnx import export, save
    save(export(modelspec.load("specs/cnn.mspec"), "CNN"), "cnn.onnx")

Nothing here imports torch. Importing the package imports nothing heavy
either: modelspec imports `modelspec_onnx.plugin` on every command (even
`mspec check`), so onnx and numpy load only when something here is used.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["CheckpointError", "SaveError", "export", "parameters", "save"]

_WHERE = {
    "export": "exporter",
    "parameters": "exporter",
    "save": "exporter",
    "SaveError": "exporter",
    "CheckpointError": "weights",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"modelspec_onnx.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'modelspec_onnx' has no attribute {name!r}")
