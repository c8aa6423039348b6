"""Draw a model's dataflow: a Mermaid flowchart or a Graphviz dot digraph.

    to_mermaid(model) -> str        flowchart TB, edges declared after every box
    to_dot(model) -> str            digraph, blocks and repeats as clusters

Both render one format-neutral layout (`layout`):

- one box per node, labelled `name: op`; the model's inputs and outputs as
  stadiums (Mermaid) / ellipses (dot), labelled with their type;
- a `block` call as a subgraph `name: Block` holding its body, with one port
  per block input and output: edges run from the outer producer into the
  input port, and from the output port to the outer consumers;
- a `repeat` collapsed: one subgraph `h × 12` holding one iteration's body.
  A repeat elaborated as several distinct iterations (counts [1, 11]) holds
  one subgraph per distinct iteration, labelled with its index range
  (`layer1.0`, `layer1.1-11`); the iteration's carried outputs feed the next
  one's input ports. Nothing is ever expanded per copy: past
  MAX_ITERATION_GROUPS distinct iterations (`repeat 96 as h[i]` with the index
  in a size), runs of structurally equal ones share a subgraph whose edges show
  the range of shapes (`[B, 4] … [B, 98]`), and what is still left is one box.

Edges are labelled with the shape of the tensor on them (`[B, T, 768]`).
Ids are ASCII, built from the node's path (`n_h_mlp_linear`) and made unique;
labels are escaped for each format, non-ASCII included, so the output is
ASCII whatever the names are. The same model gives the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modelspec.ir.graph import Graph, Model, Node

__all__ = ["Box", "Cluster", "Edge", "Layout", "layout", "to_dot", "to_mermaid"]

# Box kinds: an op node, the model's inputs and outputs, a block/repeat's ports.
NODE, INPUT, OUTPUT, PORT_IN, PORT_OUT = "node", "input", "output", "port_in", "port_out"


@dataclass
class Box:
    kind: str
    id: str
    label: str


@dataclass
class Cluster:
    kind: str  # "block", "repeat" (the whole repeat) or "iteration" (one distinct iteration of it)
    id: str
    label: str
    items: list[Box | Cluster] = field(default_factory=list)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str


@dataclass
class Layout:
    name: str
    items: list[Box | Cluster] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def boxes(self) -> list[Box]:
        """Every box, depth first."""
        out: list[Box] = []

        def walk(items):
            for item in items:
                if isinstance(item, Cluster):
                    walk(item.items)
                else:
                    out.append(item)

        walk(self.items)
        return out

    def clusters(self) -> list[Cluster]:
        out: list[Cluster] = []

        def walk(items):
            for item in items:
                if isinstance(item, Cluster):
                    out.append(item)
                    walk(item.items)

        walk(self.items)
        return out


_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_]")

# A repeat with more distinct iterations than this (`repeat 96 as h[i]` with the
# index in a size) is drawn as runs of structurally equal iterations; past this
# many runs, the rest are one box.
MAX_ITERATION_GROUPS = 16


class _Builder:
    """Draws graphs into a Layout.

    Every draw method takes *variants*: structurally equal graphs (or nodes)
    drawn once, the first standing for all; an edge's label is the shape on it
    in every variant (`[B, 8] … [B, 10]` when they differ). Plain graphs are
    one variant; the runs of equal iterations of a repeat are several."""

    def __init__(self, name: str):
        self.layout = Layout(name)
        self._ids: set[str] = set()

    def new_id(self, prefix: str, path: tuple[str, ...]) -> str:
        base = "_".join([prefix, *(_UNSAFE_ID.sub("_", p) or "_" for p in path)])
        new, k = base, 2
        while new in self._ids:
            new = f"{base}_{k}"
            k += 1
        self._ids.add(new)
        return new

    def edge(self, source: str, target: str, label: str) -> None:
        self.layout.edges.append(Edge(source, target, label))

    # ---- graphs ------------------------------------------------------------------

    def graph(self, graphs: list[Graph], path: tuple[str, ...], items: list, inputs: dict[str, str]):
        """Draw the nodes of `graphs[0]` into `items`; `inputs` maps its input names to the
        boxes that provide them. Returns the function giving the box that produces a value."""
        graph = graphs[0]
        produced: dict[str, list[str | None]] = {}

        def source(value: str) -> str:
            if value in inputs:
                return inputs[value]
            name, _, index = value.partition(":")
            ids = produced.get(name)
            k = int(index) if index.isdigit() else 0
            if ids is None or k >= len(ids) or ids[k] is None:
                raise ValueError(f"graph {graph.name!r} uses {value!r} before it is defined")
            return ids[k]

        for i, node in enumerate(graph.nodes):
            nodes = [g.nodes[i] for g in graphs]
            if node.op == "block" and node.body is not None:
                produced[node.name] = self.block(nodes, graphs, path, items, source)
            elif node.op == "repeat" and node.iterations:
                produced[node.name] = self.repeat(nodes, graphs, path, items, source)
            else:
                box = Box(NODE, self.new_id("n", path + (node.name,)), f"{node.name}: {node.op}")
                items.append(box)
                for value in node.inputs:
                    self.edge(source(value), box.id, _value_label(graphs, value))
                produced[node.name] = [box.id] * max(1, len(node.outputs))
        return source

    def block(self, nodes: list[Node], graphs: list[Graph], path, items: list, source) -> list[str | None]:
        node = nodes[0]
        here = path + (node.name,)
        cluster = Cluster("block", self.new_id("sg", here), f"{node.name}: {node.block or 'block'}")
        items.append(cluster)
        bodies = [n.body for n in nodes]
        ports: dict[str, str] = {}
        for i, name in enumerate(node.body.inputs):
            port = Box(PORT_IN, self.new_id("in", here + (name,)), name)
            cluster.items.append(port)
            ports[name] = port.id
            if i < len(node.inputs):
                self.edge(source(node.inputs[i]), port.id, _value_label(graphs, node.inputs[i]))
        inner = self.graph(bodies, here, cluster.items, ports)
        outs: dict[str, str] = {}
        for name, value in node.body.outputs.items():
            port = Box(PORT_OUT, self.new_id("out", here + (name,)), name)
            cluster.items.append(port)
            self.edge(inner(value), port.id, _value_label(bodies, value))
            outs[name] = port.id
        if node.output_names and all(n in outs for n in node.output_names):
            return [outs[n] for n in node.output_names]
        return list(outs.values())

    def repeat(self, nodes: list[Node], graphs: list[Graph], path, items: list, source) -> list[str | None]:
        node = nodes[0]
        here = path + (node.name,)
        total = sum(node.counts) if node.counts else node.attrs.get("count", len(node.iterations))
        outer = Cluster("repeat", self.new_id("sg", here), f"{node.name} \u00d7 {total}")
        items.append(outer)
        outer_values = dict(zip(node.attrs.get("captured") or [], node.inputs))
        groups = _iteration_groups(nodes)
        latest: dict[str, str] = {}  # carried variable -> the output port that last produced it

        def feed(name: str, target: str, label: str) -> None:
            if name in latest:
                self.edge(latest[name], target, label)
            elif name in outer_values:
                value = outer_values[name]
                self.edge(source(value), target, _value_label(graphs, value))

        for number, (start, count, variants) in enumerate(groups):
            span = str(start) if count == 1 else f"{start}-{start + count - 1}"
            if number == MAX_ITERATION_GROUPS - 1 and len(groups) > MAX_ITERATION_GROUPS:
                self.rest(node, here, outer, groups[number:], feed, latest)
                break
            if len(groups) == 1:
                cluster, where = outer, here
            else:
                where = here + (span,)
                cluster = Cluster("iteration", self.new_id("sg", where), f"{node.name}.{span}")
                outer.items.append(cluster)
            first = variants[0]
            ports: dict[str, str] = {}
            for name in first.inputs:
                port = Box(PORT_IN, self.new_id("in", where + (name,)), name)
                cluster.items.append(port)
                ports[name] = port.id
                feed(name, port.id, _input_label(variants, name))
            inner = self.graph(variants, where, cluster.items, ports)
            for name, value in first.outputs.items():
                port = Box(PORT_OUT, self.new_id("out", where + (name,)), name)
                cluster.items.append(port)
                self.edge(inner(value), port.id, _value_label(variants, value))
                latest[name] = port.id
        return [latest.get(name) for name in node.output_names]

    def rest(self, node: Node, here, outer: Cluster, groups, feed, latest: dict[str, str]) -> None:
        """The iterations past MAX_ITERATION_GROUPS runs, as one box."""
        first, last = groups[0][0], groups[-1][0] + groups[-1][1] - 1
        count = last - first + 1
        box = Box(
            NODE,
            self.new_id("n", here + (f"{first}-{last}",)),
            f"{node.name}.{first}-{last}: {count} more iterations, not drawn",
        )
        outer.items.append(box)
        seen: set[str] = set()
        for _, _, variants in groups:
            for name in variants[0].inputs:
                if name not in seen:
                    seen.add(name)
                    feed(name, box.id, _input_label(variants, name))
        for _, _, variants in groups:
            for name in variants[0].outputs:
                latest[name] = box.id


def _iteration_groups(nodes: list[Node]) -> list[tuple[int, int, list[Graph]]]:
    """What to draw of a repeat: (first index, how many, the graphs) per subgraph.

    Each distinct iteration of the IR is its own subgraph (`layer1.0`, `layer1.1-11`);
    a repeat with more than MAX_ITERATION_GROUPS of them (the index in a size) is
    drawn as runs of structurally equal iterations instead. With several variants
    of the repeat node itself, iterations line up by position."""
    node = nodes[0]
    counts = list(node.counts) + [1] * (len(node.iterations) - len(node.counts))
    merge = len(node.iterations) > MAX_ITERATION_GROUPS
    groups: list[tuple[int, int, list[Graph]]] = []
    previous = None
    start = 0
    for k, (iteration, count) in enumerate(zip(node.iterations, counts)):
        variants = [n.iterations[k] for n in nodes if k < len(n.iterations)]
        signature = _signature(iteration) if merge else k
        if groups and signature == previous:
            first, total, graphs = groups[-1]
            groups[-1] = (first, total + count, graphs + variants)
        else:
            groups.append((start, count, variants))
        previous = signature
        start += count
    return groups


def _signature(graph: Graph) -> tuple:
    """What a drawing of `graph` shows, less the shapes: names, ops and wiring."""
    return (
        tuple(graph.inputs),
        tuple(
            (
                n.name,
                n.op,
                n.block,
                tuple(n.inputs),
                len(n.outputs),
                tuple(n.output_names),
                _signature(n.body) if n.body is not None else None,
                tuple(_signature(g) for g in n.iterations),
                tuple(n.counts),
                tuple(n.attrs.get("captured") or ()) if n.op == "repeat" else (),
            )
            for n in graph.nodes
        ),
        tuple(graph.outputs.items()),
    )


def _merge_labels(texts: list[str]) -> str:
    unique = list(dict.fromkeys(t for t in texts if t))
    if not unique:
        return ""
    if len(unique) == 1:
        return unique[0]
    return f"{unique[0]} \u2026 {unique[-1]}"


def _input_label(graphs: list[Graph], name: str) -> str:
    return _merge_labels([g.inputs[name].shape_text() for g in graphs if name in g.inputs])


def _value_label(graphs: list[Graph], value: str) -> str:
    return _merge_labels([_one_label(g, value) for g in graphs])


def _one_label(graph: Graph, value: str) -> str:
    try:
        text = graph.value_type(value).shape_text()
    except (KeyError, IndexError, ValueError):
        return ""
    name, _, index = value.partition(":")
    if index and index != "0":
        node = graph.node(name)
        if node is not None and node.op not in ("block", "repeat"):
            return f"{text} (output {index})"
    return text


def layout(model: Model) -> Layout:
    """The boxes, clusters and edges both formats draw, in a fixed order."""
    builder = _Builder(model.name)
    graph = model.graph
    items = builder.layout.items
    inputs: dict[str, str] = {}
    for name, type_ in graph.inputs.items():
        box = Box(INPUT, builder.new_id("input", (name,)), f"input {name}: {type_}")
        items.append(box)
        inputs[name] = box.id
    source = builder.graph([graph], (), items, inputs)
    for name, value in graph.outputs.items():
        type_ = graph.output_types.get(name)
        if type_ is None:
            try:
                type_ = graph.value_type(value)
            except (KeyError, IndexError, ValueError):
                type_ = None
        label = f"output {name}: {type_}" if type_ is not None else f"output {name}"
        box = Box(OUTPUT, builder.new_id("output", (name,)), label)
        items.append(box)
        builder.edge(source(value), box.id, _value_label([graph], value))
    return builder.layout


# ---- Mermaid ------------------------------------------------------------------------

# Characters with a meaning in Mermaid's syntax or in the HTML its labels become;
# written as Mermaid entity codes (`#35;`), as is everything outside printable ASCII.
_MERMAID_SPECIAL = set('"#&<>|`\\{}')


def mermaid_text(text: str) -> str:
    """A label for inside Mermaid's double quotes."""
    out = []
    for ch in text:
        if ch in "\r\n\t" or (ch.isascii() and not ch.isprintable()):
            out.append(" ")
        elif ch in _MERMAID_SPECIAL or not ch.isascii():
            out.append(f"#{ord(ch)};")
        else:
            out.append(ch)
    return "".join(out)


_MERMAID_SHAPES = {
    NODE: ('["', '"]'),
    INPUT: ('(["', '"])'),
    OUTPUT: ('(["', '"])'),
    PORT_IN: ('[/"', '"/]'),
    PORT_OUT: ('[\\"', '"\\]'),
}


def to_mermaid(model: Model) -> str:
    """The model as a Mermaid flowchart (`flowchart TB`), ending in a newline."""
    drawn = layout(model)
    lines = ["flowchart TB"]

    def emit(items, depth):
        pad = "    " * depth
        for item in items:
            if isinstance(item, Cluster):
                lines.append(f'{pad}subgraph {item.id} ["{mermaid_text(item.label)}"]')
                lines.append(f"{pad}    direction TB")
                emit(item.items, depth + 1)
                lines.append(f"{pad}end")
            else:
                left, right = _MERMAID_SHAPES[item.kind]
                lines.append(f"{pad}{item.id}{left}{mermaid_text(item.label)}{right}")

    emit(drawn.items, 1)
    # Edges come after every box: an edge inside a subgraph would pull its ends into it.
    for edge in drawn.edges:
        if edge.label:
            lines.append(f'    {edge.source} -->|"{mermaid_text(edge.label)}"| {edge.target}')
        else:
            lines.append(f"    {edge.source} --> {edge.target}")
    return "\n".join(lines) + "\n"


# ---- Graphviz dot ---------------------------------------------------------------------


def dot_text(text: str) -> str:
    """A string for inside dot's double quotes: backslashes and quotes escaped, `&`
    and everything outside printable ASCII as HTML entities (which dot decodes)."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch in "\r\n\t" or (ch.isascii() and not ch.isprintable()):
            out.append(" ")
        elif not ch.isascii():
            out.append(f"&#{ord(ch)};")
        else:
            out.append(ch)
    return "".join(out)


_DOT_SHAPES = {
    NODE: "",
    INPUT: ", shape=ellipse, style=filled, fillcolor=lightblue",
    OUTPUT: ", shape=ellipse, style=filled, fillcolor=lightgoldenrod1",
    PORT_IN: ", shape=parallelogram, style=solid, fontsize=10, height=0.3",
    PORT_OUT: ", shape=parallelogram, style=solid, fontsize=10, height=0.3",
}
_DOT_CLUSTERS = {
    "block": 'style="rounded"; color=gray40',
    "repeat": 'style="rounded,dashed"; color=gray40',
    "iteration": 'style="rounded,dotted"; color=gray50',
}


def to_dot(model: Model) -> str:
    """The model as a Graphviz digraph, ending in a newline."""
    drawn = layout(model)
    lines = [
        f'digraph "{dot_text(drawn.name)}" {{',
        f'    graph [rankdir=TB, label="{dot_text(drawn.name)}", labelloc=t, fontname="Helvetica", fontsize=12];',
        '    node [shape=box, style="rounded", fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]

    def emit(items, depth):
        pad = "    " * depth
        for item in items:
            if isinstance(item, Cluster):
                lines.append(f'{pad}subgraph "cluster_{item.id}" {{')
                lines.append(f'{pad}    label="{dot_text(item.label)}"; {_DOT_CLUSTERS.get(item.kind, "")};')
                emit(item.items, depth + 1)
                lines.append(f"{pad}}}")
            else:
                lines.append(f'{pad}"{item.id}" [label="{dot_text(item.label)}"{_DOT_SHAPES[item.kind]}];')

    emit(drawn.items, 1)
    for edge in drawn.edges:
        attrs = f' [label="{dot_text(edge.label)}"]' if edge.label else ""
        lines.append(f'    "{edge.source}" -> "{edge.target}"{attrs};')
    lines.append("}")
    return "\n".join(lines) + "\n"
