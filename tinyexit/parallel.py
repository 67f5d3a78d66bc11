"""Independent jobs on Ray, or one after the other here: the fan-out behind power-failure campaigns
(intermittent.fanout's shards, harvested configurations) and the exit-placement search's candidate points.

    results = run_jobs(fn, jobs, workers=2)        # fn(job) -> result; each job has an `index`; results in job order

workers == 1 without an address runs the jobs here in order (no Ray); otherwise a local Ray with `workers` CPUs
(`ray.init()`), or the cluster at `address`. Jobs are handed out as workers free up; a TinyexitError in a job
comes back as one line naming the job.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence, TypeVar

from tinyexit.errors import TinyexitError

T = TypeVar("T")


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def run_jobs(fn: Callable[[object], T], jobs: Sequence, *, workers: int | None = None,
             address: str | None = None, desc: str = "jobs", progress: bool = True, unit: str = "job") -> list[T]:
    """fn(job) for every job (each with an `index`), in job order: serially here when workers == 1 and no address,
    else as Ray tasks (a local Ray with `workers` CPUs, or the cluster at `address`). `fn` must be picklable (a
    module-level function or a functools.partial of one) and build everything it writes from the job."""
    from tqdm import tqdm
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise TinyexitError(f"--workers {workers}: at least 1")
    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress, leave=False)
    try:
        if workers == 1 and address is None:
            out = []
            for j in jobs:
                out.append(fn(j))
                bar.update()
            return out
        return _on_ray(fn, jobs, workers, address, bar, unit)
    finally:
        bar.close()


def _on_ray(fn, jobs, workers, address, bar, unit) -> list:
    import logging
    try:
        import ray
    except ImportError:
        raise TinyexitError("Ray is not installed; run scripts/setup.sh (it installs the locked ray), or pass "
                            "--workers 1 to run the jobs here one after the other") from None
    started = not ray.is_initialized()
    if started:
        opts = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                    configure_logging=True)
        try:
            if address:
                ray.init(address=address, **opts)
            else:
                # one task per CPU; a small object store: jobs return results, not data
                ray.init(num_cpus=workers, object_store_memory=80 * 1024 * 1024, **opts)
        except Exception as e:  # noqa: BLE001 - Ray raises many kinds; the user needs one line
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise TinyexitError(f"could not start {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}. "
                                f"Check --address, or pass --workers 1 to run without Ray") from None
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_call)
        pending = {task.remote(fn, j): j.index for j in jobs}
        results: dict[int, object] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                k = pending.pop(ref)
                try:
                    results[k] = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    if isinstance(cause, TinyexitError):
                        raise TinyexitError(f"{unit} {k}: {cause}") from None
                    raise
                bar.update()
        return [results[j.index] for j in jobs]
    finally:
        if started:
            ray.shutdown()


def _call(fn, job):
    return fn(job)


__all__ = ["run_jobs", "default_workers"]
