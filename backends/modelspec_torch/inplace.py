"""Which nodes of a graph the generated forward may skip, and which may write
their result over an input's memory.

Two savings, both decided per graph before any line is emitted:

- A node whose lowering says it computes nothing (`Lowering.skip`: dropout
  with p == 0) gets no line: its output *is* its input, and every later use
  of it is a use of that input.
- An op that can run in place (`Lowering.inplace`: ReLU, LeakyReLU, add)
  overwrites one input when nothing can tell: `F.relu(h, inplace=True)`,
  `h.add_(x)`. That saves an activation-sized allocation per op and step,
  which is what hand-written PyTorch (torchvision, the DCGAN example) does.

Overwriting input `v` of node `n` is safe when all of these hold:

1. `v` is the output of a node of this graph whose lowering is `fresh`: it
   returns a new tensor (not a view, not its input, not a parameter) that
   autograd does not keep for backward (linear, conv, the norms, add keep
   their *inputs*, if anything). ReLU, sigmoid, tanh, softmax and attention
   keep their output, so it must not change afterwards; views, blocks,
   repeats and ops we know nothing about (plugins) may share memory with
   something else. Graph inputs belong to the caller; never.
2. `n` is the only use of `v` anywhere in the graph, counted with
   multiplicity: no other node reads it before (it may have saved it for
   backward, or made a view of it) or after (it would read the new values),
   it is not an output of the graph, and `n` does not read it twice.
3. The op can write there: `Lowering.inplace` lists the inputs that it can
   overwrite for this node (an add's operand must already have the output's
   shape and dtype; LeakyReLU needs a slope >= 0 to run in place under
   autograd).

Values that an in-place node writes into stay "owned": its output may be
overwritten again by a later node if its lowering is fresh (add_: yes; relu_
keeps its result for backward: no), because the chain's earlier values each
had one use, the node that overwrote them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from modelspec.ir.graph import Graph


@dataclass
class Plan:
    """What the forward of one graph may skip and overwrite."""

    same_as: dict[str, str] = field(default_factory=dict)  # skipped node's output -> the value it passes on
    overwrite: dict[str, int] = field(default_factory=dict)  # node name -> index of the input it overwrites

    def skips(self, node_name: str) -> bool:
        return node_name in self.same_as

    def resolve(self, ref: str) -> str:
        while ref in self.same_as:
            ref = self.same_as[ref]
        return ref


def plan(graph: Graph, lowerings: dict) -> Plan:
    """The plan for `graph`, with the backend's lowerings by op name (plugins' included)."""
    result = Plan()
    for node in graph.nodes:
        skip = getattr(lowerings.get(node.op), "skip", None)
        if skip is not None and len(node.inputs) >= 1 and len(node.outputs) == 1 and skip(node):
            result.same_as[node.name] = result.resolve(node.inputs[0])

    uses: Counter[str] = Counter()
    for node in graph.nodes:
        if not result.skips(node.name):
            uses.update(result.resolve(ref) for ref in node.inputs)
    uses.update(result.resolve(ref) for ref in graph.outputs.values())

    owned: set[str] = set()  # values a later node may overwrite, if it is their only use
    for node in graph.nodes:
        if result.skips(node.name):
            continue
        lowering = lowerings.get(node.op)
        candidates = getattr(lowering, "inplace", None)
        if candidates is not None:
            types = [graph.value_type(ref) for ref in node.inputs]
            for k in candidates(node, types):
                ref = result.resolve(node.inputs[k])
                if ref in owned and uses[ref] == 1:
                    result.overwrite[node.name] = k
                    break
        if getattr(lowering, "fresh", False) and len(node.outputs) == 1:
            owned.add(node.name)
    return result
