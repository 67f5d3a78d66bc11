"""An emulator hiccup is never taken for a result or a failure of the firmware (issue 13, part 6).

The flake seen under load was a boot whose UART output was lost (QEMU status 0, no byte): the firmware had run,
committed its result to the NVM, and printed it. Here a wrapper around the QEMU runner injects such hiccups into
real runs (the firmware runs; the harness loses its output, or the plugin's line, or the run times out), and the
harness must re-run the boot from the same NVM image (the emulation is deterministic, so the re-run is the same
boot), report the retry and why, and report a boot that fails every attempt as an emulator failure with a clear
message, not as a crash of the firmware. The oracle is the same campaign run without any hiccup."""
from __future__ import annotations

import dataclasses
import pytest

from tinyexit.intermittent.emulated import (ATTEMPTS, EmulatedTarget, EmulatorError, build_emulated, hiccup,
                                            run_emulated_campaign)
from tinyexit.intermittent.host import Granularity
from tinyexit.targets import FirmwareTimeoutError, InsnCounts, RunResult

from ._support import EMULATED, STANDIN_PIPELINE, random_inputs

pytestmark = EMULATED

INPUTS = random_inputs(2, 144, seed=21)
G = Granularity.parse("units:1")
LOST = "the UART gave 0 bytes"
NO_COUNT = "without the instruction-count plugin's line"
TIMEOUT = "did not end the boot within"


@pytest.fixture(scope="module")
def target(standin, tmp_path_factory):
    out = tmp_path_factory.mktemp("emu_hiccups")
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, "mps2-an386", out)
    return EmulatedTarget(fw, out / "psram.img")


class Hiccups:
    """Wraps the target's QEMU runner: runs QEMU for real, then spoils the runs chosen by `spoil(n, limit)`
    (n: the number of this run among the uncut ones, or among the cut ones): 'lost' drops the UART output,
    'count' drops the plugin's count line, 'timeout' raises the runner's timeout instead of running."""

    def __init__(self, target, spoil):
        self.run, self.spoil = type(target.runner).run.__get__(target.runner), spoil   # the real runner
        self.seen = {"uncut": 0, "cut": 0}
        self.spoiled = []

    def __call__(self, elf, **kw):
        kind = "uncut" if kw.get("limit") is None else "cut"
        self.seen[kind] += 1
        how = self.spoil(kind, self.seen[kind])
        if how == "timeout":
            self.spoiled.append(how)
            raise FirmwareTimeoutError("stand-in timeout")
        r = self.run(elf, **kw)
        if how:
            self.spoiled.append(how)
        if how == "lost":
            return dataclasses.replace(r, output="")
        if how == "count":
            return dataclasses.replace(r, insns=None)
        return r


def test_a_lost_output_is_re_run_from_the_same_nvm_image(target, monkeypatch):
    """The lost run did commit its result to the NVM: the re-run starts from the image before it, so it is the
    same boot (a fresh one, the same result, instructions and NVM afterwards) as a boot without a hiccup."""
    target.erase_nvm()
    target.mailbox(0, 7, G)
    clean = target.boot()
    clean_nvm = target.nvm_image()
    assert clean.boot == "fresh" and clean.output is not None
    target.erase_nvm()
    target.mailbox(0, 7, G)
    before = len(target.retries)
    spoil = Hiccups(target, lambda kind, n: "lost" if n == 1 else None)
    monkeypatch.setattr(target.runner, "run", spoil)
    b = target.boot()
    assert spoil.spoiled == ["lost"] and spoil.seen["uncut"] == 2
    assert (b.boot, b.exit_index, b.output, b.instructions, b.commits) == \
        (clean.boot, clean.exit_index, clean.output, clean.instructions, clean.commits)
    assert target.nvm_image() == clean_nvm
    assert target.retries[before:] == [{"boot": "uncut boot", "attempt": 2, "reason":
                                        "QEMU ended with status 0 but the UART gave 0 bytes without the RESULT "
                                        "line the firmware prints before it exits with 0"}]


def test_a_campaign_with_hiccups_equals_the_one_without(target, monkeypatch):
    """Lost outputs (an oracle boot and a campaign boot), a missing plugin line on a cut boot and a timeout:
    every one is retried, reported with its reason, and the campaign's figures equal a clean campaign's."""
    clean = run_emulated_campaign(target, len(INPUTS), cuts=8, seed=3, granularity=G)
    assert clean.ok and clean.emulator_retries == [] and "emulator retries: 0" in clean.table()
    plan = {("uncut", 3): "lost", ("uncut", 8): "lost", ("cut", 3): "count", ("uncut", 10): "timeout"}
    spoil = Hiccups(target, lambda kind, n: plan.get((kind, n)))
    monkeypatch.setattr(target.runner, "run", spoil)
    report = run_emulated_campaign(target, len(INPUTS), cuts=8, seed=3, granularity=G)
    assert sorted(spoil.spoiled) == sorted(plan.values())
    assert report.ok, report.table()
    reasons = [r["reason"] for r in report.emulator_retries]
    assert len(reasons) == 4 and sum(LOST in r for r in reasons) == 2
    assert sum(NO_COUNT in r for r in reasons) == 1 and sum(TIMEOUT in r for r in reasons) == 1
    d, want = report.as_dict(), clean.as_dict()
    assert d["emulator_retry_count"] == 4 and want["emulator_retry_count"] == 0
    for k in ("emulator_retries", "emulator_retry_count", "seconds", "seconds_per_cut"):   # + wall time
        d.pop(k), want.pop(k)
    assert d == want
    line = [ln for ln in report.table().splitlines() if ln.startswith("emulator retries:")]
    assert line and line[0].startswith("emulator retries: 4 (") and "2 x QEMU ended with status 0" in line[0]


def test_a_persistent_failure_is_an_emulator_failure(target, monkeypatch):
    """A boot lost on every attempt: the oracle phase refuses with a clear error; in the campaign the inference
    gets a failure of kind 'emulator' (not a crash of the firmware), the campaign stops and is not ok."""
    monkeypatch.setattr(target.runner, "run", Hiccups(target, lambda kind, n: "lost"))
    with pytest.raises(EmulatorError, match=rf"QEMU failed the same uncut boot of powerfail.elf on all {ATTEMPTS} "
                                            r"attempts .*status 0 but the UART gave 0 bytes.*no result"):
        run_emulated_campaign(target, len(INPUTS), cuts=4, seed=3, granularity=G)
    # the oracle boots (calibration and 2 x 2 uninterrupted runs) pass; then every uncut boot is lost
    monkeypatch.setattr(target.runner, "run", Hiccups(target, lambda kind, n: "lost" if n > 5 else None))
    report = run_emulated_campaign(target, len(INPUTS), cuts=20, seed=3, granularity=G)
    assert not report.ok and report.crashes == 0 and report.cuts < 20
    assert [f.kind for f in report.failures] == ["emulator"]
    f = report.failures[0]
    assert f"on all {ATTEMPTS} attempts" in f.detail and "uncut boot" in f.detail
    assert len(report.emulator_retries) == ATTEMPTS - 1
    assert "FAIL inference" in report.table() and ": emulator: QEMU failed" in report.table()


def test_what_counts_as_a_hiccup():
    """Outcomes the firmware can produce are results (never retried): a cut (status 124, the plugin's limit
    line), a fault (status 3 with its FAULT line), a RESULT line then status 0."""
    counts = InsnCounts(total=10, windows=1, window_insns=5)
    cut = InsnCounts(total=10, windows=0, window_insns=0, limit_reached=10)
    done = "TXBOOT boot=fresh\nRESULT input=1 exit=0 boot=fresh size=2 hex=0105\n"
    assert hiccup(RunResult(done, 0, counts), None) is None
    assert hiccup(RunResult("", 124, cut), 10) is None
    assert hiccup(RunResult("FAULT tinyexit runtime: error rc=5\n", 3, counts), None) is None
    assert "signal 11" in hiccup(RunResult("", -11, None), None)
    assert NO_COUNT in hiccup(RunResult(done, 0, None), None)
    assert LOST in hiccup(RunResult("", 0, counts), 10)         # the limit was not reached: the boot ended
    assert "gave 18 bytes without the RESULT line" in hiccup(RunResult("TXBOOT boot=fresh\n", 0, counts), None)
