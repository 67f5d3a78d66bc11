"""Where a model's exits are: found from the functional graph, so it works for any builder (ours or a
user's model with exit heads attached)."""
from __future__ import annotations

import keras

from tinyexit.models.macs import ancestors, macs_per_exit


def output_name(t) -> str:
    return t._keras_history.operation.name


def output_names(model: keras.Model) -> list[str]:
    """The names of the model's outputs (their layers), in output order."""
    return [output_name(t) for t in model.outputs]


def exit_spec(model: keras.Model) -> list[dict]:
    """One dict per output, in output order (final last): its name, the exit point (the backbone layer whose
    output feeds the exit head; None for the final exit) and the head's layer names in model order.
    The head of an exit is what it depends on that the final output does not."""
    final = model.outputs[-1]
    backbone = ancestors(final)
    specs = []
    for t in model.outputs[:-1]:
        head = ancestors(t) - backbone
        points = set()
        for lay in model.layers:
            if lay.name in head:
                for node in lay._inbound_nodes:
                    points |= {output_name(x) for x in node.input_tensors if output_name(x) in backbone}
        if len(points) != 1:
            raise ValueError(f"exit {output_name(t)} reads {len(points)} backbone layers ({sorted(points)}); "
                             f"an exit head must hang off exactly one exit point")
        specs.append({"name": output_name(t), "point": points.pop(),
                      "head": [lay.name for lay in model.layers if lay.name in head]})
    specs.append({"name": output_name(final), "point": None, "head": []})
    return specs


def exits_with_macs(model: keras.Model) -> list[dict]:
    """exit_spec(model), each exit also with "macs": the MACs from the model input to that exit (what
    model.json records)."""
    specs = exit_spec(model)
    macs = macs_per_exit(model)
    for s in specs:
        s["macs"] = int(macs[s["name"]])
    return specs
