"""The front end's level (tinyexit.data.level; a recipe's front_end.level): the Python features with a fixed or
running-peak level against the C front end's push mode on the same int16 clips, and a tiny recipe trained with a
fixed level and recording levels end to end (model.json, the features every later stage reads, the C front end)."""

import json

import numpy as np
import pytest

from tests._stats import seed
from tests.conftest import require_program
from tests.frontend.test_frontend import FLOAT_TOL, QPARAMS, SR, speech_clips, synthetic_clips
from tinyexit import frontend
from tinyexit.data.features import front_end, mfcc, mfcc_frames
from tinyexit.data.level import Level, to_pcm
from tinyexit.errors import TinyexitError
from tinyexit.quantize.qparams import quantize_array


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    require_program("gcc", "apt-get install -y gcc")
    return frontend.build_host(tmp_path_factory.mktemp("fe"))


def one_second(clips) -> np.ndarray:
    return np.stack([np.pad(c[:SR], (0, max(0, SR - len(c)))) for c in clips]).astype(np.int16)


def assert_close_to_c(exe, level: Level, pcm: np.ndarray) -> None:
    """float features within FLOAT_TOL of the C's; int8 inputs never more than 1 LSB apart, >= 99.5 % equal."""
    ref = level.features(pcm)[..., 0]
    feats, _ = frontend.run_host(exe, pcm, mode="push", level=level.driver_arg(), chunk=frontend.HOP)
    assert np.abs(feats - ref).max() < FLOAT_TOL
    for qp in QPARAMS:
        _, q = frontend.run_host(exe, pcm, mode="push", level=level.driver_arg(), chunk=frontend.HOP, qparams=qp)
        qr = quantize_array(ref, qp)
        assert np.abs(q.astype(int) - qr.astype(int)).max() <= 1
        assert (q == qr).mean() >= 0.995


@pytest.mark.parametrize("text", ["fixed:8192", "fixed:300", "peak:0.99:1000", "peak:0.9:50"])
def test_python_level_features_equal_the_c_front_end(exe, text):
    pcm = one_second(synthetic_clips()[:-3])            # the last three are short, long and one frame
    assert_close_to_c(exe, Level.parse(text), pcm)


def test_python_level_features_equal_the_c_front_end_on_speech(exe):
    pcm = one_second(speech_clips())
    for text in ("fixed:8192", "fixed:2000", "peak:0.995:500"):
        assert_close_to_c(exe, Level.parse(text), (pcm // 4).astype(np.int16))


def test_per_clip_is_mlperfs_division():
    pcm = one_second(synthetic_clips()[:6])
    assert np.array_equal(Level.parse("per_clip").features(pcm)[..., 0], np.stack([front_end(c) for c in pcm]))


def test_frame_levels_of_the_running_peak_by_hand():
    """A clip silent up to one loud sample at 5000 (frame 10 is the first that holds it), floor 100, decay 0.5:
    the floor up to frame 9, then 5000 halved after every frame down to the floor."""
    pcm = np.zeros((1, SR), np.int16)
    pcm[0, 320 * 10 + 479] = 5000                        # the last sample of frame 10, the first of no other
    lv = Level.parse("peak:0.5:100").frame_levels(pcm)[0]
    want = [100.0] * 10 + [5000.0, 2500.0, 1250.0, 625.0, 312.5, 156.25] + [100.0] * 33
    assert lv.tolist() == want


def test_a_level_per_frame_is_the_division_of_the_signal():
    """mfcc_frames with the same level on every frame is mfcc of the divided signal, bit for bit."""
    x = np.random.default_rng(seed(3)).normal(0, 3000, (3, SR)).astype(np.float32)
    levels = np.full((3, 49), np.float32(1234.0))
    assert np.array_equal(mfcc_frames(x, levels), mfcc(x / np.float32(1234.0)))


@pytest.mark.parametrize("bad", ["max", "fixed:0", "fixed:32768", "fixed:1.5", "peak:0:100", "peak:1.01:100",
                                 "peak:0.9:0", "peak:0.9", "peak:a:b", ""])
def test_bad_levels_are_one_line_errors(bad):
    with pytest.raises(TinyexitError, match="per_clip, fixed:N") as e:
        Level.parse(bad)
    assert "\n" not in str(e.value)


def test_text_round_trips_and_feeds_the_c_driver():
    for text in ("per_clip", "fixed:8192", "peak:0.99:1000.0"):
        assert str(Level.parse(str(Level.parse(text)))) == str(Level.parse(text))
    assert Level.parse("per_clip").driver_arg() == "max" and Level.parse("fixed:8192").driver_arg() == "fixed:8192"
    assert to_pcm(np.array([0.5, -1.0, 1.0, 3.0 / 32768])).tolist() == [16384, -32768, 32767, 3]


TINY_STREAM = """\
name: tiny-stream
description: a small DS-CNN of the test's own, trained with a fixed front-end level and recording levels
family: dscnn
input_shape: [49, 10, 1]
model: {filters: 8, blocks: 2, dropout_stem: 0.1, dropout_final: 0.1, bn_momentum: 0.9}
exits:
  points: [block1_out]
  head: {channels: 4}
  loss_weights: {exit: 0.5, final: 1.0}
  early_view: false
data:
  kind: kws
  default: {source: synthetic_speech, dir: runs/data/kws-synth, speakers: 160, takes: 3, seed: 0}
  train_copies: 1
  seed: 0
  augment: {time_shift_ms: 50.0, noise_probability: 0.5, noise_volume: 0.1, snr_db: [0.0, 20.0],
            silence_digital: 0.2, gain_dbfs: [-30.0, -3.0]}
front_end: {name: mlperf_mfcc, level: "fixed:3000"}
training: {epochs: 1, batch_size: 16, learning_rate: 0.003, final_learning_rate: 0.0001, seed: 0}
"""


@pytest.fixture(scope="module")
def tiny_kws(tmp_path_factory):
    require_program("espeak-ng", "apt-get install -y --no-install-recommends espeak-ng")
    from tinyexit.data.synth_kws import make_kws_dataset
    return make_kws_dataset(tmp_path_factory.mktemp("d") / "kws", speakers=6, takes=1, seed=seed(1),
                            val_fraction=0.2, test_fraction=0.3, progress=False)


def test_fixed_level_recipe_end_to_end(tiny_kws, exe, tmp_path):
    """`tinyexit train --model` a recipe with front_end.level fixed:3000 and gain_dbfs: the run records the level;
    the test features every later stage reads (Run.split) are the C front end's on the same clips as PCM; the
    training clips' peaks spread over the recording levels; the level's division is in the features."""
    from tinyexit.cli import main as cli
    from tinyexit.data.features import Augment, prepare_pcm
    from tinyexit.data.recipe import DataConfig
    from tinyexit.data.speech_commands import SILENCE, load_speech_commands
    from tinyexit.models.recipe import load_recipe_file
    from tinyexit.run import Run
    recipe = tmp_path / "tiny-stream.yaml"
    recipe.write_text(TINY_STREAM)
    out = tmp_path / "run"
    assert cli(["train", "--model", str(recipe), "--data", str(tiny_kws), "--out", str(out), "--quiet"]) == 0
    data = json.loads((out / "model.json").read_text())["data"]
    assert data["level"] == "fixed:3000" and data["train_augment"]["gain_dbfs"] == [-30.0, -3.0]
    assert data["eval_augment"]["gain_dbfs"] == [-30.0, -3.0]           # synthetic speech: tested at those levels
    assert load_recipe_file(Run(out).recipe_path, check_name=False).front_end["level"] == "fixed:3000"

    dc = DataConfig(**data)
    ds = load_speech_commands(dc.dir, seed=dc.seed)
    pcm, y = prepare_pcm(ds, "test", augment=Augment.from_dict(dc.eval_augment), seed=dc.seed + 2)
    x, yr = Run(out).split("test")
    assert np.array_equal(y, yr) and len(y) >= 8
    c, _ = frontend.run_host(exe, pcm, mode="push", level="fixed:3000")
    assert np.abs(x[..., 0] - c).max() < FLOAT_TOL
    # the same clips divided by another level are other features: the level is in them
    assert np.abs(Level.parse("fixed:6000").features(pcm[:4]) - x[:4]).max() > 0.5

    # training clips: words (no noise drawn here) peak where gain_dbfs puts them, spread over the range
    clean = Augment(time_shift_ms=0.0, noise_probability=0.0, gain_dbfs=(-30.0, -3.0))
    pcm_t, y_t = prepare_pcm(ds, "train", augment=clean, seed=seed(5))
    peaks = 20 * np.log10(np.abs(pcm_t[y_t != SILENCE].astype(np.float64)).max(axis=1) / 32768)
    assert peaks.min() >= -30.1 and peaks.max() <= -2.9
    assert peaks.min() < -25 and peaks.max() > -8 and len(peaks) >= 20
