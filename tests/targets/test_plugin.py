"""The instruction-count plugin counts exactly: a loop of 2 instructions per iteration adds exactly 2 per
extra iteration, repeat runs agree, limit=N stops after exactly N instructions, and SysTick under
-icount shift=0 agrees with the plugin to within one tick."""
import pytest
from fw_helpers import firmware, toy_app

from tinyexit.toolchain import symbol_address
from tinyexit.targets.app_output import parse_app_output
from tinyexit.targets import get_runner
from tinyexit.targets.qemu import LIMIT_STATUS

pytestmark = pytest.mark.emulator

LOOP = r'''
#include <stdint.h>
#include "tx_hal.h"
__attribute__((noinline, noipa)) void mark_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa)) void mark_end(void) { __asm__ volatile("" ::: "memory"); }
int main(void)
{
  tx_hal_puts("start\n");
  mark_begin();
  uint32_t n = ITERATIONS;
  __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");  /* 2 instructions per iteration */
  mark_end();
  tx_hal_puts("done\n");
  return 0;
}
'''


def _loop_fw(tmp_path, iterations, board="nrf52840"):
    src = tmp_path / f"loop{iterations}.c"
    src.write_text(LOOP)
    fw = firmware(tmp_path, board, [src], name=f"loop{iterations}", defines={"ITERATIONS": f"{iterations}u"})
    window = (symbol_address(fw.elf, "mark_begin"), symbol_address(fw.elf, "mark_end"))
    return fw, window


@pytest.mark.parametrize("board", ["nrf52840", "netduinoplus2"])
def test_loop_counts_exact(tmp_path, need_emulator, board):
    runs = {}
    for n in (1000, 1001, 5000):
        fw, window = _loop_fw(tmp_path, n, board)
        r = get_runner(fw.board, "qemu").run(fw.elf, window=window, timeout=20)
        assert "done" in r.output and r.insns.windows == 1
        runs[n] = r.insns
    assert runs[1001].total - runs[1000].total == 2
    assert runs[1001].window_insns - runs[1000].window_insns == 2
    assert runs[5000].window_insns - runs[1000].window_insns == 2 * 4000
    # the constant part of the window: mark_begin's body, loop setup; far below one iteration count
    assert 2 * 1000 <= runs[1000].window_insns < 2 * 1000 + 20


def test_repeat_runs_identical(tmp_path, need_emulator):
    fw, window = _loop_fw(tmp_path, 3000)
    a = get_runner(fw.board, "qemu").run(fw.elf, window=window)
    b = get_runner(fw.board, "qemu").run(fw.elf, window=window)
    assert a.insns == b.insns and a.output == b.output


def test_limit_stops_at_exactly_n(tmp_path, need_emulator):
    fw, _ = _loop_fw(tmp_path, 100000)
    full = get_runner(fw.board, "qemu").run(fw.elf, count_insns=True)
    for limit in (777, 54321):
        r = get_runner(fw.board, "qemu").run(fw.elf, limit=limit, timeout=20)
        assert r.exit_code == LIMIT_STATUS
        assert r.insns.total == limit and r.insns.limit_reached == limit
        assert "done" not in r.output
    # a limit beyond the end of the program does not trigger
    r = get_runner(fw.board, "qemu").run(fw.elf, limit=full.insns.total + 10)
    assert r.exit_code == 0 and r.insns.total == full.insns.total and r.insns.limit_reached is None
    assert "done" in r.output


def test_systick_agrees_with_plugin(tmp_path, need_emulator):
    """Per-inference ticks x 40 (mps2-an386 SysTick at 25 MHz under -icount shift=0) match the exact
    count of the inference window within a few ticks of timer-read overhead."""
    sources, incs, _ = toy_app(tmp_path, n=8)
    fw = firmware(tmp_path, "nrf52840", sources, include_dirs=incs)
    window = (symbol_address(fw.elf, "tx_bench_begin"), symbol_address(fw.elf, "tx_bench_end"))
    r = get_runner(fw.board, "qemu").run(fw.elf, window=window, each_window=True)
    out = parse_app_output(r.output)
    assert r.insns.windows == 8 and len(r.insns.per_window) == 8
    assert sum(r.insns.per_window) == r.insns.window_insns
    # inputs that took the early exit cost fewer instructions than those that ran to the end
    by_exit = {e: [w for w, res in zip(r.insns.per_window, out.results) if res.exit == e] for e in (0, 1)}
    assert by_exit[0] and by_exit[1] and max(by_exit[0]) < min(by_exit[1])
    ticks = out.summary["ticks"] * fw.board.instructions_per_tick
    # the window also holds the policy and the timer reads; the stages are most of it
    assert 0.6 * r.insns.window_insns < ticks <= r.insns.window_insns + 8 * 3 * 40
