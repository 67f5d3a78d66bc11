"""Learned confidence branch (EENets/PTEENet) vs the max-softmax rule on a run with an early exit, float and int8.

    .venv/bin/python benchmarks/search_confidence.py [--run runs/search-kws/verified] [--epochs 10]

The run must have been quantized (e.g. the run `benchmarks/search_kws.py` verifies). Writes RUN/confidence/
(the branch, its int8 .tflite, report.json) and prints accuracy at equal exit rates on the test split and each
policy calibrated on validation (lowest expected MACs at the final exit's validation accuracy - MAX_DROP)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/search-kws/verified"))
    ap.add_argument("--exit", default=None)
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-drop", type=float, default=0.01)
    a = ap.parse_args()
    from tinyexit.research.confidence import train_confidence
    rep = train_confidence(a.run, exit_name=a.exit, hidden=a.hidden, epochs=a.epochs, max_drop=a.max_drop)
    print(f"branch: {rep['params']} parameters, {rep['branch_macs']} MACs; wrote {a.run / 'confidence'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
