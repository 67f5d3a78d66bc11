"""Exit placement search on a trained run (default: the KWS DS-CNN in runs/kws, its own exit dropped), under the
nRF52840's budget, then the chosen design built and measured (int8 on tflite_micro, generated C).

    .venv/bin/python benchmarks/search_kws.py [--run runs/kws] [--out runs/search-kws] [--max-drop 0.01]

Prints the design table and predicted vs measured; writes OUT/search.json, OUT/search.png, OUT/verified/.
The source run is only read."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/kws"))
    ap.add_argument("--out", type=Path, default=Path("runs/search-kws"))
    ap.add_argument("--board", default="nrf52840")
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--widths", default="8,16,32")
    ap.add_argument("--max-points", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-train", type=int, default=None)
    a = ap.parse_args()

    from tinyexit.research.search import SearchConfig, search
    from tinyexit.research.search_verify import verify
    t0 = time.time()
    cfg = SearchConfig(widths=tuple(int(w) for w in a.widths.split(",")), max_points=a.max_points, epochs=a.epochs,
                       max_train=a.max_train)
    rep = search(a.run, board=a.board, max_drop=a.max_drop, out=a.out, config=cfg)
    t1 = time.time()
    if rep["chosen"] != "no_exit":
        verify(a.out, out=a.out / "verified")
    print(f"search {t1 - t0:.0f} s, verification {time.time() - t1:.0f} s; wrote {a.out}/search.json, search.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
