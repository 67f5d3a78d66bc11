"""The Speech Commands v2 layout reader, on tiny folders made here, good and bad."""
import numpy as np
import pytest

from tinyexit.data.speech_commands import CLASSES, KEYWORDS, SILENCE, UNKNOWN, load_speech_commands, read_wav
from tinyexit.data.synth_kws import write_wav
from tinyexit.errors import TinyexitError


def make_layout(root, *, speakers=("aaaa1111", "bbbb2222", "cccc3333"), others=("cat", "dog"), noise=True):
    rng = np.random.default_rng(0)
    for w in KEYWORDS + tuple(others):
        (root / w).mkdir(parents=True)
        for s in speakers:
            write_wav(root / w / f"{s}_nohash_0.wav", 0.1 * rng.standard_normal(16000).astype(np.float32))
    if noise:
        (root / "_background_noise_").mkdir()
        write_wav(root / "_background_noise_" / "white.wav", 0.1 * rng.standard_normal(32000).astype(np.float32))
    words = KEYWORDS + tuple(others)
    (root / "validation_list.txt").write_text("\n".join(f"{w}/{speakers[1]}_nohash_0.wav" for w in words) + "\n")
    (root / "testing_list.txt").write_text("\n".join(f"{w}/{speakers[2]}_nohash_0.wav" for w in words) + "\n")
    return root


def test_reads_layout_and_splits_by_lists(tmp_path):
    ds = load_speech_commands(make_layout(tmp_path / "sc"), unknown_fraction=0.2, silence_fraction=0.1)
    assert ds.classes == CLASSES and CLASSES[-2:] == ("_silence_", "_unknown_")
    for split, spk in (("train", "aaaa1111"), ("validation", "bbbb2222"), ("test", "cccc3333")):
        kw = [(r, lab) for r, lab in ds.items[split] if lab < 10]
        assert len(kw) == 10 and all(spk in r for r, _ in kw)
        assert all(CLASSES[lab] == r.split("/")[0] for r, lab in kw)
        # 10 keyword clips: unknown capped at ceil(0.2 * 10) = 2 of the 2 available, silence ceil(0.1 * 10) = 1
        assert sum(lab == UNKNOWN for _, lab in ds.items[split]) == 2
        assert [r for r, lab in ds.items[split] if lab == SILENCE] == [""]
    assert ds.source == "speech_commands"


def test_unknown_is_subsampled(tmp_path):
    root = make_layout(tmp_path / "sc", others=("cat", "dog", "bed", "bird", "house"))
    ds = load_speech_commands(root, unknown_fraction=0.1)
    assert sum(lab == UNKNOWN for _, lab in ds.items["train"]) == 1


@pytest.mark.parametrize("breakage, message", [
    (lambda r: (r / "testing_list.txt").unlink(), "testing_list.txt is missing"),
    (lambda r: (r / "validation_list.txt").unlink(), "validation_list.txt is missing"),
    (lambda r: [p.unlink() for p in (r / "yes").iterdir()] and (r / "yes").rmdir(), "keyword folders missing: yes"),
    (lambda r: [p.unlink() for p in (r / "_background_noise_").iterdir()], "_background_noise_"),
    (lambda r: (r / "up" / "cccc3333_nohash_0.wav").unlink(), "lists 1 clips that do not exist"),
])
def test_bad_layouts_are_refused_clearly(tmp_path, breakage, message):
    root = make_layout(tmp_path / "sc")
    breakage(root)
    with pytest.raises(TinyexitError, match=message):
        load_speech_commands(root)


def test_no_unknown_words_refused(tmp_path):
    with pytest.raises(TinyexitError, match="no _unknown_ class"):
        load_speech_commands(make_layout(tmp_path / "sc", others=()))


def test_missing_folder_names_fix(tmp_path):
    with pytest.raises(TinyexitError, match="tinyexit data kws"):
        load_speech_commands(tmp_path / "nope")


def test_corrupt_wav_is_named(tmp_path):
    p = tmp_path / "bad.wav"
    p.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(TinyexitError, match="bad.wav"):
        read_wav(p)


def test_wav_roundtrip_and_resampling(tmp_path):
    import wave
    x = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32) * 0.5
    p = tmp_path / "8k.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    y = read_wav(p)
    assert len(y) == 16000                      # resampled to 16 kHz
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 16000 / len(y) - 440) < 2
