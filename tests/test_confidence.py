"""Learned confidence head: the comparison against max-softmax against brute force, the branch trained on an
augmented run of a plain Keras model, its int8 model bit-exact between tflite_micro and the generated C."""
import numpy as np
import pytest

from tests.test_augment import augmented, kws_data, plain_model  # noqa: F401  (module fixtures)
from tinyexit.confidence import _auroc, calibrate_confidence, compare_at_equal_exit_rates


def test_equal_exit_rate_comparison_by_brute_force():
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 3, n)
    ep = np.where(rng.uniform(size=n) < 0.6, y, (y + 1) % 3)
    fp = np.where(rng.uniform(size=n) < 0.9, y, (y + 1) % 3)
    right = ep == y
    conf = right + rng.normal(0, 0.5, n)          # informative score
    sm = rng.uniform(size=n)                       # uninformative score
    c = compare_at_equal_exit_rates(conf, sm, ep, fp, y, rates=(0.25, 0.5))
    for row, r in zip(c["rows"], (0.25, 0.5)):
        k = int(round(r * n))
        for name, s in (("confidence", conf), ("max_softmax", sm)):
            chosen = sorted(range(n), key=lambda i: (-s[i], i))[:k]
            pred = fp.copy()
            pred[chosen] = ep[chosen]
            assert row[name] == pytest.approx(np.mean(pred == y))
    assert c["mean_difference"] > 0
    # AUROC: the pairwise definition
    pos, neg = conf[right], conf[~right]
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert c["auroc"]["confidence"] == pytest.approx(brute)
    assert _auroc(np.ones(n), right) == pytest.approx(0.5)


def test_calibrated_threshold_meets_the_target():
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 4, n)
    ep = np.where(rng.uniform(size=n) < 0.7, y, (y + 1) % 4)
    fp = np.where(rng.uniform(size=n) < 0.9, y, (y + 1) % 4)
    conf = (ep == y) * 0.5 + rng.uniform(size=n)
    r = calibrate_confidence(conf, ep, fp, y, 100, 400, accuracy_target=0.85)
    ex = conf >= r["threshold"]
    assert np.mean(np.where(ex, ep, fp) == y) == pytest.approx(r["accuracy"]) and r["accuracy"] >= 0.85
    assert r["exit_rate"] == pytest.approx(ex.mean()) and r["exit_rate"] > 0
    # no lower threshold (more exits) meets the target
    lower = np.sort(np.unique(conf[conf < r["threshold"]]))[-1]
    assert np.mean(np.where(conf >= lower, ep, fp) == y) < 0.85


@pytest.fixture(scope="module")
def conf_run(augmented):  # noqa: F811
    from tinyexit.confidence import train_confidence
    from tinyexit.quantize import quantize_run
    quantize_run(augmented, num_calibration=100, verify_whole=False)
    return augmented, train_confidence(augmented, epochs=8, batch_size=32, log=lambda s: None)


def test_confidence_policy_against_max_softmax_on_held_out_data(conf_run):
    run, rep = conf_run
    assert (run / "confidence" / "exit1.keras").is_file() and (run / "confidence" / "report.json").is_file()
    for src in ("float", "int8"):
        c = rep[src]
        assert c["split"] == "test" and len(c["rows"]) == 9
        # honest figure on a tiny synthetic set: recorded in the report; it must not be far worse
        assert c["mean_difference"] >= -0.05, c


def test_int8_confidence_model_bit_exact_with_generated_c(conf_run, tmp_path):
    from tests.conftest import require_program
    require_program("gcc", "apt-get install -y gcc make")
    from tinyexit.codegen import generate
    from tinyexit.codegen.testing import build_host, run_host, tflm_outputs
    from tinyexit.confidence import confidence_scores
    from tinyexit.quantize import Int8Pipeline, TflmModel, quantize_array, read_manifest, seg_out_shape
    run, _ = conf_run
    path = run / "confidence" / "exit1.tflite"
    man = read_manifest(run / "quant")
    assert TflmModel(path.read_bytes()).input_shape[1:] == man["segments"][0]["output_shape"]
    # the boundary tensors the firmware hands the exit: segment 0's int8 output
    pipe = Int8Pipeline.from_dir(run / "quant")
    from tinyexit.train import load_split
    x, _ = load_split(run, "test")
    x = x[:40]
    q = quantize_array(x, pipe.input_qparams)
    boundary = pipe.segments[0].run(q)[0].reshape((len(x),) + tuple(seg_out_shape(pipe.segments[0])))
    lib = generate({"conf": path}, tmp_path / "lib", measure=False, compare_tflm=False)
    exe = build_host(tmp_path / "lib")
    got = run_host(exe, "conf", boundary.reshape(len(x), -1), lib.models["conf"].output_size)
    want = tflm_outputs(path, boundary)
    np.testing.assert_array_equal(got, want)
    # int8 and float confidence rank the inputs alike
    ci = confidence_scores(run, "test", source="int8")[0][:40]
    cf = confidence_scores(run, "test", source="float")[0][:40]
    np.testing.assert_array_equal(ci, want[:, 1])
    assert np.corrcoef(ci, cf)[0, 1] > 0.8
