"""`mspec plugins`, `mspec ops`, `--no-plugins` and the warnings about broken plugins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from modelspec import plugins
from modelspec.cli import main

REPO = Path(__file__).resolve().parents[2]
MLP = str(REPO / "specs" / "mlp_digits.mspec")


def run(args, capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    # `--no-plugins` configures the process-wide manager: restore it after the test.
    monkeypatch.setattr(plugins, "_default", plugins._default)
    monkeypatch.setattr(plugins, "_default_options", dict(plugins._default_options))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_plugins_lists_every_plugin_with_version_origin_and_registrations(fake_site, capsys, monkeypatch):
    fake_site.add("doubler", fake_site.GOOD_OP, dist="mspec-doubler", version="2.0.1")
    code, out, _ = run(["plugins"], capsys, monkeypatch)
    assert code == 0
    assert "doubler  (mspec-doubler 2.0.1, entry point `fake_mspec_plugin_doubler_" in out
    assert "    ops: double" in out
    assert "modelspec.ops.builtin  (built-in module" in out
    assert "torch  (modelspec " in out and "backends: torch" in out
    assert "optimizers: adagrad, adam, adamw, rmsprop, sgd" in out
    code, out, _ = run(["plugins", "--json"], capsys, monkeypatch)
    entries = {e["name"]: e for e in json.loads(out)}
    assert entries["doubler"]["version"] == "2.0.1" and entries["doubler"]["registers"] == {"ops": ["double"]}
    assert entries["modelspec.ops.builtin"]["origin"] == "built-in"
    assert len(entries["modelspec.ops.builtin"]["registers"]["ops"]) == 45
    assert entries["torch"]["registers"]["backends"] == ["torch"]


def test_plugins_shows_a_broken_plugin_and_its_problem(fake_site, capsys, monkeypatch):
    fake_site.add("broken", "import no_such_module_anywhere\n")
    code, out, _ = run(["plugins"], capsys, monkeypatch)
    assert code == 0
    assert "broken  (fake-broken 0.1.0" in out
    assert "failed to load: ModuleNotFoundError" in out
    assert "problem: cannot be imported" in out


def test_commands_warn_about_a_broken_plugin_and_keep_working(fake_site, capsys, monkeypatch):
    fake_site.add("broken", "import no_such_module_anywhere\n")
    code, _, err = run(["check", MLP], capsys, monkeypatch)
    assert code == 0
    assert "warning: plugin `broken`: cannot be imported (ModuleNotFoundError" in err
    assert "mlp_digits.mspec: ok" in err


def test_no_plugins_starts_with_builtins_only(fake_site, capsys, monkeypatch):
    fake_site.add("broken", "import no_such_module_anywhere\n")
    fake_site.add("doubler", fake_site.GOOD_OP)
    code, _, err = run(["--no-plugins", "check", MLP], capsys, monkeypatch)
    assert code == 0 and "warning" not in err
    code, out, _ = run(["--no-plugins", "ops"], capsys, monkeypatch)
    assert "double" not in out.split() and "linear" in out


def test_ops_lists_ops_with_their_plugin_and_backends(fake_site, capsys, monkeypatch):
    fake_site.add("doubler", fake_site.GOOD_OP)
    code, out, _ = run(["ops"], capsys, monkeypatch)
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.split() and ln.split()[0] == "double")
    assert "[plugin doubler]" in line and "(no backend)" in line
    line = next(ln for ln in out.splitlines() if ln.split() and ln.split()[0] == "conv2d")
    assert "torch" in line.rsplit("(", 1)[1]


def test_ops_name_shows_signature_shape_rule_and_backends(capsys, monkeypatch):
    code, out, _ = run(["ops", "linear"], capsys, monkeypatch)
    assert code == 0
    assert "linear  (layers, built-in)" in out
    assert "call:     linear(x, out_features, in_features=—, bias=true, tie=—)" in out
    assert "shape:    [*, in] -> [*, out]" in out
    assert "torch" in out.split("lowered by: ")[1].strip().split(", ")
    code, out, _ = run(["ops", "linear", "--json"], capsys, monkeypatch)
    details = json.loads(out)
    assert "torch" in details["backends"] and details["builtin"] and details["arrow"] == ["in_features", "out_features"]


def test_ops_unknown_name_suggests(capsys, monkeypatch):
    code, _, err = run(["ops", "linaer"], capsys, monkeypatch)
    assert code == 2 and "no op named 'linaer'" in err and "linear" in err
    code, _, err = run(["--no-plugins", "ops", "swiglu"], capsys, monkeypatch)
    assert code == 2 and "modelspec-swiglu" in err


def test_allowlist_variable_in_a_fresh_process(tmp_path):
    # The environment variable as a user sets it, in a process of its own.
    env = {"MSPEC_LOAD_PLUGINS": "", "PATH": "", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "modelspec.cli", "plugins", "--json"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    loaded = [e["name"] for e in json.loads(result.stdout) if e["loaded"]]
    assert loaded == ["modelspec.ops.builtin", "modelspec.train.components", "torch"]


BROKEN_BACKEND = """
    from modelspec.hookspec import hookimpl


    @hookimpl
    def mspec_backends():
        raise RuntimeError("no jax here")


    @hookimpl
    def mspec_lowerings():
        return "not a list"
"""


def test_commands_that_use_backends_warn_about_broken_backend_hooks_once(fake_site, capsys, monkeypatch, tmp_path):
    fake_site.add("jaxish", BROKEN_BACKEND)
    raised = "warning: plugin `jaxish`: `mspec_backends` raised RuntimeError: no jax here"
    not_a_list = "warning: plugin `jaxish`: `mspec_lowerings` must return a list, not str"
    missing = str(tmp_path / "missing.mspec")
    for args in (["compile", MLP], ["ops"], ["ops", "linear"], ["train", missing], ["generate", missing]):
        monkeypatch.setattr(plugins, "_default", None)  # each command starts from a fresh registry
        code, _, err = run(args, capsys, monkeypatch)
        assert err.count(raised) == 1 and err.count(not_a_list) == 1, (args, err)
    monkeypatch.setattr(plugins, "_default", None)
    code, _, err = run(["check", MLP], capsys, monkeypatch)  # checking reads no backend: it stays fast
    assert code == 0 and "jaxish" not in err


def test_no_backend_named_mentions_a_plugin_problem(fake_site, capsys, monkeypatch):
    fake_site.add("jaxish", BROKEN_BACKEND)
    code, _, err = run(["compile", MLP, "-b", "jax"], capsys, monkeypatch)
    assert code == 2
    assert "no backend named 'jax'" in err
    assert "a plugin problem may be why: plugin `jaxish`: `mspec_backends` raised RuntimeError: no jax here" in err
    assert "mspec_lowerings" not in err.split("no backend named")[1]  # lowerings cannot hide a backend


def test_no_backend_named_without_a_plugin_problem_says_none(capsys, monkeypatch):
    code, _, err = run(["--no-plugins", "compile", MLP, "-b", "jax"], capsys, monkeypatch)
    assert code == 2 and "no backend named 'jax'" in err and "plugin problem" not in err


def test_no_plugins_is_the_reason_given_for_a_plugin_left_out(fake_site, capsys, monkeypatch, tmp_path):
    fake_site.add("doubler", fake_site.GOOD_OP)
    spec = tmp_path / "m.mspec"
    spec.write_text('use "doubler"\nmodel M() {\n    input x: float[B, 4]\n    output y = x |> double()\n}\n')
    code, _, err = run(["--no-plugins", "check", str(spec)], capsys, monkeypatch)
    assert code == 1
    assert "needs the plugin `doubler`, which is installed but not loaded: third-party plugins are off" in err
    assert "(`--no-plugins`)" in err and "MSPEC_LOAD_PLUGINS" not in err
    code, out, _ = run(["--no-plugins", "plugins", "--json"], capsys, monkeypatch)
    [entry] = [e for e in json.loads(out) if e["name"] == "doubler"]
    assert entry["reason"] == "not loaded: third-party plugins are off (`--no-plugins`)"


def test_plugins_json_gives_builtin_modules_their_distribution_version_and_file(capsys, monkeypatch):
    import modelspec

    code, out, _ = run(["plugins", "--json"], capsys, monkeypatch)
    entries = {e["name"]: e for e in json.loads(out)}
    for name in plugins.BUILTIN_PLUGINS:
        entry = entries[name]
        assert (entry["distribution"], entry["version"]) == ("modelspec", modelspec.__version__)
        assert Path(entry["location"]).is_file() and Path(entry["location"]).parent.is_relative_to(REPO / "modelspec")
    code, out, _ = run(["plugins"], capsys, monkeypatch)
    assert "modelspec.ops.builtin  (built-in module (modelspec " in out
