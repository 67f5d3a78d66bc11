"""The TFLM oracle: tflite_micro run in a child process, so that a crash inside it cannot take the caller down.

TFLM does not verify the flatbuffer it is given: a damaged file can make it crash (SIGSEGV, SIGABRT) or
hang. `generate` asks it for its arena figures, tests and the fuzzer for its outputs; both go through
`run_jobs`, one child Python per call (not per model), which reports a crash as a TflmCrashed error naming
the model and the signal. The child writes its results into a private temporary folder that the parent
removes whatever happens: nothing is left behind.

    arena_figures({name: path})          {name: {"total", "head", "tail"} or None (TFLM refused it)}
    outputs(path, inputs)                int8 [n, output_size]; TflmRefused when TFLM rejects the model
    tflm_outputs(path, inputs)           the same in this process (what the child runs)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.errors import TinyexitError

TIMEOUT_S = 300.0


class TflmCrashed(TinyexitError):
    """tflite_micro died (a signal) or did not finish on a model."""


class TflmRefused(TinyexitError):
    """tflite_micro rejected a model (an exception, no crash)."""


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_jobs(jobs: list[dict], *, timeout: float = TIMEOUT_S) -> list[dict]:
    """Run `jobs` ({"kind": "arena" | "outputs", "model": path, "name": label, ["inputs": int8 array]}) in one
    child, in order. Returns one result per job: {"arena": figures or None} or {"outputs": array} or
    {"refused": message}. Raises TflmCrashed naming the job's model when the child crashes or hangs."""
    with tempfile.TemporaryDirectory(prefix="tinyexit-tflm-") as tmp:
        work = Path(tmp)
        spec = []
        for k, job in enumerate(jobs):
            entry = {"kind": job["kind"], "model": str(Path(job["model"]).resolve())}
            if job["kind"] == "outputs":
                np.save(work / f"in{k}.npy", np.asarray(job["inputs"], np.int8))
            spec.append(entry)
        (work / "jobs.json").write_text(json.dumps(spec))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        try:
            r = subprocess.run([sys.executable, "-m", "tinyexit.codegen.oracle", str(work)],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
            failure = None if r.returncode == 0 else r.returncode
        except subprocess.TimeoutExpired:
            r, failure = None, "timeout"
        results = []
        for k, job in enumerate(jobs):
            done = work / f"out{k}.json"
            if not done.is_file():
                label = job.get("name") or Path(job["model"]).stem
                if failure == "timeout":
                    raise TflmCrashed(f"tflite_micro did not finish within {timeout:.0f} s on model '{label}' "
                                      f"({Path(job['model']).name}); the file is probably damaged. Check the "
                                      f"model, or skip the TFLM comparison (--no-tflm).")
                if failure is not None and failure < 0:
                    try:
                        what = signal.Signals(-failure).name
                    except ValueError:
                        what = f"signal {-failure}"
                else:
                    tail = _one_line((r.stderr or b"").decode(errors="replace")[-400:]) if r is not None else ""
                    what = f"exit status {failure}" + (f": {tail}" if tail else "")
                raise TflmCrashed(f"tflite_micro crashed ({what}) on model '{label}' ({Path(job['model']).name}); "
                                  f"the file is probably damaged in a way tinyexit's checks do not detect. Check "
                                  f"the model, or skip the TFLM comparison (--no-tflm).")
            res = json.loads(done.read_text())
            if "outputs" in res:
                res["outputs"] = np.load(work / res["outputs"])
            results.append(res)
        return results


def arena_figures(paths: dict[str, str | os.PathLike]) -> dict[str, dict | None]:
    """TFLM's arena figures for each model (measure.tflm_arena_bytes, run in one child)."""
    names = list(paths)
    res = run_jobs([{"kind": "arena", "model": paths[n], "name": n} for n in names]) if names else []
    return {n: r.get("arena") for n, r in zip(names, res)}


def tflm_outputs(path: str | os.PathLike, inputs: np.ndarray, arena_size: int | None = None) -> np.ndarray:
    """Run TFLM's reference interpreter on each input (int8, [n, *input_shape[1:]]); returns [n, output_size].
    `arena_size`: TFLM's tensor arena in bytes (default: the runtime's guess, 10 x the file size, too small for
    a model with few weights and large activations)."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_file(str(path), arena_size=arena_size)
    shape = tuple(int(d) for d in it.get_input_details(0)["shape"])
    outs = []
    for x in np.asarray(inputs, np.int8):
        # TFLM may reuse the input buffer for activations: set the input again before every invoke.
        it.set_input(x.reshape(shape), 0)
        it.invoke()
        outs.append(np.asarray(it.get_output(0), np.int8).ravel().copy())
    return np.stack(outs)


def outputs(path: str | os.PathLike, inputs: np.ndarray, *, timeout: float = TIMEOUT_S) -> np.ndarray:
    """tflite_micro's outputs on `inputs` (tflm_outputs, run in a child)."""
    res = run_jobs([{"kind": "outputs", "model": path, "inputs": inputs}], timeout=timeout)[0]
    if "refused" in res:
        raise TflmRefused(f"tflite_micro rejects {Path(path).name}: {res['refused']}")
    return res["outputs"]


def _child(work: Path) -> None:
    from tinyexit.codegen.measure import tflm_arena_bytes

    for k, job in enumerate(json.loads((work / "jobs.json").read_text())):
        if job["kind"] == "arena":
            res = {"arena": tflm_arena_bytes(job["model"])}
        else:
            try:
                y = tflm_outputs(job["model"], np.load(work / f"in{k}.npy"))
                np.save(work / f"y{k}.npy", y)
                res = {"outputs": f"y{k}.npy"}
            except Exception as e:  # TFLM reports a model it rejects as a Python exception
                res = {"refused": _one_line(f"{type(e).__name__}: {e}")}
        (work / f"out{k}.json.part").write_text(json.dumps(res))
        os.replace(work / f"out{k}.json.part", work / f"out{k}.json")


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
