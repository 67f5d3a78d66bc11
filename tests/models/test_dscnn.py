"""DS-CNN with exits: exit placement, outputs, and MAC counts against independent counts taken from
TFLite flatbuffers (ours converted, and MLPerf Tiny's reference KWS model)."""
import numpy as np
import pytest

from tests.conftest import conformance_model
from tinyexit.models import DSCNNConfig, build_dscnn, exit_spec, macs_per_exit, macs_per_layer


def tflite_macs(flatbuffer: bytes) -> int:
    """MACs of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops, from tensor shapes in a .tflite."""
    import tflite
    m = tflite.Model.GetRootAsModel(flatbuffer, 0)
    g = m.Subgraphs(0)
    total = 0
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        oc = m.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        out = g.Tensors(op.Outputs(0)).ShapeAsNumpy()
        w = g.Tensors(op.Inputs(1)).ShapeAsNumpy() if op.InputsLength() > 1 else None
        if code == tflite.BuiltinOperator.CONV_2D:                 # weights OHWI
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif code == tflite.BuiltinOperator.DEPTHWISE_CONV_2D:     # weights 1HWC
            total += int(np.prod(out)) * int(w[1] * w[2])
        elif code == tflite.BuiltinOperator.FULLY_CONNECTED:       # weights [out, in]
            total += int(np.prod(out)) * int(w[1])
    return total


def to_tflite(model) -> bytes:
    import tensorflow as tf
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_baseline_macs_equal_mlperf_reference_model():
    """Without exits our DS-CNN is MLPerf Tiny's: same MACs as kws_ref_model.tflite, counted from its file."""
    ref = conformance_model("kws_ref_model.tflite").read_bytes()
    base = build_dscnn(DSCNNConfig(exits_after=(), early_view=False))
    assert macs_per_exit(base) == {"final": tflite_macs(ref)}


def test_exit_placement_and_outputs():
    m = build_dscnn()
    assert [t._keras_history.operation.name for t in m.outputs] == ["exit2", "final"]
    assert tuple(m.get_layer("block2_out").output.shape[1:]) == (25, 5, 64)
    assert tuple(m.get_layer("exit2_slice").output.shape[1:]) == (25, 5, 32)
    spec = exit_spec(m)
    assert spec[0]["point"] == "block2_out" and spec[-1] == {"name": "final", "point": None, "head": []}
    # The exit head hangs off block 2's output: its first layer reads block2_out.
    assert m.get_layer("exit2_slice")._inbound_nodes[0].input_tensors[0]._keras_history.operation.name == "block2_out"
    y = m.predict(np.zeros((2, 49, 10, 1), np.float32), verbose=0)
    assert len(y) == 2 and y[0].shape == (2, 12)
    np.testing.assert_allclose(y[0].sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("exits", [(2,), (1, 3)])
def test_macs_per_exit_against_converted_submodels(exits):
    import keras
    m = build_dscnn(DSCNNConfig(exits_after=exits))
    got = macs_per_exit(m)
    for t in m.outputs:
        name = t._keras_history.operation.name
        sub = keras.Model(m.inputs, t)
        assert got[name] == tflite_macs(to_tflite(sub)), name
    # each exit costs less than the full model, deeper exits cost more
    costs = [got[f"exit{b}"] for b in exits] + [got["final"]]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    assert sum(macs_per_layer(m).values()) > got["final"]   # exit heads are not part of the final path


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="exits go after blocks"):
        DSCNNConfig(exits_after=(4,))
