"""`tinyexit data kws-stream`: long recordings of held-out voices with ground truth, on a tiny layout of tone-burst
"words" made here (train/validation voices at 400 Hz, test voices at 1500 Hz, exact silence around each burst), and
once on the espeak-ng set of tests/_data.py."""
import csv
import json

import numpy as np
import pytest

from tinyexit.cli import main
from tinyexit.data import streams
from tinyexit.data.speech_commands import KEYWORDS, SAMPLE_RATE, read_wav
from tinyexit.data.synth_kws import write_wav
from tinyexit.errors import TinyexitError

SNRS = (20.0, 10.0, 5.0, 0.0)
TEST_HZ, OTHER_HZ = 1500.0, 400.0


def tone_layout(root):
    """A Speech Commands layout whose clips are a 0.2-0.6 s tone burst inside exact silence."""
    rng = np.random.default_rng(1)
    spk = {"aaaa1111": "train", "bbbb2222": "validation", "cccc3333": "test", "dddd4444": "test"}
    lists = {"validation": [], "test": []}
    for w in KEYWORDS + ("cat", "dog"):
        (root / w).mkdir(parents=True)
        for s, split in spk.items():
            n = int(rng.uniform(0.2, 0.6) * SAMPLE_RATE)
            start = int(rng.integers(0, SAMPLE_RATE - n))
            x = np.zeros(SAMPLE_RATE, np.float32)
            hz = TEST_HZ if split == "test" else OTHER_HZ
            x[start:start + n] = 0.5 * np.sin(2 * np.pi * hz * np.arange(n) / SAMPLE_RATE)
            write_wav(root / w / f"{s}_nohash_0.wav", x)
            if split in lists:
                lists[split].append(f"{w}/{s}_nohash_0.wav")
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "white.wav", 0.3 * rng.standard_normal(5 * SAMPLE_RATE))
    write_wav(root / "_background_noise_" / "pink.wav", np.cumsum(rng.standard_normal(3 * SAMPLE_RATE)) * 0.01)
    (root / "validation_list.txt").write_text("\n".join(lists["validation"]) + "\n")
    (root / "testing_list.txt").write_text("\n".join(lists["test"]) + "\n")
    return root


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tone_layout(tmp_path_factory.mktemp("tones") / "sc")
    out = tmp_path_factory.mktemp("s") / "streams"
    manifest = streams.make_streams(out, root, minutes=1.0, snrs=SNRS, seed=5)
    return root, out, manifest


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def intervals(path):
    return [(round(float(r["onset_s"]) * SAMPLE_RATE), round(float(r["offset_s"]) * SAMPLE_RATE)) for r in rows(path)]


def test_files_and_manifest(made):
    _, out, m = made
    names = ["clean", "snr20", "snr10", "snr5", "snr0"]
    assert [r["name"] for r in m["recordings"]] == names
    for n in names:
        assert len(read_wav(out / f"{n}.wav")) == 60 * SAMPLE_RATE
        assert (out / f"{n}.csv").read_text() == (out / "clean.csv").read_text()
    assert json.loads((out / "streams.json").read_text()) == m
    labels = [r["label"] for r in rows(out / "clean.csv")]
    assert set(labels) <= set(KEYWORDS) | {"_unknown_"} and "_unknown_" in labels and len(set(labels)) > 3
    assert m["keywords"] == sum(lab != "_unknown_" for lab in labels)


def test_onsets_point_at_the_words_and_nothing_else_sounds(made):
    _, out, _ = made
    x = read_wav(out / "clean.wav")
    iv = intervals(out / "clean.csv")
    inside = np.zeros(len(x), bool)
    prev_end = 0
    for a, b in iv:
        assert a >= prev_end, "words overlap or are out of order"
        prev_end = b
        inside[a:b] = True
        # a word starts within 30 ms of the onset (20-ms margin + a 10-ms frame) and ends as close to the offset
        loud = np.flatnonzero(np.abs(x[a:b]) > 1e-3)
        assert loud.size and loud[0] <= 0.031 * SAMPLE_RATE and (b - a - 1 - loud[-1]) <= 0.031 * SAMPLE_RATE
        # one second of a 1-s model window never holds two words: >= 1 s of silence between words
    gaps = [a2 - b1 for (_, b1), (a2, _) in zip(iv, iv[1:])]
    assert min(gaps) >= 1.0 * SAMPLE_RATE
    assert np.all(x[~inside] == 0.0)


def test_only_held_out_voices(made):
    root, out, m = made
    test_list = set((root / "testing_list.txt").read_text().split())
    assert {r["source"] for r in rows(out / "clean.csv")} <= test_list
    assert set(m["speakers"]) <= {"cccc3333", "dddd4444"}
    # independently of the CSV's "source": every word's tone is the test voices' frequency
    x = read_wav(out / "clean.wav")
    for a, b in intervals(out / "clean.csv"):
        spec = np.abs(np.fft.rfft(x[a:b]))
        hz = np.fft.rfftfreq(b - a, 1 / SAMPLE_RATE)[np.argmax(spec)]
        assert abs(hz - TEST_HZ) < 20, hz


def test_word_levels_vary_within_the_documented_range(made):
    _, out, _ = made
    x = read_wav(out / "clean.wav")
    peaks = np.array([20 * np.log10(np.abs(x[a:b]).max()) for a, b in intervals(out / "clean.csv")])
    lo, hi = streams.LEVEL_DBFS
    assert peaks.min() >= lo - 0.1 and peaks.max() <= hi + 0.1 and peaks.std() > 2.0


@pytest.mark.parametrize("snr", SNRS)
def test_mixed_noise_has_the_requested_snr(made, snr):
    _, out, m = made
    rec = next(r for r in m["recordings"] if r["snr_db"] == snr)
    clean = read_wav(out / "clean.wav").astype(np.float64)
    noisy = read_wav(out / f"snr{snr:g}.wav").astype(np.float64)
    assert 0 < rec["gain"] <= 1 and np.abs(noisy).max() <= 0.99 + 1e-4
    speech = rec["gain"] * clean
    noise = noisy - speech
    idx = np.concatenate([np.arange(a, b) for a, b in intervals(out / "clean.csv")])
    measured = 10 * np.log10(np.mean(speech[idx] ** 2) / np.mean(noise ** 2))
    assert abs(measured - snr) < 0.5, measured


def test_same_seed_same_recordings(made, tmp_path):
    root, out, _ = made
    streams.make_streams(tmp_path / "again", root, minutes=1.0, snrs=SNRS, seed=5)
    for f in ("clean.wav", "snr0.wav", "clean.csv"):
        assert (tmp_path / "again" / f).read_bytes() == (out / f).read_bytes()


def test_snr_parsing():
    assert streams.parse_snrs("20, 10,5,0") == (20.0, 10.0, 5.0, 0.0)
    for bad in ("10,x", "", "nan", "5,5"):
        with pytest.raises(TinyexitError) as e:
            streams.parse_snrs(bad)
        assert "\n" not in str(e.value)


def _cli(capsys, *argv):
    rc = main(["data", "kws-stream", *argv])
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("extra", [["--minutes", "0"], ["--minutes", "-2"], ["--minutes", "abc"],
                                   ["--snr", "10,ten"], ["--snr", ","]])
def test_cli_refuses_bad_numbers_in_one_line(made, tmp_path, capsys, extra):
    root, _, _ = made
    rc, err = _cli(capsys, "--out", str(tmp_path / "o"), "--data", str(root), *extra)
    assert rc == 2 and len(err.splitlines()) == 1 and "error:" in err, err
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []


def test_cli_refuses_missing_or_wrong_folders_in_one_line(tmp_path, capsys):
    (tmp_path / "notsc").mkdir()
    (tmp_path / "notsc" / "x.wav").write_bytes(b"")
    for data, needle in ((tmp_path / "missing", "does not exist"), (tmp_path / "notsc", "layout")):
        rc, err = _cli(capsys, "--out", str(tmp_path / "o"), "--data", str(data))
        assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err
        assert not (tmp_path / "o").exists()


def test_cli_writes_and_reports(made, tmp_path, capsys):
    root, _, _ = made
    rc = main(["data", "kws-stream", "--out", str(tmp_path / "o"), "--data", str(root), "--minutes", "0.3",
               "--snr", "10"])
    assert rc == 0 and "clean, snr10" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["clean.csv", "clean.wav", "snr10.csv",
                                                                  "snr10.wav", "streams.json"]


def test_nothing_half_written_on_failure(made, tmp_path, monkeypatch):
    root, _, _ = made
    out = tmp_path / "o"
    streams.make_streams(out, root, minutes=0.3, snrs=(10.0,), seed=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def failing(x):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return b"RIFF"

    monkeypatch.setattr(streams, "wav_bytes", failing)
    with pytest.raises(OSError):
        streams.make_streams(out, root, minutes=0.3, snrs=(10.0, 0.0), seed=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["o"]
    # a user's folder that holds no earlier output is refused, not replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    monkeypatch.undo()
    with pytest.raises(TinyexitError, match="not empty"):
        streams.make_streams(tmp_path / "mine", root, minutes=0.3, snrs=(10.0,))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_espeak_voices(tmp_path_factory):
    """On the espeak-ng set: only test-list clips, onsets at words (energy at the onset well above the gaps')."""
    from tests._data import small_kws_data
    root = small_kws_data(tmp_path_factory)
    out = tmp_path_factory.mktemp("e") / "streams"
    streams.make_streams(out, root, minutes=0.5, snrs=(10.0,), seed=0)
    test_list = set((root / "testing_list.txt").read_text().split())
    assert {r["source"] for r in rows(out / "clean.csv")} <= test_list
    x = read_wav(out / "clean.wav")
    iv = intervals(out / "clean.csv")
    assert len(iv) >= 5
    inside = np.zeros(len(x), bool)
    for a, b in iv:
        inside[a:b] = True
        assert np.sqrt(np.mean(x[a:a + int(0.1 * SAMPLE_RATE)] ** 2)) > 1e-3
    assert np.all(x[~inside] == 0.0)


def test_cli_default_data_is_the_offline_set(made, tmp_path, capsys, monkeypatch):
    """Without --data the recordings come from tinyexit.train.default_dataset (made there when missing)."""
    import tinyexit.train
    root, _, _ = made
    asked = []
    monkeypatch.setattr(tinyexit.train, "default_dataset", lambda: asked.append(1) or root)
    assert main(["data", "kws-stream", "--out", str(tmp_path / "o"), "--minutes", "0.2", "--snr", "5"]) == 0
    assert asked == [1]
    assert json.loads((tmp_path / "o" / "streams.json").read_text())["data"] == str(root.resolve())


def test_cli_output_under_a_file_is_refused_in_one_line(made, tmp_path, capsys):
    root, _, _ = made
    (tmp_path / "afile").write_text("x")
    rc, err = _cli(capsys, "--out", str(tmp_path / "afile" / "o"), "--data", str(root), "--minutes", "0.2")
    assert rc == 2 and len(err.splitlines()) == 1 and "cannot create the folder" in err, err
