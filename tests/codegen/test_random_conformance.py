"""Randomized conformance: small int8 models written directly as flatbuffers (tests/codegen/_random_models.py:
random layer types and widths, wide FULLY_CONNECTED layers with hundreds of outputs, deep FC stacks, random
scales, scales whose float32 input x filter product is inexact, biases aimed at requantization rounding
boundaries) compared with tflite_micro on EVERY layer's output and on the whole model, for both kernel variants
(cortex_m4 builds its portable branch on the host). benchmarks/conformance_sweep.py runs the same generator on
thousands of models."""
import itertools
from collections import Counter

import numpy as np
import pytest

from tests.codegen import _random_models as R
from tests.conftest import require_program

N_MODELS = 27               # every family x scale class combination three times
N_INPUTS = 100
SEED0 = 1000


@pytest.fixture(scope="module")
def sweep():
    require_program("gcc", "apt-get install -y gcc make")
    combos = list(itertools.product(R.FAMILIES, R.SCALE_CLASSES))
    models = [R.random_model(SEED0 + i, N_INPUTS, *combos[i % len(combos)]) for i in range(N_MODELS)]
    return models, [c for m in models for c in m.cases()]


def _report(cases, same) -> str:
    bad = [c for c in cases if not same[c.name].all()]
    kinds = Counter(c.kind for c in bad)
    first = ", ".join(f"{c.name} ({int((~same[c.name]).sum())}/{len(c.inputs)} inputs)" for c in bad[:6])
    return f"{len(bad)} of {len(cases)} cases differ from tflite_micro; by op: {dict(kinds)}; first: {first}"


def test_the_generator_covers_what_the_sweep_claims(sweep):
    models, cases = sweep
    kinds = Counter(c.kind for c in cases)
    for kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                 "MEAN", "SOFTMAX", "CONCATENATION", "RESHAPE", "QUANTIZE", "WHOLE_MODEL"):
        assert kinds[kind] >= 2, f"no {kind} layers drawn: {dict(kinds)}"
    fc_widths = [m.g.spec(la.output).shape[-1] for m in models for la in m.g.layers
                 if la.kind == "FULLY_CONNECTED"]
    assert max(fc_widths) >= 400 and sum(w >= 200 for w in fc_widths) >= 5
    deep = [sum(la.kind == "FULLY_CONNECTED" for la in m.g.layers) for m in models if m.family == "fc_deep"]
    assert min(deep) >= 6
    assert {m.scale_class for m in models} == set(R.SCALE_CLASSES)
    assert all(len(c.inputs) == N_INPUTS for c in cases)


@pytest.mark.parametrize("kernels", ["reference", "cortex_m4"])
def test_every_layer_of_random_models_equals_tflite_micro(sweep, tmp_path, kernels):
    _, cases = sweep
    result = R.compare(cases, tmp_path, kernels)
    assert all(v.all() for v in result.same.values()), _report(cases, result.same)
    # The sparse twins (layers with 85 % zero weights are stored as run lists) ran too.
    assert {"tx_sparse_fc.c", "tx_sparse_conv.c"} <= set(result.kernel_files), result.kernel_files


def test_the_sweep_catches_a_multiplier_from_the_float32_scale_product(sweep, tmp_path, monkeypatch):
    """The bug this sweep was written for: FULLY_CONNECTED's multiplier from float32(input_scale *
    filter_scale) (tflite_micro takes that product in double). Its tie-class FC layers must expose it."""
    import tinyexit.codegen.ops.fully_connected as fc
    from tinyexit.codegen.quant import quantize_multiplier

    def float32_product(input_scale, filter_scale, output_scale):
        return quantize_multiplier(float(np.float32(input_scale) * np.float32(filter_scale))
                                   / float(np.float32(output_scale)))

    monkeypatch.setattr(fc, "fc_multiplier", float32_product)
    models, cases = sweep
    tie_fc = {la.name for m in models if m.scale_class == "tie" for la in m.g.layers
              if la.kind == "FULLY_CONNECTED"}
    picked = [c for c in cases if c.name in tie_fc]
    result = R.compare(picked, tmp_path, "reference")
    bad = [n for n, v in result.same.items() if not v.all()]
    assert len(bad) >= 3, f"only {len(bad)} of {len(picked)} tie-class FC layers exposed the float32 product"


def _requantizing_copy(kind: str) -> bytes:
    """A one-op model tflite_micro refuses at Prepare: CONCATENATION or a pool whose output is quantized unlike
    its input, or a per-tensor FULLY_CONNECTED whose bias scale is not input x weight scale."""
    fb = R.fb
    g = R.Graph()
    x = g.act_tensor((1, 4, 4, 2), 0.1, 3)
    g.input = x
    if kind.startswith("concat"):
        y = g.act_tensor((1, 4, 4, 4), 0.2 if kind.endswith("scale") else 0.1, 5 if kind.endswith("zp") else 3)
        o = fb.ConcatenationOptionsT()
        o.axis = 3
        g.add_op(R.OpSpec(fb.BuiltinOperator.CONCATENATION, (x, x), (y,), fb.BuiltinOptions.ConcatenationOptions, o))
    elif kind == "fc_bias_scale":       # bias scale twice input x weight scale: 0.02 output steps off
        x = g.act_tensor((1, 8), 0.1, 3)
        g.input = x
        w = g.add_tensor(R.TensorSpec((4, 8), R.INT8, (0.01,), (0,), data=np.ones((4, 8), np.int8)))
        b = g.add_tensor(R.TensorSpec((4,), R.INT32, (0.002,), (0,), data=np.arange(4, dtype=np.int32)))
        y = g.act_tensor((1, 4), 0.05, 0)
        g.add_op(R.OpSpec(fb.BuiltinOperator.FULLY_CONNECTED, (x, w, b), (y,),
                          fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT()))
    else:
        y = g.act_tensor((1, 4, 4, 2), 0.2 if kind.endswith("scale") else 0.1, 9 if kind.endswith("zp") else 3)
        o = fb.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = fb.Padding.SAME, 1, 1, 2, 2
        code = fb.BuiltinOperator.AVERAGE_POOL_2D if kind.startswith("avg") else fb.BuiltinOperator.MAX_POOL_2D
        g.add_op(R.OpSpec(code, (x,), (y,), fb.BuiltinOptions.Pool2DOptions, o))
    return g.serialize(y)


@pytest.mark.parametrize("kind", ["concat_scale", "concat_zp", "avgpool_scale", "maxpool_zp", "fc_bias_scale"])
def test_what_tflite_micro_refuses_for_its_quantization_is_refused(tmp_path, kind):
    from tflite_micro.python.tflite_micro import runtime

    from tinyexit.codegen import generate
    from tinyexit.errors import TinyexitError

    model = _requantizing_copy(kind)
    with pytest.raises(RuntimeError):           # the oracle's Prepare refuses the model
        runtime.Interpreter.from_bytes(model)
    p = tmp_path / f"{kind}.tflite"
    p.write_bytes(model)
    with pytest.raises(TinyexitError, match="quantiz|bias .* scale"):
        generate({kind: p}, tmp_path / "lib", measure=False, compare_tflm=False)
    assert not (tmp_path / "lib").exists()
