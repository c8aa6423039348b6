"""specs/llama_tiny.mspec, which uses this plugin and `modelspec-lion`, through
every command a user runs: check, summary, compile, a short train, generate."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

import modelspec
from modelspec.cli import main

SPEC = Path(__file__).resolve().parents[3] / "specs" / "llama_tiny.mspec"


def test_check_and_summary(capsys):
    assert main(["check", str(SPEC)]) == 0
    assert main(["summary", "--json", str(SPEC)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"] == 350_880  # derived independently in tests/test_specs.py


def test_compiled_file_runs_on_its_own_like_the_built_module(tmp_path, capsys):
    out = tmp_path / "llama_tiny.py"
    assert main(["compile", str(SPEC), "-o", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("llama_tiny_generated", out)
    generated = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generated
    try:
        spec.loader.exec_module(generated)
        standalone = generated.LlamaTiny()
    finally:
        del sys.modules[spec.name]
    built = modelspec.build(SPEC, "LlamaTiny", seed=0)
    standalone.load_state_dict(built.state_dict())
    tokens = torch.randint(0, 96, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(standalone.eval()(tokens), built.eval()(tokens), rtol=0, atol=0)


def test_train_a_few_steps_then_generate(tmp_path, capsys):
    code = main(["train", str(SPEC), "--out", str(tmp_path / "runs"), "--max-steps", "2", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (line,) = [line for line in captured.out.splitlines() if line.startswith("run folder: ")]
    folder = Path(line[len("run folder: ") :])
    config = json.loads((folder / "config.json").read_text())
    assert config["regime"]["optimizer"]["name"] == "lion"
    checkpoint = folder / "checkpoints" / "step-00000002"
    assert checkpoint.is_dir()

    code = main(
        ["generate", str(SPEC), "--checkpoint", str(checkpoint), "--prompt", "def ", "--max-new-tokens", "12"]
        + ["--greedy"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith("def ") and len(captured.out) >= 4 + 12  # the prompt and 12 characters
