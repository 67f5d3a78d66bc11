"""`tinyexit generate RUN`: every segment and exit head of RUN/quant/manifest.json in one library, each
equal to TFLM (hand-made manifest and small models shaped like our exit heads); the models and the chain the
code generator is given come from the run (`Run.quant_models`, `Run.chain`): codegen never reads a run folder."""
import json

import numpy as np
import pytest

from tests.ops._harness import Case, convert
from tinyexit.cli import main
from tinyexit.codegen import read_model
from tinyexit.conformance import build_host, run_host, structured_inputs, tflm_outputs
from tinyexit.errors import TinyexitError
from tinyexit.quantize import count_macs, tensor_qparams
from tinyexit.run import Run


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
    tfl = {}
    for name, build, shape in (("seg0", _seg0, (10, 10, 1)), ("exit1", _exit1, (5, 5, 8)),
                               ("seg1", _seg1, (5, 5, 8))):
        tfl[name] = convert(Case(name, build, shape))
        (q / f"{name}.tflite").write_bytes(tfl[name])

    def qp(name, which):
        return tensor_qparams(tfl[name], which).to_json()

    macs = {name: count_macs(b) for name, b in tfl.items()}
    manifest = {"segments": [{"name": "seg0", "file": "seg0.tflite", "input_shape": [10, 10, 1],
                              "output_shape": [5, 5, 8], "input": qp("seg0", "input"), "output": qp("seg0", "output"),
                              "macs": macs["seg0"]},
                             {"name": "seg1", "file": "seg1.tflite", "input_shape": [5, 5, 8], "output_shape": [3],
                              "input": qp("seg1", "input"), "output": qp("seg1", "output"), "macs": macs["seg1"]}],
                "exits": [{"name": "exit1", "file": "exit1.tflite", "after_segment": 0, "output": qp("exit1", "output"),
                           "macs": macs["exit1"], "macs_to_exit": macs["seg0"] + macs["exit1"]},
                          {"name": "final", "file": None, "after_segment": 1, "output": qp("seg1", "output"),
                           "macs": 0, "macs_to_exit": macs["seg0"] + macs["seg1"] + macs["exit1"]}],
                "no_exit_macs": macs["seg0"] + macs["seg1"],
                "classes": ["a", "b", "c"]}
    (q / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_generate_run_directory(run_dir, capsys):
    assert main(["generate", str(run_dir), "--no-tflm"]) == 0
    printed = capsys.readouterr().out
    lib = run_dir / "firmware" / "model"
    assert "arena" in printed and str(lib) in printed
    names = list(Run(run_dir).quant_models())
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
    with pytest.raises(TinyexitError, match="quant/manifest.json.*tinyexit quantize"):
        Run(tmp_path).quant_models()
    assert main(["generate", str(tmp_path)]) == 2


def test_manifest_pointing_to_a_missing_file(run_dir, tmp_path):
    run = tmp_path / "run"
    (run / "quant").mkdir(parents=True)
    manifest = json.loads((run_dir / "quant" / "manifest.json").read_text())
    manifest["segments"][0]["file"] = "nope.tflite"
    (run / "quant" / "manifest.json").write_text(json.dumps(manifest))
    for name in ("seg1", "exit1"):
        (run / "quant" / f"{name}.tflite").write_bytes((run_dir / "quant" / f"{name}.tflite").read_bytes())
    with pytest.raises(TinyexitError, match="nope.tflite.*tinyexit quantize"):
        Run(run).quant_models()


def test_chained_run_shares_the_exit_point_range(run_dir, tmp_path):
    """With the run's chain, seg0's output range is exit1's and seg1's input range, and nothing of exit1 (no
    tensor it writes, no scratch, no in-place op) touches it: seg1 can run on it after the head."""
    from tinyexit.codegen import generate
    from tinyexit.codegen.fuse import fuse
    from tinyexit.codegen.generate import Link
    from tinyexit.codegen.plan import plan_memory

    chain = Run(run_dir).chain()
    assert chain == [Link("seg0", ("exit1",), "seg1")]
    assert Run(run_dir).chain({"exit1": "exit1_confidence"}) == [Link("seg0", ("exit1_confidence", "exit1"), "seg1")]
    models = Run(run_dir).quant_models()
    alone = generate(models, tmp_path / "alone", measure=False, compare_tflm=False)
    rep = generate(models, tmp_path / "lib", measure=False, compare_tflm=False, chain=chain)
    assert rep.chained and not alone.chained
    header = (tmp_path / "lib" / "tx_model.h").read_text()
    assert "#define TX_CHAIN_seg0__exit1 1" in header and "#define TX_CHAIN_seg0__seg1 1" in header
    assert "TX_CHAIN_" not in (tmp_path / "alone" / "tx_model.h").read_text()
    # the planner's guarantee, on the head planned alone with its input pinned and kept
    g = fuse(read_model(run_dir / "quant" / "exit1.tflite"))
    x = g.input
    plan = plan_memory(g, pinned={x.index: 400}, keep_input=True)
    assert plan.offsets[x.index] == 400 and x.index not in plan.inplace.values()
    lo, hi = 400, 400 + x.nbytes
    written = [(plan.offsets[t], g.tensors[t].nbytes) for op in g.ops for t in op.outputs if not op.is_alias()]
    for off, size in written + list(plan.scratch.values()):
        assert off + size <= lo or hi <= off, (off, size)
    assert all(any(o <= lo and hi <= o + s for o, s in live) for live in plan.live)
    # the library computes the same bytes as TFLM for every model, chained or not
    exe = build_host(tmp_path / "lib")
    rng = np.random.default_rng(7)
    for name in ("seg0", "exit1", "seg1"):
        path = run_dir / "quant" / f"{name}.tflite"
        m = read_model(path)
        xs = rng.integers(-128, 128, size=(20, *m.input.shape[1:])).astype(np.int8)
        np.testing.assert_array_equal(run_host(exe, name, xs, m.output.nbytes), tflm_outputs(path, xs), err_msg=name)
