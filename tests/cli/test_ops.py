"""`mspec ops NAME` lists `init=` among the arguments of the ops that take it, and of no other."""

import json

from modelspec.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["ops", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_op_with_parameters_lists_init_and_the_initialisers(capsys):
    code, out, _ = run(capsys, "linear")
    assert code == 0
    arguments = out.split("  arguments:\n")[1].split("  lowered by:")[0]
    assert "    init          initialiser  (the op's own)\n" in arguments
    assert "  initialisers: normal, trunc_normal, uniform, constant, zeros, ones, xavier_uniform" in arguments
    code, out, _ = run(capsys, "linear", "--json")
    assert {"name": "init", "type": "initialiser", "default": "the op's own"} in json.loads(out)["arguments"]


def test_an_op_without_parameters_does_not_list_init_and_refuses_it(capsys, tmp_path):
    code, out, _ = run(capsys, "relu")
    assert code == 0 and "init" not in out
    code, out, _ = run(capsys, "dropout", "--json")
    assert "init" not in [a["name"] for a in json.loads(out)["arguments"]]
    # What the listing says is what the checker does.
    spec = tmp_path / "m.mspec"
    spec.write_text("model M() {\n    input x: float[B, 4]\n    output y = x |> relu(init=normal(0.02))\n}\n")
    assert main(["check", str(spec)]) == 1
    assert "error[E0203]: `relu` here has no parameters to initialise" in capsys.readouterr().err
    spec.write_text("model M() {\n    input x: float[B, 4]\n    output y = x |> linear(3, init=normal(0.02))\n}\n")
    assert main(["check", str(spec)]) == 0
