"""Learned confidence head: the comparison against max-softmax against brute force, the branch trained on an
augmented run of a plain Keras model, its int8 model bit-exact between tflite_micro and the generated C."""
import numpy as np
import pytest

from tests.test_augment import augmented, kws_data, plain_model  # noqa: F401  (module fixtures)
from tinyexit.research.confidence_eval import _auroc, calibrate_confidence, compare_at_equal_exit_rates


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
    from tinyexit.research.confidence import train_confidence
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
    from tinyexit.conformance import build_host, run_host, tflm_outputs
    from tinyexit.research.confidence_eval import confidence_scores
    from tinyexit.quantize import TflmModel, quantize_array, seg_out_shape
    from tinyexit.run import Run
    run, _ = conf_run
    path = run / "confidence" / "exit1.tflite"
    man = Run(run).manifest()
    assert TflmModel(path.read_bytes()).input_shape[1:] == man["segments"][0]["output_shape"]
    # the boundary tensors the firmware hands the exit: segment 0's int8 output
    pipe = Run(run).oracle()
    x, _ = Run(run).split("test")
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


@pytest.fixture(scope="module")
def conf_policy_run(conf_run, tmp_path_factory):
    """`tinyexit calibrate RUN --policy confidence --retrain` on a copy of the augmented run: a confidence head
    per early exit trained on half of the validation split, the threshold calibrated on the other half."""
    import shutil

    from tinyexit.cli import main
    src, _ = conf_run
    run = tmp_path_factory.mktemp("cp") / "run"
    shutil.copytree(src, run, ignore=shutil.ignore_patterns("firmware", "bench"))
    assert main(["calibrate", str(run), "--policy", "confidence", "--retrain", "--confidence-epochs", "15",
                 "--epsilon", "0.1", "--delta", "0.2"]) == 0
    return run


def test_calibrate_confidence_policy_writes_a_consistent_policy(conf_policy_run):
    import json

    from tinyexit.policy.decisions import LearnedConfidence
    from tinyexit.quantize import QParams, TflmModel, quantize_array, seg_out_shape
    from tinyexit.run import Run
    run = conf_policy_run
    p = json.loads((run / "policy.json").read_text())
    man = Run(run).manifest()
    early = [e for e in man["exits"] if e["file"]]
    assert p["policy"] == "confidence" and [e["name"] for e in p["exits"]] == [e["name"] for e in early]
    assert p["model"] == p["exits"][0]["confidence"]["file"]
    _, yv = Run(run).split("validation")
    trained = set()
    for e in p["exits"]:
        c = e["confidence"]
        assert (run / c["file"]).is_file() and c["index"] == 1
        thr = p["threshold"]
        want = LearnedConfidence(thr if thr is not None else float("inf")).threshold_q(c["output"])
        assert e["threshold_q"] == want
        meta = json.loads((run / "confidence" / f"{e['name']}.json").read_text())
        assert meta["train_split"] == "validation" and meta["train_size"] == round(0.5 * len(yv))
        trained |= set(meta["train_indices"])
    # calibrated on the validation inputs the heads did not see
    assert p["calibration_size"] == len(yv) - len(trained) and 0 < len(trained) < len(yv)
    # the test figures, recomputed here from tflite_micro and the rule written out
    x, y = Run(run).split("test")
    q = quantize_array(x, QParams.of(man["segments"][0]["input"]))
    acts = [q]
    for s in man["segments"]:
        m = TflmModel((run / "quant" / s["file"]).read_bytes())
        acts.append(m.run(acts[-1])[0].reshape((len(x),) + tuple(seg_out_shape(m))))
    final = np.argmax(acts[-1].reshape(len(x), -1), axis=1)
    answer, exited = final.copy(), np.zeros(len(x), bool)
    for e, pe in zip(early, p["exits"]):
        b = acts[e["after_segment"] + 1]
        head = TflmModel((run / "quant" / e["file"]).read_bytes()).run(b)[0].reshape(len(x), -1)
        conf = TflmModel((run / pe["confidence"]["file"]).read_bytes()).run(b)[0].reshape(len(x), 2)[:, 1]
        take = (conf.astype(int) >= pe["threshold_q"]) & ~exited
        answer[take] = np.argmax(head[take], axis=1)
        exited |= take
    t = p["test"]
    assert t["exit_rate"] == pytest.approx(exited.mean()) and t["accuracy"] == pytest.approx(np.mean(answer == y))
    assert t["risk"] == pytest.approx(np.mean((answer != y) & (final == y)))
    assert t["mean_macs"] > 0 and len(p["macs_to_exit"]) == len(man["exits"])
    assert p["macs_to_exit"][-1] > man["no_exit_macs"]          # the final exit also paid the confidence models
    assert "auroc" in p["equal_exit_rate_test"] and "exit_rate" in p["max_softmax_same_calibration"]


def test_confidence_policy_on_the_emulated_board_equals_the_oracle(conf_policy_run, tmp_path):
    """bench_run on the emulated nRF52840 with the calibrated confidence policy, 20 test inputs: every exit,
    class and output byte of the firmware equals tflite_micro + the Python rule; the host build agrees.
    (Observed here: the 20 inputs end at exit1, exit2 and the final exit, 2 / 3 / 15.)"""
    import shutil
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.skip("needs arm-none-eabi-gcc and qemu-system-arm (scripts/setup.sh installs them)")
    from tinyexit.bench import bench_run
    from tinyexit.build import pipeline_from_run
    run = conf_policy_run
    pipe, man, _ = pipeline_from_run(run)
    early = [e["name"] for e in man["exits"] if e["file"]]
    assert [n for n in pipe.stage_names if n.endswith("_confidence")] == [f"{n}_confidence" for n in early]
    r = bench_run(run, "nrf52840", emulate=True, num_inputs=20, out=tmp_path / "bench", log=None)
    assert r["policy"]["policy"] == "confidence"
    assert r["oracle"]["early_exit"]["identical"] == 20, r["oracle"]["early_exit"]["mismatches"]
    assert r["oracle"]["no_exit"]["identical"] == 20 and r["host"]["identical"] == 20
    assert r["instructions"]["per_stage"][f"{early[0]}_confidence"]["runs"] == 20


def test_calibrate_reuses_the_trained_heads(conf_policy_run, tmp_path, capsys):
    """A second calibration (another method) reuses RUN/confidence/ as is: same files, same calibration inputs."""
    import json
    import shutil

    from tinyexit.cli import main
    from tinyexit.research.confidence import held_out_split
    from tinyexit.errors import TinyexitError
    run = tmp_path / "run"
    shutil.copytree(conf_policy_run, run, ignore=shutil.ignore_patterns("firmware", "bench"))
    before = {p.name: p.read_bytes() for p in (run / "confidence").iterdir()}
    first = json.loads((run / "policy.json").read_text())
    capsys.readouterr()
    assert main(["calibrate", str(run), "--policy", "confidence", "--method", "ucb", "--epsilon", "0.1",
                 "--delta", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "reusing the confidence head" in out and "training the confidence branch" not in out
    assert {p.name: p.read_bytes() for p in (run / "confidence").iterdir()} == before
    again = json.loads((run / "policy.json").read_text())
    assert again["method"] == "ucb" and again["calibration_size"] == first["calibration_size"]
    tr, cal = held_out_split(10, 0.3, 0)
    assert len(tr) == 3 and sorted(set(tr) | set(cal)) == list(range(10)) and not set(tr) & set(cal)
    with pytest.raises(TinyexitError, match="confidence-fraction"):
        held_out_split(10, 1.0, 0)
    with pytest.raises(TinyexitError, match="nothing to train on"):
        held_out_split(10, 0.01, 0)
