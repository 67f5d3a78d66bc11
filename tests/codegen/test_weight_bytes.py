"""The generator's weight-byte figure counts what the C stores: int8 weights and int32 biases as in the
flatbuffer, plus one int32 multiplier and one int8 shift per quantization channel of each weight tensor."""
import pytest
import tflite

from tests.conftest import conformance_model
from tinyexit.codegen import read_model

CONV, DEPTHWISE, FULLY_CONNECTED = 3, 4, 9


def flatbuffer_weight_bytes(path) -> int:
    m = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    g = m.Subgraphs(0)
    total = 0
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        oc = m.OperatorCodes(op.OpcodeIndex())
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) not in (CONV, DEPTHWISE, FULLY_CONNECTED):
            continue
        for k in (1, 2):                                   # weights, bias
            if op.InputsLength() > k and op.Inputs(k) >= 0:
                total += m.Buffers(g.Tensors(op.Inputs(k)).Buffer()).DataLength()
        channels = g.Tensors(op.Inputs(1)).Quantization().ScaleLength()
        total += channels * (4 + 1)                        # int32 multiplier + int8 shift per channel
    return total


@pytest.mark.parametrize("name", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite"])
def test_weight_bytes_match_the_flatbuffer(name):
    path = conformance_model(name)
    assert read_model(path).weight_bytes() == flatbuffer_weight_bytes(path)
