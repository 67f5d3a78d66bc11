"""The streaming scorer (tinyexit.data.stream_score) against hand-computed cases, its CSV reader's refusals, and the
host detector's smoothing / threshold / refractory rule (tinyexit.streaming.detect) on hand-made posteriors."""
import numpy as np
import pytest

from tinyexit.data.stream_score import Occurrence, read_truth, score
from tinyexit.errors import TinyexitError

HOUR = 3600.0
# yes at 1.0-1.5 s (window up to 2.0 s, duplicates up to 2.5 s), no at 4.0-4.4 s, an unknown word at 7.0-7.5 s
TRUTH = [Occurrence(1.0, 1.5, "yes"), Occurrence(4.0, 4.4, "no"), Occurrence(7.0, 7.5, "_unknown_")]


def counts(dets, truth=TRUTH, duration=HOUR):
    s = score(dets, truth, duration)
    return s.true_accepts, s.false_rejects, s.false_accepts, s.duplicates, s.late


def test_all_detected():
    s = score([(1.7, "yes"), (4.5, "no")], TRUTH, HOUR)
    assert (s.occurrences, s.true_accepts, s.false_rejects, s.false_accepts) == (2, 2, 0, 0)
    assert s.false_reject_rate == 0.0 and s.false_accepts_per_hour == 0.0


def test_window_edges():
    assert counts([(2.0, "yes"), (4.9, "no")]) == (2, 0, 0, 0, 0)       # offset + 0.5 s: inside
    assert counts([(1.0, "yes")]) == (1, 1, 0, 0, 0)                    # at the onset: inside
    assert counts([(2.001, "yes")]) == (0, 2, 0, 0, 1)                  # just after: a miss, the detection late
    assert counts([(2.5, "yes")]) == (0, 2, 0, 0, 1)                    # offset + 1.0 s: still late (masked)
    assert counts([(2.501, "yes")]) == (0, 2, 1, 0, 0)                  # beyond: a false accept too
    assert counts([(0.999, "yes")]) == (0, 2, 1, 0, 0)                  # before the onset: a false accept


def test_double_detection():
    assert counts([(1.6, "yes"), (1.9, "yes")]) == (1, 1, 0, 1, 0)      # the second: a duplicate
    assert counts([(1.6, "yes"), (2.5, "yes")]) == (1, 1, 0, 1, 0)      # offset + 1.0 s: still a duplicate
    s = score([(1.6, "yes"), (2.6, "yes")], TRUTH, HOUR)                # beyond: a false accept, in no window
    assert (s.true_accepts, s.false_accepts, s.duplicates) == (1, 1, 0)
    assert s.false_accept_kinds == {"wrong_label": 0, "on_unknown": 0, "no_word": 1}


def test_wrong_label_and_unknown_word():
    s = score([(1.6, "no"), (7.3, "yes"), (2.4, "up")], TRUTH, HOUR)      # 2.4: after yes, within its 1 s
    assert (s.true_accepts, s.false_rejects, s.false_accepts, s.late) == (0, 2, 3, 0)
    assert s.false_accept_kinds == {"wrong_label": 2, "on_unknown": 1, "no_word": 0}
    assert s.missed == [(1.0, "yes"), (4.0, "no")]


def test_per_hour_and_ignored_labels():
    s = score([(10.0, "up"), (20.0, "go"), (30.0, "_silence_"), (7.2, "_unknown_")], TRUTH, 1800.0)
    assert s.detections == 2 and s.false_accepts == 2 and s.false_accepts_per_hour == pytest.approx(4.0)
    assert s.false_reject_rate == 1.0


def test_greedy_in_time_one_detection_per_occurrence():
    truth = [Occurrence(1.0, 1.5, "yes"), Occurrence(1.8, 2.2, "yes")]   # windows [1.0, 2.0] and [1.8, 2.7]
    s = score([(1.9, "yes"), (2.4, "yes")], truth, HOUR)                 # 1.9 takes the earlier one
    assert (s.true_accepts, s.false_rejects, s.false_accepts) == (2, 0, 0)
    assert [m[2] for m in s.matches] == [1.0, 1.8]
    s = score([(2.3, "yes")], truth, HOUR)                               # only the second's window holds 2.3
    assert (s.true_accepts, s.false_rejects, s.missed) == (1, 1, [(1.0, "yes")])
    s = score([(2.4, "yes"), (1.9, "yes")], truth, HOUR)                 # order of the input does not matter
    assert s.true_accepts == 2


def test_reads_csv(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("onset_s,offset_s,label,word,source\n4.0,4.4,no,no,no/x.wav\n1.0,1.5,yes,yes,yes/y.wav\n\n")
    assert read_truth(p) == [Occurrence(1.0, 1.5, "yes"), Occurrence(4.0, 4.4, "no")]


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("start,end,label\n1,2,yes\n", "header lacks onset_s, offset_s"),
    ("onset_s,offset_s,label\n1,two,yes\n", "line 2"),
    ("onset_s,offset_s,label\n2,1,yes\n", "0 <= onset <= offset"),
    ("onset_s,offset_s,label\n-1,1,yes\n", "0 <= onset"),
    ("onset_s,offset_s,label\n1,2\n", "2 fields"),
    ("onset_s,offset_s,label\n1,2, \n", "empty label"),
    ("onset_s,offset_s,label\n1,inf,yes\n", "finite"),
])
def test_refuses_malformed_csv_in_one_line(tmp_path, text, needle):
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(TinyexitError) as e:
        read_truth(p)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_refuses_missing_and_binary(tmp_path):
    with pytest.raises(TinyexitError, match="does not exist"):
        read_truth(tmp_path / "none.csv")
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(TinyexitError, match="cannot be read"):
        read_truth(tmp_path / "b.csv")
    with pytest.raises(TinyexitError, match="positive"):
        score([], TRUTH, 0.0)


CLASSES = ("yes", "no", "_silence_", "_unknown_")


def posteriors(rows):
    """Per-hop posteriors from {class: p} dicts; the rest of the mass on _silence_."""
    out = np.zeros((len(rows), len(CLASSES)))
    for i, r in enumerate(rows):
        for c, p in r.items():
            out[i, CLASSES.index(c)] = p
        out[i, 2] += 1 - out[i].sum()
    return out


def test_detector_smoothing_threshold_refractory():
    from tinyexit.streaming import StreamConfig, detect
    times = 1.0 + 0.25 * np.arange(10)
    p = posteriors([{}, {"yes": 0.9}, {"yes": 0.9}, {"yes": 0.9}, {}, {}, {"no": 0.95}, {"no": 0.95}, {}, {}])
    # no smoothing: yes fires at hop 1 (1.25 s); its later hops fall in the 1-s refractory period;
    # no fires at hop 6 (2.5 s), 1.25 s after
    d = detect(times, p, CLASSES, StreamConfig(smooth_hops=1, threshold=0.8, refractory_s=1.0))
    assert [(t, lab) for t, lab, _ in d] == [(1.25, "yes"), (2.5, "no")]
    # averaging over 3 hops: yes reaches 0.9 at hop 3 (1.75 s); no averages (0.95 + 0.95 + 0) / 3 < 0.8: nothing
    d = detect(times, p, CLASSES, StreamConfig(smooth_hops=3, threshold=0.8, refractory_s=1.0))
    assert [(t, lab) for t, lab, _ in d] == [(1.75, "yes")]
    assert d[0][2] == pytest.approx(0.9)
    # refractory 2 s swallows the no at 2.5 s; refractory 0 lets every hop above threshold fire
    d = detect(times, p, CLASSES, StreamConfig(smooth_hops=1, threshold=0.8, refractory_s=2.0))
    assert [lab for _, lab, _ in d] == ["yes"]
    d = detect(times, p, CLASSES, StreamConfig(smooth_hops=1, threshold=0.8, refractory_s=0.0))
    assert [lab for _, lab, _ in d] == ["yes"] * 3 + ["no"] * 2
    # _silence_ / _unknown_ never fire
    p = posteriors([{"_unknown_": 0.99}] * 3)
    assert detect(times[:3], p, CLASSES, StreamConfig(smooth_hops=1, threshold=0.5)) == []


def test_hop_windows():
    from tinyexit.streaming import hop_windows
    x = np.arange(16000 * 2 + 100, dtype=np.float32)
    t, w = hop_windows(x, 4000)
    assert list(t) == [1.0, 1.25, 1.5, 1.75, 2.0] and w.shape == (5, 16000)
    assert w[2, 0] == 8000 and w[2, -1] == 23999                    # the second of audio ending at 1.5 s
    with pytest.raises(TinyexitError, match="at least 1 s"):
        hop_windows(x[:15999], 4000)
