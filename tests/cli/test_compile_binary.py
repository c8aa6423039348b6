"""`mspec compile` with a backend that writes a binary file itself (`binary = True`, `write()`):
the protocol, with a small backend registered at run time (the ONNX plugin's own tests run the real one)."""

from pathlib import Path

import pytest

from modelspec import plugins
from modelspec.cli import main
from modelspec.diagnostics import CompileError, error
from modelspec.hookspec import hookimpl

SPECS = Path(__file__).parent.parent.parent / "specs"


class Blob:
    """Writes the model's name and the options it was given; fails on request."""

    name = "blob"
    description = "a binary file for tests"
    file_suffix = ".blob"
    binary = True
    fail: Exception | None = None

    def generate(self, program, model):
        raise AssertionError("a binary backend is written through write(), never generate()")

    def build(self, program, model, **options):
        raise NotImplementedError

    def write(self, program, model, path, **options):
        if self.fail is not None:
            raise self.fail
        Path(path).write_bytes(b"\x00" + f"{model} {sorted(options.items())}".encode())


class BlobPlugin:
    def __init__(self, backend):
        self.backend = backend

    @hookimpl
    def mspec_backends(self):
        return [self.backend]


@pytest.fixture
def blob(monkeypatch):
    backend = Blob()
    manager = plugins.PluginManager(entry_points=True, allow=())
    manager.register(BlobPlugin(backend), "blob-plugin")
    monkeypatch.setattr(plugins, "_default", manager)
    monkeypatch.setenv("NO_COLOR", "1")
    return backend


def test_writes_the_file_with_o(blob, tmp_path, capsys):
    out = tmp_path / "cnn.blob"
    assert main(["compile", str(SPECS / "cnn.mspec"), "-b", "blob", "-o", str(out)]) == 0
    assert out.read_bytes() == b"\x00CNN []"
    assert f"wrote {out} (model CNN, backend blob)" in capsys.readouterr().err


def test_passes_the_checkpoint(blob, tmp_path):
    out = tmp_path / "g.blob"
    args = ["compile", str(SPECS / "dcgan.mspec"), "--model", "Generator", "-b", "blob", "-o", str(out)]
    assert main(args + ["--checkpoint", "runs/x/step-00000010"]) == 0
    assert out.read_bytes() == b"\x00Generator [('checkpoint', PosixPath('runs/x/step-00000010'))]"


def test_refuses_stdout_naming_o(blob, capsys):
    assert main(["compile", str(SPECS / "cnn.mspec"), "-b", "blob"]) == 2
    err = capsys.readouterr().err
    assert "the blob backend writes a binary file, not text for stdout: give -o FILE" in err
    assert "Traceback" not in err


def test_text_backends_take_no_checkpoint(blob, capsys):
    assert main(["compile", str(SPECS / "cnn.mspec"), "--checkpoint", "ckpt"]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for --checkpoint: the torch backend writes no weights" in err


def test_a_bad_option_value_is_a_message(blob, tmp_path, capsys):
    blob.fail = ValueError("checkpoint ckpt does not fit the model: `fc1.bias` is missing")
    out = tmp_path / "cnn.blob"
    assert main(["compile", str(SPECS / "cnn.mspec"), "-b", "blob", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Error: checkpoint ckpt does not fit the model: `fc1.bias` is missing" in err
    assert "Traceback" not in err and not out.exists()


def test_diagnostics_from_write_are_rendered(blob, tmp_path, capsys):
    blob.fail = CompileError(error("E0603", "the op `relu` cannot be exported", None))
    assert main(["compile", str(SPECS / "cnn.mspec"), "-b", "blob", "-o", str(tmp_path / "x.blob")]) == 1
    assert "error[E0603]: the op `relu` cannot be exported" in capsys.readouterr().err


def test_torch_still_prints_source(blob, capsys):
    assert main(["compile", str(SPECS / "mlp_digits.mspec")]) == 0
    assert "class MLP(nn.Module):" in capsys.readouterr().out
