"""Model recipes (models/*.yaml): the shipped recipes load and build exactly the models and training settings
of the builders as they were called before recipes existed; every invalid fixture (one mistake each) is refused
with the one-line message its first line announces (`# expect: ...`), naming the file."""
import difflib
import json
from pathlib import Path

import pytest

from tinyexit.models import exits_with_macs
from tinyexit.models.dscnn import DSCNNConfig, build_dscnn
from tinyexit.models.mobilenet import MobileNetConfig, build_mobilenet_v1
from tinyexit.models.recipe import (TASKS, RecipeError, available_recipes, builtin_recipe, load_recipe,
                                    load_recipe_file)
from tinyexit.models.resnet8 import ResNet8Config, build_resnet8
from tinyexit.train import DEFAULT_DATA, DEFAULT_SPEAKERS, DEFAULT_TAKES, TrainConfig, train_config_for

HERE = Path(__file__).parent
INVALID = sorted((HERE / "invalid").glob("*.yaml"))
# Written by `tinyexit train` before recipes existed (commit 79f2a11, training stubbed out): see test_recipe_train.
GOLDEN = json.loads((HERE / "golden" / "builtin-runs.json").read_text())

# How tinyexit/train.py built and trained each task before recipes (its literal calls).
TODAY = {
    "kws": (build_dscnn, DSCNNConfig(num_classes=12), TrainConfig()),
    "ic": (build_resnet8, ResNet8Config(num_classes=10), TrainConfig(epochs=8, batch_size=64, learning_rate=2e-3)),
    "vww": (build_mobilenet_v1, MobileNetConfig(num_classes=2),
            TrainConfig(epochs=30, batch_size=32, learning_rate=2e-3)),
}


def layers_of(model) -> list[list]:
    """[name, class, output shape, parameter count] of every layer, in model order."""
    return [[lay.name, type(lay).__name__, str(lay.output.shape), lay.count_params()] for lay in model.layers]


def test_builtin_recipes_load():
    assert set(TASKS.values()) <= set(available_recipes())
    for name in available_recipes():
        r = load_recipe(name)
        assert r.name == name and r.path.name == f"{name}.yaml"
    assert {t: builtin_recipe(t).task for t in TASKS} == {t: t for t in TASKS}


@pytest.mark.parametrize("task", sorted(TODAY))
def test_builtin_recipe_builds_todays_model(task):
    """Same config, same layers (names, classes, shapes, parameters), same exits and MACs as the builder
    called as train.py called it; and the same layers as the golden run's saved model."""
    build, config, _ = TODAY[task]
    recipe = builtin_recipe(task)
    assert recipe.model_config(config.num_classes) == config
    today, ours = build(config), recipe.build(config.num_classes)
    assert ours.name == today.name
    assert layers_of(ours) == layers_of(today) == GOLDEN[task]["layers"]
    assert ours.count_params() == today.count_params()
    assert exits_with_macs(ours) == exits_with_macs(today) == GOLDEN[task]["model.json"]["exits"]


@pytest.mark.parametrize("task", sorted(TODAY))
def test_builtin_recipe_trains_as_today(task):
    recipe = builtin_recipe(task)
    assert train_config_for(recipe) == TODAY[task][2]
    assert recipe.data["train_copies"] == (2 if task == "kws" else 3)
    if task == "kws":
        default = recipe.data["default"]
        assert (Path(default["dir"]), default["speakers"], default["takes"]) == (DEFAULT_DATA, DEFAULT_SPEAKERS,
                                                                                DEFAULT_TAKES)
        assert recipe.data["augment"] == {"time_shift_ms": 100.0, "noise_probability": 0.8, "noise_volume": 0.1}


def test_recipe_by_path_and_unknown_names(tmp_path):
    r = load_recipe(str(builtin_recipe("ic").path))
    assert r == builtin_recipe("ic")
    with pytest.raises(RecipeError, match="unknown model recipe 'kws-dscn'. Built-in recipes: .*kws-dscnn"):
        load_recipe("kws-dscn")
    with pytest.raises(RecipeError, match=r"missing\.yaml does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match="unknown task 'asr'"):
        builtin_recipe("asr")


def test_recipe_round_trips_through_yaml(tmp_path):
    """A run's copy (Recipe.to_yaml) loads back to the same recipe."""
    r = builtin_recipe("kws")
    (tmp_path / "recipe.yaml").write_text(r.to_yaml("a comment\non two lines"))
    back = load_recipe_file(tmp_path / "recipe.yaml", check_name=False)
    assert back.replace(path=r.path) == r
    with pytest.raises(RecipeError, match="Make the name equal to the file name"):
        load_recipe_file(tmp_path / "recipe.yaml")


def test_each_fixture_is_a_builtin_recipe_with_one_mistake():
    """Each fixture is one of the three built-in recipes with one change (at most a few lines differ)."""
    assert len(INVALID) >= 20
    builtins = [builtin_recipe(t).path.read_text().splitlines() for t in TASKS]
    for f in INVALID:
        lines = f.read_text().splitlines()
        assert lines[0].startswith("# expect: "), f
        if f.stem == "not-a-mapping":
            continue
        changed = min(sum(1 for d in difflib.ndiff(b, lines[1:]) if d[:1] in "+-") for b in builtins)
        assert changed <= 8, f"{f.name} differs from every built-in recipe in {changed} lines"


@pytest.mark.parametrize("fixture", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_recipe_refused(fixture):
    expect = fixture.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(RecipeError) as exc:
        load_recipe_file(fixture)
    msg = str(exc.value)
    assert expect in msg
    assert str(fixture) in msg and "\n" not in msg   # one line, naming the file


SEEDED_WEIGHTS = """
import hashlib, sys
from tinyexit.models.recipe import builtin_recipe
from tinyexit.train import build_seeded
r = builtin_recipe("kws")
model = build_seeded(r, 12, r.model_config(12), int(sys.argv[1]))
h = hashlib.sha256()
for w in model.get_weights():
    h.update(w.tobytes())
print(h.hexdigest())
"""


def test_initial_weights_follow_the_seed_across_processes():
    """Training builds the model after seeding, so two processes start from the same weights (Keras draws
    them when the layers are built; before, the seed was set only after building)."""
    import subprocess
    import sys

    def digest(seed):
        r = subprocess.run([sys.executable, "-c", SEEDED_WEIGHTS, str(seed)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout.strip().splitlines()[-1]
    a, b, c = digest(0), digest(0), digest(1)
    assert a == b and a != c


def test_noisy_recipe_is_the_default_with_noise_over_snrs_and_quieter_silence():
    """models/kws-dscnn-noisy.yaml: the same model, exits, front end and training as kws-dscnn; only the
    augmentation differs, and it reaches the data recipe (model.json) whole, with its pairs."""
    from tinyexit.data.features import Augment
    default, noisy = builtin_recipe("kws"), load_recipe("kws-dscnn-noisy")
    for section in ("family", "input_shape", "model", "exits", "front_end", "training"):
        assert getattr(noisy, section) == getattr(default, section), section
    assert {k: v for k, v in noisy.data.items() if k != "augment"} == \
        {k: v for k, v in default.data.items() if k != "augment"}
    aug = Augment.from_dict(dict(noisy.data["augment"]))
    assert (aug.snr_db, aug.silence_digital, aug.silence_quiet) == ((0.0, 20.0), 0.1, 0.2)
    assert aug.settings() == {**default.data["augment"], "snr_db": [0.0, 20.0], "silence_digital": 0.1,
                              "silence_quiet": 0.2, "silence_quiet_dbfs": [-90.0, -50.0]}
