"""Exact instructions of one tx_invoke per conformance model on the emulated Cortex-M4 (QEMU mps2-an386,
instruction-count plugin), and the output compared with tflite_micro for the same input.

    .venv/bin/python benchmarks/codegen_insns.py [--model kws|resnet] [--opt -O2]

Counts the instructions between the entries of bench_begin() and bench_end() around tx_invoke (the same
counting as ANCHORS.md: instructions, not cycles).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.build import build_firmware, symbol_address
from tinyexit.boards import load_board
from tinyexit.codegen import generate, read_model
from tinyexit.codegen.testing import tflm_outputs
from tinyexit.targets.qemu import QemuRunner

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"
MODELS = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite"}
ANCHOR = {"kws": (43_040_226, 7_697_362), "resnet": (107_405_837, 29_864_657)}  # TFLM ref, CMSIS-NN

MAIN = r"""
#include "tx_model.h"
#include "tx_hal.h"
__attribute__((noinline, noipa, used)) void bench_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa, used)) void bench_end(void) { __asm__ volatile("" ::: "memory"); }
static const int8_t input[%(n)d] = {%(data)s};
static int8_t output[TX_MAX_OUTPUT_SIZE];
static void put_int(int v) {
  char buf[6];
  int k = 5;
  int neg = v < 0;
  buf[k] = 0;
  if (neg) v = -v;
  do { buf[--k] = (char)('0' + v %% 10); v /= 10; } while (v);
  if (neg) buf[--k] = '-';
  tx_hal_putc(' ');
  tx_hal_puts(buf + k);
}
int main(void) {
  uint32_t i;
  tx_hal_init();
  bench_begin();
  tx_invoke(&tx_model_%(name)s, input, output);
  bench_end();
  tx_hal_puts("OUT");
  for (i = 0; i < tx_model_%(name)s.output_size; ++i) put_int(output[i]);
  tx_hal_puts("\n");
  tx_hal_exit(0);
}
"""


def measure(name: str, opt: str, work: Path) -> dict:
    path = CONFORMANCE / MODELS[name]
    lib = work / f"lib_{name}"
    generate({name: path}, lib, compare_tflm=False)
    g = read_model(path)
    x = np.random.default_rng(0).integers(-128, 128, size=g.input.nbytes).astype(np.int8)
    (work / "main.c").write_text(MAIN % {"n": x.size, "data": ",".join(map(str, x)), "name": name})
    board = load_board("mps2-an386", emulate=True)
    srcs = sorted(p for p in lib.glob("*.c") if not p.name.startswith("host_")) + [work / "main.c"]
    fw = build_firmware(board, srcs, work / f"fw_{name}", include_dirs=[lib], opt=opt)
    window = (symbol_address(fw.elf, "bench_begin"), symbol_address(fw.elf, "bench_end"))
    r = QemuRunner(board).run(fw.elf, window=window, timeout=600)
    got = np.array([int(v) for v in r.output.split("OUT", 1)[1].split()], np.int8)
    want = tflm_outputs(path, x.reshape(1, *g.input.shape[1:]))[0]
    return {"insns": r.insns.window_insns, "macs": g.macs(), "bit_exact": bool((got == want).all()),
            "text": fw.sizes.flash_code}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), action="append")
    ap.add_argument("--opt", default="-O2")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.model or list(MODELS):
            f = measure(name, args.opt, Path(tmp))
            ref, cmsis = ANCHOR[name]
            print(f"{name}: {f['insns']:,} instructions per inference ({f['insns'] / f['macs']:.2f} / MAC), "
                  f"TFLM reference {ref:,} ({f['insns'] / ref:.2f}x), TFLM+CMSIS-NN {cmsis:,} "
                  f"({f['insns'] / cmsis:.2f}x); output == tflite_micro: {f['bit_exact']}")


if __name__ == "__main__":
    main()
