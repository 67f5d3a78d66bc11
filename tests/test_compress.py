"""`tinyexit compress` on a small two-exit DS-CNN run: the legacy-Keras switch is invisible (a fresh Python
imports TensorFlow with Keras 3 first, then compresses), the weight budget is met with sparse storage, the
pruned run's generated C equals TFLM on >= 200 inputs, QAT int8 accuracy (the QAT model's own learned
ranges) is at least post-training int8 accuracy on the same inputs, and the output is a run directory the
later stages accept. The budget (60 % of the dense weights) and the short pruning leave accuracy for QAT's
fine-tuning epochs to recover."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests._data import template_data
from tests._stats import assert_accuracy_beats_chance, assert_not_significantly_worse, seed
from tinyexit.errors import TinyexitError

NUM_CLASSES = 12
REPO = Path(__file__).resolve().parents[1]


def make_data(n, seed):
    return template_data(n, seed, noise=4.5)


SPLITS = {"train": (1500, seed(10)), "validation": (300, seed(11)), "test": (1000, seed(12))}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A trained run directory (model.keras, model.json, report.json) and its splits in data.npz."""
    import keras

    from tinyexit.io import write_json
    from tinyexit.models import DSCNNConfig, build_dscnn, exits_with_macs
    root = tmp_path_factory.mktemp("compress")
    run = root / "run"
    run.mkdir()
    keras.utils.set_random_seed(seed(0))
    model = build_dscnn(DSCNNConfig(filters=32, blocks=3, exits_after=(1,), head_channels=16))
    data = {k: make_data(*v) for k, v in SPLITS.items()}
    x, y = data["train"]
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=["sparse_categorical_crossentropy"] * 2,
                  loss_weights=[0.3, 1.0])
    model.fit(x, [y, y], epochs=3, batch_size=50, verbose=0)
    model.save(run / "model.keras")
    specs = exits_with_macs(model)
    write_json(run / "model.json", {"task": "kws", "input_shape": [49, 10, 1],
                                    "classes": [f"c{i}" for i in range(NUM_CLASSES)], "exits": specs,
                                    "data": {"kind": "test"}})
    write_json(run / "report.json", {"training": {"loss_weights": [0.3, 1.0]}})
    np.savez(root / "data.npz", **{f"{k}_{i}": a for k, (xa, ya) in data.items() for i, a in (("x", xa), ("y", ya))})
    from tinyexit.research.compress import prunable_layers, stored_bytes_estimate
    budget = int(0.6 * stored_bytes_estimate(prunable_layers(model), 0.0))
    return run, root / "data.npz", data, budget


@pytest.fixture(scope="module")
def compressed(source_run):
    """Compress in a fresh Python that imported TensorFlow (Keras 3) first, as a user's notebook would."""
    run, data_npz, data, budget = source_run
    out = run.parent / "run-c"
    script = textwrap.dedent(f"""
        import json, os, sys
        import numpy as np
        import tensorflow as tf                      # Keras 3, before tinyexit
        import keras
        assert not tf.keras.__name__.startswith("tf_keras") and keras.__version__.startswith("3"), tf.keras.__name__
        assert os.environ.get("TF_USE_LEGACY_KERAS") is None
        d = np.load({str(data_npz)!r})
        splits = {{k: (d[k + "_x"], d[k + "_y"]) for k in ("train", "validation", "test")}}
        import tinyexit.run
        tinyexit.run.load_split = lambda run, split: splits[split]
        from tinyexit.research.compress import CompressConfig, compress_run
        rep = compress_run({str(run)!r}, {str(out)!r},
                           CompressConfig(target_kb={budget / 1024!r}, prune_epochs=4, qat_epochs=4, batch_size=32,
                                          qat_learning_rate=5e-4, num_calibration=200), log=None)
        assert not tf.keras.__name__.startswith("tf_keras")      # the caller's Keras is untouched
        assert os.environ.get("TF_USE_LEGACY_KERAS") is None
        print("REPORT" + json.dumps(rep))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("REPORT")][-1]
    import tinyexit.run
    with pytest.MonkeyPatch.context() as mp:       # this module's tests read the splits; undone after them
        mp.setattr(tinyexit.run, "load_split", lambda run, split: data[split])
        yield out, json.loads(line[len("REPORT"):]), data, budget


def test_legacy_switch_is_invisible_and_the_budget_is_met(compressed):
    out, rep, _, budget = compressed
    assert rep["met_budget"] and rep["budget_bytes"] == budget
    final = rep["stages"][rep["selected"]]
    assert final["weights"]["stored_bytes"] <= budget < final["weights"]["dense_bytes"]
    assert final["weights"]["sparse_layers"] >= 3
    assert rep["stages"]["original"]["weights"]["sparse_layers"] == 0
    # the pruned kernels stay pruned through QAT: same zero pattern as after strip_pruning
    qat = rep["stages"]["pruned+qat"]
    assert qat["overall_sparsity"] >= 0.4
    assert abs(qat["overall_sparsity"] - rep["stages"]["pruned"]["overall_sparsity"]) < 1e-9
    for st in rep["stages"].values():
        chk = st["whole_model_check"]
        assert chk["identical"] == chk["inputs"] == SPLITS["test"][0]
    # a run directory the later stages accept, plus the report and the plot
    for f in ("model.keras", "model.json", "report.json", "quant/manifest.json", "compress.json", "compress.png",
              "stages/original/quant/manifest.json"):
        assert (out / f).is_file(), f
    # the output run is the step with the better validation int8 accuracy; the other is kept under stages/
    sel = rep["selected"]
    other = "pruned" if sel == "pruned+qat" else "pruned+qat"
    assert Path(rep["stages"][sel]["run"]) == out and (Path(rep["stages"][other]["run"]) / "quant").is_dir()
    v = {s: rep["stages"][s]["validation_int8_accuracy"]["final"] for s in (sel, other)}
    assert v[sel] >= v[other]
    # the original and the compressed model learned: their final exits beat guessing (1/12) on the test split,
    # one-sided binomial test at level 1e-3
    n_test = SPLITS["test"][0]
    assert_accuracy_beats_chance(rep["stages"]["original"]["int8_accuracy"]["final"], n_test, 1 / NUM_CLASSES,
                                 "original int8 final exit")
    assert_accuracy_beats_chance(final["int8_accuracy"]["final"], n_test, 1 / NUM_CLASSES,
                                 "compressed int8 final exit")


def test_compressed_run_c_equals_tflm_on_the_dense_model(compressed, tmp_path):
    from tests.conftest import require_program
    require_program("gcc", "apt-get install -y gcc make")
    from tinyexit.codegen import generate
    from tinyexit.conformance import build_host, run_host, tflm_outputs
    from tinyexit.quantize import quantize_array
    from tinyexit.run import Run
    out, compress_report, data, _ = compressed
    models = Run(out).quant_models()
    rep = generate(models, tmp_path / "lib", measure=False, compare_tflm=False)
    exe = build_host(tmp_path / "lib")
    pipe = Run(out).oracle()
    xq = quantize_array(data["test"][0], pipe.input_qparams)[:250]
    seg0 = tflm_outputs(models["seg0"], xq)
    got = run_host(exe, "seg0", xq.reshape(len(xq), -1), rep.models["seg0"].output_size)
    assert got.tobytes() == seg0.tobytes()
    for name in [n for n in models if n != "seg0"]:
        want = tflm_outputs(models[name], seg0)          # the segment's output is the piece's input
        got = run_host(exe, name, seg0, rep.models[name].output_size)
        assert got.tobytes() == want.tobytes(), name
    src = "".join(p.read_text() for p in (tmp_path / "lib").glob("tx_model_*.c"))
    assert "tx_sparse_conv_s8" in src and "tx_sparse_fc_s8" in src
    if compress_report["selected"] == "pruned+qat":       # QAT's learned ranges meet at pools: requantization ops
        assert "tx_requant_s8" in src


def test_qat_int8_accuracy_is_at_least_post_training_int8(compressed):
    """On the same run and the same 1000 test inputs, per exit: the QAT step's int8 pipeline (the QAT model
    converted with the ranges it learned, cut at the exit point, run on tflite_micro) is not worse than
    post-training int8 of the pruned model it starts from (calibrated ranges): exact one-sided McNemar test on
    the paired predictions at level 1e-3 (a point estimate 'at least as accurate' would fail on luck)."""
    from tinyexit.run import Run
    out, rep, data, _ = compressed
    x, y = data["test"]
    ptq_run, qat_run = (Run(rep["stages"][s]["run"]) for s in ("pruned", "pruned+qat"))
    assert json.loads(qat_run.quant.report_path.read_text())["ranges"].startswith("given")
    assert json.loads(ptq_run.quant.report_path.read_text())["ranges"] == "calibrated"
    ptq, qat = ptq_run.oracle().run(x), qat_run.oracle().run(x)
    for k, name in enumerate(rep["exits"]):
        p_ok, q_ok = np.argmax(ptq[k], 1) == y, np.argmax(qat[k], 1) == y
        assert abs(p_ok.mean() - rep["stages"]["pruned"]["int8_accuracy"][name]) < 1e-9
        assert abs(q_ok.mean() - rep["stages"]["pruned+qat"]["int8_accuracy"][name]) < 1e-9
        assert_not_significantly_worse(q_ok, p_ok, f"QAT vs post-training int8, exit {name}")


def test_budget_allocation_and_refusals(source_run, capsys):
    from tinyexit.research.compress import CompressConfig, allocate_sparsity, compress_run, prunable_layers, stored_bytes_estimate
    from tinyexit.run import Run
    run, _, _, _ = source_run
    layers = prunable_layers(Run(run).load_model())
    dense = stored_bytes_estimate(layers, 0.0)
    plan = allocate_sparsity(layers, int(0.7 * dense))
    assert stored_bytes_estimate(layers, plan) <= int(0.7 * dense)
    small = [la["name"] for la in layers if la["elements"] < 1024]
    assert small and all(plan[n] == 0 for n in small)          # depthwise kernels stay dense
    assert max(plan.values()) > 0.5
    floor = stored_bytes_estimate(layers, {la["name"]: (0.97 if la["elements"] >= 1024 else 0.0) for la in layers})
    tight = allocate_sparsity(layers, floor - 200)               # needs the small layers pruned too
    assert min(tight.values()) > 0.5 and stored_bytes_estimate(layers, tight) <= floor - 200
    assert allocate_sparsity(layers, dense + 1) == {la["name"]: 0.0 for la in layers}
    with pytest.raises(TinyexitError, match="cannot be met"):
        allocate_sparsity(layers, 1000)
    with pytest.raises(TinyexitError, match="another directory"):
        compress_run(run, run, CompressConfig(target_kb=10))
    with pytest.raises(TinyexitError, match="--target-kb or --board"):
        compress_run(run, run.parent / "x", CompressConfig(target_kb=10, board="nrf52840"))
    from tinyexit.cli import main
    assert main(["compress", str(run), "--target-kb", "1", "--out", str(run.parent / "y")]) == 2
    assert "cannot be met" in capsys.readouterr().err
    assert not (run.parent / "y").exists()
