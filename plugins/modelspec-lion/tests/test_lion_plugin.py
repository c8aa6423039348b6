"""The `lion` component as a spec sees it: registered through the entry-point
group `modelspec`, validated by `mspec check` (diagnostics at the argument's
line and column, the same codes as the built-in optimizers), and torch-free
until training starts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modelspec.cli import main
from modelspec.plugins import registry

MODEL = """\
use "lion"

model Small(hidden: int = 16) {
    input image: float[B, 1, 8, 8]
    output logits = image |> flatten |> linear(hidden, name=fc1) |> relu |> linear(10, name=fc2)
}

train small {
    model      Small()
    data       digits(batch=32, size=8)
    loss       cross_entropy(logits, label)
    optimizer  OPTIMIZER
    epochs     1
}
"""


def spec(tmp_path, optimizer: str):
    path = tmp_path / "small.mspec"
    path.write_text(MODEL.replace("OPTIMIZER", optimizer), encoding="utf-8")
    return path


def check_json(path, capsys) -> list[dict]:
    code = main(["check", "--format", "json", str(path)])
    found = json.loads(capsys.readouterr().out)
    assert code == (1 if found else 0)
    return found


def test_registered_through_the_entry_point_group():
    reg = registry()
    assert reg.component_owner[("optimizer", "lion")] == "lion"  # the entry point's name
    assert {"lion", "modelspec-lion"} <= reg.plugins  # what `use "..."` may name
    assert not [p for p in reg.problems if p.plugin == "lion"]


def test_a_valid_call_checks_cleanly(tmp_path, capsys):
    path = spec(tmp_path, "lion(3e-4, betas=(0.95, 0.98), weight_decay=0.1, no_decay=[bias])")
    assert check_json(path, capsys) == []


@pytest.mark.parametrize(
    "call,argument,code,message",
    [
        ('lion(lr="fast")', "lr=", "E0207", "argument `lr` of `lion` expects a number"),
        ("lion(lr=1e-3, weight_decay=true)", "weight_decay=", "E0207", "argument `weight_decay` of `lion` expects a"),
        ('lion(betas=(0.9, "x"))', "betas=", "E0207", "argument `betas[1]` of `lion` expects a number"),
        ("lion(betas=(0.9, 1.5))", "betas=", "E0208", "argument `betas[1]` of `lion` must be less than 1"),
        ("lion(lr=-1)", "lr=", "E0208", "argument `lr` of `lion` must be greater than 0"),
        ("lion(lr=1e-3, momentum=0.9)", "momentum=", "E0405", "`lion` has no argument `momentum`"),
        ("lion(lr=1e-3, no_decay=[bias])", "no_decay=", "E0208", "`no_decay` has no effect when `weight_decay` is 0"),
    ],
)
def test_mistakes_are_reported_at_the_argument(tmp_path, capsys, call, argument, code, message):
    path = spec(tmp_path, call)
    line = 12
    column = path.read_text().splitlines()[line - 1].index(argument) + 1
    (found,) = check_json(path, capsys)
    assert (found["code"], found["line"], found["column"]) == (code, line, column)
    assert found["message"].startswith(message), found["message"]


@pytest.mark.parametrize("call", ['X(lr="fast")', "X(lr=1e-3, weight_decay=true)", "X(lr=-1)"])
def test_same_codes_as_the_built_in_adam(tmp_path, capsys, call):
    """A plugin's optimizer is checked exactly like a built-in one."""
    ours = check_json(spec(tmp_path, call.replace("X", "lion")), capsys)
    theirs = check_json(spec(tmp_path, call.replace("X", "adam")), capsys)
    assert [(d["code"], d["line"], d["column"]) for d in ours] == [(d["code"], d["line"], d["column"]) for d in theirs]


def test_one_state_tensor_per_parameter():
    """What `mspec summary --training` counts for optimizer memory: Lion keeps only its momentum."""
    lion = registry().component("optimizer", "lion")
    assert lion.state_tensors({"lr": 1e-3}) == 1


def test_checking_does_not_import_torch(tmp_path):
    path = spec(tmp_path, "lion(lr=1e-3)")
    script = (
        "import sys\nfrom modelspec.cli import main\n"
        f"code = main(['check', {str(path)!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
