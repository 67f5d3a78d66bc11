"""Step order: any topological order of the ops gives the same bytes (each op is a pure function of its
inputs), but not the same arena. When a tensor feeds two branches, running first the branch that lets
the tensor die earliest frees its bytes sooner. `schedule` is a greedy list scheduler (at each step, the
ready op with the smallest net allocation, ties in file order); `generate` keeps whichever order plans the
smaller arena."""
from __future__ import annotations

from dataclasses import replace

from tinyexit.codegen.ir import Graph


def schedule(graph: Graph) -> Graph:
    ops = list(graph.ops)
    tensors = graph.tensors
    readers: dict[int, int] = {}
    for op in ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    available = set(graph.inputs)
    remaining = list(range(len(ops)))
    order: list[int] = []
    while remaining:
        ready = [i for i in remaining if all(t in available for t in ops[i].inputs)]
        if not ready:  # not a DAG over the activations we know: keep the file order
            return graph

        def net(i: int) -> int:
            op = ops[i]
            alloc = 0 if op.is_alias() else tensors[op.outputs[0]].nbytes
            freed = sum(tensors[t].nbytes for t in set(op.inputs)
                        if readers[t] == op.inputs.count(t) and t not in graph.outputs and not op.is_alias())
            return alloc - freed

        best = min(ready, key=lambda i: (net(i), i))
        order.append(best)
        remaining.remove(best)
        for t in ops[best].inputs:
            readers[t] -= 1
        available.add(ops[best].outputs[0])
    if order == sorted(order):
        return graph
    return replace(graph, ops=tuple(replace(ops[i], index=k) for k, i in enumerate(order)))
