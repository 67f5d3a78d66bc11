"""Joint training of a model's exits (T-RecX), writing a run directory.

A run directory holds what one model produced; this stage writes `model.keras`, `model.json`,
`report.json` and `training.png` (docs/CONTRACTS.md). Later stages add to it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyexit.data.recipe import DataConfig, data_config_for, features_for, image_split  # noqa: F401  (re-exported)
from tinyexit.data.speech_commands import CLASSES
from tinyexit.errors import TinyexitError
from tinyexit.io import write_json, write_text
from tinyexit.run import Run

DEFAULT_RUN = Path("runs/kws")
DEFAULT_DATA = Path("runs/data/kws-synth")
DEFAULT_SPEAKERS, DEFAULT_TAKES = 160, 3


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 100
    learning_rate: float = 3e-3
    final_learning_rate: float = 1e-4
    early_view_fraction: float = 0.8               # copy the exit head's depthwise kernel for this part of training
    seed: int = 0


def with_epochs(tc: TrainConfig, epochs: int | None) -> TrainConfig:
    if epochs is None:
        return tc
    if epochs < 1:
        raise TinyexitError(f"--epochs must be at least 1, got {epochs}")
    return TrainConfig(**{**asdict(tc), "epochs": epochs})


# ---------------------------------------------------------------------------------------------- data

def default_dataset(path: Path = DEFAULT_DATA, *, speakers: int = DEFAULT_SPEAKERS, takes: int = DEFAULT_TAKES, seed: int = 0,
                    progress: bool = True) -> Path:
    """The offline data set `tinyexit train kws` uses when no --data is given; made once, then reused."""
    from tinyexit.data.synth_kws import make_kws_dataset
    if (path / "testing_list.txt").is_file():
        return path
    print(f"making the offline keyword data set in {path} ({speakers} synthetic speakers)")
    return make_kws_dataset(path, speakers=speakers, takes=takes, seed=seed, progress=progress)


def cap_examples(x: np.ndarray, y: np.ndarray, max_n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_n` examples (None: all): a seeded random subset kept in the split's order."""
    if max_n is None or len(x) <= max_n:
        return x, y
    pick = np.sort(np.random.default_rng(seed).choice(len(x), max_n, replace=False))
    return x[pick], y[pick]


# ---------------------------------------------------------------------------------------------- training

class EarlyViewSync:
    """T-RecX early-view assistance: before each batch of the first part of training, copy the nearest exit
    head's depthwise kernel into the final classifier's early-view branch."""

    def __new__(cls, model, exit_name: str, until_epoch: int):
        import keras

        class _Sync(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.src = model.get_layer(f"{exit_name}_dw")
                self.dst = model.get_layer("ev_dw")
                self.epoch = 0

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_begin(self, batch, logs=None):
                if self.epoch < until_epoch:
                    self.dst.kernel.assign(self.src.kernel)

        return _Sync()


class _KeepBest:
    def __new__(cls, monitor: str):
        import keras

        class _Best(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.best, self.weights, self.epoch = -np.inf, None, -1

            def on_epoch_end(self, epoch, logs=None):
                v = (logs or {}).get(monitor)
                if v is not None and v > self.best:
                    self.best, self.weights, self.epoch = v, self.model.get_weights(), epoch

        return _Best()


def train_model(model, x, y, xv, yv, cfg: TrainConfig, loss_weights: list[float], verbose: int = 2):
    """Fit all exits jointly (sparse CE per exit, weighted); keep the weights of the best validation epoch
    (by final-exit accuracy). Returns (history dict, best epoch)."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    n_out = len(model.outputs)
    steps = max(1, int(np.ceil(len(x) / cfg.batch_size))) * cfg.epochs
    lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps, alpha=cfg.final_learning_rate / cfg.learning_rate)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=["sparse_categorical_crossentropy"] * n_out, loss_weights=loss_weights,
                  metrics=[["accuracy"] for _ in range(n_out)])
    from tinyexit.models import output_names
    names = output_names(model)
    callbacks = []
    best = _KeepBest(f"val_{names[-1]}_accuracy")
    callbacks.append(best)
    exit_names = names[:-1]
    if exit_names and any(lay.name == "ev_dw" for lay in model.layers):
        callbacks.append(EarlyViewSync(model, exit_names[-1], int(cfg.early_view_fraction * cfg.epochs)))
    hist = model.fit(x, [y] * n_out, validation_data=(xv, [yv] * n_out), epochs=cfg.epochs,
                     batch_size=cfg.batch_size, shuffle=True, verbose=verbose, callbacks=callbacks)
    if best.weights is not None:
        model.set_weights(best.weights)
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}, best.epoch


def evaluate_exits(model, x, y) -> dict[str, float]:
    preds = model.predict(x, batch_size=256, verbose=0)
    preds = preds if isinstance(preds, list) else [preds]
    from tinyexit.models import output_names
    names = output_names(model)
    return {n: float(np.mean(np.argmax(p, axis=-1) == y)) for n, p in zip(names, preds)}


def plot_history(history: dict, names: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinyexit.io import save_figure
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, 1 + len(next(iter(history.values()), [])))
    for n in names:
        for prefix, style in (("", "-"), ("val_", "--")):
            if f"{prefix}{n}_loss" in history:
                a.plot(epochs, history[f"{prefix}{n}_loss"], style, label=f"{prefix or 'train_'}{n}")
            if f"{prefix}{n}_accuracy" in history:
                b.plot(epochs, history[f"{prefix}{n}_accuracy"], style, label=f"{prefix or 'train_'}{n}")
    a.set(title="loss per exit", xlabel="epoch")
    b.set(title="accuracy per exit", xlabel="epoch", ylim=(0, 1))
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


def train_config_for(recipe) -> TrainConfig:
    """The recipe's training settings (and its early-view fraction, when it has early-view assistance)."""
    t = recipe.training
    ev = {"early_view_fraction": float(recipe.early_view["fraction"])} if recipe.early_view else {}
    return TrainConfig(epochs=t["epochs"], batch_size=t["batch_size"], learning_rate=float(t["learning_rate"]),
                       final_learning_rate=float(t["final_learning_rate"]), seed=t["seed"], **ev)


def _as_trained(recipe, tc: TrainConfig, train_copies: int):
    """The recipe with the settings training used (--epochs, a TrainConfig, train_copies): RUN/recipe.yaml."""
    training = {k: getattr(tc, k) for k in ("epochs", "batch_size", "learning_rate", "final_learning_rate", "seed")}
    exits = ({**recipe.exits, "early_view": {"fraction": tc.early_view_fraction}} if recipe.early_view
             else recipe.exits)
    return recipe.replace(training=training, exits=exits, data={**recipe.data, "train_copies": train_copies})


def train_recipe(recipe, *, data: str | Path | None = None, out: str | Path | None = None,
                 epochs: int | None = None, train_config: TrainConfig | None = None,
                 train_copies: int | None = None, max_train: int | None = None, verbose: int = 2) -> dict:
    """Train the model of `recipe` (a Recipe, a recipe file or a built-in recipe's name; models/, docs/MODELS.md)
    with its exits and write the run directory `out` (default runs/<recipe name>), the recipe as trained in it.

    `data`: a folder of the recipe's data kind (kws: Speech Commands v2 style; ic: CIFAR-10 python batches; vww: an
    image folder with a sub-folder per class); None uses the recipe's offline default. `epochs`, `train_config`
    and `train_copies` override the recipe's; `max_train` caps the training examples (tests). Returns the report.
    """
    from tinyexit.models.recipe import Recipe, load_recipe

    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    copies = recipe.data["train_copies"] if train_copies is None else train_copies
    if copies < 1:
        raise TinyexitError(f"train_copies must be at least 1, got {copies}")
    out = Path(out) if out is not None else Path("runs") / recipe.name
    train = _train_kws if recipe.task == "kws" else _train_image
    return train(recipe, data=data, out=out, epochs=epochs, train_config=train_config, train_copies=copies,
                 max_train=max_train, verbose=verbose)


def train_kws(*, data: str | Path | None = None, out: str | Path = DEFAULT_RUN, epochs: int | None = None,
              train_config: TrainConfig | None = None, train_copies: int | None = None,
              max_train: int | None = None, verbose: int = 2) -> dict:
    """`tinyexit train kws`: the built-in recipe models/kws-dscnn.yaml (the DS-CNN keyword spotter with its
    early exit). `data`: a Speech Commands v2 style folder (real or made by `tinyexit data kws`); None makes or
    reuses the offline default. Returns the report dict."""
    from tinyexit.models.recipe import builtin_recipe
    return train_recipe(builtin_recipe("kws"), data=data, out=out, epochs=epochs, train_config=train_config,
                        train_copies=train_copies, max_train=max_train, verbose=verbose)


def build_seeded(recipe, num_classes: int, mc, seed: int):
    """The recipe's Keras model with its initial weights drawn from `seed`: Keras draws them when the layers
    are built, so the seed is set before (training sets it again before fitting)."""
    import keras
    keras.utils.set_random_seed(seed)
    return recipe.build(num_classes, mc)


def _cap(x, y, max_train: int | None, seed: int):
    if max_train is not None and len(x) > max_train:
        pick = np.random.default_rng(seed).choice(len(x), max_train, replace=False)
        x, y = x[pick], y[pick]
    return x, y


def _train_kws(recipe, *, data, out, epochs, train_config, train_copies, max_train, verbose) -> dict:
    t0 = time.time()
    d = recipe.data
    if data is None:
        default = d["default"]
        data_dir = default_dataset(Path(default["dir"]), speakers=default["speakers"], takes=default["takes"],
                                   seed=default["seed"])
    else:
        data_dir = Path(data)
    dc = data_config_for(data_dir, seed=d["seed"], train_copies=train_copies,
                         train_augment=dict(d["augment"]), level=recipe.front_end.get("level", "per_clip"))
    tc = with_epochs(train_config or train_config_for(recipe), epochs)
    mc = recipe.model_config(len(CLASSES))
    print(f"features: {dc.dir} ({dc.source})")
    x, y = features_for(dc, "train", progress=verbose > 0)
    xv, yv = features_for(dc, "validation")
    xt, yt = features_for(dc, "test")
    x, y = _cap(x, y, max_train, tc.seed)
    note = ("synthetic speech (espeak-ng/flite voices) with background noise mixed in; it proves the "
            "pipeline, not accuracy on real speech") if dc.source == "synthetic" else "real recordings"
    return fit_and_write_run(
        build_seeded(recipe, len(CLASSES), mc, tc.seed), mc, tc, (x, y), (xv, yv), (xt, yt), out=out, task="kws",
        classes=CLASSES,
        data_meta=dc.meta(), t0=t0, verbose=verbose, recipe=_as_trained(recipe, tc, train_copies),
        data_report={"source": dc.source, "dir": dc.dir, "test_split": "held-out speakers (testing_list.txt)",
                     "note": note})


def fit_and_write_run(model, mc, tc: TrainConfig, train, validation, test, *, out, task: str, classes,
                      data_meta: dict, data_report: dict, t0: float, verbose: int = 2, recipe=None) -> dict:
    """Train all exits of `model` jointly, evaluate every exit, and write the run directory atomically:
    model.keras, model.json (exit points, data recipe for `load_split`), report.json, history.json,
    training.png and, given the model's `recipe`, recipe.yaml (the recipe as trained). Returns the report."""
    import keras

    from tinyexit.models import exits_with_macs

    (x, y), (xv, yv), (xt, yt) = train, validation, test
    specs = exits_with_macs(model)
    weights = [mc.loss_weights["final"] if s["name"] == "final" else mc.loss_weights["exit"] for s in specs]
    print(f"training {model.name} on {data_report['source']}: {len(x)} train / {len(xv)} validation / "
          f"{len(xt)} test examples, {tc.epochs} epochs, exits {[s['name'] for s in specs]}")
    history, best_epoch = train_model(model, x, y, xv, yv, tc, weights, verbose=verbose)
    acc, val_acc = evaluate_exits(model, xt, yt), evaluate_exits(model, xv, yv)
    report = {
        "task": task, "classes": list(classes),
        "exits": [{"name": s["name"], "accuracy": acc[s["name"]], "validation_accuracy": val_acc[s["name"]],
                   "macs": s["macs"], "point": s["point"]} for s in specs],
        "data": {**data_report, "train_examples": int(len(x)), "validation_examples": int(len(xv)),
                 "test_examples": int(len(xt))},
        "training": {**asdict(tc), "best_epoch": best_epoch + 1, "loss_weights": weights,
                     "wall_time_s": round(time.time() - t0, 1)},
        "model": {"name": model.name, "params": int(model.count_params()), **asdict(mc)},
    }
    model_json = {"task": task, "input_shape": list(mc.input_shape), "classes": list(classes),
                  "exits": specs, "data": data_meta}
    with Run.create(out) as tmp:
        model.save(tmp.model_keras)
        write_json(tmp.model_json_path, model_json)
        write_json(tmp.report_path, report)
        write_json(tmp.history_path, history)
        plot_history(history, [s["name"] for s in specs], tmp.training_plot)
        if recipe is not None:
            write_text(tmp.recipe_path, recipe.to_yaml(f"the model recipe this run was trained from ({recipe.path}),\n"
                                                        f"with the settings training used (docs/MODELS.md)"))
    keras.backend.clear_session()
    return report


def format_report(report: dict) -> str:
    lines = [f"{'exit':<8} {'test acc':>9} {'MACs':>11}"]
    for e in report["exits"]:
        lines.append(f"{e['name']:<8} {100 * e['accuracy']:>8.2f}% {e['macs']:>11,}")
    lines.append(f"data: {report['data']['source']}, {report['data']['test_examples']} test examples "
                 f"({report['data']['test_split']}); wall time {report['training']['wall_time_s']} s")
    return "\n".join(lines)


def train_image(task: str, *, data: str | Path | None = None, out: str | Path | None = None,
                epochs: int | None = None, train_config: TrainConfig | None = None,
                train_copies: int | None = None, verbose: int = 2) -> dict:
    """`tinyexit train ic|vww`: the built-in recipe models/ic-resnet8.yaml (ResNet-8, 32x32x3) or
    models/vww-mobilenet.yaml (MobileNetV1-0.25, 96x96x3) with their T-RecX exits.

    `data`: a CIFAR-10 python folder (ic) or an image folder with a sub-folder per class (vww); None uses
    the offline default (real MNIST digits; scikit-image's face / non-face crops). Returns the report dict.
    """
    from tinyexit.models.recipe import builtin_recipe

    if task not in ("ic", "vww"):
        raise TinyexitError(f"unknown image task {task!r}; use ic or vww")
    return train_recipe(builtin_recipe(task), data=data, out=out or f"runs/{task}", epochs=epochs,
                        train_config=train_config, train_copies=train_copies, verbose=verbose)


def _train_image(recipe, *, data, out, epochs, train_config, train_copies, max_train, verbose) -> dict:
    from tinyexit.data.images import load_image_task

    t0 = time.time()
    task, d = recipe.task, recipe.data
    ims = load_image_task(task, data, seed=d["seed"])
    tc = with_epochs(train_config or train_config_for(recipe), epochs)
    flip = d["augment"]["flip"]
    if flip == "auto":
        flip = not ims.source.startswith("mnist")          # mirrored digits are other digits
    data_meta = {"kind": task, "dir": str(Path(data).resolve()) if data else None, "source": ims.source,
                 "seed": d["seed"], "train_copies": train_copies, "flip": flip}
    x, y = image_split(data_meta, "train")
    x, y = _cap(x, y, max_train, tc.seed)
    xv, yv = ims.splits["validation"]
    xt, yt = ims.splits["test"]
    mc = recipe.model_config(len(ims.classes))
    return fit_and_write_run(
        build_seeded(recipe, len(ims.classes), mc, tc.seed), mc, tc, (x, y), (xv, yv), (xt, yt), out=out, task=task,
        classes=ims.classes, data_meta=data_meta, t0=t0, verbose=verbose,
        recipe=_as_trained(recipe, tc, train_copies),
        data_report={"source": ims.source, "dir": data_meta["dir"], "test_split": "held-out images",
                     "note": ims.note or "real data"})
