"""modelspec-onnx: an ONNX backend for modelspec that writes `.onnx` files straight from the IR.

    mspec compile specs/cnn.mspec -b onnx -o cnn.onnx [--checkpoint runs/.../step-00001200]

    from modelspec_onnx import export, save
    save(export(modelspec.load("specs/cnn.mspec"), "CNN"), "cnn.onnx")

Nothing here imports torch.
"""

from modelspec_onnx.export import export, parameters, save
from modelspec_onnx.weights import CheckpointError

__version__ = "0.1.0"
__all__ = ["CheckpointError", "export", "parameters", "save"]
