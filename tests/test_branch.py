"""Shared exit branch (FreeML): a tiny trained DS-CNN with 3 exit points. Checked against independent oracles:
the Keras layer shapes (memory), integer MEAN arithmetic on the boundary tensors (slice quantization), the
float branch (zero slices), tflite_micro (every generated C piece, byte for byte) and the int8 chain on
tflite_micro (the C anytime driver, for every stopping point)."""
import json
import shutil
import subprocess

import numpy as np
import pytest

from tests._data import template_data
from tests._stats import assert_accuracy_beats_chance, seed
from tests.conftest import require_program
from tinyexit.cli import main as cli
from tinyexit.errors import TinyexitError

NUM_CLASSES = 12


def make_data(n, seed):
    return template_data(n, seed, noise=1.5)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import keras

    from tinyexit.models import DSCNNConfig, build_dscnn, exit_spec
    keras.utils.set_random_seed(seed(0))
    model = build_dscnn(DSCNNConfig(filters=16, blocks=3, exits_after=(2,), head_channels=8))
    x, y = make_data(600, seed(0))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=["sparse_categorical_crossentropy"] * 2)
    model.fit(x, [y, y], epochs=3, batch_size=50, verbose=0)
    run = tmp_path_factory.mktemp("branch") / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "model.json").write_text(json.dumps({
        "task": "kws", "input_shape": [49, 10, 1], "classes": [f"c{i}" for i in range(NUM_CLASSES)],
        "exits": exit_spec(model), "data": {"source": "test"}}))
    data = {"train": (x, y), "validation": make_data(120, seed(1)), "test": make_data(80, seed(2))}
    return run, data


@pytest.fixture(scope="module")
def shared(tiny_run):
    from tinyexit.branch import BranchConfig, train_branch
    run, data = tiny_run
    cfg = BranchConfig(epochs=30, batch_size=50, learning_rate=2e-2, head_epochs=2, head_channels=8,
                       num_calibration=100)
    report = train_branch(run, config=cfg, data=data, measure=False)
    return run, data, report


@pytest.fixture(scope="module")
def chain_outputs(shared):
    from tinyexit.branch import BranchInt8Chain
    run, data, _ = shared
    chain = BranchInt8Chain.from_dir(run / "branch")
    x = data["test"][0][:40]
    from tinyexit.quantize import quantize_array
    xq = quantize_array(x, chain.input_qparams)
    return chain, xq, chain.run_q(xq)


def test_default_points_and_refusals(tiny_run):
    from tinyexit.branch import check_points
    from tinyexit.run import Run
    model = Run(tiny_run[0]).load_model()
    assert check_points(model, None) == ["block1_out", "block2_out", "block3_out"]
    assert check_points(model, ["block3_out", "block1_out"]) == ["block1_out", "block3_out"]   # depth order
    for bad, words in ((["nope"], "block1_out"), (["exit2_relu"], "not on the path"),
                       (["block1_out", "block1_out"], "twice"), (["final_dense"], "NHWC")):
        with pytest.raises(TinyexitError, match=words):
            check_points(model, bad)


def test_cli_refuses_with_the_fix_and_writes_nothing(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    assert cli(["branch", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    before = sorted(p.name for p in run.iterdir())
    assert cli(["branch", str(run), "--points", "block9_out"]) == 2
    err = capsys.readouterr().err
    assert "block9_out" in err and "block1_out" in err
    assert sorted(p.name for p in run.iterdir()) == before


def test_manifest_layout_and_slice_quantization(shared):
    run, _, report = shared
    man = json.loads((run / "branch" / "manifest.json").read_text())
    vec = man["vector"]
    assert [s["point"] for s in vec["slices"]] == ["block1_out", "block2_out", "block3_out"]
    assert [s["offset"] for s in vec["slices"]] == [0, 16, 32] and vec["size"] == 48
    assert man["branch"]["input"] == {"scale": vec["scale"], "zero_point": vec["zero_point"]}
    for s, p in zip(vec["slices"], man["pools"]):
        assert p["output"]["zero_point"] == vec["zero_point"]
        assert p["output"]["scale"] == float(np.float32(vec["scale"] * s["feature_scale"]))
    for k, seg in enumerate(man["segments"][:-1]):            # segment k's output feeds pool k and segment k+1
        assert seg["output"] == man["pools"][k]["input"] == man["segments"][k + 1]["input"]
    assert (run / "branch" / "branch.keras").is_file() and (run / "branch" / "report.json").is_file()
    assert len(report["exits"]) == 3 and report["num_test"] == 80


def test_memory_figures_match_the_keras_shapes(shared):
    """Weights + biases counted from the int8 files equal what the layer shapes say (BN folds into a bias)."""
    import keras

    from tinyexit.branch import trecx_head
    _, _, report = shared
    vsize = report["vector"]["size"]
    assert report["memory"]["shared_param_bytes"] == vsize * NUM_CLASSES + 4 * NUM_CLASSES
    expect = 0
    for e in report["exits"]:
        h = trecx_head(e["feature_map"], NUM_CLASSES, 8)
        dw, dense = h.get_layer("head_dw"), h.get_layer("head_dense")
        c = dw.kernel.shape[2]
        n = int(np.prod(dw.kernel.shape)) + 4 * c + int(np.prod(dense.kernel.shape)) + 4 * NUM_CLASSES
        assert e["head"]["param_bytes"] == n
        expect += n
        keras.backend.clear_session()
    m = report["memory"]
    assert m["heads_param_bytes"] == expect and m["saving_param_bytes"] == expect - m["shared_param_bytes"] > 0
    assert m["shared_flash_bytes"] < m["heads_flash_bytes"]


def test_pools_write_the_slices_in_the_vector_quantization(shared, chain_outputs):
    """Each slice equals an integer recomputation of MEAN from the boundary tensor, requantized to the slice
    scale (within 1 LSB: TFLM's fixed-point multiplier), and dequantizes to the float pooled feature / a_k."""
    from tinyexit.quantize import TflmModel
    run, _, _ = shared
    man = json.loads((run / "branch" / "manifest.json").read_text())
    chain, xq, out = chain_outputs
    act = xq
    for k, pool in enumerate(man["pools"]):
        seg = TflmModel((run / "branch" / man["segments"][k]["file"]).read_bytes())
        act = seg.run(act)[0].reshape((len(xq), *man["segments"][k]["output_shape"]))
        iq, oq = pool["input"], pool["output"]
        mean = (act.astype(np.float64) - iq["zero_point"]).mean(axis=(1, 2)) * iq["scale"]
        want = np.clip(np.round(mean / oq["scale"]) + oq["zero_point"], -128, 127)
        got = out["vectors"][k][:, pool["offset"]:pool["offset"] + pool["length"]].astype(np.float64)
        assert np.max(np.abs(got - want)) <= 1 and np.mean(got == want) > 0.75
        # later slices are still the zero point
        assert np.all(out["vectors"][k][:, pool["offset"] + pool["length"]:] == man["vector"]["zero_point"])


def test_int8_branch_agrees_with_the_float_branch_on_partial_vectors(shared, chain_outputs):
    """The float Keras branch on the dequantized int8 vector (zero slices -> 0.0) predicts what the int8 branch
    predicts, at every stopping point."""
    import keras
    run, data, report = shared
    branch = keras.models.load_model(run / "branch" / "branch.keras", compile=False)
    chain, _, out = chain_outputs
    qp = chain.vector_qparams
    for k in range(3):
        v = (out["vectors"][k].astype(np.float32) - qp.zero_point) * np.float32(qp.scale)
        f = branch.predict(v, verbose=0)
        oq = chain.branch_output_qparams
        p8 = (out["shared"][k].astype(np.float32) - oq.zero_point) * np.float32(oq.scale)
        assert np.max(np.abs(f - p8)) <= 3 * oq.scale, (k, np.max(np.abs(f - p8)) / oq.scale)
        s = report["exits"][k]["shared"]
        assert abs(s["int8_accuracy"] - s["float_accuracy"]) <= 0.1
    # not vacuous: the branch learned (its last point beats guessing, 1/12, on the 80 test inputs: one-sided
    # binomial test at level 1e-3) and its answers change from point to point
    assert_accuracy_beats_chance(report["exits"][-1]["shared"]["int8_accuracy"], len(data["test"][1]),
                                 1 / NUM_CLASSES, "shared branch, last point, int8")
    assert np.any(np.argmax(out["shared"][0], 1) != np.argmax(out["shared"][-1], 1))


@pytest.fixture(scope="module")
def host_lib(shared):
    require_program("gcc", "apt-get install -y gcc")
    from tinyexit.conformance import build_host
    run, _, _ = shared
    return build_host(run / "branch" / "firmware" / "model")


def test_every_generated_piece_equals_tflm(shared, chain_outputs, host_lib):
    """segments, pools and branch: host build of the generated C == tflite_micro, byte for byte, on real inputs
    (the chain's own tensors)."""
    from tinyexit.conformance import run_host, tflm_outputs
    from tinyexit.quantize import TflmModel
    run, _, _ = shared
    d = run / "branch"
    man = json.loads((d / "manifest.json").read_text())
    chain, xq, out = chain_outputs
    seg_in = [xq]
    for s in man["segments"][:-1]:
        seg_in.append(TflmModel((d / s["file"]).read_bytes()).run(seg_in[-1])[0].reshape(
            (len(xq), *s["output_shape"])))
    cases = [(s["name"], s["file"], seg_in[k]) for k, s in enumerate(man["segments"])]
    cases += [(p["name"], p["file"], seg_in[k + 1]) for k, p in enumerate(man["pools"])]
    cases += [("branch", "branch.tflite", np.concatenate(out["vectors"]))]
    for name, file, inputs in cases:
        ref = tflm_outputs(d / file, inputs)
        got = run_host(host_lib, name, inputs.reshape(len(inputs), -1), ref.shape[1])
        assert got.tobytes() == ref.tobytes(), name
        assert len({r.tobytes() for r in ref}) > 5, name      # real, varied outputs


def test_anytime_driver_equals_the_int8_chain_at_every_point(shared, chain_outputs, tmp_path):
    require_program("gcc", "apt-get install -y gcc")
    from tinyexit.branch.firmware import build_anytime, run_adaptive, run_anytime
    run, _, _ = shared
    chain, xq, out = chain_outputs
    exe = build_anytime(run / "branch" / "firmware", tmp_path / "tx_branch_host")
    scores, _ = run_anytime(exe, xq, 3, NUM_CLASSES)
    for k in range(3):
        assert scores[:, k].tobytes() == out["shared"][k].tobytes(), k
    if shutil.which("make"):                               # the generated Makefile builds the same driver
        fw = shutil.copytree(run / "branch" / "firmware", tmp_path / "fw")
        subprocess.run(["make", "-s", "-C", str(fw)], check=True, capture_output=True)
        assert run_anytime(fw / "tx_branch_host", xq, 3, NUM_CLASSES)[0].tobytes() == scores.tobytes()
    for k in range(3):                                     # stop after point k: only points 0..k computed
        stop = chain.run_q(xq[:10], stop=k)
        s, cls = run_anytime(exe, xq[:10], 3, NUM_CLASSES, stop=k)
        assert s.tobytes() == stop["shared"][k].tobytes() == out["shared"][k][:10].tobytes()
        assert np.array_equal(cls, np.argmax(stop["shared"][k], 1))
    # energy-adaptive: the stop hook says "low" after E points -> the answer of the point E-1 (at least one
    # point runs, the last point always answers)
    for lasts, point in ((0, 0), (1, 0), (2, 1), (3, 2), (7, 2)):
        s, cls, pt = run_adaptive(exe, xq[:10], lasts, NUM_CLASSES)
        assert np.all(pt == point)
        assert s.tobytes() == out["shared"][point][:10].tobytes()
        assert np.array_equal(cls, np.argmax(out["shared"][point][:10], 1))


def test_default_points_of_the_other_builders():
    import keras

    from tinyexit.branch import default_points
    from tinyexit.models.mobilenet import build_mobilenet_v1
    from tinyexit.models.resnet8 import build_resnet8
    assert default_points(build_resnet8()) == ["stack1_out", "stack2_out", "stack3_out"]
    assert default_points(build_mobilenet_v1()) == [f"block{k}_out" for k in range(1, 14)]
    keras.backend.clear_session()


def test_cli_end_to_end_on_a_copy(tiny_run, tmp_path, monkeypatch, capsys):
    """`tinyexit branch RUN --points ...` on a copy of the run (the run's splits replaced by the test data)."""
    import shutil
    run, data = tiny_run
    copy = tmp_path / "run"
    copy.mkdir()
    for f in ("model.keras", "model.json"):
        shutil.copy2(run / f, copy / f)
    monkeypatch.setattr("tinyexit.run.load_split", lambda r, split: data[split])
    rc = cli(["branch", str(copy), "--points", "block3_out,block1_out", "--epochs", "2", "--head-epochs", "0",
              "--num-eval", "20", "--num-calibration", "50", "--no-firmware"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads((copy / "branch" / "report.json").read_text())
    assert rep["points"] == ["block1_out", "block3_out"] and rep["num_test"] == 20
    assert rep["exits"][0]["head"]["int8_accuracy"] is None          # heads built and counted, not trained
    assert rep["memory"]["heads_param_bytes"] > rep["memory"]["shared_param_bytes"] > 0
    assert "block3_out" in out and "saves" in out and (copy / "branch" / "branch.png").is_file()
    assert not (copy / "branch" / "firmware").exists()
    # a failure late in the stage (here: code generation) leaves the previous RUN/branch as it was
    before = (copy / "branch" / "report.json").read_bytes()

    def broken(*a, **k):
        raise TinyexitError("generation failed (test)")
    monkeypatch.setattr("tinyexit.branch.firmware.write_firmware", broken)
    rc = cli(["branch", str(copy), "--epochs", "1", "--head-epochs", "0", "--num-eval", "10",
              "--num-calibration", "20"])
    assert rc == 2 and "generation failed" in capsys.readouterr().err
    assert (copy / "branch" / "report.json").read_bytes() == before
    assert sorted(p.name for p in copy.iterdir()) == ["branch", "model.json", "model.keras"]


@pytest.mark.emulator
def test_anytime_on_the_emulated_board_equals_the_int8_chain(shared, chain_outputs):
    """tx_branch_run stopping at every point on the emulated Cortex-M4 == the int8 chain; stopping later costs
    more instructions."""
    require_program("qemu-system-arm", "apt-get install -y --no-install-recommends qemu-system-arm")
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                                         "libnewlib-arm-none-eabi")
    from tinyexit.branch.firmware import emulated_anytime
    run, _, _ = shared
    chain, xq, out = chain_outputs
    scores, cls, insns = emulated_anytime(run / "branch" / "firmware", xq[:3])
    for k in range(3):
        assert scores[:, k].tobytes() == out["shared"][k][:3].tobytes(), k
        assert np.array_equal(cls[:, k], np.argmax(out["shared"][k][:3], 1))
    assert np.all(np.diff(insns, axis=1) > 0), insns
