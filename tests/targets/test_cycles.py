"""The plugin's Cortex-M4 cycle estimate, class by class: small hand-written Thumb-2 sequences run on the
emulated Cortex-M4 (QEMU, mps2-an386 for the nrf52840 board) inside a window, each compared with the count the
Cortex-M4 TRM timings give (zero wait states; the rules the plugin states in insn_count_plugin.c: P = 2,
SDIV/UDIV 7, single LDR/STR 2 or 1 directly after another single load/store).

The stricter estimate (cycles_strict) is checked the same way: on every sequence above it equals the default
one (none has a load whose address depends on the load before it), and on DEPENDENT below, one or more
sequences per LDR/STR form, it follows the TRM's load/store timings: a load/store is not pipelined after a
single load whose destination it uses for its address (base or offset register), nor after STR with a register
offset; the stored register of an STR is data, not address, and a base writeback is not a destination (the
plugin's header states this reading).

One firmware runs a baseline window (nothing between the markers) and then one window per sequence; the
sequence's cycles are its window's minus the baseline's, its instructions likewise."""
import shutil

import pytest
from fw_helpers import firmware

from tinyexit.targets import get_runner, runner_class
from tinyexit.toolchain import symbol_address

pytestmark = pytest.mark.emulator

P = 2  # pipeline refill of a taken branch
# name: (Thumb-2 assembly, instructions, TRM cycles). r4-r7 and s0-s2 are scratch; `buf` (r8) points at 32
# words of RAM. Each sequence starts right after mark_begin's return (a new translation block, like after any
# branch) and is followed by the call of mark_end.
SEQUENCES = {
    "8 adds": ("adds r4, r4, #1\n" * 8, 8, 8),
    "mov.w and and.w (32-bit ALU)": ("mov.w r4, #3\n and.w r5, r4, #1\n", 2, 2),
    "load, dependent add": ("ldr r4, [r8]\n adds r5, r4, #1\n", 2, 2 + 1),
    "load, independent add": ("ldr r4, [r8]\n adds r5, r6, #1\n", 2, 2 + 1),
    "two neighbouring loads (pipelined)": ("ldr r4, [r8]\n ldr r5, [r8, #4]\n", 2, 2 + 1),
    "load, store, load (pipelined chain)": ("ldr r4, [r8]\n str r4, [r8, #8]\n ldrb r5, [r8, #1]\n", 3, 2 + 1 + 1),
    "load, add, load (not neighbours)": ("ldr r4, [r8]\n adds r6, #1\n ldr r5, [r8, #4]\n", 3, 2 + 1 + 2),
    "ldrd": ("ldrd r4, r5, [r8]\n", 1, 3),
    "ldm of 4 registers": ("ldm r8, {r4, r5, r6, r7}\n", 1, 1 + 4),
    "stmia.w of 2 registers": ("stmia.w r8, {r4, r5}\n", 1, 1 + 2),
    "push and pop of 3": ("push {r4, r5, r6}\n pop {r4, r5, r6}\n", 2, (1 + 3) * 2),
    "taken branch": ("movs r4, #0\n cmp r4, #0\n beq 1f\n nop\n1:\n", 3, 1 + 1 + (1 + P)),
    "not-taken branch": ("movs r4, #1\n cmp r4, #0\n beq 1f\n nop\n1:\n", 4, 1 + 1 + 1 + 1),
    "unconditional b.w": ("b.w 1f\n nop\n1:\n", 1, 1 + P),
    "cbz taken": ("movs r4, #0\n cbz r4, 1f\n nop\n1:\n", 2, 1 + (1 + P)),
    "cbnz not taken": ("movs r4, #0\n cbnz r4, 1f\n nop\n1:\n", 3, 1 + 1 + 1),
    "mul and mla": ("mul r4, r5, r6\n mla r4, r5, r6, r4\n", 2, 1 + 2),
    "smlad": ("smlad r4, r5, r6, r4\n", 1, 1),
    "smlal": ("smlal r4, r5, r6, r7\n", 1, 1),
    "umull": ("umull r4, r5, r6, r7\n", 1, 1),
    "udiv": ("movs r5, #100\n movs r6, #7\n udiv r4, r5, r6\n", 3, 1 + 1 + 7),
    "sdiv": ("movs r5, #100\n movs r6, #7\n sdiv r4, r5, r6\n", 3, 1 + 1 + 7),
    "vldr and vadd.f32": ("vldr s0, [r8]\n vldr s1, [r8, #4]\n vadd.f32 s2, s0, s1\n", 3, 2 + 2 + 1),
    "vdiv.f32": ("vdiv.f32 s2, s0, s1\n", 1, 14),
    "vmla.f32": ("vmla.f32 s2, s0, s1\n", 1, 3),
    "vpush and vpop of 2": ("vpush {s0, s1}\n vpop {s0, s1}\n", 2, (1 + 2) * 2),
    "it block": ("movs r4, #1\n cmp r4, #1\n ite eq\n moveq r5, #1\n movne r5, #2\n", 5, 5),
    "branch in an it block, taken": ("movs r4, #0\n cmp r4, #0\n it eq\n beq.w 1f\n nop\n1:\n", 4, 1 + 1 + 1 + 1 + P),
    "branch in an it block, not taken": ("movs r4, #1\n cmp r4, #0\n it eq\n beq.w 1f\n nop\n1:\n", 5, 5),
    "32-bit loads pipelined": ("ldr.w r4, [r8, #4]\n ldrsh.w r5, [r8, #8]\n", 2, 2 + 1),
    "mls, smulbb, sxtb16": ("mls r4, r5, r6, r7\n smulbb r4, r5, r6\n sxtb16 r4, r5\n", 3, 2 + 1 + 1),
    "bl and bx lr, b": ("bl 2f\n b 3f\n2: bx lr\n3:\n", 3, 3 * (1 + P)),
    "push lr, pop pc": ("bl 2f\n b 3f\n2: push {lr}\n pop {pc}\n3:\n", 4, (1 + P) + 2 + (1 + 1 + P) + (1 + P)),
}

# name: (assembly, instructions, default cycles, strict cycles). buf[16] holds its own address (p) and buf[17]
# holds 4, so loading through p or indexing p by a loaded 4 stays inside buf whatever the chain.
DEPENDENT = {
    "independent pair": ("ldr.w r4, [r8, #64]\n ldr.w r5, [r8, #68]\n", 2, 2 + 1, 2 + 1),
    "dependent pair (ldr r4; ldr [r4])": ("ldr.w r4, [r8, #64]\n ldr.w r5, [r4]\n", 2, 2 + 1, 2 + 2),
    "pair loading the same register, independent address": (
        "ldr.w r4, [r8, #64]\n ldr.w r4, [r8, #4]\n", 2, 2 + 1, 2 + 1),
    "ldr, str of the loaded value (data, not address)": (
        "ldr.w r4, [r8, #64]\n str.w r4, [r8, #12]\n", 2, 2 + 1, 2 + 1),
    "ldr, str through the loaded address": ("ldr.w r4, [r8, #64]\n str.w r5, [r4, #8]\n", 2, 2 + 1, 2 + 2),
    "16-bit ldr imm chain, ldrb imm": (
        "add.w r6, r8, #64\n ldr.n r4, [r6]\n ldr.n r5, [r4]\n ldrb.n r7, [r5, #4]\n", 4,
        1 + 2 + 1 + 1, 1 + 2 + 2 + 2),
    "16-bit ldrh/ldrb imm results as offsets of ldr/ldrsh reg": (
        "add.w r6, r8, #64\n ldrh.n r4, [r6, #4]\n ldr.n r5, [r6, r4]\n ldrb.n r7, [r6, #4]\n"
        " ldrsh r5, [r6, r7]\n", 5, 1 + 2 + 1 + 1 + 1, 1 + 2 + 2 + 1 + 2),
    "16-bit ldr reg result as base of ldrb reg, ldrsb independent": (
        "add.w r6, r8, #64\n movs r7, #0\n ldr.n r4, [r6, r7]\n ldrb.n r5, [r4, r7]\n ldrsb r5, [r6, r7]\n",
        5, 1 + 1 + 2 + 1 + 1, 1 + 1 + 2 + 2 + 1),
    "16-bit ldrh/ldrb reg results as offsets": (
        "add.w r6, r8, #64\n movs r7, #4\n ldrh.n r4, [r6, r7]\n ldrb.n r5, [r6, r4]\n ldrh.n r4, [r6, r5]\n",
        5, 1 + 1 + 2 + 1 + 1, 1 + 1 + 2 + 2 + 2),
    "16-bit str/strb/strh imm through loaded addresses": (
        "add.w r6, r8, #64\n ldr.n r4, [r6]\n str.n r5, [r4, #8]\n ldr.n r4, [r6]\n strb.n r5, [r4, #9]\n"
        " ldr.n r4, [r6]\n strh.n r5, [r4, #10]\n", 7, 1 + 2 + 1 + 1 + 1 + 1 + 1, 1 + 2 + 2 + 1 + 2 + 1 + 2),
    "16-bit str reg through a loaded base; nothing pipelines after str reg": (
        "add.w r6, r8, #64\n movs r7, #8\n ldr.n r4, [r6]\n str.n r5, [r4, r7]\n ldr.n r5, [r6, #4]\n"
        " strb.n r5, [r6, r7]\n strh.n r5, [r6, r7]\n", 7, 1 + 1 + 2 + 1 + 1 + 1 + 1, 1 + 1 + 2 + 2 + 2 + 1 + 2),
    "16-bit str reg with a loaded offset": (
        "add.w r6, r8, #64\n ldr.n r5, [r6, #4]\n str.n r5, [r6, r5]\n", 3, 1 + 2 + 1, 1 + 2 + 2),
    "sp-relative str, ldr, ldr through it, ldr into the same register": (
        "mov r6, r8\n sub sp, #8\n str.n r6, [sp, #4]\n ldr.n r4, [sp, #4]\n ldr.n r5, [r4]\n ldr.n r5, [sp, #4]\n"
        " add sp, #8\n", 7, 1 + 1 + 2 + 1 + 1 + 1 + 1, 1 + 1 + 2 + 1 + 2 + 1 + 1),
    "16-bit ldr literal, ldr through it": (
        "ldr.n r4, 2f\n ldr.n r5, [r4]\n b.n 3f\n .p2align 2\n2: .word buf\n3:\n", 3,
        2 + 1 + (1 + P), 2 + 2 + (1 + P)),
    "32-bit ldr literal, ldr through it": (
        "ldr.w r4, 2f\n ldr.w r5, [r4]\n b.w 3f\n .p2align 2\n2: .word buf\n3:\n", 3,
        2 + 1 + (1 + P), 2 + 2 + (1 + P)),
    "32-bit ldrb/ldrh/ldrsb/ldrsh imm12 through loaded bases": (
        "ldr.w r4, [r8, #64]\n ldrb.w r5, [r4, #4]\n ldr.w r4, [r8, #64]\n ldrh.w r5, [r4, #4]\n"
        " ldr.w r4, [r8, #64]\n ldrsb.w r5, [r4, #4]\n ldr.w r4, [r8, #64]\n ldrsh.w r5, [r4, #4]\n", 8,
        2 + 7 * 1, 2 + 2 + 1 + 2 + 1 + 2 + 1 + 2),
    "32-bit ldrb/ldrh/ldrsb/ldrsh imm12 results as ldr.w reg offsets": (
        "ldr.w r6, [r8, #64]\n ldrb.w r4, [r6, #4]\n ldr.w r5, [r6, r4]\n ldrh.w r4, [r6, #4]\n"
        " ldr.w r5, [r6, r4]\n ldrsb.w r4, [r6, #4]\n ldr.w r5, [r6, r4]\n ldrsh.w r4, [r6, #4]\n"
        " ldr.w r5, [r6, r4]\n", 9, 2 + 8 * 1, 2 + 2 + 2 + 1 + 2 + 1 + 2 + 1 + 2),
    "32-bit imm8 post-index, pre-index, negative (writeback is no destination)": (
        "add.w r7, r8, #64\n ldr r4, [r7], #4\n ldr r5, [r4, #4]!\n ldr r6, [r4, #-4]\n ldr r5, [r6], #-4\n",
        5, 1 + 2 + 1 + 1 + 1, 1 + 2 + 2 + 1 + 2),
    "32-bit reg offset: loaded base; nothing pipelines after str.w/strb.w reg": (
        "movs r7, #1\n ldr.w r4, [r8, #64]\n ldr.w r5, [r4, r7, lsl #2]\n str.w r5, [r4, r7, lsl #3]\n"
        " ldr.w r6, [r8]\n strb.w r6, [r8, r7]\n strh.w r6, [r8, r7, lsl #1]\n", 7,
        1 + 2 + 1 + 1 + 1 + 1 + 1, 1 + 2 + 2 + 1 + 2 + 1 + 2),
    "32-bit ldrb/ldrh/ldrsb/ldrsh reg results as offsets": (
        "ldr.w r6, [r8, #64]\n movs r4, #4\n ldrb.w r5, [r6, r4]\n ldrh.w r4, [r6, r5]\n ldrsb.w r5, [r6, r4]\n"
        " ldrsh.w r4, [r6, r5]\n ldr.w r5, [r6, r4]\n", 7, 2 + 1 + 2 + 1 + 1 + 1 + 1, 2 + 1 + 2 + 2 + 2 + 2 + 2),
    "ldrt, ldrex, pld through loaded addresses": (
        "ldr.w r4, [r8, #64]\n ldrt r5, [r4, #4]\n ldr.w r4, [r8, #64]\n ldrex r5, [r4]\n ldr.w r6, [r5]\n"
        " pld [r6]\n", 6, 2 + 5 * 1, 2 + 2 + 1 + 2 + 2 + 2),
}

HEADER = r'''
#include <stdint.h>
#include "tx_hal.h"
__attribute__((noinline, noipa)) void mark_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa)) void mark_end(void) { __asm__ volatile("" ::: "memory"); }
uint32_t buf[32] = {1, 2, 3, 4, 5, 6, 7, 8};
/* its own function: a literal pool of main's could land inside a window */
__attribute__((noinline, noipa)) void init_buf(void) { buf[16] = (uint32_t)(uintptr_t)&buf[16]; buf[17] = 4; }
'''
# inside every window, before the sequence: r8 = buf (two ALU instructions, also in the baseline)
SET_R8 = "movw r8, #:lower16:buf\\n movt r8, #:upper16:buf\\n"
CLOBBERS = '"r4", "r5", "r6", "r7", "r8", "lr", "s0", "s1", "s2", "cc", "memory"'


def _source() -> str:
    """One window per sequence, the first one empty (the baseline)."""
    body = []
    for code in ["", *(c for c, _, _ in SEQUENCES.values()), *(c for c, _, _, _ in DEPENDENT.values())]:
        asm = "\\n".join(ln.strip() for ln in code.strip().splitlines())
        body.append(f'  mark_begin();\n  __asm__ volatile(".syntax unified\\n{SET_R8}{asm}\\n" ::: {CLOBBERS});\n'
                    f'  mark_end();')
    return (HEADER + "int main(void)\n{\n"
            '  __asm__ volatile("vmov.f32 s0, #1.0\\n vmov.f32 s1, #2.0" ::: "s0", "s1");\n'
            "  init_buf();\n"
            + "\n".join(body) + '\n  tx_hal_puts("done\\n");\n  return 0;\n}\n')


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (CI installs them)")
    tmp = tmp_path_factory.mktemp("cycles")
    src = tmp / "seq.c"
    src.write_text(_source())
    fw = firmware(tmp, "nrf52840", [src], name="seq")
    r = get_runner(fw.board, "qemu").run(fw.elf, window=(symbol_address(fw.elf, "mark_begin"),
                                                 symbol_address(fw.elf, "mark_end")), each_window=True, timeout=30)
    assert "done" in r.output and r.insns.windows == len(SEQUENCES) + len(DEPENDENT) + 1
    counts = list(zip(r.insns.per_window, r.cycles_per_window, r.cycles_strict_per_window))
    base = counts[0]
    return {name: tuple(v - b for v, b in zip(c, base)) for name, c in zip([*SEQUENCES, *DEPENDENT], counts[1:])}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_sequence_cycles_match_the_trm(windows, name):
    _, insns, cycles = SEQUENCES[name]
    assert windows[name][:2] == (insns, cycles)


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_strict_equals_default_without_address_dependencies(windows, name):
    assert windows[name][2] == windows[name][1]


@pytest.mark.parametrize("name", list(DEPENDENT))
def test_strict_cycles_of_dependent_loads_match_the_trm(windows, name):
    _, insns, cycles, strict = DEPENDENT[name]
    assert windows[name] == (insns, cycles, strict)


def test_qemu_has_the_capability():
    assert runner_class("qemu").caps.cycle_estimate
