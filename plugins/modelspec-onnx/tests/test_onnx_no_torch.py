"""The backend never imports torch: importing it, checking a spec and exporting it (with weights
from a checkpoint or seeded) leave `torch` out of `sys.modules`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from onnx_helpers import SPECS


def test_export_does_not_import_torch(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from safetensors.numpy import save_file
        import modelspec, modelspec_onnx
        from modelspec.api import backend

        program = modelspec.load({str(SPECS / "gpt_tiny.mspec")!r})
        backend("onnx").write(program, "GPTTiny", {str(tmp_path / "seeded.onnx")!r})
        weights = {{k: np.zeros(p.param.shape, np.float32) for k, p in modelspec_onnx.parameters(
            program.models["GPTTiny"].graph)[0].items()}}
        save_file(weights, {str(tmp_path / "model.safetensors")!r})
        modelspec_onnx.save(modelspec_onnx.export(program, "GPTTiny", checkpoint={str(tmp_path)!r}),
                            {str(tmp_path / "checkpoint.onnx")!r})
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "seeded.onnx").stat().st_size > 0 and (tmp_path / "checkpoint.onnx").stat().st_size > 0


def test_checking_a_spec_imports_neither_onnx_nor_numpy():
    # modelspec imports every plugin on every command; this one must stay cheap for `mspec check`.
    code = (
        "import sys\n"
        "from modelspec.cli import main\n"
        "assert main(['check', 'specs/mlp_digits.mspec']) == 0\n"
        "heavy = sorted(m for m in ('onnx', 'numpy', 'torch', 'onnxruntime') if m in sys.modules)\n"
        "assert 'onnx' in __import__('modelspec.plugins').plugins.registry().info, 'plugin not installed'\n"
        "assert heavy == [], heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=SPECS.parent)
    assert result.returncode == 0, result.stderr
