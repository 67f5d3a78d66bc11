"""Bad input gives one clear message (naming op and index where there is one) and writes nothing."""

import numpy as np
import pytest

from tests.conftest import conformance_model
from tests.ops._harness import Case, _quiet, convert
from tinyexit.cli import main
from tinyexit.codegen import generate, read_model
from tinyexit.errors import TinyexitError, UnsupportedModelError


def _tanh(keras):
    x = keras.Input((6, 6, 2), batch_size=1)
    y = keras.layers.Conv2D(3, 3, padding="same")(x)
    return keras.Model(x, keras.layers.Activation("tanh")(y))


def _dilated(keras):
    x = keras.Input((9, 9, 2), batch_size=1)
    y = keras.layers.Conv2D(3, 1)(x)
    return keras.Model(x, keras.layers.Conv2D(4, 3, dilation_rate=2)(y))


def _float_model_bytes():
    import keras
    import tensorflow as tf

    x = keras.Input((4, 4, 1), batch_size=1)
    m = keras.Model(x, keras.layers.Conv2D(2, 3)(x))
    with _quiet():
        return bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    raw = conformance_model("kws_ref_model.tflite").read_bytes()
    files = {
        "garbage": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "corrupt_header": raw[:4] + b"XXXX" + raw[8:],
        "truncated": raw[: len(raw) // 2],
        "truncated_tail": raw[:-64],
        "float": _float_model_bytes(),
        "tanh": convert(Case("tanh", _tanh, (6, 6, 2))),
        "dilated": convert(Case("dilated", _dilated, (9, 9, 2))),
    }
    for name, data in files.items():
        (d / f"{name}.tflite").write_bytes(data)
    return d


@pytest.mark.parametrize("name", ["garbage", "corrupt_header", "truncated", "truncated_tail"])
def test_unreadable_file(bad_models, tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(TinyexitError) as e:
        generate(bad_models / f"{name}.tflite", out)
    msg = str(e.value)
    assert f"{name}.tflite" in msg and ("corrupt" in msg or "truncated" in msg) and "Re-export" in msg
    assert not out.exists() and not any(tmp_path.iterdir())


def test_float_model(bad_models, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(TinyexitError) as e:
        generate(bad_models / "float.tflite", out)
    assert "float model" in str(e.value) and "tf.int8" in str(e.value)
    assert not out.exists()


def test_unsupported_op_named_with_index(bad_models, tmp_path):
    g_ops = None
    with pytest.raises(UnsupportedModelError) as e:
        read_model(bad_models / "tanh.tflite")
    # Independent check of the index: find TANH in the flatbuffer ourselves.
    import tflite
    m = tflite.Model.GetRootAsModel((bad_models / "tanh.tflite").read_bytes(), 0)
    sg = m.Subgraphs(0)
    for i in range(sg.OperatorsLength()):
        code = m.OperatorCodes(sg.Operators(i).OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.TANH:
            g_ops = i
    assert g_ops is not None
    assert str(e.value).startswith(f"tanh.tflite: op {g_ops} (TANH) is not supported")


def test_dilated_conv_refused(bad_models, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UnsupportedModelError) as e:
        generate(bad_models / "dilated.tflite", out)
    msg = str(e.value)
    # The converter either keeps a dilated CONV_2D or rewrites it with SPACE_TO_BATCH_ND: both are refused
    # with the op's name and index.
    assert ("CONV_2D): dilation 2x2 is not supported" in msg) or ("SPACE_TO_BATCH_ND) is not supported" in msg)
    assert msg.startswith("dilated.tflite: op ")
    assert not out.exists()


def test_one_bad_model_among_good_ones_writes_nothing(bad_models, tmp_path):
    out = tmp_path / "out"
    good = conformance_model("kws_ref_model.tflite")
    with pytest.raises(UnsupportedModelError):
        generate({"kws": good, "head": bad_models / "tanh.tflite"}, out)
    assert not out.exists()


def test_cli_prints_one_line_without_traceback(bad_models, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["generate", str(bad_models / "tanh.tflite"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "(TANH)" in err
    assert not out.exists()
