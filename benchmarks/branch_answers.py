"""Where the shared exit branch can answer: accuracy against the MACs to answer when the branch answers at the
first point whose largest int8 score reaches a threshold (the confidence mode of `powerfail --branch --threshold
T`), on the int8 chain (tflite_micro), beside the final model and the run's exit-head policy.

    .venv/bin/python benchmarks/branch_answers.py --run RUN [--max-drop 0.02] [--json OUT]

RUN must hold a branch (`tinyexit branch RUN`). Under a harvester an answer's energy with per-layer checkpoints
grows with the layers it runs (each commits), so the MACs to answer bound what an energy-adaptive branch can
save: whatever the low-energy signal does, an answer at point k costs at least point k's MACs, and its accuracy is
at most what the scores at k allow. The threshold is chosen on the validation split (the smallest whose accuracy
is within --max-drop of the final model's) and reported on the test split.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def scores(run: Path, split: str):
    """(int8 branch scores after every point: inputs x points x classes, labels, the final model's int8
    predictions) on `split`, all by tflite_micro."""
    import numpy as np
    from tqdm import tqdm

    from tinyexit.branch import read_branch_manifest
    from tinyexit.intermittent import tflm_reference
    from tinyexit.intermittent.branch import branch_reference
    from tinyexit.quantize.qparams import QParams, quantize_array
    from tinyexit.run import Run
    man = read_branch_manifest(Run(run).branch_dir)
    ref = branch_reference(Run(run).branch_dir)
    final = tflm_reference(run)
    x, y = Run(run).split(split)
    def quantized(qp: dict):   # each chain's own input quantization
        return quantize_array(x, QParams(float(qp["scale"]), int(qp["zero_point"]))).astype(np.int8)
    out, fin = [], []
    for b, f in tqdm(zip(quantized(man["segments"][0]["input"]), quantized(Run(run).manifest()["segments"][0]["input"])),
                     total=len(x), desc=split, leave=False):
        out.append([np.frombuffer(o, np.int8) for o in ref(b.tobytes())])
        fin.append(int(np.argmax(np.frombuffer(final(f.tobytes())[-1], np.int8))))
    return np.asarray(out, dtype=np.int32), np.asarray(y), np.asarray(fin)


def answers(s, threshold: int):
    """Point that answers for each input: the first whose largest score >= threshold, else the last."""
    import numpy as np
    ok = s.max(axis=2) >= threshold
    ok[:, -1] = True
    return np.argmax(ok, axis=1)


def row(s, y, threshold: int, macs) -> dict:
    import numpy as np
    k = answers(s, threshold)
    pred = s[np.arange(len(y)), k].argmax(axis=1)
    share = np.bincount(k, minlength=s.shape[1]) / len(y)
    return {"threshold": threshold, "accuracy": float(np.mean(pred == y)), "answers_at": share.round(4).tolist(),
            "macs": float(np.dot(share, macs))}


def main() -> int:
    import json

    import numpy as np

    from tinyexit.io import write_json
    from tinyexit.run import Run
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--max-drop", type=float, default=0.02)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    rep = json.loads((Run(a.run).branch_dir / "report.json").read_text())
    macs = np.array([e["shared"]["macs_to_exit"] for e in rep["exits"]], dtype=float)
    final_macs = float(rep["final"]["macs"])
    (vs, vy, vf), (ts, ty, tf) = scores(a.run, "validation"), scores(a.run, "test")
    val, test = (vs, vy), (ts, ty)
    val_final, final_acc = float(np.mean(vf == vy)), float(np.mean(tf == ty))
    rows = [row(*test, t, macs) for t in range(-128, 128, 8)] + [row(*test, 127, macs)]
    print(f"{a.run}: final model {100 * final_acc:.1f} % at {final_macs:,.0f} MACs (test); the branch alone at its "
          f"points: {' '.join(f'{100 * np.mean(test[0][:, k].argmax(1) == test[1]):.1f}' for k in range(len(macs)))} %")
    print(f"{'threshold':>9} {'accuracy':>9} {'vs final':>9} {'MACs':>11} {'saved':>7}  answers at points")
    for r in rows:
        print(f"{r['threshold']:>9} {100 * r['accuracy']:>8.1f}% {100 * (r['accuracy'] - final_acc):>+8.1f}  "
              f"{r['macs']:>11,.0f} {100 * (1 - r['macs'] / final_macs):>6.1f}%  {r['answers_at']}")
    chosen = next((t for t in range(-128, 128) if row(*val, t, macs)["accuracy"] >= val_final - a.max_drop), None)
    res = {"run": str(a.run), "final": {"accuracy": final_acc, "macs": final_macs}, "points_macs": macs.tolist(),
           "rows": rows, "max_drop": a.max_drop}
    if chosen is None:
        print(f"no threshold keeps the branch within {100 * a.max_drop:.0f} points of the final model on validation")
    else:
        r = row(*test, chosen, macs)
        res["chosen"] = r
        print(f"chosen on validation (within {100 * a.max_drop:.0f} points): threshold {chosen}: test accuracy "
              f"{100 * r['accuracy']:.1f} % ({100 * (r['accuracy'] - final_acc):+.1f}), {r['macs']:,.0f} MACs "
              f"({final_macs / r['macs']:.2f}x fewer than the final model)")
    if Run(a.run).policy_path.is_file():
        pol = json.loads(Run(a.run).policy_path.read_text())
        t = pol.get("test", {})
        print(f"for comparison, the run's exit-head policy ({pol.get('policy')}, {pol.get('exit')}): test accuracy "
              f"{100 * t.get('accuracy', float('nan')):.1f} % at exit rate {100 * t.get('exit_rate', float('nan')):.1f} %")
        res["exit_heads_policy"] = {k: t.get(k) for k in ("accuracy", "exit_rate", "final_accuracy")}
    if a.json:
        write_json(a.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
