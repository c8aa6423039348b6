"""`mspec generate`'s refusals: each user mistake is one clear line, never an internal error. Option values
are usage mistakes (exit 2, as click reports them); a model or checkpoint that does not fit is exit 1."""

from pathlib import Path

import pytest
import torch

import modelspec
from modelspec.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"

# Two sizes of one GPT-2: a checkpoint of one has the other's keys and other shapes.
VARIANTS = """
import "{root}/specs/gpt2.mspec"
model Tiny = GPT2(vocab=256, ctx=32, d=64, heads=4, layers=2, p=0.0)
model Wider = GPT2(vocab=256, ctx=32, d=96, heads=4, layers=2, p=0.0)
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(the spec, a checkpoint of its model Tiny)."""
    from safetensors.torch import save_model

    folder = tmp_path_factory.mktemp("generate")
    spec = folder / "variants.mspec"
    spec.write_text(VARIANTS.format(root=ROOT))
    weights = folder / "tiny.safetensors"
    save_model(modelspec.build(spec, "Tiny", seed=3), str(weights))
    return spec, weights


def generate(capsys, spec, weights, *options) -> tuple[int, str]:
    code = main(["generate", str(spec), "--checkpoint", str(weights), "--prompt", "hi", *options])
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    return code, err


def error_line(err: str) -> str:
    """The one `Error: ...` line click prints (after its usage lines, for an option's value)."""
    (line,) = [line for line in err.splitlines() if line.startswith("Error:")]
    return line


def test_the_checkpoint_fits_its_own_model(tiny, capsys):
    spec, weights = tiny
    code, _ = generate(capsys, spec, weights, "--model", "Tiny", "--max-new-tokens", "2", "--greedy")
    assert code == 0


def test_a_checkpoint_of_other_sizes_names_the_first_tensors_that_differ(tiny, capsys):
    spec, weights = tiny
    code, err = generate(capsys, spec, weights, "--model", "Wider")
    assert code == 1
    line = error_line(err)
    assert err.strip() == line  # one line
    assert "does not fit model `Wider`" in line
    assert "wpe.weight [32, 64] in the checkpoint, [32, 96] in the model" in line
    assert "h.0.ln_1.weight [64] in the checkpoint, [96] in the model" in line
    assert line.count("in the checkpoint") == 3 and "more" in line  # the first few, and how many others


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_refused_as_train_refuses_it(tiny, capsys, device):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    code, err = generate(capsys, *tiny, "--model", "Tiny", "--device", device)
    assert code == 2
    assert f"'--device': '{device}': no CUDA device is available here" in error_line(err)


def test_the_meta_device_is_refused(tiny, capsys):
    code, err = generate(capsys, *tiny, "--model", "Tiny", "--device", "meta")
    assert code == 2
    assert "'meta' holds no data, and the model needs real weights" in error_line(err)


def test_an_unknown_device_is_refused(tiny, capsys):
    code, err = generate(capsys, *tiny, "--model", "Tiny", "--device", "gpu")
    assert code == 2 and "'gpu' is not a device" in error_line(err)


@pytest.mark.parametrize("temperature", ["nan", "inf", "NaN"])
def test_a_temperature_that_is_not_a_finite_number_is_refused(tiny, capsys, temperature):
    code, err = generate(capsys, *tiny, "--model", "Tiny", "--temperature", temperature)
    assert code == 2
    assert "'--temperature'" in error_line(err) and "is not a finite number" in error_line(err)


@pytest.mark.parametrize(
    ("spec", "tokens", "other"), [("bert_base.mspec", "tokens", "segments"), ("transformer.mspec", "source", "target")]
)
def test_a_model_with_inputs_besides_its_tokens_is_refused(tiny, capsys, spec, tokens, other):
    """BERT's segments, an encoder-decoder's target: sampling has nothing to give them (the model would
    fail with `forward() missing ...`)."""
    code, err = generate(capsys, SPECS / spec, tiny[1])
    assert code == 1
    line = error_line(err)
    assert err.strip() == line
    assert f"takes `{other}` besides its tokens `{tokens}`" in line and "tokens alone" in line


def test_a_model_without_token_input_is_not_a_language_model(tiny, capsys):
    code, err = generate(capsys, SPECS / "cnn.mspec", tiny[1])
    assert code == 1 and "it is not a language model" in error_line(err)
