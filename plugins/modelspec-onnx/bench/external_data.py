"""Export a real model whose weights exceed 2 GB and run it from its external data.

    python plugins/modelspec-onnx/bench/external_data.py [--width 16384] [--folder /tmp/big]

The spec is two square linear layers of `width` (16384: 537M parameters, 2.15 GB of float32),
exported with seeded weights. The script checks that the .onnx file is small and the weights
sit in `<file>.data`, that onnx's checker accepts the pair, and that onnxruntime's output equals
a NumPy forward pass over the weights read back from the data file; it prints the time of each
stage and the peak memory. Results are recorded in the package README.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

SPEC = """model Big(width: int = {width}) {{
    input x: float[B, width]
    output y = x |> linear(width, name=a) |> relu |> linear(width, bias=false, name=b)
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16384)
    parser.add_argument("--folder", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="mspec-onnx-big-"))
    folder.mkdir(parents=True, exist_ok=True)

    import onnx
    import onnxruntime

    import modelspec
    from modelspec_onnx import export, save
    from modelspec_onnx.exporter import EXTERNAL_DATA_THRESHOLD, initializer_bytes

    timings = {}
    start = time.perf_counter()
    program = modelspec.load(SPEC.format(width=args.width))
    model = export(program, "Big", seed=0)
    timings["export"] = time.perf_counter() - start
    weights = initializer_bytes(model)
    limit = EXTERNAL_DATA_THRESHOLD / 1e9
    print(f"weights: {weights / 1e9:.2f} GB ({weights / 2**30:.2f} GiB), external data over {limit:g} GB")

    start = time.perf_counter()
    path = folder / "big.onnx"
    data = save(model, path)
    del model
    timings["save"] = time.perf_counter() - start
    assert data is not None and data.exists(), "weights over the threshold must go to external data"
    print(f"{path}: {path.stat().st_size} bytes; {data}: {data.stat().st_size / 1e9:.2f} GB")

    start = time.perf_counter()
    onnx.checker.check_model(str(path))
    timings["check"] = time.perf_counter() - start

    start = time.perf_counter()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, args.width)).astype(np.float32)
    (got,) = session.run(None, {"x": x})
    del session
    timings["onnxruntime load + run"] = time.perf_counter() - start

    start = time.perf_counter()
    loaded = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    hidden = np.maximum(x @ loaded["a.weight"].T + loaded["a.bias"], 0)
    expected = hidden @ loaded["b.weight"].T
    timings["numpy reference"] = time.perf_counter() - start
    error = float(np.abs(got - expected).max() / np.abs(expected).max())
    assert error < 1e-4, error

    for stage, seconds in timings.items():
        print(f"{stage:>24}: {seconds:6.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"max relative difference {error:.1e}; peak memory {peak:.1f} GiB")


if __name__ == "__main__":
    main()
