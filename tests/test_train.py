"""Joint training of the exits on a small synthetic keyword set: a few epochs beat chance clearly, and the
run directory holds what later stages read."""
import json

import numpy as np
import pytest

from tests._stats import assert_accuracy_beats_chance, seed
from tests.conftest import require_program
from tinyexit.cli import main as cli
from tinyexit.run import Run
from tinyexit.train import TrainConfig, train_kws


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    require_program("espeak-ng", "apt-get install -y --no-install-recommends espeak-ng")
    from tinyexit.data.synth_kws import make_kws_dataset
    return make_kws_dataset(tmp_path_factory.mktemp("d") / "kws", speakers=24, takes=2, seed=seed(3),
                            val_fraction=0.2, test_fraction=0.25, progress=False)


@pytest.fixture(scope="module")
def small_run(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "run"
    report = train_kws(data=small_data, out=out, train_config=TrainConfig(epochs=10, batch_size=32, seed=seed(1)),
                       train_copies=2, verbose=0)
    return out, report


def test_training_beats_chance(small_run):
    """Both exits beat guessing on held-out voices: a one-sided binomial test against chance (1/12) at 1e-3."""
    out, report = small_run
    n = report["data"]["test_examples"]
    for e in report["exits"]:
        assert_accuracy_beats_chance(e["accuracy"], n, 1 / len(report["classes"]), f"exit {e['name']}")


def test_report_and_run_directory(small_run):
    out, report = small_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["task"] == "kws" and on_disk["classes"][-2:] == ["_silence_", "_unknown_"]
    assert [e["name"] for e in on_disk["exits"]] == ["exit2", "final"]
    assert on_disk["exits"][0]["macs"] < on_disk["exits"][1]["macs"]
    assert (out / "training.png").stat().st_size > 10_000
    meta = json.loads((out / "model.json").read_text())
    assert meta["exits"][0]["point"] == "block2_out"
    # the saved model reproduces the reported test accuracy on the features load_split gives back
    model = Run(out).load_model()
    x, y = Run(out).split("test")
    preds = model.predict(x, verbose=0)
    for e, p in zip(on_disk["exits"], preds):
        assert np.mean(np.argmax(p, -1) == y) == pytest.approx(e["accuracy"])


def test_run_records_its_recipe(small_run):
    """train_kws trains the built-in recipe models/kws-dscnn.yaml; the run records it as trained (with the
    test's epochs, batch size and seed) in RUN/recipe.yaml."""
    from tinyexit.models.recipe import builtin_recipe, load_recipe_file
    out, report = small_run
    trained = load_recipe_file(out / "recipe.yaml", check_name=False)
    builtin = builtin_recipe("kws")
    assert trained.training == {"epochs": 10, "batch_size": 32, "learning_rate": 0.003,
                                "final_learning_rate": 0.0001, "seed": seed(1)}
    assert trained.replace(training=builtin.training, path=builtin.path) == builtin
    assert {k: report["training"][k] for k in trained.training} == trained.training


def test_cli_refuses_bad_data_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "notsc").mkdir()
    rc = cli(["train", "kws", "--data", str(tmp_path / "notsc"), "--out", str(tmp_path / "run"), "--epochs", "1"])
    assert rc == 2
    assert "validation_list.txt is missing" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_data_cli_is_deterministic(tmp_path):
    require_program("espeak-ng", "apt-get install -y --no-install-recommends espeak-ng")
    for name in ("a", "b"):
        assert cli(["data", "kws", "--out", str(tmp_path / name), "--speakers", "3", "--takes", "1", "--seed", "5"]) == 0
    for f in ("testing_list.txt", "validation_list.txt", "yes"):
        pa, pb = tmp_path / "a" / f, tmp_path / "b" / f
        if pa.is_dir():
            assert sorted(p.name for p in pa.iterdir()) == sorted(p.name for p in pb.iterdir())
            for p in pa.iterdir():
                assert p.read_bytes() == (pb / p.name).read_bytes()
        else:
            assert pa.read_text() == pb.read_text()
    test_speakers = {ln.split("/")[1].split("_")[0] for ln in (tmp_path / "a/testing_list.txt").read_text().split()}
    val_speakers = {ln.split("/")[1].split("_")[0] for ln in (tmp_path / "a/validation_list.txt").read_text().split()}
    assert test_speakers and val_speakers and not (test_speakers & val_speakers)


def test_image_task_run_directory(tmp_path):
    """vww on its offline default for two epochs: the run directory holds what later stages read, and the
    saved model reproduces the reported accuracies on the split load_split returns."""
    from tinyexit.train import train_image
    report = train_image("vww", out=tmp_path / "vww", epochs=2, verbose=0)
    assert report["task"] == "vww" and report["classes"] == ["no_person", "person"]
    assert "toy" in report["data"]["note"]
    meta = json.loads((tmp_path / "vww" / "model.json").read_text())
    assert meta["exits"][0]["point"] == "block3_out" and meta["data"]["kind"] == "vww"
    x, y = Run(tmp_path / "vww").split("test")
    preds = Run(tmp_path / "vww").load_model().predict(x, verbose=0)
    for e, p in zip(report["exits"], preds):
        assert np.mean(np.argmax(p, -1) == y) == pytest.approx(e["accuracy"])
    xtr, _ = Run(tmp_path / "vww").split("train")
    assert len(xtr) == report["data"]["train_examples"]
