"""Image loaders: CIFAR-10 python batches and class folders made here (good and bad), offline defaults."""
import pickle

import numpy as np
import pytest

from tinyexit.data.images import augment_images, lfw_offline, load_cifar10, load_image_folder, mnist_offline
from tinyexit.errors import TinyexitError


def write_cifar(root, n=20):
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, size=n))
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
    return root


def test_cifar_layout_and_pixel_order(tmp_path):
    root = write_cifar(tmp_path / "c")
    ims = load_cifar10(root, validation=10)
    x, y = ims.splits["test"]
    with open(root / "test_batch", "rb") as f:
        raw = pickle.load(f)
    # CIFAR stores planes R, G, B of 32x32 each; pixel (row 3, col 5) of image 0:
    r, g, b = (raw[b"data"][0, plane * 1024 + 3 * 32 + 5] / 255.0 for plane in range(3))
    np.testing.assert_allclose(x[0, 3, 5], [r, g, b], rtol=1e-6)
    assert list(y) == list(raw[b"labels"])
    assert len(ims.splits["train"][0]) == 90 and len(ims.splits["validation"][0]) == 10


def test_cifar_errors(tmp_path):
    with pytest.raises(TinyexitError, match="does not exist"):
        load_cifar10(tmp_path / "nope")
    root = write_cifar(tmp_path / "c")
    (root / "data_batch_3").unlink()
    with pytest.raises(TinyexitError, match="missing data_batch_3"):
        load_cifar10(root)
    root2 = write_cifar(tmp_path / "d")
    (root2 / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(TinyexitError, match="test_batch: not a readable CIFAR-10 batch"):
        load_cifar10(root2)


def test_image_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls in ("non_person", "person"):
        (tmp_path / "f" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "f" / cls / f"{i}.png")
    ims = load_image_folder(tmp_path / "f", size=48)
    assert ims.classes == ("non_person", "person")
    assert sum(len(v[0]) for v in ims.splits.values()) == 20
    assert ims.splits["train"][0].shape[1:] == (48, 48, 3)
    (tmp_path / "f" / "person" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(TinyexitError, match="bad.png: not a readable image"):
        load_image_folder(tmp_path / "f")
    with pytest.raises(TinyexitError, match="one sub-folder per class"):
        load_image_folder(tmp_path / "f" / "person")


def test_offline_defaults_are_real_and_stratified():
    m = mnist_offline()
    x, y = m.splits["train"]
    assert x.shape[1:] == (32, 32, 3) and x.max() == 1.0 and not x[:, :2].any()     # padded border
    assert sum(len(v[1]) for v in m.splits.values()) == 5000
    assert set(np.unique(m.splits["test"][1])) == set(range(10))
    f = lfw_offline()
    assert f.splits["test"][0].shape[1:] == (96, 96, 3) and set(np.unique(f.splits["test"][1])) == {0, 1}


def test_augment_shifts_and_is_deterministic():
    x = np.zeros((1, 8, 8, 3), np.float32)
    x[0, 4, 4] = 1.0
    a, b = augment_images(x, 5, seed=1, flip=False), augment_images(x, 5, seed=1, flip=False)
    np.testing.assert_array_equal(a, b)
    assert all(im.sum() == 3.0 for im in a)                    # the pixel moved but stayed inside
    assert len({tuple(np.argwhere(im[..., 0])[0]) for im in a}) > 1
