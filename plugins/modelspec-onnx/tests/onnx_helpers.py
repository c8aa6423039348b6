"""Helpers of the ONNX backend's tests: the torch backend as the reference the export is compared with.

(A module of its own, named so that it cannot clash with other test folders' helpers.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]  # the modelspec checkout these tests live in
SPECS = REPO / "specs"


class Reference:
    """A spec's model built by the torch backend, its weights saved as a checkpoint, and the same
    weights exported to ONNX; `compare` runs both on the same inputs."""

    def __init__(self, spec: str | Path, model: str | None, folder: Path):
        import torch
        from safetensors.torch import save_model

        import modelspec
        from modelspec_onnx import export, save

        self.program = modelspec.load(spec if isinstance(spec, Path) else SPECS / spec)
        self.name = self.program.model(model).name
        torch.manual_seed(0)
        self.module = modelspec.build(self.program, self.name, seed=0).eval()
        with torch.no_grad():  # running statistics away from 0 and 1, so that using them is tested
            for key, buffer in self.module.named_buffers():
                if key.endswith("running_mean"):
                    buffer.normal_()
                elif key.endswith("running_var"):
                    buffer.uniform_(0.5, 2.0)
        folder.mkdir(parents=True, exist_ok=True)
        self.checkpoint = folder / "model.safetensors"
        save_model(self.module, str(self.checkpoint))
        self.path = folder / f"{self.name}.onnx"
        save(export(self.program, self.name, checkpoint=folder), self.path)
        self._session = None

    @property
    def session(self):
        import onnxruntime

        if self._session is None:
            self._session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        return self._session

    def compare(self, feeds: dict[str, np.ndarray], atol: float = 1e-5, rtol: float = 1e-4) -> np.ndarray:
        import torch

        with torch.no_grad():
            expected = self.module(*[torch.from_numpy(v) for v in feeds.values()])
        (got,) = self.session.run(None, feeds)
        np.testing.assert_allclose(got, expected.numpy(), atol=atol, rtol=rtol)
        return got


def floats(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def tokens(shape, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, shape).astype(np.int64)
