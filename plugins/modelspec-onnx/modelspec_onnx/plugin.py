"""Registers the ONNX backend and its lowerings (entry point `modelspec: onnx`)."""

from __future__ import annotations

from modelspec.hookspec import hookimpl


class OnnxBackend:
    name = "onnx"
    description = "an .onnx file written from the IR with the onnx package (no torch)"
    file_suffix = ".onnx"
    binary = True  # `mspec compile` calls `write` with a path, never prints to stdout

    def write(self, program, model: str, path, checkpoint=None, seed: int = 0, **options) -> None:
        """Export `model` and save it at `path` (weights over 2 GB in `<path>.data`)."""
        from modelspec_onnx.exporter import export, save

        save(export(program, model, checkpoint=checkpoint, seed=seed), path, **options)

    def generate(self, program, model: str) -> str:
        """The graph in ONNX's text format, without the weights' values (for reading, not running)."""
        import onnx.printer

        from modelspec_onnx.exporter import export

        proto = export(program, model)
        del proto.graph.initializer[:]
        return onnx.printer.to_text(proto.graph)

    def build(self, program, model: str, checkpoint=None, seed: int = 0, **options):
        """An onnxruntime InferenceSession of the exported model (needs the `test` extra)."""
        try:
            import onnxruntime
        except ImportError:
            raise RuntimeError("building with the onnx backend needs onnxruntime: pip install onnxruntime") from None
        from modelspec_onnx.exporter import export

        proto = export(program, model, checkpoint=checkpoint, seed=seed)
        return onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"], **options)


@hookimpl
def mspec_backends():
    return [OnnxBackend()]


@hookimpl
def mspec_lowerings():
    from modelspec_onnx.lowerings import LOWERINGS

    return LOWERINGS
