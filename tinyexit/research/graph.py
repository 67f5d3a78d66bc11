"""The Keras functional graph as augment and search read it: who produces and consumes each layer's output,
which layers' tensors survive int8 conversion, and where the graph can be cut for an exit.

Exit points (`candidate_points`): outputs of layers that cut the graph (every path from the input to the
final output passes through them: no skip connection crosses), that are rank-4 feature maps of at least
`min_size` rows and columns, and whose tensor survives int8 conversion (not a conv/add that a following batch
norm or ReLU is fused into, not a dropout).

    _Graph(output)                      producers, consumers, tensors and inputs of the graph of `output`;
                                        `ancestors(name)`
    point_tensor(model, point)          the output tensor of layer `point` in the final output's graph
    backbone_model(model)               the model with its final output only
    candidate_points(model, min_size=2) -> [{"point", "shape", "macs_to_point"}]
"""
from __future__ import annotations

from tinyexit.errors import TinyexitError

FUSED_INTO_PRODUCER = ("BatchNormalization", "ReLU", "Activation", "LeakyReLU", "ReLU6")
IDENTITY_AT_INFERENCE = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                         "GaussianDropout", "AlphaDropout", "ActivityRegularization")


def _producer(t) -> str:
    return t._keras_history.operation.name


class _Graph:
    """The functional graph that produces `output`, walked through the exact nodes it uses (a layer of a
    Sequential model may carry many inbound nodes from being rebuilt; only one set forms the model)."""

    def __init__(self, output):
        self.tensor: dict[str, object] = {}          # layer name -> its output tensor in this graph
        self.producers: dict[str, list[str]] = {}    # layer name -> layers it reads
        self.consumers: dict[str, list[str]] = {}
        self.input_names: set[str] = set()
        stack = [output]
        while stack:
            t = stack.pop()
            op, ni, _ = t._keras_history
            if op.name in self.tensor:
                continue
            self.tensor[op.name] = t
            node = op._inbound_nodes[ni]
            self.producers[op.name] = []
            if node.is_input:
                self.input_names.add(op.name)
            for u in node.input_tensors:
                src = _producer(u)
                if src not in self.producers[op.name]:
                    self.producers[op.name].append(src)
                self.consumers.setdefault(src, [])
                if op.name not in self.consumers[src]:
                    self.consumers[src].append(op.name)
                stack.append(u)

    def ancestors(self, name: str) -> set[str]:
        """The layers the output of layer `name` depends on, itself included."""
        seen, stack = set(), [name]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.producers.get(n, []))
        return seen


def point_tensor(model, point: str):
    """The output tensor of layer `point` in the graph of `model`'s final output."""
    g = _Graph(model.outputs[-1])
    if point not in g.tensor:
        raise TinyexitError(f"layer '{point}' is not on the path to the model's final output")
    return g.tensor[point]


def backbone_model(model):
    """The model with its final output only (exits of a trained run dropped); a single-output model as is."""
    import keras

    if len(model.inputs) != 1:
        raise TinyexitError(f"model '{model.name}' has {len(model.inputs)} inputs; exits can be attached to "
                            f"single-input models only")
    if len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs[0], model.outputs[-1], name=model.name)


def _reaches_input(final_name: str, producers: dict, input_names: set, blocked: str) -> bool:
    seen, stack = set(), [final_name]
    while stack:
        n = stack.pop()
        if n == blocked or n in seen:
            continue
        if n in input_names:
            return True
        seen.add(n)
        stack.extend(producers.get(n, []))
    return False


def candidate_points(model, min_size: int = 2) -> list[dict]:
    """Layers of `model` (its final output's graph) where an exit head can be attached, in depth order:
    {"point": layer name, "shape": [H, W, C], "macs_to_point": MACs from the input to there}."""
    from tinyexit.models import macs_per_layer

    model = backbone_model(model)
    g = _Graph(model.outputs[0])
    final_name = _producer(model.outputs[0])
    macs = macs_per_layer(model)
    by_name = {lay.name: lay for lay in model.layers}
    out = []
    for lay in model.layers:
        if lay.name not in g.tensor or lay.name in g.input_names or lay.name == final_name:
            continue
        if type(lay).__name__ in IDENTITY_AT_INFERENCE:
            continue
        shape = tuple(g.tensor[lay.name].shape[1:])
        if len(shape) != 3 or shape[0] < min_size or shape[1] < min_size:
            continue
        cons = g.consumers.get(lay.name, [])
        if len(cons) == 1 and type(by_name[cons[0]]).__name__ in FUSED_INTO_PRODUCER:
            continue        # int8 conversion fuses the next layer into this one: its tensor does not exist
        if _reaches_input(final_name, g.producers, g.input_names, lay.name):
            continue        # a path around it (skip connection): not a cut
        out.append({"point": lay.name, "shape": [int(v) for v in shape],
                    "macs_to_point": int(sum(macs.get(n, 0) for n in g.ancestors(lay.name)))})
    return out
