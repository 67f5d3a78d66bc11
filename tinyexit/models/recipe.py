"""Models as data: one YAML recipe per model in `models/`, validated against `models/model.schema.json`.

A recipe names a family of builders (dscnn, resnet8, mobilenet) with its widths and depths, the exit points and
their heads, the loss weights, early-view assistance, the task's data (kind, default source, augmentation) and
front end, and the training settings. `tinyexit train kws` is `tinyexit train --model models/kws-dscnn.yaml`:
the built-in tasks are the recipes in TASKS. docs/MODELS.md describes every field.

`load_recipe` checks a file (schema, then what a schema cannot say: exit points the family has, widths that
build, the front end that suits the data) and raises a one-line RecipeError naming the file, the field and the
fix; `Recipe.build(num_classes)` builds the Keras model with the family's builder.
"""
from __future__ import annotations

import dataclasses
import json
import math
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from tinyexit import schemafile
from tinyexit.data.features import (FEATURE_SHAPE, FFT_LENGTH, FRAME_LENGTH, FRAME_STEP, LOWER_HZ, MEL_BINS, NUM_MFCC,
                                    UPPER_HZ)
from tinyexit.data.level import HELP as LEVEL_HELP
from tinyexit.data.level import PER_CLIP, Level
from tinyexit.data.speech_commands import SAMPLE_RATE
from tinyexit.errors import TinyexitError
from tinyexit.models.dscnn import DSCNNConfig, build_dscnn
from tinyexit.models.mobilenet import BLOCKS as MOBILENET_BLOCKS
from tinyexit.models.mobilenet import MobileNetConfig, build_mobilenet_v1
from tinyexit.models.resnet8 import ResNet8Config, build_resnet8
from tinyexit.resources import models_dir

MODELS_DIR = models_dir()
SCHEMA_PATH = MODELS_DIR / "model.schema.json"
TASKS = {"kws": "kws-dscnn", "ic": "ic-resnet8", "vww": "vww-mobilenet"}   # built-in task -> its recipe

# What each data kind gives the model, and where its offline default comes from.
DATA_SHAPES = {"kws": tuple(FEATURE_SHAPE), "ic": (32, 32, 3), "vww": (96, 96, 3)}
DEFAULT_SOURCES = {"kws": "synthetic_speech", "ic": "mnist", "vww": "lfw_subset"}
SYNTHETIC_KEYS = ("dir", "speakers", "takes", "seed")     # data.default of synthetic_speech (and only of it)
# The front ends tinyexit implements, the data kinds they feed and their (fixed) parameters.
FRONT_ENDS = {
    "mlperf_mfcc": (("kws",), {"sample_rate": SAMPLE_RATE, "frame_length": FRAME_LENGTH, "frame_step": FRAME_STEP,
                               "fft_length": FFT_LENGTH, "mel_bins": MEL_BINS, "lower_hz": LOWER_HZ,
                               "upper_hz": UPPER_HZ, "num_mfcc": NUM_MFCC}),
    "pixels": (("ic", "vww"), {"range": [0.0, 1.0]}),
}
IMAGE_HEAD_MIN_MAP = 8    # an image exit head (2x2 stride-2 depthwise, then a 4x4 pool) needs an 8x8 feature map


class RecipeError(TinyexitError):
    """A model recipe is missing or wrong; the message names the file, the field and the fix."""


# ------------------------------------------------------------------------------------------------ families

def _dscnn_points(model: dict) -> dict[str, int]:
    return {f"block{b}_out": b for b in range(1, model["blocks"])}


def _resnet8_points(model: dict) -> dict[str, int]:
    return {f"stack{s}_out": s for s in range(1, len(model["filters"]))}


def _mobilenet_points(model: dict) -> dict[str, int]:
    return {f"block{b}_out": b for b in range(1, len(MOBILENET_BLOCKS))}


def _resnet8_map(model: dict, input_shape, index: int) -> int:
    """Side of stack `index`'s output map (stride 2 from stack 2 on, 'same' padding)."""
    return math.ceil(min(input_shape[:2]) / 2 ** (index - 1))


def _mobilenet_map(model: dict, input_shape, index: int) -> int:
    side = math.ceil(min(input_shape[:2]) / 2)                     # the stride-2 stem
    for _, stride in MOBILENET_BLOCKS[:index]:
        side = math.ceil(side / stride)
    return side


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    points: object                 # model -> {exit point name: block/stack index}
    exit_map: object | None        # (model, input_shape, index) -> side of the exit point's map (image heads)
    describe: object               # model -> "a dscnn with 4 blocks" (for messages)


FAMILIES = {
    "dscnn": Family("dscnn", _dscnn_points, None,
                    lambda m: f"a dscnn with {m['blocks']} blocks (model.blocks)"),
    "resnet8": Family("resnet8", _resnet8_points, _resnet8_map,
                      lambda m: f"a resnet8 with {len(m['filters'])} stacks (model.filters)"),
    "mobilenet": Family("mobilenet", _mobilenet_points, _mobilenet_map,
                        lambda m: f"a mobilenet ({len(MOBILENET_BLOCKS)} blocks)"),
}


# ------------------------------------------------------------------------------------------------ the recipe

@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    family: str
    input_shape: tuple[int, int, int]
    model: dict
    exits: dict
    data: dict
    front_end: dict
    training: dict
    path: Path

    @property
    def task(self) -> str:
        """What model.json and report.json call the task: the data kind (kws, ic, vww)."""
        return self.data["kind"]

    @property
    def exits_after(self) -> tuple[int, ...]:
        points = FAMILIES[self.family].points(self.model)
        return tuple(points[p] for p in self.exits["points"])

    @property
    def early_view(self) -> dict | None:
        """{fraction: F} when the final head gets early-view assistance (dscnn), else None."""
        return self.exits.get("early_view") or None

    def model_config(self, num_classes: int):
        """The family builder's config (DSCNNConfig, ResNet8Config or MobileNetConfig) for this recipe."""
        m, e = self.model, self.exits
        common = dict(input_shape=tuple(self.input_shape), num_classes=num_classes, exits_after=self.exits_after,
                      bn_momentum=float(m["bn_momentum"]),
                      loss_weights={"exit": float(e["loss_weights"]["exit"]),
                                    "final": float(e["loss_weights"]["final"])})
        if self.family == "dscnn":
            return DSCNNConfig(filters=m["filters"], blocks=m["blocks"], head_channels=e["head"]["channels"],
                               early_view=self.early_view is not None, dropout_stem=float(m["dropout_stem"]),
                               dropout_final=float(m["dropout_final"]), **common)
        if self.family == "resnet8":
            return ResNet8Config(filters=tuple(m["filters"]), head_filters=e["head"]["filters"], **common)
        return MobileNetConfig(alpha=float(m["alpha"]), head_filters=e["head"]["filters"], **common)

    def build(self, num_classes: int, config=None):
        """The Keras model (untrained) of this recipe, with `num_classes` outputs per exit."""
        config = config or self.model_config(num_classes)
        builder = {"dscnn": build_dscnn, "resnet8": build_resnet8, "mobilenet": build_mobilenet_v1}[self.family]
        return builder(config)

    def to_dict(self) -> dict:
        return {f.name: (list(getattr(self, f.name)) if f.name == "input_shape" else getattr(self, f.name))
                for f in dataclasses.fields(self) if f.name != "path"}

    def replace(self, **sections) -> "Recipe":
        return dataclasses.replace(self, **sections)

    def to_yaml(self, comment: str = "") -> str:
        head = "".join(f"# {line}\n" for line in comment.splitlines())
        return head + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)


# ------------------------------------------------------------------------------------------------ loading

@lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def available_recipes() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))


def _schema_error_message(file: Path, err: jsonschema.ValidationError) -> str:
    at = schemafile.where(err.absolute_path)
    if err.validator == "type" and isinstance(err.instance, str) and _looks_numeric(err.instance):
        return (f"{file}: {at}: {err.instance!r} is text, not a number (YAML reads an exponent without a "
                f"decimal point as text). Write it with a point, e.g. 0.003 or 3.0e-3.")
    if err.validator == "uniqueItems":
        return f"{file}: {at}: {err.instance} lists a value twice. List each once."
    if err.validator in ("oneOf", "pattern") and "description" in err.schema:
        return f"{file}: {at}: {err.instance!r} is not valid here. Write {err.schema['description']}."
    return schemafile.error_message(file, err, schema_path=SCHEMA_PATH, example="models/kws-dscnn.yaml and "
                                    "docs/MODELS.md", fields=" (docs/MODELS.md lists the fields)")


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _check_semantics(file: Path, data: dict) -> None:
    """What the schema cannot say: exit points of this family, widths that build, data and front end that fit."""
    family = FAMILIES[data["family"]]
    model, exits, kind = data["model"], data["exits"], data["data"]["kind"]
    shape = tuple(data["input_shape"])
    if shape != DATA_SHAPES[kind]:
        want = list(DATA_SHAPES[kind])
        raise RecipeError(f"{file}: input_shape {list(shape)} does not match what {kind} data gives the model "
                          f"({want}). Set input_shape: {want}.")
    if data["family"] == "mobilenet" and int(32 * model["alpha"]) < 1:
        raise RecipeError(f"{file}: model.alpha {model['alpha']} leaves the 32-channel stem with "
                          f"int(32 x {model['alpha']}) = 0 channels. Use alpha >= {1 / 32}.")
    if data["family"] == "dscnn" and exits["head"]["channels"] > model["filters"]:
        raise RecipeError(f"{file}: exits.head.channels {exits['head']['channels']} exceeds model.filters "
                          f"{model['filters']} (the head reads the first channels of the block). Make it at most "
                          f"{model['filters']}.")
    points = family.points(model)
    for p in exits["points"]:
        if p not in points:
            raise RecipeError(f"{file}: exits.points: {p!r} is not an exit point of {family.describe(model)}. "
                              f"Use one of {', '.join(points)}.")
    order = [points[p] for p in exits["points"]]
    if order != sorted(order):
        raise RecipeError(f"{file}: exits.points {exits['points']} are not in order of depth. List them "
                          f"shallowest first: {sorted(exits['points'], key=points.get)}.")
    if family.exit_map is not None:
        for p in exits["points"]:
            side = family.exit_map(model, shape, points[p])
            if side < IMAGE_HEAD_MIN_MAP:
                raise RecipeError(f"{file}: exits.points: {p!r} is a {side}x{side} feature map, too small for an "
                                  f"exit head (it needs {IMAGE_HEAD_MIN_MAP}x{IMAGE_HEAD_MIN_MAP}). Move the exit "
                                  f"earlier.")
    _check_data(file, data["data"])
    _check_front_end(file, data["front_end"], kind)
    level = data["front_end"].get("level", PER_CLIP)
    if "gain_dbfs" in data["data"]["augment"] and not Level.parse(level).streams:
        raise RecipeError(f"{file}: data.augment.gain_dbfs: recording levels change nothing when the front end "
                          f"divides each clip by its own maximum (front_end.level {level}). Set front_end.level "
                          f"to fixed:N or peak:DECAY:FLOOR, or remove gain_dbfs.")


def _check_data(file: Path, d: dict) -> None:
    kind, default = d["kind"], d["default"]
    aug = d["augment"]
    for key in ("snr_db", "silence_quiet_dbfs", "gain_dbfs"):
        if key in aug and aug[key][0] > aug[key][1]:
            raise RecipeError(f"{file}: data.augment.{key}: {aug[key]} is not a range [low, high]. Write the lower "
                              f"value first: {sorted(aug[key])}.")
    shares = aug.get("silence_digital", 0) + aug.get("silence_quiet", 0)
    if shares > 1:
        raise RecipeError(f"{file}: data.augment: silence_digital + silence_quiet = {shares:g} exceeds 1 (they are "
                          f"shares of the _silence_ examples). Make their sum at most 1.")
    want = DEFAULT_SOURCES[kind]
    if default["source"] != want:
        raise RecipeError(f"{file}: data.default.source: {default['source']!r} is not a source of {kind} data. "
                          f"Use {want!r} (or pass your own data with --data).")
    if want == "synthetic_speech":
        missing = [k for k in SYNTHETIC_KEYS if k not in default]
        if missing:
            raise RecipeError(f"{file}: data.default: missing required key '{missing[0]}' of the synthetic "
                              f"speech source. Add {', '.join(missing)} (see models/kws-dscnn.yaml).")
    else:
        extra = [k for k in SYNTHETIC_KEYS if k in default]
        if extra:
            raise RecipeError(f"{file}: data.default: {extra[0]!r} applies only to the synthetic_speech source. "
                              f"Remove it.")


def _check_front_end(file: Path, fe: dict, kind: str) -> None:
    kinds, params = FRONT_ENDS[fe["name"]]
    if kind not in kinds:
        right = next(n for n, (ks, _) in FRONT_ENDS.items() if kind in ks)
        raise RecipeError(f"{file}: front_end.name: {fe['name']!r} does not feed {kind} data. Use {right!r}.")
    for key, value in fe.items():
        if key == "name":
            continue
        if key == "level" and fe["name"] == "mlperf_mfcc":       # a choice, not a fixed parameter
            try:
                Level.parse(value)
            except TinyexitError:
                raise RecipeError(f"{file}: front_end.level: {value!r} is not a level. Write {LEVEL_HELP}.") from None
            continue
        if key not in params:
            raise RecipeError(f"{file}: front_end.{key}: the {fe['name']} front end has no parameter {key!r} "
                              f"(it has {', '.join(params)}). Remove it.")
        if value != params[key]:
            raise RecipeError(f"{file}: front_end.{key}: {value!r}, but the {fe['name']} front end is fixed at "
                              f"{params[key]!r}. Set {params[key]!r} or remove the key.")


def load_recipe_file(file: str | Path, check_name: bool = True) -> Recipe:
    """Load and check one recipe file. `check_name=False` for a run's copy (RUN/recipe.yaml), whose file name is
    not the recipe's name."""
    file = Path(file)
    data = schemafile.read_mapping(
        file, RecipeError, missing=f"model recipe {file} does not exist. Built-in recipes: "
                                   f"{', '.join(available_recipes())} (in {MODELS_DIR}).",
        not_mapping="a model recipe must be a mapping of keys (name, family, model, exits, ...); see "
                    "models/kws-dscnn.yaml.")
    schemafile.check(file, data, _schema(), RecipeError, _schema_error_message)
    if check_name:
        schemafile.check_name(file, data, RecipeError)
    _check_semantics(file, data)
    return Recipe(name=data["name"], description=data["description"], family=data["family"],
                  input_shape=tuple(data["input_shape"]), model=data["model"], exits=data["exits"],
                  data=data["data"], front_end=data["front_end"], training=data["training"], path=file)


def load_recipe(name: str | Path) -> Recipe:
    """`models/<name>.yaml` (a built-in recipe by name) or the path to a recipe file."""
    text = str(name)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return load_recipe_file(name)
    file = MODELS_DIR / f"{text}.yaml"
    if not file.exists():
        raise RecipeError(f"unknown model recipe '{text}'. Built-in recipes: {', '.join(available_recipes())} "
                          f"(or give the path to a recipe .yaml file).")
    return load_recipe_file(file)


def builtin_recipe(task: str) -> Recipe:
    """The recipe of a built-in task: kws -> models/kws-dscnn.yaml, ic -> ic-resnet8, vww -> vww-mobilenet."""
    if task not in TASKS:
        raise RecipeError(f"unknown task {task!r}; use one of {', '.join(TASKS)} or a recipe (--model PATH.yaml)")
    return load_recipe(TASKS[task])


__all__ = ["Recipe", "RecipeError", "FAMILIES", "TASKS", "available_recipes", "builtin_recipe",
           "load_recipe", "load_recipe_file"]
