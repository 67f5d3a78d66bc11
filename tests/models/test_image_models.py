"""ResNet-8 and MobileNetV1-0.25 with exits: exit placement, and MACs against independent counts
(MLPerf Tiny's pretrained ResNet-8 flatbuffer; TFLite conversions of our own exit paths)."""
import pytest

from tests.conftest import conformance_model
from tests.models.test_dscnn import tflite_macs, to_tflite
from tinyexit.models import exit_spec, macs_per_exit
from tinyexit.models.mobilenet import MobileNetConfig, build_mobilenet_v1
from tinyexit.models.resnet8 import ResNet8Config, build_resnet8


def test_resnet8_baseline_macs_equal_mlperf_reference():
    ref = conformance_model("pretrainedResnet_quant.tflite").read_bytes()
    assert macs_per_exit(build_resnet8(ResNet8Config(exits_after=()))) == {"final": tflite_macs(ref)}


@pytest.mark.parametrize("build, point, shape", [
    (build_resnet8, "stack1_out", (32, 32, 16)),
    (build_mobilenet_v1, "block3_out", (24, 24, 32)),
])
def test_exit_placement_and_macs(build, point, shape):
    import keras
    m = build()
    spec = exit_spec(m)
    assert spec[0]["point"] == point and tuple(m.get_layer(point).output.shape[1:]) == shape
    got = macs_per_exit(m)
    for t in m.outputs:
        name = t._keras_history.operation.name
        assert got[name] == tflite_macs(to_tflite(keras.Model(m.inputs, t))), name
    assert got[spec[0]["name"]] < got["final"]


def test_bad_exit_positions_refused():
    with pytest.raises(ValueError, match="stacks 1..2"):
        ResNet8Config(exits_after=(3,))
    with pytest.raises(ValueError, match="blocks 1..12"):
        MobileNetConfig(exits_after=(13,))
