"""`tinyexit distill`: the student spec, exit pairing, the ERDE loss terms computed independently, and a
small teacher -> student run written as a normal run directory."""
import json

import numpy as np
import pytest

from tests._data import template_data
from tests._stats import assert_accuracy_beats_chance, seed
from tinyexit.errors import TinyexitError

NUM_CLASSES = 12
META = {"task": "kws", "input_shape": [49, 10, 1], "classes": [f"c{i}" for i in range(NUM_CLASSES)]}


def test_student_spec_parsing_and_refusals():
    from tinyexit.research.distill import parse_student
    mc = parse_student("filters=32,blocks=3,exits=2", META)
    assert (mc.filters, mc.blocks, mc.exits_after, mc.head_channels, mc.num_classes) == (32, 3, (2,), 16, 12)
    assert parse_student("filters=24,blocks=4,exits=1+3,head_channels=8,early_view=0", META).exits_after == (1, 3)
    for bad, msg in (("filters=32,depth=3", "unknown student spec key"), ("filters", "key=value"),
                     ("blocks=3,exits=3", "exits go after blocks"), ("filters=x", "student spec")):
        with pytest.raises(TinyexitError, match=msg):
            parse_student(bad, META)
    with pytest.raises(TinyexitError, match="keyword spotting"):
        parse_student("filters=8", {**META, "task": "ic"})


def test_exit_pairing_by_relative_depth():
    from tinyexit.research.distill import pair_exits
    teacher = [{"name": "exit1", "macs": 20}, {"name": "exit3", "macs": 70}, {"name": "final", "macs": 100}]
    student = [{"name": "exit1", "macs": 3}, {"name": "exit2", "macs": 8}, {"name": "final", "macs": 10}]
    assert pair_exits(teacher, student) == [0, 1, 2]
    assert pair_exits([{"name": "final", "macs": 100}], [{"name": "exit1", "macs": 5}, {"name": "final", "macs": 10}]) \
        == [0, 0]


def test_erde_loss_terms_match_a_direct_computation():
    from keras import ops

    from tinyexit.research.distill import DistillConfig, erde_loss, pack_targets
    rng = np.random.default_rng(0)
    C, n = 5, 6
    y = rng.integers(0, C, n)
    t = rng.dirichlet(np.ones(C), n).astype(np.float32)
    t[0] = np.eye(C)[y[0]] * 0.9 + 0.02                 # teacher right on input 0
    t[1] = np.eye(C)[(y[1] + 1) % C] * 0.9 + 0.02       # teacher wrong on input 1
    s = rng.dirichlet(np.ones(C), n).astype(np.float32)
    cfg = DistillConfig(temperature=3.0, alpha=0.6, beta=0.8)
    packed = pack_targets(y, t, cfg.temperature)
    assert packed[0, 1] == 0 and packed[1, 1] == 1
    got_exit = np.asarray(ops.convert_to_numpy(erde_loss(C, cfg, early=True)(packed, s)))
    got_final = np.asarray(ops.convert_to_numpy(erde_loss(C, cfg, early=False)(packed, s)))
    for i in range(n):
        ce = -np.log(s[i, y[i]])
        tt = np.exp(np.log(t[i]) / 3.0)
        tt /= tt.sum()
        st = np.exp(np.log(s[i]) / 3.0)
        st /= st.sum()
        kl = np.sum(tt * (np.log(tt) - np.log(st))) * 9.0
        wrong = np.argmax(t[i]) != y[i]
        ent = -np.sum(s[i] * np.log(s[i]))
        final = 0.4 * ce + (0 if wrong else 0.6 * kl)
        np.testing.assert_allclose(got_final[i], final, rtol=2e-4)
        np.testing.assert_allclose(got_exit[i], final + (0.8 * (np.log(C) - ent) if wrong else 0), rtol=2e-4)
    # the entropy term is 0 for a uniform student and grows as the student becomes confident where the teacher errs
    uni = np.full((n, C), 1.0 / C, np.float32)
    e_uni = ops.convert_to_numpy(erde_loss(C, DistillConfig(alpha=0.0, beta=1.0), True)(packed, uni))
    e_ce = ops.convert_to_numpy(erde_loss(C, DistillConfig(alpha=0.0, beta=0.0), True)(packed, uni))
    np.testing.assert_allclose(e_uni, e_ce, atol=1e-5)


def make_data(n, seed):
    return template_data(n, seed, noise=4)


def test_distill_writes_a_student_run(tmp_path, monkeypatch, capsys):
    import keras

    import tinyexit.run
    from tinyexit.cli import main
    from tinyexit.io import write_json
    from tinyexit.models import DSCNNConfig, build_dscnn, exits_with_macs
    data = {"train": make_data(800, seed(1)), "validation": make_data(200, seed(2)), "test": make_data(300, seed(3))}
    monkeypatch.setattr(tinyexit.run, "load_split", lambda run, split: data[split])
    keras.utils.set_random_seed(seed(0))
    teacher = build_dscnn(DSCNNConfig(filters=32, blocks=3, exits_after=(1,), head_channels=16))
    teacher.compile(optimizer=keras.optimizers.Adam(3e-3), loss=["sparse_categorical_crossentropy"] * 2)
    x, y = data["train"]
    teacher.fit(x, [y, y], epochs=3, batch_size=50, verbose=0)
    run = tmp_path / "teacher"
    run.mkdir()
    teacher.save(run / "model.keras")
    specs = exits_with_macs(teacher)
    write_json(run / "model.json", {**META, "exits": specs, "data": {"kind": "test"}})
    out = tmp_path / "student"
    from tinyexit.research.distill import DistillConfig, distill_run
    distill_run(run, out, "filters=16,blocks=2,exits=1", DistillConfig(epochs=4, batch_size=32), log=print)
    rep = json.loads((out / "report.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    assert [e["name"] for e in meta["exits"]] == ["exit1", "final"] and meta["exits"][0]["point"] == "block1_out"
    assert rep["model"]["params"] < rep["distill"]["teacher_params"] / 2
    assert rep["distill"]["pairs"] == {"exit1": "exit1", "final": "final"}
    assert 0 < rep["distill"]["teacher_wrong_rate_train"]["exit1"] < 1     # both loss branches are exercised
    for e in rep["exits"]:      # the student learned: each exit beats guessing (1/12), binomial test at 1e-3
        assert_accuracy_beats_chance(e["accuracy"], len(data["test"][1]), 1 / NUM_CLASSES, f"student {e['name']}")
    for f in ("model.keras", "training.png", "history.json"):
        assert (out / f).is_file()
    # a normal run: quantize accepts it
    from tinyexit.quantize import quantize_run
    q = quantize_run(out, num_calibration=100, num_eval=100)
    assert q["whole_model_check"]["identical"] == 100
    assert "student test accuracy" in capsys.readouterr().out
    assert main(["distill", str(run), "--student", "filters=12,blocks=2,exits=1", "--out", str(run)]) == 2
