"""The energy-adaptive shared exit branch inside the checkpointing runtime (seg0, pool0, ..., pool(N-1), branch):
under random power cuts and low-energy signals every committed result equals the int8 chain on TFLM
(BranchInt8Chain, the independent oracle) after the point it reports, byte for byte, and that point is the first
at/after the low-energy signal; runtimes broken on purpose (vector not checkpointed, low-energy latch kept in RAM)
fail."""
from __future__ import annotations

import json
import math
import shutil

import pytest

from tinyexit.errors import TinyexitError
from tinyexit.intermittent import slots
from tinyexit.intermittent.branch import branch_reference, prepare_branch, run_branch_campaign
from tinyexit.intermittent.branch_checks import Layout
from tinyexit.intermittent.host import Granularity, HostTarget, build_host, render_pipeline
from tinyexit.pipeline import BRANCH, POOL, SEGMENT, Pipeline, Stage

from ._support import make_target, random_inputs


@pytest.fixture(scope="module")
def branch_pipeline(tiny_branch, tmp_path_factory):
    out = tmp_path_factory.mktemp("shared_rt")
    lib, pipe, shared = prepare_branch(tiny_branch, out)
    exe = build_host(lib, pipe, out / "host")
    t = HostTarget(exe, out / "probe.bin")
    return {"lib": lib, "pipeline": pipe, "vector": pipe.vector, "shared": shared, "exe": exe, "out": out,
            "layout": Layout.from_rows(t.layout()), "inputs": random_inputs(3, t.info["input_size"], seed=5),
            "reference": branch_reference(shared)}


def _broken(sp, flag):
    return build_host(sp["lib"], sp["pipeline"], sp["out"] / f"host-{flag}", broken=(flag,))


def test_pipeline_layout_from_the_manifest(tiny_branch, branch_pipeline):
    man = json.loads((tiny_branch / "branch" / "manifest.json").read_text())
    pipe = Pipeline.from_branch(man)
    stages, vector = pipe.stages, pipe.vector
    assert [s.role for s in stages] == [SEGMENT, POOL] * 3 + [BRANCH]
    assert [(s.exit_index, s.vector_offset) for s in stages if s.role == POOL] == [(0, 0), (1, 16), (2, 32)]
    assert (vector.size, vector.zero_point) == (man["vector"]["size"], man["vector"]["zero_point"])
    # the sizes of each stage's .tflite (read independently) and of the generated library agree
    from tinyexit.quantize import tensor_shape
    files = {e["name"]: e["file"] for e in man["segments"] + man["pools"] + [man["branch"]]}
    for s in branch_pipeline["pipeline"].stages:
        b = (tiny_branch / "branch" / files[s.name]).read_bytes()
        assert (s.input_size, s.output_size) == tuple(math.prod(tensor_shape(b, t)[1:]) for t in ("input", "output"))
    assert branch_pipeline["pipeline"].stages[-1].output_size == len(man["classes"])
    lay = branch_pipeline["layout"]
    assert lay.num_points == 3 and lay.point_end(0) < lay.point_end(1) < lay.point_end(2)
    with pytest.raises(TinyexitError, match="seg0, pool0"):
        Pipeline((stages[0], stages[2], stages[-1]), vector=vector)
    with pytest.raises(TinyexitError, match="seg0, pool0"):
        Pipeline(stages[:-1] + (Stage(stages[-1].name, SEGMENT),), vector=vector)


def test_uninterrupted_answer_is_the_first_point_after_the_signal(branch_pipeline, tmp_path):
    """Low energy after L units (no cut): the runtime answers at the first point whose pool ends at or after L,
    with the int8 chain's branch output after that point; without a signal the last point answers."""
    sp, lay = branch_pipeline, branch_pipeline["layout"]
    t = make_target(sp["exe"], tmp_path)
    x = sp["inputs"][0]
    (tmp_path / "in.bin").write_bytes(x)
    ref = sp["reference"](x)
    ends = [lay.point_end(k) for k in range(lay.num_points)]
    seen = set()
    for low in sorted({1, ends[0] - 1, ends[0], ends[0] + 1, ends[1], ends[1] + 1, ends[2] - 3, ends[2] + 2,
                       *range(1, ends[-1] + 1, 7)}):
        t.erase_nvm()
        b = t.boot(tmp_path / "in.bin", 1, Granularity.parse("units:3"), low_energy_units=low)
        want = next((k for k, e in enumerate(ends) if e >= low), lay.num_points - 1)
        assert b.returncode == 0 and b.exit_index == want, (low, b.exit_index, want)
        assert b.output == ref[want]
        rec = t.newest()
        assert rec.done and rec.exit_index == want and rec.low_energy and rec.payload == ref[want]
        seen.add(want)
    assert seen == {0, 1, 2}
    t.erase_nvm()
    b = t.boot(tmp_path / "in.bin", 2, Granularity.parse("layer"))
    assert b.exit_index == 2 and b.output == ref[2] and not t.newest().low_energy


@pytest.mark.parametrize("gran", ["units:4", "layers:50"])
def test_host_campaign_200_cuts_with_low_energy(branch_pipeline, tmp_path, gran):
    sp = branch_pipeline
    report = run_branch_campaign(make_target(sp["exe"], tmp_path), sp["inputs"], cuts=200, seed=3,
                                 granularity=Granularity.parse(gran), low_energy=0.5, reference=sp["reference"],
                                 work_dir=tmp_path / "work")
    assert report.cuts >= 200 and report.cuts_in_commits >= 60 and report.cuts_between_commits >= 60
    assert report.reference_checked == 3
    assert report.completed == report.inferences >= 30
    assert report.ok, report.table()
    assert report.wrong_results == report.wrong_points == report.lost_signals == 0
    # signals arrive everywhere: every point answers, and early signals end inferences early
    assert report.signalled >= 20 and set(report.exits) == {0, 1, 2}
    assert all(set(row) == {int(where.split()[1])} for where, row in report.answered.items() if where != "branch")
    assert 0 < report.mean_reexecuted_units_per_cut < report.units_per_inference
    if gran == "layers:50":   # commits only at stage ends: latches made durable by a LOW_MARK word
        assert report.low_marks > 0


def test_broken_runtime_without_the_vector_fails_the_same_campaign(branch_pipeline, tmp_path):
    sp = branch_pipeline
    report = run_branch_campaign(make_target(_broken(sp, "no-vector"), tmp_path), sp["inputs"], cuts=200, seed=3,
                                 granularity=Granularity.parse("units:4"), low_energy=0.5, reference=sp["reference"],
                                 work_dir=tmp_path / "work")
    assert report.wrong_results > 0 and not report.ok
    assert "TX_CUT_" in report.table()           # the failing cuts, for a replay


def test_broken_volatile_latch_loses_signals(branch_pipeline, tmp_path):
    """A latch kept in RAM until the next stage-end commit: a cut in between loses a signal the runtime saw."""
    sp = branch_pipeline
    report = run_branch_campaign(make_target(_broken(sp, "volatile-low"), tmp_path), sp["inputs"], cuts=200,
                                 seed=3, granularity=Granularity.parse("layers:50"), low_energy=0.8,
                                 kinds=("units",), reference=sp["reference"])
    assert report.lost_signals > 0 and not report.ok


@pytest.mark.parametrize("broken", [None, "volatile-low"])
def test_latched_signal_survives_a_cut(branch_pipeline, tmp_path, broken):
    """Low energy in segment 1, power cut one step later (before pool 1): the next boot, with plenty of energy,
    still answers at point 1; a RAM latch answers at the end. The newest checkpoint before the signal lies at pool
    0's start (stage ends are committed after segments only), so its LOW_MARK cannot stand for the signal (a resume
    would pass pool 0 with it): the latch gets a record of its own in segment 1."""
    sp, lay = branch_pipeline, branch_pipeline["layout"]
    exe = sp["exe"] if broken is None else _broken(sp, broken)
    t = make_target(exe, tmp_path)
    x = sp["inputs"][1]
    (tmp_path / "in.bin").write_bytes(x)
    g = Granularity.parse("layers:50")
    seg1 = lay.position(2, 0, 0)
    steps = lay.units[2]
    assert len(steps) >= 2
    b = t.boot(tmp_path / "in.bin", 9, g, low_energy_units=seg1 + 1, cut_units=seg1 + steps[0] + steps[1])
    assert b.cut
    rec = t.newest()
    assert not rec.done
    b = t.boot(tmp_path / "in.bin", 9, g)
    ref = sp["reference"](x)
    if broken is None:
        assert rec.low_energy and rec.position[0] == 2 and not rec.low_mark
        assert (b.exit_index, b.output) == (1, ref[1])
    else:
        assert not rec.low_energy
        assert (b.exit_index, b.output) == (2, ref[2])


def test_checkpoints_carry_the_vector(branch_pipeline, tmp_path):
    """Every unfinished checkpoint's payload starts with the vector: slices of the points run so far hold the
    int8 chain's pooled features, the others the zero point."""
    import numpy as np

    from tinyexit.branch import BranchInt8Chain
    sp = branch_pipeline
    chain = BranchInt8Chain.from_dir(sp["shared"])
    x = sp["inputs"][2]
    vecs = chain.run_q(np.frombuffer(x, np.int8).reshape(1, 49, 10, 1), stop=2)["vectors"]
    t = make_target(sp["exe"], tmp_path)
    (tmp_path / "in.bin").write_bytes(x)
    size, zp = sp["vector"].size, sp["vector"].zero_point
    checked = set()
    for k in range(1, 1000):
        t.erase_nvm()
        b = t.boot(tmp_path / "in.bin", 4, Granularity.parse("layer"), cut_units=k)
        if not b.cut:
            break
        rec = t.newest()
        if rec is None or rec.done:
            continue
        vec = np.frombuffer(rec.payload[:size], np.int8)
        done_points = rec.stage // 2          # pools (odd stages) before this stage
        want = vecs[done_points - 1][0] if done_points else np.full(size, zp, np.int8)
        assert np.array_equal(vec, want), (rec.position, done_points)
        checked.add(done_points)
    assert checked == {0, 1, 2, 3}


def test_powerfail_cli_branch(tiny_branch, tmp_path, capsys):
    from tinyexit.cli import main
    run = tmp_path / "run"
    shutil.copytree(tiny_branch, run)
    rc = main(["powerfail", str(run), "--branch", "--cuts", "30", "--seed", "2", "--granularity", "units:4",
               "--inputs", "2", "--out", str(tmp_path / "out"), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "shared exit branch, host, 3 exit points" in out and "answered at the wrong point 0" in out
    (r,) = json.loads((tmp_path / "r.json").read_text())
    assert r["ok"] and r["cuts"] >= 30 and r["points"] == 3
    assert (tmp_path / "out" / "branch-answers.png").stat().st_size > 1000    # answer vs signal figure
    assert all(p == next(k for k, e in enumerate(r["point_ends"]) if e >= s) for s, p in r["signals"]
               if s <= r["point_ends"][-1])
    rc = main(["powerfail", str(run), "--branch", "--cuts", "60", "--seed", "2", "--granularity", "units:4",
               "--inputs", "2", "--broken", "no-vector", "--out", str(tmp_path / "out")])
    assert rc == 1 and "FAIL inference" in capsys.readouterr().out
    assert main(["powerfail", str(run), "--broken", "no-vector", "--out", str(tmp_path / "o2")]) == 2
    assert "add --branch" in capsys.readouterr().err


def test_slot_parser_reads_the_low_mark(branch_pipeline, tmp_path):
    """slots.py (independent parser): the LOW_MARK word is outside the CRC; a torn mark still counts."""
    sp = branch_pipeline
    t = make_target(sp["exe"], tmp_path)
    x = sp["inputs"][0]
    (tmp_path / "in.bin").write_bytes(x)
    lay = sp["layout"]
    t.boot(tmp_path / "in.bin", 1, Granularity.parse("layers:50"), cut_units=lay.position(2, 0, 0) + 1)
    image = bytearray(t.nvm_image())
    rec = slots.newest_valid(bytes(image), t.slot_size)
    assert rec is not None and not rec.low_mark
    off = rec.slot * t.slot_size + slots.LOW_MARK_WORD * 4
    image[off:off + 4] = b"\x7f\xff\xff\xff"
    again = slots.newest_valid(bytes(image), t.slot_size)
    assert again is not None and again.low_mark and again.low_energy and again.seq == rec.seq
    image[off - 4] ^= 1                      # a word under the CRC: the slot is no longer valid
    assert slots.read_slot(bytes(image), rec.slot, t.slot_size) is None


@pytest.mark.emulator
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_emulated_board_50_exact_cuts_with_the_shared_pipeline(branch_pipeline, tmp_path):
    """The same pipeline as firmware on QEMU's mps2-an386 (NVM in file-backed PSRAM, NVMC rules on), power cut
    after exactly N instructions, half of them aimed inside commits and LOW_MARK writes; low energy from the
    mailbox at random points."""
    from tinyexit.intermittent.branch import run_branch_emulated
    from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated
    sp = branch_pipeline
    inputs = sp["inputs"][:2]
    fw = build_emulated(sp["lib"], sp["pipeline"], inputs, "mps2-an386", tmp_path / "emu")
    et = EmulatedTarget(fw, tmp_path / "psram.img")
    report = run_branch_emulated(et, sp["layout"], inputs, cuts=50, seed=1, granularity=Granularity.parse("units:4"),
                                 low_energy=0.5, reference=sp["reference"], work_dir=tmp_path / "work")
    assert report.cuts >= 50 and report.cuts_in_commits >= 10, report.table()
    assert report.ok, report.table()
    assert report.reference_checked == 2 and report.signalled >= 3 and len(report.exits) >= 2
    assert report.instructions_per_inference > report.instructions_per_inference_baseline > 0
    # low energy's own threshold reaches the firmware through the mailbox (THRESHOLD:LOW)
    from tinyexit.intermittent.branch_checks import Threshold
    refs = [sp["reference"](x) for x in inputs]
    for low in (-128, 128):
        for j in range(len(inputs)):
            b = et.uninterrupted(j, 0x51000000 + j, Granularity.parse("units:4"), threshold=Threshold(128, low),
                                 low_energy_units=sp["layout"].point_end(0))
            want = _low_answer(refs[j], 128, low, 0)
            assert (b.exit_index, b.output) == (want, refs[j][want]), (low, j)


def _first_confident(outputs, threshold):
    for k, out in enumerate(outputs):
        if max(b - 256 if b > 127 else b for b in out) >= threshold:
            return k
    return len(outputs) - 1


def test_confidence_mode_answers_at_the_first_confident_point(branch_pipeline, tmp_path):
    """With a threshold the branch runs after every point; uninterrupted, the runtime answers at the first point
    whose int8 chain scores reach it (computed here from TFLM's outputs), or earlier when energy runs low."""
    sp, lay = branch_pipeline, branch_pipeline["layout"]
    refs = [sp["reference"](x) for x in sp["inputs"]]
    maxes = sorted({max(b - 256 if b > 127 else b for b in r[k]) for r in refs for k in range(3)})
    t = make_target(sp["exe"], tmp_path)
    seen = set()
    for threshold in maxes[::max(1, len(maxes) // 6)] + [128]:
        for j, x in enumerate(sp["inputs"]):
            (tmp_path / "in.bin").write_bytes(x)
            t.erase_nvm()
            b = t.boot(tmp_path / "in.bin", 1, Granularity.parse("units:3"), threshold=threshold)
            want = _first_confident(refs[j], threshold)
            assert (b.exit_index, b.output) == (want, refs[j][want]), (threshold, j)
            seen.add(want)
            t.erase_nvm()          # low energy at point 0's end answers there whatever the threshold
            b = t.boot(tmp_path / "in.bin", 1, Granularity.parse("units:3"), threshold=threshold,
                       low_energy_units=lay.point_end(0))
            assert (b.exit_index, b.output) == (0, refs[j][0])
    assert len(seen) >= 2


def _low_answer(outputs, threshold, low, signal_point):
    """The rule written out here: the first confident point (>= threshold), or from the first point at/after the
    low-energy signal on, the first whose max score reaches `low`; the last point anyway."""
    last = len(outputs) - 1
    mx = [max(b - 256 if b > 127 else b for b in out) for out in outputs]
    conf = next((k for k in range(last) if mx[k] >= threshold), last)
    by_low = next((k for k in range(signal_point, last) if mx[k] >= low), last)
    return min(conf, by_low)


def test_low_energy_answers_only_where_its_own_threshold_allows(branch_pipeline, tmp_path):
    """Confidence mode with low energy's own threshold (THRESHOLD:LOW, tx_pipeline_t.low_policy): with low energy
    at point 0's end the runtime answers at the first point whose score reaches LOW (or the first confident one, or
    the last), computed here from TFLM's outputs; without LOW it answers at point 0 whatever the scores."""
    from tinyexit.intermittent.branch_checks import Threshold
    sp, lay = branch_pipeline, branch_pipeline["layout"]
    refs = [sp["reference"](x) for x in sp["inputs"]]
    maxes = sorted({max(b - 256 if b > 127 else b for b in r[k]) for r in refs for k in range(3)})
    t = make_target(sp["exe"], tmp_path)
    later = 0
    for low in maxes[::max(1, len(maxes) // 5)] + [128]:
        th = Threshold(127, low)     # 127: rarely confident, so the low rule decides
        for j, x in enumerate(sp["inputs"]):
            (tmp_path / "in.bin").write_bytes(x)
            t.erase_nvm()
            b = t.boot(tmp_path / "in.bin", 1, Granularity.parse("units:3"), threshold=th,
                       low_energy_units=lay.point_end(0))
            want = _low_answer(refs[j], 127, low, 0)
            assert (b.exit_index, b.output) == (want, refs[j][want]), (str(th), j)
            later += want > 0
    assert later >= 2      # the low rule made some answers wait past point 0


@pytest.mark.parametrize("low_rule", [False, True], ids=["threshold", "threshold-and-low"])
def test_confidence_mode_campaign(branch_pipeline, tmp_path, low_rule):
    """Confidence mode under 200 cuts and random low-energy signals: the boundary is state during the branch (a
    segment follows it); results exact, each answered at the point the campaign's judge computes: the first
    confident point, or the first at/after the durable signal (with T:LOW, the first there whose score reaches
    LOW), or the last."""
    from tinyexit.intermittent.branch_checks import Threshold
    sp = branch_pipeline
    refs = [sp["reference"](x) for x in sp["inputs"]]
    if low_rule:
        mx = sorted(max(b - 256 if b > 127 else b for b in r[k]) for r in refs for k in range(2))
        th, seed, low = Threshold(mx[-1], mx[len(mx) // 2]), 7, 0.6
    else:   # confident mid-way for some
        th, seed, low = sorted(max(b - 256 if b > 127 else b for b in r[1]) for r in refs)[1], 5, 0.4
    report = run_branch_campaign(make_target(sp["exe"], tmp_path), sp["inputs"], cuts=200, seed=seed,
                                 granularity=Granularity.parse("units:4"), low_energy=low, reference=sp["reference"],
                                 threshold=th, work_dir=tmp_path / "work")
    assert report.cuts >= 200 and report.cuts_in_commits >= 60
    assert report.ok, report.table()
    assert len(report.exits) >= 2 and report.signalled >= 10


def test_continuous_point():
    from tinyexit.intermittent.branch_checks import Threshold, continuous_point
    outs = [bytes([0x90, 0x10]), bytes([0x20, 0x50]), bytes([0x30, 0x10])]   # max scores -112+... : 16, 80, 48
    assert continuous_point(outs, None) == 2 and continuous_point(outs, 80) == 1 and continuous_point(outs, 10) == 0
    assert continuous_point(outs, 100) == 2 and continuous_point(outs, Threshold(100, -128)) == 2


def test_jit_record_of_an_earlier_point_does_not_carry_a_later_signal(branch_pipeline, tmp_path):
    """Confidence mode with just-in-time checkpoints only (no periodic ones): a warning as the branch starts to look
    at point 0 commits a record at the branch stage (answering point 0); the branch does not answer; low energy then
    comes while it looks at point 1, and the power goes before the result. The branch stage recurs once per point,
    so point 0's record cannot carry that signal (a resume would answer at point 0): the next boot answers at point
    1, as the uninterrupted run does."""
    sp = branch_pipeline
    lay = sp["layout"].with_confidence(True)
    assert len(lay.units[-1]) >= 2                      # the signal lands between the branch's steps
    b0, b1 = (lay.point_end(k) - lay.branch_units for k in (0, 1))
    x, ref = sp["inputs"][0], sp["reference"](sp["inputs"][0])
    (tmp_path / "in.bin").write_bytes(x)
    t = make_target(sp["exe"], tmp_path)
    g, never = Granularity.parse("jit"), 128
    signals = dict(warn_units=f"{b0}-{b0 + 1}", low_energy_units=b1 + lay.units[-1][0])
    b = t.boot(tmp_path / "in.bin", 4, g, threshold=never, **signals)
    assert (b.exit_index, b.output) == (1, ref[1]) and b.kv["jit_commits"] == 1
    t.erase_nvm()
    b = t.boot(tmp_path / "in.bin", 4, g, threshold=never, cut_units=b1 + lay.branch_units, **signals)
    assert b.cut
    rec = t.newest()
    assert rec is not None and not rec.done and rec.low_energy and rec.exit_index == 1
    b = t.boot(tmp_path / "in.bin", 4, g, threshold=never)
    assert (b.exit_index, b.output) == (1, ref[1])


def test_threshold_parse():
    from tinyexit.intermittent.branch_checks import Threshold
    t = Threshold.parse("99:60")
    assert (int(t), t.low, str(t)) == (99, 60, "99:60") and t != 99 and Threshold.parse("99") == 99
    assert len({t, Threshold(99), 99}) == 2
    for bad in ("x", "99:y", "200", "99:-129", "129"):
        with pytest.raises(TinyexitError):
            Threshold.parse(bad)


@pytest.mark.parametrize("torn", [True, False])
def test_cut_on_the_low_mark_write(branch_pipeline, tmp_path, monkeypatch, torn):
    """A cut exactly on the LOW_MARK word (found with TX_TRACE_COMMITS: a 'commit' of one NVM event): the slot stays
    valid (the mark is outside the CRC); a torn mark still latches, an unwritten one does not; the next boot
    answers accordingly (point 1, or the last point), with the int8 chain's bytes."""
    import re
    sp, lay = branch_pipeline, branch_pipeline["layout"]
    t = make_target(sp["exe"], tmp_path)
    x = sp["inputs"][0]
    (tmp_path / "in.bin").write_bytes(x)
    g = Granularity.parse("layers:1")
    low = lay.position(2, 1, 0) + 1                          # in segment 1's step 1, after the checkpoint of step 0
    monkeypatch.setenv("TX_TRACE_COMMITS", "1")
    b = t.boot(tmp_path / "in.bin", 5, g, low_energy_units=low)
    marks = [(int(a), int(e)) for a, e in re.findall(r"TXMARK begin=(\d) events=(\d+)", b.stderr)]
    windows = [(marks[i][1], marks[i + 1][1]) for i in range(0, len(marks) - 1, 2)]
    mark_at = [a for a, e in windows if e - a == 1]
    assert len(mark_at) == 1, windows
    t.erase_nvm()
    b = t.boot(tmp_path / "in.bin", 5, g, low_energy_units=low, cut_events=mark_at[0], torn=torn)
    assert b.cut
    rec = t.newest()
    assert rec is not None and rec.position == (2, 1, 0) and rec.low_mark == torn
    b = t.boot(tmp_path / "in.bin", 5, g)
    ref = sp["reference"](x)
    want = 1 if torn else 2
    assert (b.exit_index, b.output) == (want, ref[want])


def test_threshold_from_policy_json(tiny_branch, tmp_path):
    """RUN/policy.json's max_softmax threshold_q is the confidence threshold only when its exit's output has the
    branch's quantization; other rules are refused with the reason."""
    from tinyexit.intermittent.branch import threshold_from_policy
    run = tmp_path / "run"
    shutil.copytree(tiny_branch, run)
    with pytest.raises(TinyexitError, match="calibrate"):
        threshold_from_policy(run)
    out = json.loads((run / "branch" / "manifest.json").read_text())["branch"]["output"]
    pol = {"policy": "max_softmax", "exit": "exit2", "threshold_q": 50,
           "exits": [{"name": "exit2", "threshold_q": 50, "output": out}]}
    (run / "policy.json").write_text(json.dumps(pol))
    assert threshold_from_policy(run) == 50
    for change, words in (({"policy": "margin"}, "max_softmax"), ({"threshold_q": 128}, "nothing certified"),
                          ({"exits": [{"name": "exit2", "threshold_q": 50, "output": {"scale": out["scale"] * 2,
                                                                     "zero_point": out["zero_point"]}}]},
                           "quantization")):
        (run / "policy.json").write_text(json.dumps({**pol, **change}))
        with pytest.raises(TinyexitError, match=words):
            threshold_from_policy(run)
    (run / "policy.json").write_bytes(b'{"policy": "max_soft\xff')      # garbled: the one checked reader refuses it
    with pytest.raises(TinyexitError, match="policy.json.*calibrate"):
        threshold_from_policy(run)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_shared_pipeline_builds_for_the_real_nrf52840(branch_pipeline, tmp_path):
    """Runtime + shared pipeline + the POF-comparator hooks (low energy = POFWARN) + NVMC flash adapter link
    into a firmware for the real nRF52840 (-Wall -Wextra -Werror), within its flash and RAM."""
    from tinyexit.build import build_firmware
    from tinyexit.intermittent.host import RUNTIME_DIR
    sp = branch_pipeline
    gen = tmp_path / "gen"
    gen.mkdir()
    render_pipeline(sp["pipeline"], gen)
    (gen / "main.c").write_text(
        "#include \"tx_checkpoint.h\"\n#include \"tx_hal.h\"\n#include \"tx_pipeline.h\"\n"
        "void tx_rt_nrf52_init(uint32_t threshold_code);\n"
        "static int8_t in[490], out[16]; static tx_runtime_t rt;\n"
        "int main(void) { tx_result_t r; tx_granularity_t g = {TX_CKPT_LAYERS, 1u}; tx_hal_init();\n"
        "  tx_rt_nrf52_init(8u); tx_pipeline_infer(&rt, &tx_pipeline, g, 1u, in, out, sizeof out, &r);\n"
        "  tx_hal_exit((int)r.exit_index); }\n")
    srcs = [RUNTIME_DIR / s for s in ("tx_checkpoint.c", "tx_crc32.c", "tx_pipeline.c", "tx_nvm_board.c",
                                     "tx_rt_nrf52.c")]
    srcs += [gen / "tx_pipeline_config.c", gen / "main.c"]
    srcs += sorted(p for p in sp["lib"].glob("*.c") if p.name != "host_main.c")
    fw = build_firmware("nrf52840", srcs, tmp_path / "fw", include_dirs=[RUNTIME_DIR, sp["lib"], gen])
    assert fw.elf.exists() and fw.sizes.fits
