"""int8 of the shared exit branch.

The backbone, the poolings and T-RecX-style separate heads (for the comparison) are converted together once
and the int8 graph is cut at the exit-point tensors (`tinyexit.quantize.cut_tflite`): segment k ends at point
k, pool k is the MEAN from point k, head k is the head from point k. The branch (FULLY_CONNECTED + SOFTMAX) is
converted on the vectors; its input quantization (s, zp) is the vector's. Pool k's output tensor is given
(s x a_k, zp): MEAN requantizes, so pool k writes slice k directly in the vector's quantization, and a slice
not yet computed is zp, exactly zero for the FULLY_CONNECTED.

    quantize_branch(model, points, heads, branch, layout, scales, rep_x, rep_vectors) -> int8 pieces (bytes)
    param_bytes(tfl)                          int8 weights + int32 biases of an int8 .tflite
    BranchInt8Chain(...).run_q(q[, stop])     int8 chain on tflite_micro: branch output after every point
    build_manifest(q, layout, scales, classes) RUN/branch/manifest.json
    read_branch_manifest(branch_dir) / BranchInt8Chain.from_dir(branch_dir)
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from tinyexit.branch.vector import VectorLayout
from tinyexit.errors import TinyexitError
from tinyexit.quantize.qparams import QParams
from tinyexit.run import BranchDir


def param_bytes(tfl: bytes) -> int:
    """Bytes of the weights and biases (constant inputs 1 and 2 of CONV_2D, DEPTHWISE_CONV_2D and
    FULLY_CONNECTED) of an int8 .tflite: what an exit costs in flash before code and requantization tables."""
    import tflite

    m = tflite.Model.GetRootAsModel(tfl, 0)
    sg = m.Subgraphs(0)
    B = tflite.BuiltinOperator
    total = 0
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        oc = m.OperatorCodes(op.OpcodeIndex())
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) not in (B.CONV_2D, B.DEPTHWISE_CONV_2D,
                                                                      B.FULLY_CONNECTED):
            continue
        for j in (1, 2):
            if j < op.InputsLength() and op.Inputs(j) >= 0:
                total += m.Buffers(sg.Tensors(op.Inputs(j)).Buffer()).DataLength()
    return total


def quantize_branch(model, points: Sequence[str], heads: Sequence | None, branch, layout: VectorLayout,
                    scales: Sequence[float], rep_x: np.ndarray, rep_vectors: np.ndarray) -> dict:
    """int8 pieces. The backbone with a MEAN at every point (and the separate heads, if given) is converted
    once and cut at the point tensors; the branch is converted on `rep_vectors` and its input quantization
    written, times a_k, into each pool's output. Returns {"segments": [bytes] (N + 1: the last one is the
    model's own final classifier), "pools": [bytes], "heads": [bytes], "branch": bytes, "vector": QParams,
    "boundaries": [...]}."""
    import keras

    from tinyexit.quantize import (_subgraph, convert_int8, cut_tflite, find_boundary, output_order,
                                   set_tensor_qparams, tensor_qparams)

    n = len(points)
    pts = [model.get_layer(p).output for p in points]
    pools = [keras.layers.GlobalAveragePooling2D(name=f"shared_pool{k}")(t) for k, t in enumerate(pts)]
    head_outs = [h(t) for h, t in zip(heads, pts)] if heads else []
    probe = keras.Model(model.inputs, pools + head_outs + [model.outputs[-1]], name="shared_probe")
    whole = convert_int8(probe, rep_x)
    _, sg = _subgraph(whole)
    outs = [int(sg.Outputs(i)) for i in output_order(whole)]
    pool_o, head_o, final_o = outs[:n], outs[n:n + len(head_outs)], outs[-1]
    bounds = []
    for k, p in enumerate(points):
        later = pool_o[k:] + head_o[k:] + [final_o]
        bounds.append(find_boundary(whole, p, pts[k].shape[1:], later))
    inp = int(sg.Inputs(0))
    segs = [cut_tflite(whole, [a], [b]) for a, b in zip([inp] + bounds, bounds + [final_o])]
    head_b = [cut_tflite(whole, [bounds[k]], [head_o[k]]) for k in range(len(head_o))]
    branch_b = convert_int8(branch, rep_vectors)
    vq = tensor_qparams(branch_b, "input")
    pool_b = []
    for k in range(n):
        cut = cut_tflite(whole, [bounds[k]], [pool_o[k]])
        pool_b.append(set_tensor_qparams(cut, "output", QParams(float(np.float32(vq.scale * scales[k])),
                                                                  vq.zero_point)))
    boundaries = []
    for k, (p, t) in enumerate(zip(points, bounds)):
        q = sg.Tensors(t).Quantization()
        boundaries.append({"exit_point": p, "after_segment": k, "tensor": sg.Tensors(t).Name().decode(),
                           "scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0))})
    return {"segments": segs, "pools": pool_b, "heads": head_b, "branch": branch_b, "vector": vq,
            "boundaries": boundaries}


class BranchInt8Chain:
    """The int8 pieces chained as the firmware chains them, on tflite_micro (the generated C's oracle)."""

    def __init__(self, segments: Sequence[bytes], pools: Sequence[bytes], branch: bytes,
                 layout: VectorLayout, heads: Sequence[bytes] = ()):
        from tinyexit.quantize import TflmModel, tensor_qparams, tensor_shape

        if len(pools) != len(layout.points) or len(segments) != len(pools) + 1:
            raise TinyexitError(f"{len(segments)} segments and {len(pools)} pools for {len(layout.points)} exit "
                                f"points: expected one pool per point and one segment more")
        self.layout = layout
        self.segments = [TflmModel(b) for b in segments]
        self.pools = [TflmModel(b) for b in pools]
        self.heads = [TflmModel(b) for b in heads]
        self.branch = TflmModel(branch)
        self.input_qparams = tensor_qparams(segments[0], "input")
        self.vector_qparams = tensor_qparams(branch, "input")
        self.branch_output_qparams = tensor_qparams(branch, "output")
        self.seg_shapes = [tuple(tensor_shape(b, "output")[1:]) for b in segments]

    @classmethod
    def from_dir(cls, branch_dir: str | os.PathLike) -> "BranchInt8Chain":
        d = BranchDir(branch_dir)
        man = d.manifest()
        layout = VectorLayout(tuple(s["point"] for s in man["vector"]["slices"]),
                              tuple(s["length"] for s in man["vector"]["slices"]))
        rd = lambda e: d.piece(e["file"]).read_bytes()  # noqa: E731
        return cls([rd(s) for s in man["segments"]], [rd(p) for p in man["pools"]], rd(man["branch"]), layout,
                   [rd(h) for h in man.get("heads", [])])

    def run_q(self, q: np.ndarray, stop: int | None = None) -> dict:
        """int8 model inputs [n, ...] -> {"shared": [int8 [n, C] after point k for k = 0..stop],
        "vectors": [the int8 vector the branch saw at point k], "heads": [[n, C] per point, when built],
        "final": [n, C] (the model's own final classifier; only when stop is None)}."""
        q = np.asarray(q, np.int8)
        n, last = len(q), len(self.pools) - 1 if stop is None else int(stop)
        vec = np.full((n, self.layout.size), self.vector_qparams.zero_point, np.int8)
        act = q
        out = {"shared": [], "vectors": [], "heads": []}
        for k in range(last + 1):
            act = self.segments[k].run(act)[0].reshape((n,) + self.seg_shapes[k])
            off, length = self.layout.offsets[k], self.layout.lengths[k]
            vec[:, off:off + length] = self.pools[k].run(act)[0].reshape(n, length)
            out["vectors"].append(vec.copy())
            out["shared"].append(self.branch.run(vec)[0].reshape(n, -1))
            if self.heads:
                out["heads"].append(self.heads[k].run(act)[0].reshape(n, -1))
        if stop is None:
            out["final"] = self.segments[-1].run(act)[0].reshape(n, -1)
        return out

    def run(self, x: np.ndarray, stop: int | None = None) -> dict:
        from tinyexit.quantize import quantize_array
        return self.run_q(quantize_array(x, self.input_qparams), stop)


def read_branch_manifest(branch_dir: str | os.PathLike) -> dict:
    """RUN/branch/manifest.json, checked (`tinyexit.run.BranchDir.manifest`)."""
    return BranchDir(branch_dir).manifest()


def build_manifest(q: dict, layout: VectorLayout, scales: Sequence[float], classes: Sequence[str]) -> dict:
    """RUN/branch/manifest.json for the pieces of `quantize_branch` (docs/CONTRACTS.md)."""
    from tinyexit.quantize import count_macs, tensor_qparams, tensor_shape

    points = layout.points
    vq = q["vector"]
    seg_macs = [count_macs(b) for b in q["segments"]]
    branch_macs = count_macs(q["branch"])
    head_macs = [count_macs(b) for b in q["heads"]]
    seg_names = [f"seg{k}" for k in range(len(points) + 1)]
    return {
        "points": list(points),
        "segments": [{"name": seg_names[k], "file": f"{seg_names[k]}.tflite",
                      "ends_at": points[k] if k < len(points) else "final",
                      "input_shape": tensor_shape(b, "input")[1:], "output_shape": tensor_shape(b, "output")[1:],
                      "input": tensor_qparams(b, "input").to_json(), "output": tensor_qparams(b, "output").to_json(),
                      "macs": seg_macs[k]} for k, b in enumerate(q["segments"])],
        "pools": [{"name": f"pool{k}", "file": f"pool{k}.tflite", "point": p, "after_segment": k,
                   "input": tensor_qparams(q["pools"][k], "input").to_json(),
                   "output": tensor_qparams(q["pools"][k], "output").to_json(),
                   "offset": layout.offsets[k], "length": layout.lengths[k]} for k, p in enumerate(points)],
        "branch": {"name": "branch", "file": "branch.tflite", "input": vq.to_json(),
                   "output": tensor_qparams(q["branch"], "output").to_json(), "macs": branch_macs},
        "vector": {"size": layout.size, "scale": vq.scale, "zero_point": vq.zero_point,
                   "slices": [{"point": p, "offset": layout.offsets[k], "length": layout.lengths[k],
                               "feature_scale": scales[k],
                               "scale": tensor_qparams(q["pools"][k], "output").scale}
                              for k, p in enumerate(points)],
                   "note": "slice k = int8 MEAN over H,W of point k's map with scale vector.scale x feature_scale; "
                           "slices not computed yet hold zero_point"},
        "heads": [{"name": f"head{k}", "file": f"head{k}.tflite", "point": p, "after_segment": k,
                   "output": tensor_qparams(b, "output").to_json(), "macs": head_macs[k]}
                  for k, (p, b) in enumerate(zip(points, q["heads"]))],
        "classes": list(classes),
    }
