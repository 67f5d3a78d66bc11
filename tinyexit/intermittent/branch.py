"""Power-failure campaigns of the energy-adaptive shared exit branch (FreeML, docs/DESIGN.md 3 and 6).

The checkpointing runtime runs RUN/branch's pieces as one pipeline, seg0, pool0, seg1, pool1, ..., pool(N-1),
branch (tx_checkpoint.h): after exit point k's pool it answers through the branch when the HAL said low energy
(tx_hal_low_energy) or k is the last point; the shared vector is part of every checkpoint, and the low-energy
signal is made durable (a LOW_MARK word, or a commit) so a resume answers at the same point.

    lib, pipeline, branch_dir = prepare_branch(RUN, out_dir)
    exe = build_host(lib, pipeline, out_dir / "host")
    report = run_branch_campaign(HostTarget(exe, nvm), inputs, cuts=200, low_energy=0.5,
                                 reference=branch_reference(branch_dir))

What the campaign checks, from the NVM image (slots.py, an independent parser) and the int8 chain on TFLM
(BranchInt8Chain, an independent oracle), for every inference:
  - the committed result (DONE record) is the branch output after the point it reports, byte for byte;
  - the reported point is the first exit point at/after the low-energy signal: the signal of the first boot
    after which the newest checkpoint of the inference holds the low-energy latch, at position
    (where that boot resumed) + (work units it had run when the HAL turned low); the last point without one.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable, Sequence

from tinyexit.errors import TinyexitError
from tinyexit.intermittent.campaign import (KINDS, HostCuts, check_campaign_args, drive, work_folder,
                                            write_inputs)
from tinyexit.intermittent.host import Granularity, HostTarget
from tinyexit.intermittent.report import Failure
from tinyexit.pipeline import Pipeline
from tinyexit.run import BranchDir, Run
from tinyexit.intermittent.branch_checks import confident_point, BranchCampaignReport, Layout, PointJudge


# ------------------------------------------------------------------------------------------------ pipeline

def branch_dir_of(target: str | os.PathLike) -> Path:
    """RUN/branch for a run folder, or the folder itself when it holds a shared manifest."""
    target = Path(target)
    for d in (Run(target).branch, BranchDir(target)):
        if d.is_branch():
            return d.path
    raise TinyexitError(f"{target} has no shared exit branch (RUN/branch/manifest.json); run "
                        f"`tinyexit branch {target}` first")


def prepare_branch(target: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Pipeline, Path]:
    """(library dir, pipeline, branch dir): the library RUN/branch/firmware/model when it is there (read
    only), else generated from the pieces into out_dir/lib; the pipeline of RUN/branch/manifest.json with
    the library's sizes."""
    from tinyexit.branch import read_branch_manifest
    shared = branch_dir_of(target)
    man = read_branch_manifest(shared)
    pipe = Pipeline.from_branch(man)
    lib = BranchDir(shared).library_dir
    if not (lib / "tx_model.h").is_file():
        from tinyexit.codegen import generate
        from tinyexit.branch.firmware import library_models
        lib = Path(out_dir) / "lib"
        generate(library_models(shared, man), lib, measure=False, compare_tflm=False)
    return lib, pipe.with_library(lib), shared


def branch_reference(branch_dir: str | os.PathLike) -> Callable[[bytes], list[bytes]]:
    """reference(input bytes) -> [branch output after point k, k = 0..N-1] by the int8 chain on tflite_micro."""
    import numpy as np

    from tinyexit.branch import BranchInt8Chain, read_branch_manifest
    chain = BranchInt8Chain.from_dir(branch_dir)
    shape = tuple(read_branch_manifest(branch_dir)["segments"][0]["input_shape"])
    cache: dict[bytes, list[bytes]] = {}

    def ref(x: bytes) -> list[bytes]:
        if x not in cache:
            q = np.frombuffer(bytes(x), np.int8).reshape((1,) + shape)
            cache[x] = [np.asarray(o[0], np.int8).tobytes() for o in chain.run_q(q, stop=len(chain.pools) - 1)["shared"]]
        return cache[x]
    return ref


def run_branch_campaign(target: HostTarget, inputs: Sequence[bytes], *, cuts: int, seed: int = 0,
                        granularity: Granularity = Granularity(), low_energy: float = 0.5,
                        reference: Callable[[bytes], list[bytes]] | None = None, kinds: Sequence[str] = KINDS,
                        max_cuts_per_inference: int = 6, max_boots_per_inference: int = 2000,
                        work_dir: str | Path | None = None, threshold: int | None = None) -> BranchCampaignReport:
    """Host campaign of a shared-branch pipeline: random cuts (after k NVM events, also inside checkpoint
    writes and LOW_MARK writes, or after k work units) and, with probability `low_energy` per boot, a
    low-energy signal after a random number of work units. `reference(input) -> [branch output after
    point k]` (branch_reference: TFLM) is the oracle of the results; without it the uninterrupted runs are.
    `threshold` (confidence mode): the branch runs after every point and the pipeline answers at the first point
    whose largest int8 score is >= threshold (the host driver's policy), or earlier on low energy."""
    check_campaign_args(inputs, low_energy, kinds)
    rng = random.Random(seed)
    if threshold != target.threshold:        # the slots and fingerprint as the policy makes them
        target = HostTarget(target.exe, target.nvm_path, threshold=threshold)
    with work_folder(work_dir, "tinyexit-anytime-") as (work, keep):
        layout = Layout.from_rows(target.layout())             # without a policy: the oracle runs
        run_layout = layout.with_confidence(threshold is not None)   # the campaign's boots
        npts = layout.num_points
        report = BranchCampaignReport(granularity=str(granularity), seed=seed, inputs=len(inputs),
                                      low_energy=low_energy, points=npts, threshold=threshold,
                                      point_ends=[run_layout.point_end(k) for k in range(npts)])
        paths = write_inputs(work, inputs)
        # Uninterrupted runs answering at every point (low energy right at its first unit of segment k), on a
        # separate NVM file; checked against the reference.
        oracle_t = HostTarget(target.exe, work / "oracle_nvm.bin")
        expected: list[list[bytes]] = []
        events = units = 0
        for j, p in enumerate(paths):
            outs = []
            for k in range(npts):
                low = None if k == npts - 1 else layout.point_end(k)
                oracle_t.erase_nvm()
                b = oracle_t.boot(p, 0xFFFF0000 + j, granularity, low_energy_units=low)
                if b.returncode != 0 or b.output is None or b.exit_index != k:
                    raise TinyexitError(f"the uninterrupted run of input {j} with low energy after "
                                        f"{low} units did not answer at point {k} (status {b.returncode}, "
                                        f"point {b.exit_index}):\n{b.stderr.strip()[-500:]}")
                outs.append(b.output)
                if k == npts - 1:
                    report.units_per_inference += b.units / len(paths)
                    report.commits_per_inference += b.commits / len(paths)
                    report.nvm_bytes_per_inference += b.nvm_bytes / len(paths)
                    events = max(events, b.events)
                    units = max(units, b.units)
            oracle_t.erase_nvm()
            base = oracle_t.boot(p, 0xFFFF0000 + j, Granularity("none"))
            report.nvm_bytes_per_inference_baseline += base.nvm_bytes / len(paths)
            if (base.exit_index, base.output) != (npts - 1, outs[-1]):
                report.failures.append(Failure("oracle-mismatch", -1, j, "checkpointing changed the result"))
            if reference is not None:
                ref = reference(bytes(inputs[j]))
                report.reference_checked += 1
                if [bytes(r) for r in ref] != outs:
                    report.failures.append(Failure("oracle-mismatch", -1, j, "uninterrupted runs differ from the "
                                                   "reference: " + " / ".join(o.hex() for o in outs) + " vs "
                                                   + " / ".join(bytes(r).hex() for r in ref)))
                outs = [bytes(r) for r in ref]
            expected.append(outs)
        report.nvm_bytes_used = target.info["nvm_bytes"]
        report.slots = target.num_slots

        def rework(j: int, point: int, spent: int) -> None:
            report.reexecuted_units += max(0, spent - run_layout.units_to_answer(point))

        judge = PointJudge(report, run_layout, target.info["fingerprint"], expected, low_energy=low_energy,
                           threshold=threshold, rework=rework)
        return drive(HostCuts(target, paths, granularity, threshold=threshold, kinds=kinds), judge, report,
                     [{"events": events, "units": units}] * len(paths), cuts=cuts, rng=rng,
                     max_cuts_per_inference=max_cuts_per_inference,
                     max_boots_per_inference=max_boots_per_inference, keep=keep)


# ------------------------------------------------------------------------------------------------ emulated

def run_branch_emulated(target, layout: Layout, inputs: Sequence[bytes], *, cuts: int, seed: int = 0,
                        granularity: Granularity = Granularity(), low_energy: float = 0.5,
                        reference: Callable[[bytes], list[bytes]], max_cuts_per_inference: int = 4,
                        max_boots_per_inference: int = 200, work_dir: str | Path | None = None,
                        threshold: int | None = None) -> BranchCampaignReport:
    """The same campaign on the emulated board (tinyexit.intermittent.emulated.EmulatedTarget): cuts after
    exactly N instructions, half of them aimed inside a commit (or LOW_MARK write) of the very boot; the
    low-energy point of each boot goes through the mailbox."""
    from tinyexit.intermittent.emulated import EmulatedCuts
    rng = random.Random(seed)
    npts = layout.num_points
    layout = layout.with_confidence(threshold is not None)
    report = BranchCampaignReport(granularity=str(granularity), seed=seed, inputs=len(inputs), low_energy=low_energy,
                                  points=npts, board=target.board.name, threshold=threshold,
                                  point_ends=[layout.point_end(k) for k in range(npts)])
    keep = Path(work_dir) if work_dir else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    backend = EmulatedCuts(target, granularity, threshold)   # from here on, its emulator retries are the report's
    target.erase_nvm()
    target.mailbox(0, 0xFFFF0000, granularity, threshold=threshold)   # the first full boot sets the slot size
    target.slot_size = None
    target.calibrate()
    expected, insns = [], 0
    for j, x in enumerate(inputs):
        ref = [bytes(r) for r in reference(bytes(x))]
        want = confident_point(ref, threshold)
        want = npts - 1 if want is None else want
        for g in (granularity, Granularity("none")):
            b = target.uninterrupted(j, 0xFFFF0000 + j, g, threshold=threshold)
            if (b.exit_index, b.output) != (want, ref[want]):
                report.failures.append(Failure("oracle-mismatch", -1, j, f"the board answers point {b.exit_index} "
                                               f"{b.output.hex()}, the int8 chain {ref[-1].hex()}"))
            if g == granularity:
                report.instructions_per_inference += b.window_instructions / len(inputs)
                report.units_per_inference += b.units / len(inputs)
                report.commits_per_inference += b.commits / len(inputs)
                report.nvm_bytes_per_inference += b.nvm_bytes / len(inputs)
                insns = max(insns, b.instructions)
            else:
                report.instructions_per_inference_baseline += b.window_instructions / len(inputs)
                report.nvm_bytes_per_inference_baseline += b.nvm_bytes / len(inputs)
        report.reference_checked += 1
        expected.append(ref)
    report.nvm_bytes_used = b.nvm_used
    report.slots = target.num_slots

    def rework(j: int, point: int, spent: int) -> None:
        report.reexecuted_instructions += max(0, spent - _instructions_to(target, j, point, granularity, layout,
                                                                            threshold))

    judge = PointJudge(report, layout, None, expected, low_energy=low_energy, threshold=threshold, rework=rework)
    return drive(backend, judge, report, [{"insns": insns}] * len(inputs),
                 cuts=cuts, rng=rng, max_cuts_per_inference=max_cuts_per_inference,
                 max_boots_per_inference=max_boots_per_inference, keep=keep)


_INSN_CACHE: dict = {}


def _instructions_to(target, j: int, point: int, granularity: Granularity, layout: Layout,
                     threshold: int | None = None) -> int:
    """Instructions of an uninterrupted boot that answers at `point` (cached; NVM restored after)."""
    key = (id(target), j, point, str(granularity), threshold)
    if key not in _INSN_CACHE:
        image = target.nvm_image()
        target.erase_nvm()
        low = None if point == layout.num_points - 1 else layout.point_end(point)
        target.mailbox(j, 0xFFFF0000 + j, granularity, low_energy_units=low, threshold=threshold)
        _INSN_CACHE[key] = target.boot().instructions
        target.set_nvm_image(image)
    return _INSN_CACHE[key]


def powerfail_branch(target: str | os.PathLike, out_dir: str | os.PathLike, *, cuts: int = 200, seed: int = 0,
                     granularities: Sequence[str] = ("layer",), num_inputs: int = 4, broken: Sequence[str] = (),
                     slots: int = 2, low_energy: float = 0.5, emulate: bool = False, board: str = "mps2-an386",
                     threshold: int | None = None, runner: str | None = None) -> list[BranchCampaignReport]:
    """`tinyexit powerfail RUN --branch`: campaigns of the shared-branch pipeline of RUN/branch, on the host
    or (emulate) the emulated board; results checked against the int8 chain on TFLM."""
    from tinyexit.intermittent import random_inputs
    from tinyexit.intermittent.host import build_host
    out_dir = Path(out_dir)
    lib, pipe, shared = prepare_branch(target, out_dir)
    suffix = "".join(f"-{b}" for b in broken)
    exe = build_host(lib, pipe, out_dir / ("branch-host" + suffix), broken=tuple(broken), slots=slots)
    host = HostTarget(exe, out_dir / "branch-nvm.bin")
    inputs = random_inputs(num_inputs, host.info["input_size"], seed)
    reference = branch_reference(shared)
    if not emulate:
        return [run_branch_campaign(host, inputs, cuts=cuts, seed=seed, granularity=Granularity.parse(g),
                                    low_energy=low_energy, reference=reference, threshold=threshold,
                                    work_dir=out_dir / f"branch-campaign-{str(Granularity.parse(g)).replace(':', '')}")
                for g in granularities]
    from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated
    layout = Layout.from_rows(host.layout())
    fw = build_emulated(lib, pipe, inputs, board, out_dir / ("branch-emu" + suffix), broken=broken, slots=slots)
    et = EmulatedTarget(fw, out_dir / "branch-psram.img", runner=runner)
    return [run_branch_emulated(et, layout, inputs, cuts=cuts, seed=seed, granularity=Granularity.parse(g),
                                low_energy=low_energy, reference=reference, threshold=threshold,
                                work_dir=out_dir / f"branch-emu-campaign-{str(Granularity.parse(g)).replace(':', '')}")
            for g in granularities]


def threshold_from_policy(run_dir: str | os.PathLike) -> int:
    """RUN/policy.json's integer rule as the confidence-mode threshold of the shared branch, where it applies: a
    max_softmax policy (`max_c q[c] >= threshold_q`) whose exit output has the branch's output quantization (the
    same int8 codes mean the same probability). Calibrated for the exit heads, it carries no guarantee here."""
    run = Run(run_dir)
    path = run.policy_path
    if not path.is_file():
        raise TinyexitError(f"{path} does not exist; run `tinyexit calibrate {run}` or pass --threshold N")
    pol = run.policy()
    from tinyexit.branch import read_branch_manifest
    branch_out = read_branch_manifest(branch_dir_of(run_dir))["branch"]["output"]
    if pol.get("policy") != "max_softmax":
        raise TinyexitError(f"{path}: policy {pol.get('policy')!r}; only a max_softmax rule (max score >= threshold_q) "
                            "carries over to the shared branch's scores; pass --threshold N")
    q = pol.get("threshold_q")
    if q is None or int(q) >= 128:
        raise TinyexitError(f"{path}: nothing certified (threshold_q {q}); the branch would never answer early")
    ex = next((e for e in pol.get("exits", []) if e.get("name") == pol.get("exit")), None) or \
        (pol.get("exits") or [None])[0]
    out = (ex or {}).get("output")
    if not out or int(out["zero_point"]) != int(branch_out["zero_point"]) or \
            abs(float(out["scale"]) - float(branch_out["scale"])) > 1e-12:
        raise TinyexitError(f"{path}: the exit's output quantization {out} differs from the branch's {branch_out}; "
                            "threshold_q does not mean the same probability there; pass --threshold N")
    return int(q)


def plot_answers(reports: Sequence[BranchCampaignReport], path: str | os.PathLike) -> Path:
    """Figure: the answering exit point against where the (durable) low-energy signal arrived, in work units
    from the inference's start, one marker per inference, with the points' positions as vertical lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinyexit.io import atomic_path
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for n, r in enumerate(reports):
        if r.signals:
            xs, ys = zip(*r.signals)
            ax.scatter(xs, [y + 0.12 * (n - (len(reports) - 1) / 2) for y in ys], s=12, alpha=0.7,
                       label=f"{r.granularity}" + (f", threshold {r.threshold}" if r.threshold is not None else ""))
    ends = next((r.point_ends for r in reports if r.point_ends), [])
    for k, e in enumerate(ends):
        ax.axvline(e, color="grey", lw=0.8, ls="--")
        ax.text(e, -0.45, f" point {k}", fontsize=7, color="grey")
    ax.set_xlabel("low-energy signal (work units into the inference)")
    ax.set_ylabel("answering exit point")
    ax.set_yticks(range(len(ends)))
    ax.set_ylim(-0.6, len(ends) - 0.6)
    ax.set_title("energy-adaptive shared branch under power cuts: answer = first point at/after the signal",
                 fontsize=8)
    if any(r.signals for r in reports):
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
