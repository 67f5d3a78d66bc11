"""`tinyexit train` from recipes: the built-in tasks write the run directory `tinyexit train` wrote before
recipes existed (golden, training stubbed out), and `tinyexit train --model` trains a small recipe of the test's
own into a run whose model is the recipe's (widths, depth, exits, heads)."""
import json

import numpy as np
import pytest

from tests._stats import seed
from tests.conftest import require_program
from tests.models.test_recipe import GOLDEN, layers_of
from tinyexit.cli import main as cli
from tinyexit.models.recipe import builtin_recipe, load_recipe_file
from tinyexit.run import Run


@pytest.fixture(scope="module")
def tiny_kws(tmp_path_factory):
    require_program("espeak-ng", "apt-get install -y --no-install-recommends espeak-ng")
    from tinyexit.data.synth_kws import make_kws_dataset
    return make_kws_dataset(tmp_path_factory.mktemp("d") / "kws", speakers=6, takes=1, seed=seed(1),
                            val_fraction=0.2, test_fraction=0.3, progress=False)


@pytest.fixture
def no_fitting(monkeypatch):
    """Training without the fit (the weights stay as built): what a run records, in seconds."""
    calls = []

    def fit(model, x, y, xv, yv, cfg, loss_weights, verbose=2):
        calls.append((cfg, loss_weights))
        return {}, 0

    monkeypatch.setattr("tinyexit.train.train_model", fit)
    monkeypatch.setattr("tinyexit.train.plot_history", lambda *a, **k: None)
    return calls


def _load(run):
    return Run(run).load_model()


@pytest.mark.parametrize("task, how", [("kws", "task"), ("ic", "path"), ("vww", "name")])
def test_builtin_recipe_writes_todays_run(task, how, tiny_kws, no_fitting, tmp_path):
    """`tinyexit train kws` (and `train --model models/ic-resnet8.yaml`, `train --model vww-mobilenet`) write
    the model.json, report settings and saved layers that `tinyexit train` wrote before recipes existed."""
    out = tmp_path / task
    args = {"task": [task], "path": ["--model", str(builtin_recipe(task).path)],
            "name": ["--model", builtin_recipe(task).name]}[how]
    data = ["--data", str(tiny_kws)] if task == "kws" else []
    assert cli(["train", *args, *data, "--out", str(out), "--quiet"]) == 0
    golden = GOLDEN[task]

    meta = json.loads((out / "model.json").read_text())
    if task == "kws":
        assert meta["data"]["dir"] == str(tiny_kws.resolve())
        meta["data"]["dir"] = "<DATA>"
    assert json.dumps(meta) == json.dumps(golden["model.json"])          # same content, same key order
    report = json.loads((out / "report.json").read_text())
    for key in ("task", "classes", "model"):
        assert report[key] == golden["report"][key], key
    assert {k: v for k, v in report["training"].items() if k not in ("best_epoch", "wall_time_s")} == \
        golden["report"]["training"]
    assert [{k: e[k] for k in ("name", "macs", "point")} for e in report["exits"]] == golden["report"]["exits"]
    assert layers_of(_load(out)) == golden["layers"]
    (cfg, loss_weights), = no_fitting
    assert loss_weights == golden["report"]["training"]["loss_weights"]
    assert cfg.epochs == golden["report"]["training"]["epochs"]
    # the run records its recipe, which is the built-in one (nothing was overridden)
    assert load_recipe_file(Run(out).recipe_path, check_name=False).to_dict() == builtin_recipe(task).to_dict()


TINY_DSCNN = """\
name: tiny-dscnn
description: a small DS-CNN of the test's own, two exits
family: dscnn
input_shape: [49, 10, 1]
model: {filters: 12, blocks: 3, dropout_stem: 0.1, dropout_final: 0.1, bn_momentum: 0.9}
exits:
  points: [block1_out, block2_out]
  head: {channels: 6}
  loss_weights: {exit: 0.5, final: 1.0}
  early_view: {fraction: 0.5}
data:
  kind: kws
  default: {source: synthetic_speech, dir: runs/data/kws-synth, speakers: 160, takes: 3, seed: 0}
  train_copies: 1
  seed: 0
  augment: {time_shift_ms: 50.0, noise_probability: 0.5, noise_volume: 0.1}
front_end: {name: mlperf_mfcc}
training: {epochs: 5, batch_size: 16, learning_rate: 0.003, final_learning_rate: 0.0001, seed: 0}
"""


def test_train_model_recipe_of_our_own(tiny_kws, tmp_path):
    """`tinyexit train --model tiny-dscnn.yaml --epochs 2`: the run's model has the recipe's widths, depth, exits
    and heads, its model.json and report say so, and it records the recipe as trained (2 epochs)."""
    recipe = tmp_path / "tiny-dscnn.yaml"
    recipe.write_text(TINY_DSCNN)
    out = tmp_path / "run"
    assert cli(["train", "--model", str(recipe), "--data", str(tiny_kws), "--out", str(out), "--epochs", "2",
                "--quiet"]) == 0
    model = _load(out)
    names = {lay.name for lay in model.layers}
    assert {"block3_out", "ev_dw", "exit1", "exit2", "final"} <= names and "block4_dw" not in names
    assert model.get_layer("conv0").kernel.shape == (10, 4, 1, 12)
    for b in (1, 2, 3):
        assert model.get_layer(f"block{b}_pw").kernel.shape == (1, 1, 12, 12)
    for head in ("exit1", "exit2", "ev"):
        assert model.get_layer(f"{head}_slice").output.shape[-1] == 6
    assert [t.shape[-1] for t in model.outputs] == [12, 12, 12]
    meta = json.loads((out / "model.json").read_text())
    assert [(e["name"], e["point"]) for e in meta["exits"]] == [("exit1", "block1_out"), ("exit2", "block2_out"),
                                                                ("final", None)]
    assert meta["data"]["train_copies"] == 1 and meta["data"]["train_augment"]["time_shift_ms"] == 50.0
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["epochs"] == 2 and report["training"]["loss_weights"] == [0.5, 0.5, 1.0]
    assert report["training"]["early_view_fraction"] == 0.5
    assert report["model"]["filters"] == 12 and report["model"]["blocks"] == 3
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 2
    trained = load_recipe_file(Run(out).recipe_path, check_name=False)
    assert trained.training["epochs"] == 2 and trained.exits == load_recipe_file(recipe).exits
    # the saved model reproduces the reported accuracies on the split later stages read
    x, y = Run(out).split("test")
    for e, p in zip(report["exits"], model.predict(x, verbose=0)):
        assert np.mean(np.argmax(p, -1) == y) == pytest.approx(e["accuracy"])


def test_train_image_recipe_of_our_own(tmp_path):
    """A MobileNet recipe of width 0.125 with an exit after block 2, trained for one epoch on a tiny image
    folder of the test's own (no external tools needed)."""
    from PIL import Image
    rng = np.random.default_rng(seed(2))
    for c, name in enumerate(("dark", "light")):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 128, (40, 40, 3)) + 127 * c
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "img" / name / f"{i}.png")
    text = builtin_recipe("vww").path.read_text()
    for old, new in (("name: vww-mobilenet", "name: tiny-mobilenet"), ("alpha: 0.25", "alpha: 0.125"),
                     ("points: [block3_out]", "points: [block2_out]"), ("filters: 64", "filters: 8"),
                     ("epochs: 30", "epochs: 1"), ("train_copies: 3", "train_copies: 1")):
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "tiny-mobilenet.yaml").write_text(text)
    out = tmp_path / "run"
    assert cli(["train", "--model", str(tmp_path / "tiny-mobilenet.yaml"), "--data", str(tmp_path / "img"),
                "--out", str(out), "--quiet"]) == 0
    model = _load(out)
    assert model.get_layer("conv0").kernel.shape[-1] == 4                  # int(32 x 0.125)
    assert model.get_layer("block13_pw").kernel.shape[-1] == 128          # int(1024 x 0.125)
    assert model.get_layer("exit2_conv").kernel.shape == (1, 1, 16, 8)    # block 2: int(128 x 0.125) -> 8
    meta = json.loads((out / "model.json").read_text())
    assert [e["point"] for e in meta["exits"]] == ["block2_out", None]
    assert meta["classes"] == ["dark", "light"] and meta["data"]["kind"] == "vww"


def test_cli_needs_one_task_or_recipe(tmp_path, capsys):
    assert cli(["train", "--out", str(tmp_path / "run")]) == 2
    assert "give a built-in task (kws, ic or vww) or --model RECIPE.yaml" in capsys.readouterr().err
    assert cli(["train", "kws", "--model", "kws-dscnn", "--out", str(tmp_path / "run")]) == 2
    assert "not both" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_DSCNN.replace("name: tiny-dscnn", "name: bad").replace("blocks: 3", "blocks: 2"))
    assert cli(["train", "--model", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: exits.points: 'block2_out' is not an exit point of a dscnn with 2 blocks" in err
    assert not (tmp_path / "run").exists()
