"""`modelspec.graph` (Mermaid and dot drawings of a model) and `mspec graph`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from modelspec.api import load
from modelspec.cli import cli
from modelspec.graph import (
    INPUT,
    MAX_ITERATION_GROUPS,
    NODE,
    OUTPUT,
    PORT_IN,
    PORT_OUT,
    dot_text,
    layout,
    mermaid_text,
    to_dot,
    to_mermaid,
)
from modelspec.ir.graph import Graph, Model, Node

MLP = """
block Mlp(hidden: int) {
    input x: float[B, T, D]
    output y = x |> linear(hidden) |> relu |> linear(D)
}
model M(layers: int = 3) {
    input x: float[B, T, 16]
    repeat layers as h {
        x = x + (x |> Mlp(32))
    }
    output y = x |> linear(4)
}
model Deep = M(layers=96)
"""

# A two-input, two-output block; a repeat whose first iteration changes the
# width (counts [1, 11]); a repeat that uses its index (three distinct iterations).
MIXED = """
block Two {
    input a: float[B, D]
    input b: float[B, D]
    output s = a + b
    output d = a |> linear(D)
}
model N {
    input x: float[B, 16]
    input z: float[B, 16]
    r = Two(x, z, name=pair)
    y = r.s + r.d
    repeat 12 as layer1 {
        y = y |> linear(32) |> relu
    }
    repeat 3 as h[i] {
        y = y |> linear(8 + i)
    }
    output out = y
    output side = r.d
}
"""

MANY = """
model W {
    input x: float[B, 4]
    repeat 96 as h[i] {
        x = x |> linear(4 + i) |> relu
    }
    repeat 40 as g[j] {
        if j % 2 == 0 {
            x = x |> relu
        } else {
            x = x |> linear(8)
        }
    }
    output y = x
}
"""


@pytest.fixture(scope="module")
def mlp():
    return load(MLP)


@pytest.fixture(scope="module")
def mixed():
    return load(MIXED).model("N")


# ---- structural checks of the two formats ----------------------------------------------

_ID = r"[A-Za-z][A-Za-z0-9_]*"
_MTEXT = r'[^"#|<>`&\\{}\n]*(?:#\d+;[^"#|<>`&\\{}\n]*)*'  # escaped: only entity codes use `#`
_MERMAID_BOX = re.compile(rf'(?P<id>{_ID})(?:\(\["{_MTEXT}"\]\)|\["{_MTEXT}"\]|\[/"{_MTEXT}"/\]|\[\\"{_MTEXT}"\\\])')
_MERMAID_EDGE = re.compile(rf'(?P<a>{_ID}) -->(?:\|"{_MTEXT}"\|)? (?P<b>{_ID})')
_MERMAID_SUBGRAPH = re.compile(rf'subgraph (?P<id>{_ID}) \["{_MTEXT}"\]')


def check_mermaid(text: str) -> dict:
    """A small parser of the Mermaid subset we write: every line is a box, a subgraph
    header, `end`, `direction TB` or an edge; subgraphs balance; ids are unique;
    edges join declared boxes and come after every box."""
    assert text.isascii()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[0] == "flowchart TB"
    depth, boxes, subgraphs, edges = 0, [], [], []
    for line in lines[1:]:
        stripped = line.strip()
        if m := _MERMAID_SUBGRAPH.fullmatch(stripped):
            assert not edges, "a subgraph after the edges"
            subgraphs.append(m["id"])
            depth += 1
        elif stripped == "end":
            depth -= 1
            assert depth >= 0, "`end` without `subgraph`"
        elif stripped == "direction TB":
            assert depth > 0
        elif m := _MERMAID_BOX.fullmatch(stripped):
            assert not edges, "a box after the edges"
            boxes.append(m["id"])
        elif m := _MERMAID_EDGE.fullmatch(stripped):
            assert depth == 0, "edges are declared outside every subgraph"
            edges.append((m["a"], m["b"]))
        else:
            raise AssertionError(f"not Mermaid we write: {line!r}")
    assert depth == 0, "unbalanced subgraph/end"
    ids = boxes + subgraphs
    assert len(ids) == len(set(ids)), "ids are not unique"
    for a, b in edges:
        assert a in boxes and b in boxes, (a, b)
    return {"boxes": boxes, "subgraphs": subgraphs, "edges": edges}


_DSTR = r'"(?:[^"\\\n]|\\.)*"'
_DOT_NODE = re.compile(rf"(?P<id>{_DSTR}) \[label={_DSTR}(?:, [a-z]+=(?:[A-Za-z0-9.]+|{_DSTR}))*\];")
_DOT_EDGE = re.compile(rf"(?P<a>{_DSTR}) -> (?P<b>{_DSTR})(?: \[label={_DSTR}\])?;")
_DOT_CLUSTER = re.compile(rf'subgraph "(?P<id>cluster_{_ID})" \{{')
_DOT_ATTRS = re.compile(
    rf"(?:graph|node|edge) \[[a-z]+=(?:[A-Za-z0-9.]+|{_DSTR})(?:, [a-z]+=(?:[A-Za-z0-9.]+|{_DSTR}))*\];"
)
_DOT_LABEL = re.compile(rf"label={_DSTR}; style={_DSTR}; color=[a-z0-9]+;")


def check_dot(text: str) -> dict:
    """The dot we write, line by line: quoted strings close, braces balance, clusters
    are named `cluster_*`, edges join declared nodes."""
    assert text.isascii()
    lines = text.splitlines()
    assert re.fullmatch(rf"digraph {_DSTR} \{{", lines[0])
    assert lines[-1] == "}"
    depth, nodes, clusters, edges = 1, [], [], []
    for line in lines[1:-1]:
        stripped = line.strip()
        if m := _DOT_CLUSTER.fullmatch(stripped):
            clusters.append(m["id"])
            depth += 1
        elif stripped == "}":
            depth -= 1
            assert depth >= 1
        elif m := _DOT_NODE.fullmatch(stripped):
            nodes.append(m["id"])
        elif m := _DOT_EDGE.fullmatch(stripped):
            edges.append((m["a"], m["b"]))
        elif _DOT_ATTRS.fullmatch(stripped) or _DOT_LABEL.fullmatch(stripped):
            pass
        else:
            raise AssertionError(f"not dot we write: {line!r}")
    assert depth == 1, "unbalanced braces"
    assert len(nodes) == len(set(nodes)) and len(clusters) == len(set(clusters))
    for a, b in edges:
        assert a in nodes and b in nodes, (a, b)
    return {"nodes": nodes, "clusters": clusters, "edges": edges}


def dot_accepts(text: str, tmp_path) -> str:
    """Run graphviz on `text`; its -Tplain rendering (labels decoded)."""
    path = tmp_path / "g.dot"
    path.write_text(text)
    done = subprocess.run(["dot", "-Tplain", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "Error" not in done.stderr, done.stderr
    return done.stdout


needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed")


# ---- the layout: nodes, edges, subgraphs ---------------------------------------------------


def edge_labels(drawn) -> dict[tuple[str, str], str]:
    return {(e.source, e.target): e.label for e in drawn.edges}


def test_every_node_once_with_name_and_op(mlp):
    drawn = layout(mlp.model("M"))
    labels = [b.label for b in drawn.boxes() if b.kind == NODE]
    assert labels == ["linear: linear", "relu: relu", "linear_1: linear", "add: add", "y: linear"]
    kinds = {b.id: b.kind for b in drawn.boxes()}
    assert kinds["input_x"] == INPUT and kinds["output_y"] == OUTPUT
    assert [b.label for b in drawn.boxes() if b.kind == INPUT] == ["input x: float[B, T, 16]"]
    assert [b.label for b in drawn.boxes() if b.kind == OUTPUT] == ["output y: float[B, T, 4]"]
    # every box appears exactly once in each format
    mermaid, dot = to_mermaid(mlp.model("M")), to_dot(mlp.model("M"))
    for box in drawn.boxes():
        assert len(re.findall(rf"^\s*{box.id}[\[(]", mermaid, re.M)) == 1, box
        assert len(re.findall(rf'^\s*"{box.id}" \[label=', dot, re.M)) == 1, box


def test_edges_carry_shapes(mlp):
    drawn = layout(mlp.model("M"))
    labels = edge_labels(drawn)
    assert labels[("input_x", "in_h_x")] == "[B, T, 16]"
    assert labels[("n_h_mlp_linear", "n_h_mlp_relu")] == "[B, T, 32]"
    assert labels[("n_h_mlp_relu", "n_h_mlp_linear_1")] == "[B, T, 32]"
    assert labels[("out_h_x", "n_y")] == "[B, T, 16]"
    assert labels[("n_y", "output_y")] == "[B, T, 4]"
    # the residual: the add reads the iteration's input and the block's output
    assert labels[("in_h_x", "n_h_add")] == "[B, T, 16]"
    assert labels[("out_h_mlp_y", "n_h_add")] == "[B, T, 16]"
    assert len(drawn.edges) == 11
    mermaid, dot = to_mermaid(mlp.model("M")), to_dot(mlp.model("M"))
    assert '    n_h_mlp_linear -->|"[B, T, 32]"| n_h_mlp_relu\n' in mermaid
    assert '    "n_h_mlp_linear" -> "n_h_mlp_relu" [label="[B, T, 32]"];\n' in dot


def test_repeat_is_one_subgraph_labelled_with_its_count(mlp):
    small, deep = layout(mlp.model("M")), layout(mlp.model("Deep"))
    for drawn, count in ((small, 3), (deep, 96)):
        repeats = [c for c in drawn.clusters() if c.kind == "repeat"]
        assert [c.label for c in repeats] == [f"h \u00d7 {count}"]
        assert not [c for c in drawn.clusters() if c.kind == "iteration"]
    # 96 layers draw exactly what 3 do
    assert [b.label for b in deep.boxes()] == [b.label for b in small.boxes()]
    mermaid = to_mermaid(mlp.model("Deep"))
    assert mermaid.count("subgraph ") == 2
    assert 'subgraph sg_h ["h #215; 96"]' in mermaid
    assert 'label="h &#215; 96"' in to_dot(mlp.model("Deep"))


def test_block_is_a_subgraph_with_ports(mlp):
    drawn = layout(mlp.model("M"))
    (repeat,) = drawn.items[1:2]
    block = next(c for c in repeat.items if getattr(c, "kind", None) == "block")
    assert block.label == "mlp: Mlp" and block.id == "sg_h_mlp"
    assert [(b.kind, b.label) for b in block.items] == [
        (PORT_IN, "x"),
        (NODE, "linear: linear"),
        (NODE, "relu: relu"),
        (NODE, "linear_1: linear"),
        (PORT_OUT, "y"),
    ]
    labels = edge_labels(drawn)
    assert ("in_h_x", "in_h_mlp_x") in labels  # outer producer -> the block's input
    assert ("out_h_mlp_y", "n_h_add") in labels  # the block's output -> its consumer


def test_multi_input_output_block(mixed):
    drawn = layout(mixed)
    labels = edge_labels(drawn)
    assert labels[("input_x", "in_pair_a")] == "[B, 16]"
    assert labels[("input_z", "in_pair_b")] == "[B, 16]"
    assert ("out_pair_s", "n_add") in labels and ("out_pair_d", "n_add") in labels
    assert labels[("out_pair_d", "output_side")] == "[B, 16]"  # `r.d` is the block's second output
    check_mermaid(to_mermaid(mixed))
    check_dot(to_dot(mixed))


def test_distinct_iterations_get_their_own_subgraphs(mixed):
    drawn = layout(mixed)
    clusters = {c.label: c for c in drawn.clusters()}
    layer1 = clusters["layer1 \u00d7 12"]
    assert [c.label for c in layer1.items] == ["layer1.0", "layer1.1-11"]
    h = clusters["h \u00d7 3"]
    assert [c.label for c in h.items] == ["h.0", "h.1", "h.2"]
    labels = edge_labels(drawn)
    # the first iteration's carried output feeds the next distinct iteration
    assert labels[("out_layer1_0_y", "in_layer1_1_11_y")] == "[B, 32]"
    assert labels[("n_layer1_0_linear", "n_layer1_0_relu")] == "[B, 32]"
    assert labels[("in_layer1_0_y", "n_layer1_0_linear")] == "[B, 16]"
    assert labels[("n_h_2_linear", "out_h_2_y")] == "[B, 10]"
    assert labels[("out_h_2_y", "output_out")] == "[B, 10]"
    mermaid = to_mermaid(mixed)
    assert 'subgraph sg_layer1_1_11 ["layer1.1-11"]' in mermaid
    assert mermaid.count("linear: linear") == 1 + 1 + 3  # layer1.0, layer1.1-11, h.0-2


def test_many_distinct_iterations_are_never_expanded():
    model = load(MANY).model()
    drawn = layout(model)
    clusters = {c.label: c for c in drawn.clusters()}
    # 96 iterations that differ only in a width: one run, shapes given as a range
    h = clusters["h \u00d7 96"]
    assert [b.label for b in h.items] == ["x", "linear: linear", "relu: relu", "x"]
    assert edge_labels(drawn)[("in_h_x", "n_h_linear")] == "[B, 4] \u2026 [B, 98]"
    # 40 alternating iterations: at most MAX_ITERATION_GROUPS items, the rest one box
    g = clusters["g \u00d7 40"]
    assert len(g.items) == MAX_ITERATION_GROUPS
    assert (
        g.items[-1].label == f"g.{MAX_ITERATION_GROUPS - 1}-39: {41 - MAX_ITERATION_GROUPS} more iterations, not drawn"
    )
    assert edge_labels(drawn)[(g.items[-1].id, "output_y")] == "[B, 8]"
    check_mermaid(to_mermaid(model))
    check_dot(to_dot(model))


# ---- the formats ------------------------------------------------------------------------------


def test_mermaid_structure(mlp, mixed):
    for model in (mlp.model("M"), mlp.model("Deep"), mixed):
        parsed = check_mermaid(to_mermaid(model))
        drawn = layout(model)
        assert parsed["boxes"] == [b.id for b in drawn.boxes()]
        assert parsed["subgraphs"] == [c.id for c in drawn.clusters()]
        assert parsed["edges"] == [(e.source, e.target) for e in drawn.edges]


def test_dot_structure(mlp, mixed):
    for model in (mlp.model("M"), mixed):
        parsed = check_dot(to_dot(model))
        drawn = layout(model)
        assert parsed["nodes"] == [f'"{b.id}"' for b in drawn.boxes()]
        assert parsed["clusters"] == [f"cluster_{c.id}" for c in drawn.clusters()]
        assert len(parsed["edges"]) == len(drawn.edges)


@needs_dot
def test_dot_is_accepted_by_graphviz(mlp, mixed, tmp_path):
    for model in (mlp.model("M"), mixed, load(MANY).model()):
        plain = dot_accepts(to_dot(model), tmp_path)
        drawn = layout(model)
        assert sum(line.startswith("node ") for line in plain.splitlines()) == len(drawn.boxes())
        assert sum(line.startswith("edge ") for line in plain.splitlines()) == len(drawn.edges)


def test_deterministic(mlp):
    again = load(MLP)
    for render in (to_mermaid, to_dot):
        first = render(mlp.model("M"))
        assert render(mlp.model("M")) == first
        assert render(again.model("M")) == first


# ---- hostile names and labels --------------------------------------------------------------

HOSTILE = 'a"b[c]{d}|e<f>&g#h;`i\\j\u00e9\u4e2d\n%%end'


def hostile_model() -> Model:
    """IR built by hand, with names no spec would let through, colliding once sanitised."""
    body = Graph(
        name="Blk",
        kind="block",
        inputs={"in put": "float[B, 4]"},
        nodes=[Node(name="b", op=HOSTILE, inputs=["in put"], outputs=["float[B, 4]"])],
        outputs={"out|put": "b"},
        output_types={"out|put": "float[B, 4]"},
    )
    graph = Graph(
        name="G",
        inputs={"x": "float[B, 4]", "end": "float[B, 4]"},
        nodes=[
            Node(name="a", op="block", block=HOSTILE, inputs=["x"], outputs=["float[B, 4]"], body=body),
            Node(name=HOSTILE, op="add", inputs=["a", "end"], outputs=["float[B, 4]"]),
            Node(name="a_b", op="relu", inputs=[HOSTILE], outputs=["float[B, 4]"]),
            Node(name="a.b", op="relu", inputs=["a_b"], outputs=["float[B, 4]"]),
        ],
        outputs={"y": "a.b", HOSTILE: "a_b"},
        output_types={"y": "float[B, 4]", HOSTILE: "float[B, 4]"},
    )
    return Model(name='M"odel<\u00e9>', base="M", graph=graph)


def test_hostile_labels_are_escaped():
    model = hostile_model()
    drawn = layout(model)
    ids = [b.id for b in drawn.boxes()] + [c.id for c in drawn.clusters()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", i) for i in ids)
    # `a.b` inside block `a` and the top-level `a_b` and `a.b` all sanitise alike: suffixed
    assert {"n_a_b", "n_a_b_2", "n_a_b_3"} <= set(ids)
    mermaid = to_mermaid(model)
    check_mermaid(mermaid)
    assert "#34;" in mermaid and "#124;" in mermaid and "#60;" in mermaid and "#233;" in mermaid
    dot = to_dot(model)
    check_dot(dot)
    assert '\\"' in dot and "&lt;" in dot and "&#233;" in dot and "&#20013;" in dot


def test_escape_functions():
    assert mermaid_text('say "hi" #1 | <b>') == "say #34;hi#34; #35;1 #124; #60;b#62;"
    assert mermaid_text("[B, T]") == "[B, T]"
    assert mermaid_text("\u00d7\n") == "#215; "
    assert dot_text('a"b\\c') == 'a\\"b\\\\c'
    assert dot_text("<&\u00d7>") == "&lt;&amp;&#215;&gt;"


@needs_dot
def test_hostile_dot_is_accepted_and_decodes(tmp_path):
    plain = dot_accepts(to_dot(hostile_model()), tmp_path)
    # graphviz decodes the entities back to the original text (its -Tplain escapes `"` and `\`)
    expected = ("output " + HOSTILE + ": float[B, 4]").replace("\n", " ")
    expected = expected.replace("\\", "\\\\").replace('"', '\\"')
    assert expected in plain


# ---- the command ------------------------------------------------------------------------------


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "m.mspec"
    path.write_text(MLP)
    return path


def test_cli_default_is_mermaid_of_the_last_model(spec, mlp):
    result = CliRunner().invoke(cli, ["graph", str(spec)])
    assert result.exit_code == 0, result.output
    assert result.output == to_mermaid(mlp.model("Deep"))


def test_cli_model_and_format(spec, mlp):
    result = CliRunner().invoke(cli, ["graph", str(spec), "--model", "M", "--format", "dot"])
    assert result.exit_code == 0, result.output
    assert result.output == to_dot(mlp.model("M"))


def test_cli_unknown_model_suggests(spec):
    result = CliRunner().invoke(cli, ["graph", str(spec), "--model", "Dep"])
    assert result.exit_code == 2
    assert "--model" in result.output and "'Dep'" in result.output
    assert "did you mean `Deep`?" in result.output


def test_cli_bad_format(spec):
    result = CliRunner().invoke(cli, ["graph", str(spec), "--format", "svg"])
    assert result.exit_code == 2 and "--format" in result.output


def test_cli_spec_with_errors(tmp_path):
    path = tmp_path / "bad.mspec"
    path.write_text("model M {\n    input x: float[B, 4]\n    output y = x |> nosuchop(3)\n}\n")
    result = CliRunner().invoke(cli, ["graph", str(path)])
    assert result.exit_code == 1
    assert "nosuchop" in result.output and "error" in result.output
    assert "flowchart" not in result.output


def test_cli_writes_the_file_atomically(spec, mlp, tmp_path):
    out = tmp_path / "out" / "m.dot"
    out.parent.mkdir()
    out.write_text("old")
    result = CliRunner().invoke(cli, ["graph", str(spec), "--model", "M", "--format", "dot", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == to_dot(mlp.model("M"))
    assert os.listdir(out.parent) == ["m.dot"]  # no temporary file left behind
    assert "wrote dot graph of M" in result.output


def test_cli_unwritable_output(spec, tmp_path):
    result = CliRunner().invoke(cli, ["graph", str(spec), "-o", str(tmp_path / "missing" / "g.mmd")])
    assert result.exit_code == 1
    assert "cannot write" in result.output
