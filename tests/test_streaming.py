"""The host reference of streaming (tinyexit.streaming) with a tiny untrained two-exit KWS model: per-hop posteriors
equal the model on MLPerf's front end of the last second, the score agrees with the detections, the exit is chosen
by name; and benchmarks/kws_stream_eval.py end to end. Untrained weights: no claim about accuracy."""
import importlib.util
import json

import numpy as np
import pytest

from tests.data.test_streams import tone_layout
from tinyexit.data.speech_commands import CLASSES, SAMPLE_RATE, read_wav
from tinyexit.errors import TinyexitError
from tinyexit.io import write_json
from tinyexit.run import Run

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((49, 10, 1))
    h = keras.layers.Flatten(name="flat")(inp)
    e = keras.layers.Dense(len(CLASSES), activation="softmax", name="exit1")(h)
    f = keras.layers.Dense(16, activation="relu", name="hidden")(h)
    f = keras.layers.Dense(len(CLASSES), activation="softmax", name="final")(f)
    model = keras.Model(inp, [e, f])
    run = tmp_path_factory.mktemp("run") / "kws"
    run.mkdir()
    model.save(run / "model.keras")
    write_json(run / "model.json", {"task": "kws", "input_shape": [49, 10, 1], "classes": list(CLASSES),
                                    "exits": [{"name": "exit1", "point": "flat"}, {"name": "final", "point": None}],
                                    "data": {"kind": "kws"}})
    from tinyexit.data.streams import make_streams
    root = tone_layout(tmp_path_factory.mktemp("tones") / "sc")
    streams = tmp_path_factory.mktemp("st") / "streams"
    make_streams(streams, root, minutes=0.25, snrs=(10.0,), seed=3)
    return run, model, streams


def test_posteriors_are_the_model_on_the_front_end_of_each_window(tiny):
    from tinyexit.data.features import front_end
    from tinyexit.streaming import StreamModel, hop_windows
    run, model, streams = tiny
    x = read_wav(streams / "snr10.wav")
    times, win = hop_windows(x, 4000)
    for name, k in (("final", 1), ("exit1", 0)):
        sm = StreamModel(Run(run), name)
        got = sm.posteriors(win[[0, 7, len(win) - 1]])
        for row, i in zip(got, (0, 7, len(win) - 1)):
            end = int(times[i] * SAMPLE_RATE)
            want = model.predict(front_end(x[end - SAMPLE_RATE:end])[None, ..., None], verbose=0)[k][0]
            np.testing.assert_allclose(row, want, atol=1e-5)


def test_a_run_trained_with_a_fixed_level_streams_with_it(tiny, tmp_path):
    """model.json's data.level fixed:N (or --level): each window is its int16 samples divided by N, not by the
    window's maximum (the oracle: tf.signal's MFCC of the samples / N, computed here)."""
    import shutil

    from tinyexit.data.features import mfcc
    from tinyexit.streaming import StreamModel, hop_windows
    run, model, streams = tiny
    fixed = tmp_path / "fixed"
    shutil.copytree(run, fixed)
    meta = json.loads((fixed / "model.json").read_text())
    meta["data"]["level"] = "fixed:5000"
    write_json(fixed / "model.json", meta)
    x = read_wav(streams / "snr10.wav")
    times, win = hop_windows(x, 4000)
    pick = [3, len(win) - 1]
    pcm = np.round(win[pick] * 32768).astype(np.float32)
    want = model.predict(mfcc(pcm / np.float32(5000)), verbose=0)[1]
    np.testing.assert_allclose(StreamModel(Run(fixed)).posteriors(win[pick]), want, atol=1e-5)
    np.testing.assert_allclose(StreamModel(Run(run), level="fixed:5000").posteriors(win[pick]), want, atol=1e-5)
    assert np.abs(StreamModel(Run(run)).posteriors(win[pick]) - want).max() > 1e-3     # per_clip is another front end


def test_evaluate_recording_scores_its_detections(tiny):
    from tinyexit.data.stream_score import read_truth, score
    from tinyexit.streaming import StreamConfig, StreamModel, evaluate_recording
    run, _, streams = tiny
    cfg = StreamConfig(threshold=0.1, smooth_hops=1, refractory_s=0.5)     # low: an untrained model fires
    r = evaluate_recording(StreamModel(run), streams / "snr10.wav", cfg, sweep=(0.05, 0.99))
    n = len(read_wav(streams / "snr10.wav"))
    assert r["hops"] == len(range(SAMPLE_RATE, n + 1, 4000)) and r["exit"] == "final"
    dets = [(d["time_s"], d["label"]) for d in r["detections_list"]]
    assert dets and all(b - a >= 0.5 for (a, _), (b, _) in zip(dets, dets[1:]))
    s = score(dets, read_truth(streams / "snr10.csv"), n / SAMPLE_RATE)
    assert (r["false_rejects"], r["false_accepts"], r["true_accepts"]) == (s.false_rejects, s.false_accepts,
                                                                          s.true_accepts)
    assert r["true_accepts"] + r["false_rejects"] == r["occurrences"] > 0
    assert [w["threshold"] for w in r["sweep"]] == [0.05, 0.99]
    assert r["sweep"][1]["false_accepts"] <= r["false_accepts"] <= r["sweep"][0]["false_accepts"]
    assert 0 <= r["accuracy"] <= 1 and r["accuracy_windows"] >= r["occurrences"]


def test_refusals(tiny, tmp_path):
    from tinyexit.streaming import StreamConfig, StreamModel
    run, _, _ = tiny
    with pytest.raises(TinyexitError, match="no exit 'exit9'"):
        StreamModel(run, "exit9")
    with pytest.raises(TinyexitError, match="not a run directory"):
        StreamModel(tmp_path)
    for bad in (StreamConfig(hop_ms=0), StreamConfig(smooth_hops=0), StreamConfig(threshold=1.5),
                StreamConfig(refractory_s=-1)):
        with pytest.raises(TinyexitError):
            bad.check()


def test_benchmark_end_to_end(tiny, tmp_path, capsys):
    run, _, streams = tiny
    spec = importlib.util.spec_from_file_location("kws_stream_eval", REPO / "benchmarks" / "kws_stream_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--run", str(run), "--streams", str(streams), "--json", str(tmp_path / "r.json"),
                     "--sweep", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC SPEECH" not in out          # the tone layout is not marked synthetic speech
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["name"] for r in doc["recordings"]] == ["clean", "snr10"]
    assert mod.main(["--run", str(run), "--streams", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
