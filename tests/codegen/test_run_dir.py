"""`tinyexit generate RUN`: every segment and exit head of RUN/quant/manifest.json in one library, each
equal to TFLM (hand-made manifest and small models shaped like our exit heads)."""
import json

import numpy as np
import pytest

from tests.ops._harness import Case, convert
from tinyexit.cli import main
from tinyexit.codegen import models_from_run, read_model
from tinyexit.codegen.testing import build_host, run_host, structured_inputs, tflm_outputs
from tinyexit.errors import TinyexitError


def _seg0(keras):
    x = keras.Input((10, 10, 1), batch_size=1)
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(x, keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(y))


def _exit1(keras):
    x = keras.Input((5, 5, 8), batch_size=1)
    y = keras.layers.Lambda(lambda t: t[..., :4])(x)
    y = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(y)
    y = keras.layers.AveragePooling2D(3)(y)
    y = keras.layers.Flatten()(y)
    return keras.Model(x, keras.layers.Dense(3, activation="softmax")(y))


def _seg1(keras):
    x = keras.Input((5, 5, 8), batch_size=1)
    y = keras.layers.Conv2D(8, 1, activation="relu")(x)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(3, activation="softmax")(y))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    q = run / "quant"
    q.mkdir()
    for name, build, shape in (("seg0", _seg0, (10, 10, 1)), ("exit1", _exit1, (5, 5, 8)),
                               ("seg1", _seg1, (5, 5, 8))):
        (q / f"{name}.tflite").write_bytes(convert(Case(name, build, shape)))
    manifest = {"segments": [{"name": "seg0", "file": "seg0.tflite", "input_shape": [10, 10, 1],
                              "output_shape": [5, 5, 8]},
                             {"name": "seg1", "file": "seg1.tflite", "input_shape": [5, 5, 8], "output_shape": [3]}],
                "exits": [{"name": "exit1", "file": "exit1.tflite", "after_segment": 0},
                          {"name": "final", "file": None, "after_segment": 1}],
                "classes": ["a", "b", "c"]}
    (q / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_generate_run_directory(run_dir, capsys):
    assert main(["generate", str(run_dir), "--no-tflm"]) == 0
    printed = capsys.readouterr().out
    lib = run_dir / "firmware" / "model"
    assert "arena" in printed and str(lib) in printed
    names = list(models_from_run(run_dir))
    assert names == ["seg0", "seg1", "exit1"]
    exe = build_host(lib)
    rng = np.random.default_rng(5)
    for name in names:
        path = run_dir / "quant" / f"{name}.tflite"
        g = read_model(path)
        shape = g.input.shape[1:]
        x = np.concatenate([rng.integers(-128, 128, size=(40, *shape)).astype(np.int8),
                            structured_inputs(shape, g.input.zero_point, rng)])
        np.testing.assert_array_equal(run_host(exe, name, x, g.output.nbytes), tflm_outputs(path, x),
                                      err_msg=name)
    header = (lib / "tx_model.h").read_text()
    assert all(f"extern const tx_model_t tx_model_{n};" in header for n in names)
    assert "STRIDED_SLICE" in (lib / "tx_model_exit1.c").read_text()


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(TinyexitError, match="quant/manifest.json"):
        models_from_run(tmp_path)


def test_manifest_pointing_to_a_missing_file(tmp_path):
    (tmp_path / "quant").mkdir()
    (tmp_path / "quant" / "manifest.json").write_text(json.dumps(
        {"segments": [{"name": "seg0", "file": "nope.tflite"}], "exits": []}))
    with pytest.raises(TinyexitError, match="nope.tflite"):
        models_from_run(tmp_path)
