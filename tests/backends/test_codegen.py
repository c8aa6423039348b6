"""The torch backend's generated source: readable, standalone, faithful to the spec."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import modelspec
from modelspec.diagnostics import CompileError
from modelspec_torch.build import build, load_module_class
from modelspec_torch.codegen import generate_source

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
SNAPSHOTS = ROOT / "tests" / "snapshots" / "torch"
UPDATE = os.environ.get("MSPEC_UPDATE_SNAPSHOTS") == "1"

SHIPPED = [
    (path, model)
    for path in sorted(SPECS.glob("*.mspec"))
    for model in modelspec.load(path).models
    if not (path.name == "gpt3.mspec" and model == "GPT2")  # gpt3.mspec imports GPT2; it has its own file
]


def param_paths(graph, prefix=""):
    out = []
    for node in graph.nodes:
        out += [f"{prefix}{node.name}.{p.name}" for p in node.params]
        if node.body is not None:
            out += param_paths(node.body, f"{prefix}{node.name}.")
        index = 0
        for iteration, count in zip(node.iterations, node.counts):
            for _ in range(count):
                out += param_paths(iteration, f"{prefix}{node.name}.{index}.")
                index += 1
    return out


@pytest.mark.parametrize("path,model", SHIPPED, ids=lambda v: getattr(v, "name", v))
def test_generated_source_matches_its_snapshot(path, model):
    """Changes to generated code are reviewed: each shipped model's source is a golden file."""
    source, _ = generate_source(modelspec.load(path), model)
    golden = SNAPSHOTS / f"{path.stem}_{model}.py"
    if UPDATE:
        golden.write_text(source)
    assert source == golden.read_text(), f"update with MSPEC_UPDATE_SNAPSHOTS=1 and review {golden}"


@pytest.mark.parametrize("path,model", SHIPPED, ids=lambda v: getattr(v, "name", v))
def test_generated_source_is_plain_torch_and_passes_ruff(path, model, tmp_path):
    source, _ = generate_source(modelspec.load(path), model)
    tree = ast.parse(source)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"math", "torch", "torch.nn.functional", "typing"}
    out = tmp_path / "model.py"
    out.write_text(source)
    subprocess.run([sys.executable, "-m", "py_compile", str(out)], check=True)
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", str(out)], capture_output=True, text=True
    )
    assert ruff.returncode == 0, ruff.stdout


# `# FILE:LINE` at the end of a line: FILE is a spec file's name, or `std/NAME` for the standard library.
POINTER = re.compile(r"#.*?(?:^|\s)((?:std/)?[\w.\-+@?]+\.mspec):(\d+)$")


def pointed_line(path: Path, file: str, line: int) -> str:
    """The text of line `line` of `file` as a generated comment names it, `path` being the spec compiled."""
    folder = Path(modelspec.__file__).parent if file.startswith("std/") else path.parent
    lines = (folder / file).read_text().splitlines()
    assert 1 <= line <= len(lines), f"{file}:{line} is past the end of the file"
    return lines[line - 1].strip()


@pytest.mark.parametrize("path,model", SHIPPED, ids=lambda v: getattr(v, "name", v))
def test_every_statement_points_back_to_the_spec(path, model):
    """Every statement in the methods of a class made from the spec (a model, a block body, a repeat
    iteration) ends with `# FILE:LINE`, pointing at a line of code in that spec file: the call it lowers,
    the repeat it runs, the input a size is read off, or, for a `return`, where its (first) value is made.

    Exempt, as written the same whatever the spec says: the imports, the `class` and `def` headers,
    `super().__init__()` and the `pass` of an empty `__init__`, and the helper classes of
    `modelspec_torch.helpers` (Attention, Positions, ...), which no spec line makes."""
    from modelspec_torch.helpers import HELPERS

    source, _ = generate_source(modelspec.load(path), model)
    lines = source.splitlines()
    checked = 0
    for cls in ast.parse(source).body:
        if not isinstance(cls, ast.ClassDef) or cls.name in HELPERS:
            continue
        for method in (m for m in cls.body if isinstance(m, ast.FunctionDef)):
            for statement in ast.walk(method):
                if not isinstance(statement, ast.stmt) or statement is method:
                    continue
                text = lines[statement.lineno - 1]  # a `for` loop's own line, not its body's
                if text.strip() in ("super().__init__()", "pass"):
                    continue
                match = POINTER.search(text)
                assert match, f"no pointer to the spec: {text.strip()}"
                target = pointed_line(path, match.group(1), int(match.group(2)))
                assert target and not target.startswith("#"), f"{text.strip()} points at {target!r}"
                checked += 1
    assert checked > 5
    assert " transformer.mspec:" not in source or path.name == "transformer.mspec"


def test_pointers_name_the_standard_library_apart_from_a_spec_of_the_same_name():
    source, _ = generate_source(modelspec.load(SPECS / "gpt2.mspec"), "GPT2")
    assert "self.q = nn.Linear(768, 768)  # std/transformer.mspec:20" in source
    assert "nn.init.normal_(self.q.weight, std=0.02, mean=0.0)  # std/transformer.mspec:20" in source
    assert "return dropout  # std/transformer.mspec:24" in source
    assert "T = tokens.size(1)  # size `T`  gpt2.mspec:15" in source
    assert "        for layer in self.h:  # gpt2.mspec:21\n            x = layer(x)  # gpt2.mspec:21\n" in source
    assert "self.lm_head.weight = self.wte.weight  # tied  gpt2.mspec:26" in source
    # specs/transformer.mspec imports std/transformer.mspec: each line names its own file.
    both, _ = generate_source(modelspec.load(SPECS / "transformer.mspec"), "Transformer")
    assert "self.generator = nn.Linear(512, 37000, bias=False)  # transformer.mspec:40" in both
    assert "  # std/transformer.mspec:" in both


def test_shapes_and_lines_on_forward_statements():
    source, _ = generate_source(modelspec.load(SPECS / "cnn.mspec"), "CNN")
    forward = source[source.index("def forward") :]
    lines = [line for line in forward.splitlines()[1:] if line.strip() and not line.strip().startswith("return")]
    assert lines and all("# [" in line and "cnn.mspec:" in line for line in lines)
    assert "self.conv1 = nn.Conv2d(3, 32, 3, padding=1)  # cnn.mspec:5" in source


def test_generated_file_runs_on_its_own(tmp_path):
    """The written file needs torch and nothing from modelspec."""
    path = tmp_path / "cnn_model.py"
    subprocess.run(
        [sys.executable, "-m", "modelspec.cli", "compile", str(SPECS / "cnn.mspec"), "-o", str(path)], check=True
    )
    code = (
        "import sys; sys.modules['modelspec'] = None\n"
        "import torch, cnn_model\n"
        "print(tuple(cnn_model.CNN()(torch.zeros(2, 3, 32, 32)).shape))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(2, 10)"


@pytest.mark.parametrize(
    "path,model", [(p, m) for p, m in SHIPPED if m not in ("GPT3", "VGG16")], ids=lambda v: getattr(v, "name", v)
)
def test_state_dict_keys_and_counts_follow_the_spec(path, model):
    program = modelspec.load(path)
    module = build(program, model, device="meta")
    assert set(module.state_dict()) == set(param_paths(program.models[model].graph))
    assert sum(p.numel() for p in module.parameters()) == program.summary(model).parameters


def test_build_is_an_instance_of_the_compiled_class():
    program = modelspec.load(SPECS / "mlp_digits.mspec")
    module = modelspec.build(program, "MLP")
    source = modelspec.compile_source(program, "MLP")
    assert module.modelspec_source == source
    cls = load_module_class(source, "MLP", "MLP")
    assert type(module).__name__ == cls.__name__
    assert type(module).forward.__code__.co_code == cls.forward.__code__.co_code


def test_initialisation_is_seeded_and_follows_the_spec():
    text = """
        model M(layers: int = 8) {
            input x: float[B, 256]
            h = x |> linear(512, init=normal(0.02), name=fc)
            output y = h |> linear(256, init=normal(0.02 / (2 * layers) ** 0.5), name=proj)
        }"""
    a = modelspec.build(text, "M", seed=1)
    b = modelspec.build(text, "M", seed=1)
    c = modelspec.build(text, "M", seed=2)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not torch.equal(a.fc.weight, c.fc.weight)
    assert abs(a.fc.weight.std().item() - 0.02) < 0.001
    assert abs(a.proj.weight.std().item() - 0.005) < 0.0003
    assert torch.count_nonzero(a.fc.bias) == 0


def test_pytorch_defaults_without_init():
    module = modelspec.build("model M() { input x: float[B, 100]  output y = x |> linear(400) }", "M")
    bound = 1 / 100**0.5  # kaiming_uniform(a=sqrt(5)) on fan_in 100
    # the output binding names the one layer: `y`
    assert module.y.weight.abs().max().item() <= bound
    assert module.y.weight.abs().max().item() > 0.9 * bound


def test_meta_device_builds_gpt3_and_real_build_is_refused_before_allocation():
    program = modelspec.load(SPECS / "gpt3.mspec")
    module = build(program, "GPT3", device="meta")
    assert sum(p.numel() for p in module.parameters()) == 174_604_259_328
    with pytest.raises(CompileError) as info:
        build(program, "GPT3", device="cpu")
    (d,) = info.value.diagnostics
    assert d.code == "E0604" and "GiB" in d.message


def test_dtype_option():
    module = modelspec.build(SPECS / "mlp_digits.mspec", "MLP", dtype="bfloat16")
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError):
        modelspec.build(SPECS / "mlp_digits.mspec", "MLP", dtype="float8")


def test_traceback_shows_the_generated_line():
    module = modelspec.build(SPECS / "mlp_digits.mspec", "MLP")
    try:
        module(torch.zeros(2, 3, 28, 28))  # wrong channel count: fails inside the generated forward
    except RuntimeError:
        import traceback

        text = traceback.format_exc()
    assert "mlp_digits.mspec:6" in text


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="no backend named 'torh'.*torch"):
        modelspec.build(SPECS / "mlp_digits.mspec", "MLP", backend="torh")


def test_compile_option_wraps_in_torch_compile():
    module = modelspec.build(SPECS / "mlp_digits.mspec", "MLP", compile=True)
    assert type(module).__name__ == "OptimizedModule"
