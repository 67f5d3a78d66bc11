"""Shared exit branch (FreeML) on a trained run: accuracy per exit point through the one shared branch vs
separate T-RecX-style heads, memory of the branch vs the N heads, the generated C checked against the int8
chain at every stopping point, and (with QEMU) the instructions an exit costs on the emulated Cortex-M4.

    .venv/bin/python benchmarks/branch.py [--run runs/kws] [--work DIR] [--no-emulate]

The run is not modified: model.keras and model.json are copied to WORK/run and `tinyexit branch` runs there.
Writes WORK/bench_branch.json (the stage's report plus the checks and instruction counts).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tinyexit.io import write_json
from tinyexit.quantize import quantize_array
from tinyexit.branch import BranchConfig, BranchInt8Chain, format_report, train_branch
from tinyexit.branch.firmware import build_anytime, emulated_anytime, run_anytime
from tinyexit.run import Run

REPO = Path(__file__).resolve().parents[1]


def emulated_exit_costs(branch_dir: Path, man: dict, chain_out: dict, xq_boundaries: list, work: Path) -> dict:
    """Instructions of pool k + branch (the shared exit at point k) and of head k, per inference, on QEMU."""
    from tinyexit.codegen import generate
    from tinyexit.conformance import emulated_outputs, tflm_outputs

    lib = branch_dir / "firmware" / "model"
    heads_lib = work / "heads_lib"
    generate({h["name"]: branch_dir / h["file"] for h in man["heads"]}, heads_lib, measure=False,
             compare_tflm=False)
    rows = []
    branch_in = chain_out["vectors"][-1][:3]
    got, insn = emulated_outputs(lib, "branch", branch_in)
    assert np.array_equal(got, tflm_outputs(branch_dir / "branch.tflite", branch_in))
    branch_insn = int(np.mean(insn))
    for k, (p, h) in enumerate(zip(man["pools"], man["heads"])):
        x = xq_boundaries[k][:3]
        got, pool_insn = emulated_outputs(lib, p["name"], x)
        assert np.array_equal(got, tflm_outputs(branch_dir / p["file"], x)), p["name"]
        got, head_insn = emulated_outputs(heads_lib, h["name"], x)
        assert np.array_equal(got, tflm_outputs(branch_dir / h["file"], x)), h["name"]
        rows.append({"point": p["point"], "pool_instructions": int(np.mean(pool_insn)),
                     "branch_instructions": branch_insn,
                     "shared_exit_instructions": int(np.mean(pool_insn)) + branch_insn,
                     "head_instructions": int(np.mean(head_insn))})
    return {"board": "mps2-an386 (Cortex-M4, QEMU, exact instruction counts)", "exits": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(REPO / "runs" / "kws"))
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    ap.add_argument("--epochs", type=int, default=BranchConfig.epochs)
    ap.add_argument("--head-epochs", type=int, default=BranchConfig.head_epochs)
    ap.add_argument("--points", default=None, help="comma-separated exit-point layers (default: every block)")
    ap.add_argument("--no-emulate", action="store_true", help="skip the QEMU instruction counts")
    args = ap.parse_args()

    tmp = None if args.work else tempfile.TemporaryDirectory()
    work = Path(args.work or tmp.name)
    run = work / "run"
    run.mkdir(parents=True, exist_ok=True)
    for f in ("model.keras", "model.json"):
        shutil.copy2(Path(args.run) / f, run / f)
    points = args.points.split(",") if args.points else None
    t0 = time.time()
    rep = train_branch(run, points=points, config=BranchConfig(epochs=args.epochs, head_epochs=args.head_epochs),
                       log=print)
    print(f"stage: {time.time() - t0:.0f} s")

    shared = run / "shared"
    man = json.loads((shared / "manifest.json").read_text())
    chain = BranchInt8Chain.from_dir(shared)
    x, y = Run(run).split("test")
    xq = quantize_array(x, chain.input_qparams)
    out = chain.run_q(xq)
    exe = build_anytime(shared / "firmware", work / "tx_branch_host")
    n_pts, n_cls = len(man["pools"]), rep["num_classes"]
    scores, _ = run_anytime(exe, xq, n_pts, n_cls)
    same_all = [int(np.sum(np.all(scores[:, k] == out["shared"][k], axis=1))) for k in range(n_pts)]
    same_stop = []
    for k in range(n_pts):
        s, cls = run_anytime(exe, xq, n_pts, n_cls, stop=k)
        same_stop.append(int(np.sum(np.all(s == out["shared"][k], axis=1) & (cls == np.argmax(out["shared"][k], 1)))))
    rep["c_check"] = {"inputs": int(len(xq)), "identical_per_point_all": same_all,
                      "identical_per_point_stop": same_stop}
    print(format_report(rep))
    print(f"C anytime driver == int8 chain (tflite_micro): running on, per point {same_all}; stopping at each "
          f"point {same_stop} of {len(xq)} test inputs")

    if not args.no_emulate and shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):
        bounds, act = [], xq
        for k in range(n_pts):
            act = chain.segments[k].run(act[:3])[0].reshape((3,) + chain.seg_shapes[k])
            bounds.append(act)
        rep["emulated"] = emulated_exit_costs(shared, man, out, bounds, work)
        sc, cls, insns = emulated_anytime(shared / "firmware", xq[:3])
        same = all(sc[:, k].tobytes() == out["shared"][k][:3].tobytes() for k in range(n_pts))
        rep["emulated"]["anytime"] = {"inputs": 3, "identical_to_int8_chain": same,
                                      "instructions_to_answer": [int(v) for v in insns.mean(axis=0)]}
        print(f"instructions per exit on {rep['emulated']['board']}:")
        print(f"  {'exit point':<14} {'pool':>8} {'branch':>8} {'shared exit':>12} {'separate head':>14}")
        for r in rep["emulated"]["exits"]:
            print(f"  {r['point']:<14} {r['pool_instructions']:>8,} {r['branch_instructions']:>8,} "
                  f"{r['shared_exit_instructions']:>12,} {r['head_instructions']:>14,}")
        a = rep["emulated"]["anytime"]
        print(f"anytime on the emulated board (tx_branch_run stopping after point K, == int8 chain: "
              f"{a['identical_to_int8_chain']}): instructions from the input to the answer "
              f"{', '.join(f'{p}: {v:,}' for p, v in zip(man['points'], a['instructions_to_answer']))}")
    write_json(work / "bench_branch.json", rep)
    print(f"wrote {work / 'bench_branch.json'}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
