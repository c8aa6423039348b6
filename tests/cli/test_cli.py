"""The mspec command, as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

from modelspec.cli import main

ROOT = Path(__file__).parent.parent.parent
SPECS = ROOT / "specs"


def test_check_clean_spec(capsys):
    assert main(["check", str(SPECS / "cnn.mspec")]) == 0
    assert "ok" in capsys.readouterr().err


def test_check_reports_and_exits_1(tmp_path, capsys):
    spec = tmp_path / "bad.mspec"
    spec.write_text("model M() {\n    input x: float[B, 4]\n    output y = x |> linear(3, biass=true)\n}\n")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "error[E0203]: `linear` has no argument `biass`" in err
    assert ":3:31" in err
    assert "help: did you mean `bias`?" in err


def test_check_json(tmp_path, capsys):
    spec = tmp_path / "bad.mspec"
    spec.write_text("model M() { input x: float[B, 4]  output y = x |> nope }")
    assert main(["check", "--format", "json", str(spec)]) == 1
    (item,) = json.loads(capsys.readouterr().out)
    assert item["code"] == "E0202" and item["line"] == 1 and item["column"] == 51


def test_check_missing_file(capsys):
    assert main(["check", "does/not/exist.mspec"]) == 1
    assert "E0005" in capsys.readouterr().err


def test_summary_json(capsys):
    assert main(["summary", str(SPECS / "gpt2.mspec"), "--json", "--input", "tokens=2x128"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "GPT2" and data["parameters"] == 124_439_808
    assert data["bindings"] == {"B": 2, "T": 128}


def test_summary_several_models_json(capsys):
    assert main(["summary", str(SPECS / "dcgan.mspec"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["model"] for d in data] == ["Generator", "Discriminator"]


def test_summary_table_and_training(capsys):
    assert main(["summary", str(SPECS / "mlp_digits.mspec"), "--training"]) == 0
    out = capsys.readouterr().out
    assert "101,770" in out and "training step" in out and "optimizer" in out


def test_summary_bad_options(capsys):
    assert main(["summary", str(SPECS / "gpt2.mspec"), "--input", "tokens"]) == 2
    assert "--input" in capsys.readouterr().err
    assert main(["summary", str(SPECS / "gpt2.mspec"), "--model", "GPT"]) == 2
    assert "GPT2" in capsys.readouterr().err
    assert main(["summary", str(SPECS / "gpt2.mspec"), "--input", "tokens=1x4096"]) == 1
    assert "E0308" in capsys.readouterr().err


def test_check_does_not_import_torch():
    code = (
        "import sys, modelspec; modelspec.check('specs/gpt3.mspec'); "
        "from modelspec.cli import main; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_command_reports_a_folder_as_e0005(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    folder = tmp_path / "folder.mspec"
    folder.mkdir()
    for command in (["check"], ["summary"], ["graph"], ["compile"]):
        assert main([*command, str(folder)]) == 1, command
        err = capsys.readouterr().err
        assert "error[E0005]: cannot read" in err and "it is a folder" in err, (command, err)


def test_a_file_whose_name_looks_like_spec_text(tmp_path, capsys, monkeypatch):
    """FILE is a path, always: a name with `{` is not taken for spec text."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net{1}.mspec").write_text("model M() {\n    input x: float[B, 4]\n    output y = x |> relu\n}\n")
    for command in (["check"], ["summary"], ["graph"], ["compile"]):
        assert main([*command, "net{1}.mspec"]) == 0, (command, capsys.readouterr().err)
        capsys.readouterr()
