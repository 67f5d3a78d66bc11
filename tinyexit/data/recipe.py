"""A run's data recipe (model.json "data"): how the features of each split are made from a data folder, so
that every stage after training sees exactly the inputs training saw (`tinyexit.run.Run.split`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tinyexit.data.features import Augment, split_features
from tinyexit.data.level import PER_CLIP, Level
from tinyexit.data.speech_commands import load_speech_commands


@dataclass(frozen=True)
class DataConfig:
    """How features are made from a data folder; stored in model.json so every later stage sees the same."""
    dir: str
    source: str
    kind: str = "kws"
    seed: int = 0
    train_copies: int = 2                         # differently augmented versions of each training clip
    train_augment: dict = field(default_factory=lambda: Augment().settings())
    eval_augment: dict | None = None              # synthetic clean speech: noise mixed into val/test too
    level: str = PER_CLIP                         # the front end's level (tinyexit.data.level; recipe front_end.level)

    def meta(self) -> dict:
        """model.json's "data": the fields, `level` only when it is not per_clip (runs keep the model.json they
        had before levels existed)."""
        d = asdict(self)
        if d["level"] == PER_CLIP:
            del d["level"]
        return d


def data_config_for(data_dir: str | Path, *, seed: int = 0, train_copies: int = 2,
                    train_augment: dict | None = None, level: str = PER_CLIP) -> DataConfig:
    ds = load_speech_commands(data_dir, seed=seed)
    train = Augment.from_dict(train_augment) if train_augment else Augment()
    lv = Level.parse(level)
    # Synthetic voices are clean; real recordings carry their own noise. Evaluate synthetic speech with the
    # same kind of background noise the model trains with (fixed seed), so the figure is not flattered; with a
    # streaming level, also at the recording levels it trains with (real recordings keep their own level).
    gain = {"gain_dbfs": train.gain_dbfs} if lv.streams and train.gain_dbfs is not None else {}
    eval_aug = Augment(time_shift_ms=0.0, **gain).settings() if ds.source == "synthetic" else None
    return DataConfig(dir=str(Path(data_dir).resolve()), source=ds.source, seed=seed, train_copies=train_copies,
                      train_augment=train.settings(), eval_augment=eval_aug, level=str(lv))


def features_for(dc: DataConfig, split: str, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    ds = load_speech_commands(dc.dir, seed=dc.seed)
    level = Level.parse(dc.level)
    if split == "train":
        x, y, _ = split_features(ds, split, copies=dc.train_copies, augment=Augment.from_dict(dc.train_augment),
                                 seed=dc.seed, progress=progress, level=level)
    else:
        aug = Augment.from_dict(dc.eval_augment) if dc.eval_augment else None
        x, y, _ = split_features(ds, split, augment=aug, seed=dc.seed + {"validation": 1, "test": 2}[split],
                                 progress=progress, level=level)
    return x, y


def image_split(data: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split of an image task as training saw it (training split: with its augmented copies)."""
    from tinyexit.data.images import augment_images, load_image_task
    ims = load_image_task(data["kind"], data["dir"], seed=data["seed"])
    x, y = ims.splits[split]
    if split == "train" and data["train_copies"] > 1:
        x = np.concatenate([x, augment_images(x, data["train_copies"] - 1, data["seed"], flip=data["flip"])])
        y = np.tile(y, data["train_copies"])
    return x, y


def recipe_split(data: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The features and labels of `split` made by the recipe `data` (KeyError/TypeError when incomplete)."""
    if data.get("kind", "kws") == "kws":
        return features_for(DataConfig(**data), split)
    return image_split(data, split)
