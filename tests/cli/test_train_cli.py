"""`mspec train` as a user runs it: what it prints, its exit codes, its
mistakes found before the first step (exit 1 with a message; usage mistakes
exit 2), resume from the command line, TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelspec.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"

MODEL = """\
model Small(hidden: int = 32) {
    input image: float[B, 1, 8, 8]
    output logits = image |> flatten |> linear(hidden, name=fc1) |> relu |> linear(10, name=fc2)
}
"""


def regime(name: str, optimizer: str = "sgd(lr=0.1)", data: str = "digits(batch=32, size=8)", extra: str = "") -> str:
    return (
        f"train {name} {{\n    model Small()\n    data {data}\n    loss cross_entropy(logits, label)\n"
        f"    optimizer {optimizer}\n    epochs 1\n    metrics [accuracy]\n{extra}}}\n"
    )


def spec(tmp_path: Path, *regimes: str, name: str = "small.mspec") -> Path:
    path = tmp_path / name
    path.write_text(MODEL + "\n".join(regimes), encoding="utf-8")
    return path


def run_folder(out: str) -> Path:
    (line,) = [line for line in out.splitlines() if line.startswith("run folder: ")]
    return Path(line[len("run folder: ") :])


def test_prints_its_run_folder_whole(tmp_path, capsys):
    """The run folder is the last line on stdout, unwrapped even when long."""
    out = tmp_path / ("a-long-folder-name-" * 4) / "[runs]"
    code = main(["train", str(SPECS / "mlp_digits.mspec"), "--out", str(out), "--max-steps", "5", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    folder = run_folder(captured.out)
    assert folder.parent == out and folder.name.startswith("mlp_sgd-")
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl", "spec"]
    assert "stopped at --max-steps after 5 steps" in captured.err


def test_resume_the_latest_run_and_tensorboard(tmp_path, capsys):
    path = spec(tmp_path, regime("small"))
    out = tmp_path / "runs"
    assert main(["train", str(path), "--out", str(out), "--max-steps", "3", "--no-progress", "--tensorboard"]) == 0
    first = run_folder(capsys.readouterr().out)
    assert list((first / "tensorboard").glob("events.out.tfevents.*"))
    # `--resume` with no value: the latest run of the regime in --out
    assert main(["train", str(path), "--resume", "--out", str(out), "--max-steps", "6", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert run_folder(captured.out) == first
    assert "after 6 steps" in captured.err
    assert sorted(p.name for p in out.iterdir()) == [first.name]


def test_unknown_regime_suggests_a_name(tmp_path, capsys):
    path = spec(tmp_path, regime("small"), regime("large"))
    assert main(["train", str(path), "--regime", "smal", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "no train regime 'smal'" in err and "small" in err and "did you mean" in err
    assert not (tmp_path / "runs").exists()


def test_several_regimes_need_regime(tmp_path, capsys):
    path = spec(tmp_path, regime("small"), regime("large"))
    assert main(["train", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "several regimes (small, large)" in err and "--regime" in err
    assert not (tmp_path / "runs").exists()


def test_no_train_block(tmp_path, capsys):
    path = spec(tmp_path)
    assert main(["train", str(path)]) == 2
    assert "declares no `train` block" in capsys.readouterr().err


def test_optimizer_argument_of_the_wrong_type(tmp_path, capsys):
    path = spec(tmp_path, regime("small", optimizer='sgd(lr="fast")'))
    assert main(["check", str(path)]) == 1
    checked = capsys.readouterr().err
    assert "error[E02" in checked and "lr" in checked and f"{path.name}:" in checked
    assert main(["train", str(path), "--out", str(tmp_path / "runs")]) == 1
    assert "lr" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_train_error_exits_1_with_its_message(tmp_path, capsys):
    path = spec(tmp_path, regime("small", data='npz(path="nowhere.npz")'))
    assert main(["train", str(path), "--out", str(tmp_path / "runs"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere.npz" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_nan_loss_exits_1_naming_the_step(tmp_path, capsys):
    path = spec(tmp_path, regime("small", optimizer="sgd(lr=1e30)", extra="    checkpoint every(steps=1)\n"))
    assert main(["train", str(path), "--out", str(tmp_path / "runs"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "error: the loss is nan at step 2: training stopped; the last good checkpoint is " in err
    assert "step-00000001" in err and "Traceback" not in err


def test_resume_mistakes(tmp_path, capsys):
    path = spec(tmp_path, regime("small"))
    out = tmp_path / "runs"
    assert main(["train", str(path), "--resume", "--out", str(out)]) == 2
    assert "no run of regime 'small'" in capsys.readouterr().err
    not_a_run = tmp_path / "photos"
    not_a_run.mkdir()
    assert main(["train", str(path), "--resume", str(not_a_run), "--out", str(out)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert list(not_a_run.iterdir()) == []


def test_resume_of_a_run_of_another_spec(tmp_path, capsys):
    first = spec(tmp_path, regime("small"))
    out = tmp_path / "runs"
    assert main(["train", str(first), "--out", str(out), "--max-steps", "2", "--no-progress"]) == 0
    folder = run_folder(capsys.readouterr().out)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    other = tmp_path / "other.mspec"
    other.write_text(first.read_text().replace("hidden: int = 32", "hidden: int = 24"))
    assert main(["train", str(other), "--resume", str(folder), "--no-progress"]) == 1
    assert "another model" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_resume_after_editing_the_train_block_only(tmp_path, capsys):
    """Same model, another optimizer (it used to end in `internal error: KeyError: 'step'`) or
    another --seed: one line naming what differs, exit 1, the run folder untouched."""
    first = spec(tmp_path, regime("small"))
    out = tmp_path / "runs"
    assert main(["train", str(first), "--out", str(out), "--max-steps", "2", "--no-progress"]) == 0
    folder = run_folder(capsys.readouterr().out)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    adam = spec(tmp_path, regime("small", optimizer="adam(lr=0.01)"), name="adam.mspec")
    assert main(["train", str(adam), "--resume", str(folder), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder} was trained with optimizer sgd(lr=0.1, momentum=0.0, ")
    assert "; the spec now says optimizer adam(lr=0.01, " in err and str(folder / "spec") in err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err
    assert main(["train", str(first), "--resume", str(folder), "--seed", "5", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {folder} was trained with seed 0, not --seed 5: the data order would change; " + (
        "resume without --seed or with --seed 0\n"
    )
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_tensorboard_missing_is_an_error_before_the_run_folder(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    path = spec(tmp_path, regime("small"))
    out = tmp_path / "runs"
    assert main(["train", str(path), "--out", str(out), "--tensorboard", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err == "error: --tensorboard needs the `tensorboard` package: pip install tensorboard\n"
    assert not out.exists()


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "is not a device"),
        ("cuda", "no CUDA device"),
        ("cuda:3", "no CUDA device"),
        ("meta", "holds no data, and the model needs real weights"),  # not a crash in the first step
    ],
)
def test_bad_device(tmp_path, capsys, device, message):
    """Refused while the options are parsed (modelspec.cli.common.device_option, shared with generate)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    path = spec(tmp_path, regime("small"))
    assert main(["train", str(path), "--device", device, "--out", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err


def test_fp16_on_the_cpu(tmp_path, capsys):
    path = spec(tmp_path, regime("small", extra="    precision fp16\n"))
    assert main(["train", str(path), "--out", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "fp16" in err and "bf16" in err
    assert not (tmp_path / "runs").exists()


def test_freezing_every_layer_is_an_error_before_the_run_folder(tmp_path, capsys):
    path = spec(tmp_path, regime("small", extra="    freeze [fc1, fc2]\n"))
    assert main(["train", str(path), "--out", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: optimizer `sgd`: the model has no trainable parameters to optimise")
    assert "`freeze` leaves none" in err and "Traceback" not in err and "internal error" not in err
    assert not (tmp_path / "runs").exists()


def test_config_records_the_command_line_settings(tmp_path, capsys):
    path = spec(tmp_path, regime("small"))
    args = ["train", str(path), "--out", str(tmp_path / "runs"), "--max-steps", "1", "--seed", "7", "--no-progress"]
    assert main(args) == 0
    config = json.loads((run_folder(capsys.readouterr().out) / "config.json").read_text())
    assert config["seed"] == 7 and config["max_steps"] == 1 and config["device"] == "cpu"
