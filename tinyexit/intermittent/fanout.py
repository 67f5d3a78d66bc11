"""Power-failure campaigns fanned out on Ray (issue #16, part 5).

A campaign of C cuts is split into `shards` independent sub-campaigns (plan()). Shard k has its own seed,
derived from the campaign's seed and k (shard_seed), its own NVM file and work folder, and runs the ordinary
serial campaign loop (campaign.drive) with that seed. So a shard's cuts depend only on (seed, k, number of
shards), never on which worker ran it or when: the same plan gives the same merged report serially or on any
number of workers, and a failing cut is replayed alone from its shard's work folder (Failure.nvm_at_start +
its cuts, as in a serial campaign). A plan of one shard is exactly the serial campaign of the same seed.

    shards = plan(seed, cuts, num_shards)
    reports = run_shards(fn, shards, workers=2)            # fn(shard) -> CampaignReport, a module-level function
    report = merge(reports, shards)                         # one report: counts added, failures tagged

Workers: Ray (`ray.init()` on this machine with `workers` CPUs, or `address=` an existing cluster). workers=1
without an address runs the shards one after the other in this process (no Ray). Shards are handed out as
workers free up; results are put back in shard order.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from tinyexit.errors import TinyexitError
from tinyexit.intermittent.report import CampaignReport
from tinyexit.parallel import default_workers, run_jobs

T = TypeVar("T")
CUTS_PER_SHARD = 25     # the default plan: one shard per 25 cuts (each shard also runs its uninterrupted oracles)
MAX_SHARDS = 256


@dataclass(frozen=True)
class Shard:
    index: int
    count: int          # shards in the plan
    seed: int           # this shard's seed (shard_seed(campaign seed, index), the campaign seed for a 1-shard plan)
    cuts: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:03d}"


def shard_seed(seed: int, index: int, count: int) -> int:
    """The seed of shard `index` of `count`: the campaign seed itself for a single shard (the serial campaign),
    else 31 bits of SHA-256 over (seed, index) — independent of the worker and of the machine."""
    if count == 1:
        return seed
    digest = hashlib.sha256(f"tinyexit-shard:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def default_shards(cuts: int) -> int:
    return max(1, min(MAX_SHARDS, cuts // CUTS_PER_SHARD))


def plan(seed: int, cuts: int, shards: int | None = None) -> list[Shard]:
    """`cuts` split over `shards` shards (default_shards(cuts) when None): the first cuts % shards shards take
    one cut more."""
    n = default_shards(cuts) if shards is None else shards
    if cuts < 1:
        raise TinyexitError(f"a campaign needs at least 1 cut (got {cuts})")
    if not 1 <= n <= min(cuts, MAX_SHARDS):
        raise TinyexitError(f"--shards {n}: between 1 and the number of cuts ({cuts}, at most {MAX_SHARDS})")
    base, extra = divmod(cuts, n)
    return [Shard(k, n, shard_seed(seed, k, n), base + (1 if k < extra else 0)) for k in range(n)]


def run_shards(fn: Callable[[Shard], T], shards: Sequence[Shard], *, workers: int | None = None,
               address: str | None = None, desc: str = "shards", progress: bool = True) -> list[T]:
    """fn(shard) for every shard, in shard order, here or on Ray (tinyexit.parallel.run_jobs). `fn` must be
    picklable and build everything it writes from the shard (own NVM file)."""
    return run_jobs(fn, shards, workers=workers, address=address, desc=desc, progress=progress, unit="shard")


def merge(reports: Sequence[CampaignReport], shards: Sequence[Shard], seed: int) -> CampaignReport:
    """One report from the shards' reports (same campaign, same inputs and granularity): counts added, the
    per-inference figures of the uninterrupted runs averaged over the shards (they run the same inputs), exits
    added, failures and emulator retries kept with their shard named (its seed and work folder replay them)."""
    if not reports:
        raise TinyexitError("no shard reports to merge")
    first = reports[0]
    out = dataclasses.replace(first, seed=seed, failures=[], emulator_retries=[], exits={})
    counts = ("cuts", "cuts_in_commits", "cuts_between_commits", "inferences", "completed", "wrong_results",
              "lost_checkpoints", "crashes", "boots", "reexecuted_units", "reference_checked", "jit_commits")
    counts += tuple(f for f in ("reexecuted_instructions", "probe_boots", "seconds") if hasattr(first, f))
    for f in counts:
        setattr(out, f, sum(getattr(r, f) for r in reports))
    means = [f.name for f in dataclasses.fields(first) if f.name.endswith(("_per_inference", "_baseline"))
             and isinstance(getattr(first, f.name), float)]
    for f in means:
        setattr(out, f, sum(getattr(r, f) for r in reports) / len(reports))
    for r, s in zip(reports, shards):
        for k, v in r.exits.items():
            out.exits[k] = out.exits.get(k, 0) + v
        for fail in r.failures:
            out.failures.append(dataclasses.replace(
                fail, detail=f"{fail.detail} [{s.name} of {s.count}, seed {s.seed}]"))
        out.emulator_retries.extend({**x, "shard": s.index} for x in r.emulator_retries)
    return out


__all__ = ["Shard", "plan", "shard_seed", "default_shards", "default_workers", "run_shards", "merge"]
