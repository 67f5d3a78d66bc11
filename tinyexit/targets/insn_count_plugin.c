/* tinyexit instruction counter: a QEMU TCG plugin (plugin API version 1, QEMU 7.2).
 *
 * Debian's QEMU accepts -plugin but ships no qemu-plugin.h, so the few API functions used here are
 * declared below with their v1 signatures. Build: gcc -shared -fPIC -O2 -o libinsncount.so this.c
 *
 * Arguments (-plugin lib.so,arg=value,...):
 *   limit=N        exit QEMU after exactly N executed guest instructions (exit status 124 by default)
 *   limit_status=S the exit status used when the limit is reached
 *   start=ADDR     first instruction of a measured window (e.g. the entry of a marker function)
 *   stop=ADDR      instruction that closes the window; windows may repeat, their counts add up
 *   each=1         also print every window's count as it closes: tinyexit-window n=K insns=W cycles=C
 *                  cycles_strict=CS
 *
 * Every instruction gets an inline counter increment, so the counts are exact (not per translation
 * block). Output through qemu_plugin_outs, visible with `-d plugin` (and `-D file`):
 *   tinyexit-insns total=T windows=K window_insns=W cycles=C window_cycles=WC cycles_strict=CS
 *     window_cycles_strict=WCS [limit_reached=N]   (one line; each=1 lines add cycles=C cycles_strict=CS)
 *
 * Cycles: an ESTIMATE of Cortex-M4 cycles at zero wait states (no flash wait states), per executed
 * instruction from the Cortex-M4 TRM timings. The instruction's Thumb-2 bytes are classified once at
 * translation (cycle_cost below) and the cost is added inline at execution. Rules (the same as the
 * independent estimate in ANCHORS.md, so the figures compare):
 *   ALU, shifts, SIMD, extend, MOV, CMP, IT, hints        1
 *   MUL, SMULL/UMULL/SMLAL/UMLAL/SMLALD, DSP MACs (SMLAD, SMLABB, SMUAD, SMMLA...)  1;  MLA/MLS  2
 *   SDIV/UDIV                                            7 (fixed; the TRM gives 2-12 by operand size)
 *   single LDR/STR (any size, any addressing mode)       2, or 1 directly after another single LDR/STR
 *                                                          in the same translation block (the TRM's
 *                                                          pipelining of neighbouring loads/stores; address
 *                                                          dependencies are not modelled)
 *   LDRD/STRD                                            3
 *   LDM/STM/PUSH/POP of N registers                      1+N (+P when PC is loaded)
 *   LDR pc / TBB / TBH                                   2+P
 *   B, BL, BX, BLX, MOV/ADD pc                           1+P (taken);  P = 2 (pipeline refill)
 *   conditional B<c>, CBZ/CBNZ, PC writes in an IT block 1 not taken, 1+P taken: taken-ness from the
 *                                                          next executed address (the next translation
 *                                                          block's start) against the fall-through address
 *   VLDR/VSTR 2; VLDM/VSTM/VPUSH/VPOP 1+N words; VMOV two core registers 2; VDIV/VSQRT 14;
 *   VMLA/VMLS/VNMLA/VNMLS/VFMA/VFMS/VFNMA/VFNMS 3; other FPU ops 1
 * Not modelled: flash wait states, address-dependency stalls, exception entry/exit, skipped (condition
 * false) instructions inside IT blocks (charged as if executed, except branches).
 *
 * cycles_strict: a second, stricter estimate, always counted beside `cycles` (which stays the ANCHORS.md rule,
 * so the TFLM figures compare). It is `cycles` plus one cycle for every single LDR/STR that the rule above
 * pipelines (1 cycle) but the TRM's "Load/store timings" does not:
 *   - its address (base Rn or offset Rm) is the destination Rt of the immediately preceding single load
 *     ("the destination of the first LDR is not used to compute the address for the next instruction"), e.g.
 *     LDR r0,[r1]; LDR r2,[r0] = 2+2. Only Rt counts as the destination: a base writeback is not treated as
 *     one (post-indexed loads through one pointer stay pipelined); the stored register of an STR is data, not
 *     address (LDR r0,[r1]; STR r0,[r2] stays 2+1).
 *   - it follows an STR with register offset ("other instructions cannot be pipelined after STR with register
 *     offset").
 * Decoded: 16-bit LDR/STR/LDRB/STRB/LDRH/STRH imm, register (also LDRSB/LDRSH), SP-relative, literal; 32-bit
 * LDR/LDRB/LDRH/LDRSB/LDRSH/STR/STRB/STRH imm12, imm8 with pre/post-index, register, literal, unprivileged
 * (T), PLD/PLI (no destination); LDREX/STREX (pipelined like LDR, the TRM says).
 * Not modelled in cycles_strict either: the extra cycle of a load/store whose address depends on the result
 * of a preceding data-processing instruction (needs every ALU encoding's Rd), LDR Rx,[PC,#imm] contending
 * with the fetch ("might add a cycle"), "STR can only be pipelined when it follows an LDR" (read as about
 * register-offset stores; stores after stores stay pipelined, as through the write buffer).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t count;          /* instructions executed so far (single vCPU) */
static uint64_t limit;          /* 0: no limit */
static int limit_status = 124;
static uint64_t start_addr = UINT64_MAX, stop_addr = UINT64_MAX;
static int in_window;
static uint64_t window_begin, window_insns, windows;
static int reported;
static int each;
static uint64_t cycles;         /* estimated Cortex-M4 cycles so far */
static uint64_t window_begin_cycles, window_cycles;
static uint64_t stalls;         /* extra cycles of the strict estimate: cycles_strict = cycles + stalls */
static uint64_t window_begin_stalls, window_stalls;
static uint64_t pending_ft;     /* fall-through address of the conditional branch just executed */
static int pending;

enum { P = 2 };                 /* pipeline refill of a taken branch */
enum { KIND_PLAIN, KIND_LS, KIND_BRANCH, KIND_CBRANCH };

/* Cortex-M4 cycles of one Thumb-2 instruction (hw1, hw2: its halfwords; hw2 unused for 16-bit ones) at zero
   wait states, not counting the pipelining of a single load/store after another one (the caller). *kind:
   KIND_LS for a single LDR/STR, KIND_BRANCH for an always-taken branch (cost includes P), KIND_CBRANCH for
   a conditional one (cost when not taken). in_it: the instruction is inside an IT block. */
static unsigned cycle_cost(unsigned hw1, unsigned hw2, int wide, int in_it, int *kind, int *it_len)
{
  *kind = KIND_PLAIN;
  *it_len = 0;
  if (!wide) {
    if ((hw1 & 0xFC00) == 0x4400) {                        /* ADD/CMP/MOV high, BX/BLX */
      unsigned op = (hw1 >> 8) & 3, rd = ((hw1 >> 4) & 8) | (hw1 & 7);
      if (op == 3 || (op != 1 && rd == 15)) { *kind = in_it ? KIND_CBRANCH : KIND_BRANCH; return in_it ? 1 : 1 + P; }
      return 1;
    }
    if ((hw1 & 0xF800) == 0x4800 || (hw1 & 0xF000) == 0x5000 || (hw1 & 0xE000) == 0x6000 ||
        (hw1 & 0xE000) == 0x8000) { *kind = KIND_LS; return 2; }   /* LDR literal, reg, imm, SP-relative */
    if ((hw1 & 0xF600) == 0xB400) {                        /* PUSH / POP */
      unsigned n = (unsigned)__builtin_popcount(hw1 & 0x1FF);
      if ((hw1 & 0x0900) == 0x0900) { *kind = in_it ? KIND_CBRANCH : KIND_BRANCH; return in_it ? 1 + n : 1 + n + P; }
      return 1 + n;
    }
    if ((hw1 & 0xFF00) == 0xBF00) { if (hw1 & 0xF) { unsigned m = hw1 & 0xF; *it_len = 4 - __builtin_ctz(m); } return 1; }
    if ((hw1 & 0xF500) == 0xB100) { *kind = KIND_CBRANCH; return 1; }  /* CBZ/CBNZ */
    if ((hw1 & 0xF000) == 0xC000) {                        /* LDM/STM */
      unsigned n = (unsigned)__builtin_popcount(hw1 & 0xFF);
      return 1 + n;
    }
    if ((hw1 & 0xF000) == 0xD000) {
      unsigned cond = (hw1 >> 8) & 0xF;
      if (cond < 14) { *kind = KIND_CBRANCH; return 1; }
      return 1;                                            /* UDF, SVC */
    }
    if ((hw1 & 0xF800) == 0xE000) { *kind = in_it ? KIND_CBRANCH : KIND_BRANCH; return in_it ? 1 : 1 + P; }
    return 1;                                              /* data processing, ADR, ADD SP, extend, REV, ... */
  }
  if ((hw1 & 0xFE40) == 0xE800) {                          /* LDM/STM (also PUSH.W/POP.W) */
    unsigned n = (unsigned)__builtin_popcount(hw2);
    if ((hw1 & 0x0010) && (hw2 & 0x8000)) { *kind = in_it ? KIND_CBRANCH : KIND_BRANCH; return in_it ? 1 + n : 1 + n + P; }
    return 1 + n;
  }
  if ((hw1 & 0xFE40) == 0xE840) {                          /* LDRD/STRD, LDREX/STREX, TBB/TBH */
    if (hw1 & 0x0120) return 3;                            /* LDRD/STRD (P or W set) */
    if ((hw1 & 0xFFF0) == 0xE8D0 && (hw2 & 0xFFE0) == 0xF000) { *kind = in_it ? KIND_CBRANCH : KIND_BRANCH; return in_it ? 2 : 2 + P; }
    *kind = KIND_LS;
    return 2;                                              /* exclusives */
  }
  if ((hw1 & 0xEC00) == 0xEC00) {                          /* coprocessor space: the FPU */
    if (!(hw1 & 0x0200)) {                                 /* extension register loads/stores, 64-bit moves */
      if ((hw1 & 0x01E0) == 0x0040) return 2;              /* VMOV two core registers */
      if ((hw1 & 0x0120) == 0x0100) return 2;              /* VLDR/VSTR */
      return 1 + (hw2 & 0xFF);                             /* VLDM/VSTM/VPUSH/VPOP: 1+N words */
    }
    if (hw2 & 0x0010) return 1;                            /* VMOV core<->single, VMRS/VMSR */
    unsigned opc1 = ((hw1 >> 5) & 4) | ((hw1 >> 4) & 3);
    if (opc1 == 4) return 14;                              /* VDIV */
    if ((hw1 & 0x0FBF) == 0x0EB1 && (hw2 & 0x00C0) == 0x00C0) return 14;  /* VSQRT */
    if (opc1 == 0 || opc1 == 1 || opc1 == 5 || opc1 == 6) return 3;  /* VMLA/VMLS/VNMLA/VNMLS/VFMA/VFNMA */
    return 1;                                              /* VADD, VSUB, VMUL, VCVT, VCMP, VMOV, VABS, ... */
  }
  if ((hw1 & 0xF800) == 0xF000) {
    if (!(hw2 & 0x8000)) return 1;                         /* data processing, immediate */
    if ((hw2 & 0x5000) == 0x0000) {
      if ((hw1 & 0x0380) != 0x0380) { *kind = KIND_CBRANCH; return 1; }  /* B<c>.W */
      return 1;                                            /* MSR, MRS, hints, barriers */
    }
    *kind = in_it ? KIND_CBRANCH : KIND_BRANCH;            /* B.W, BL */
    return in_it ? 1 : 1 + P;
  }
  if ((hw1 & 0xFE00) == 0xF800) {                          /* single loads and stores */
    if ((hw1 & 0x0070) == 0x0050 && ((hw2 >> 12) & 0xF) == 15) {  /* LDR pc */
      *kind = in_it ? KIND_CBRANCH : KIND_BRANCH;
      return in_it ? 2 : 2 + P;
    }
    *kind = KIND_LS;
    return 2;
  }
  if ((hw1 & 0xFF80) == 0xFB00) {                          /* multiply, MAC, DSP MACs */
    unsigned op1 = (hw1 >> 4) & 7, op2 = (hw2 >> 4) & 0xF, ra = (hw2 >> 12) & 0xF;
    if (op1 == 0 && op2 == 0 && ra != 15) return 2;        /* MLA */
    if (op1 == 0 && op2 == 1) return 2;                    /* MLS */
    return 1;
  }
  if ((hw1 & 0xFF80) == 0xFB80) {                          /* long multiplies and MACs, divides */
    unsigned op1 = (hw1 >> 4) & 7, op2 = (hw2 >> 4) & 0xF;
    if ((op1 == 1 || op1 == 3) && op2 == 0xF) return 7;    /* SDIV/UDIV */
    return 1;
  }
  return 1;                                                /* data processing register, shifted register */
}

/* Register fields of a single load/store (KIND_LS): *rt the loaded register (-1 for stores, PLD/PLI, and
   loads into PC), *rn the base (15 for PC-relative), *rm the offset register (-1 without one), *str_reg 1 for
   an STR with register offset. Register numbers 0-15. */
static void ls_regs(unsigned hw1, unsigned hw2, int wide, int *rt, int *rn, int *rm, int *str_reg)
{
  int load;
  *rm = -1;
  *str_reg = 0;
  if (!wide) {
    if ((hw1 & 0xF800) == 0x4800) { *rt = (hw1 >> 8) & 7; *rn = 15; return; }        /* LDR literal */
    if ((hw1 & 0xF000) == 0x9000) {                                                   /* SP-relative */
      *rn = 13;
      *rt = (hw1 & 0x0800) ? (int)((hw1 >> 8) & 7) : -1;
      return;
    }
    *rn = (hw1 >> 3) & 7;
    if ((hw1 & 0xF000) == 0x5000) {                        /* register offset: opcode 0-2 stores, 3-7 loads */
      unsigned op = (hw1 >> 9) & 7;
      *rm = (hw1 >> 6) & 7;
      load = op >= 3;
      *str_reg = !load;
    } else {
      load = (hw1 & 0x0800) != 0;                          /* immediate offset: L bit */
    }
    *rt = load ? (int)(hw1 & 7) : -1;
    return;
  }
  *rn = hw1 & 0xF;
  if ((hw1 & 0xFE40) == 0xE840) {                          /* LDREX/STREX (B/H): L bit, Rt in hw2[15:12] */
    *rt = (hw1 & 0x0010) ? (int)((hw2 >> 12) & 0xF) : -1;
    return;
  }
  load = (hw1 & 0x0010) != 0;
  *rt = (int)((hw2 >> 12) & 0xF);
  if (!load || *rt == 15) *rt = -1;                        /* stores; PLD/PLI (LDR pc is a branch, not here) */
  if (*rn != 15 && !(hw1 & 0x0080) && (hw2 & 0x0FC0) == 0) {  /* register offset: Rn, Rm, LSL #imm2 */
    *rm = hw2 & 0xF;
    *str_reg = !load;
  }
}

static void report(const char *extra)
{
  char line[256];
  if (reported) return;
  reported = 1;
  snprintf(line, sizeof line, "tinyexit-insns total=%llu windows=%llu window_insns=%llu cycles=%llu "
           "window_cycles=%llu cycles_strict=%llu window_cycles_strict=%llu%s\n", (unsigned long long)count,
           (unsigned long long)windows, (unsigned long long)window_insns, (unsigned long long)cycles,
           (unsigned long long)window_cycles, (unsigned long long)(cycles + stalls),
           (unsigned long long)(window_cycles + window_stalls), extra);
  qemu_plugin_outs(line);
}

/* With a limit the count is incremented in a callback that can stop QEMU before the next instruction. */
static void on_insn_limited(unsigned int vcpu, void *udata)
{
  (void)vcpu;
  (void)udata;
  if (count == limit) {
    char extra[64];
    snprintf(extra, sizeof extra, " limit_reached=%llu", (unsigned long long)limit);
    report(extra);
    fflush(NULL);
    exit(limit_status);
  }
  count++;
}

static void on_start(unsigned int vcpu, void *udata)
{
  (void)vcpu;
  (void)udata;
  if (!in_window) {
    in_window = 1;
    window_begin = count;
    window_begin_cycles = cycles;
    window_begin_stalls = stalls;
  }
}

static void on_stop(unsigned int vcpu, void *udata)
{
  (void)vcpu;
  (void)udata;
  if (in_window) {
    in_window = 0;
    window_insns += count - window_begin;
    window_cycles += cycles - window_begin_cycles;
    window_stalls += stalls - window_begin_stalls;
    if (each) {
      char line[192];
      snprintf(line, sizeof line, "tinyexit-window n=%llu insns=%llu cycles=%llu cycles_strict=%llu\n",
               (unsigned long long)windows, (unsigned long long)(count - window_begin),
               (unsigned long long)(cycles - window_begin_cycles),
               (unsigned long long)(cycles - window_begin_cycles + stalls - window_begin_stalls));
      qemu_plugin_outs(line);
    }
    windows++;
  }
}

/* A conditional branch ran: remember its fall-through address; the next block's start tells taken-ness. */
static void on_cbranch(unsigned int vcpu, void *udata)
{
  (void)vcpu;
  pending = 1;
  pending_ft = (uint64_t)(uintptr_t)udata;
}

static void on_tb_exec(unsigned int vcpu, void *udata)
{
  (void)vcpu;
  if (pending) {
    pending = 0;
    if ((uint64_t)(uintptr_t)udata != pending_ft) cycles += P;  /* taken: pipeline refill */
  }
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  int prev_ls = 0, it_left = 0;
  int prev_rt = -1, prev_str_reg = 0;                      /* the previous single load's Rt; STR [Rn, Rm] */
  qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS,
                                       (void *)(uintptr_t)qemu_plugin_tb_vaddr(tb));
  for (size_t i = 0; i < n; i++) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
    const uint8_t *b = qemu_plugin_insn_data(insn);
    size_t size = qemu_plugin_insn_size(insn);
    unsigned hw1 = b[0] | (b[1] << 8), hw2 = size >= 4 ? (unsigned)(b[2] | (b[3] << 8)) : 0;
    int kind, it_len;
    unsigned cost = cycle_cost(hw1, hw2, size >= 4, it_left > 0, &kind, &it_len);
    if (it_left > 0) it_left--;
    if (it_len) it_left = it_len;
    unsigned stall = 0;
    int rt = -1, rn = -1, rm = -1, str_reg = 0;
    if (kind == KIND_LS) ls_regs(hw1, hw2, size >= 4, &rt, &rn, &rm, &str_reg);
    if (kind == KIND_LS && prev_ls) {
      cost = 1;                                            /* pipelined after the previous load/store */
      /* strict: not pipelined when the address uses the previous load's result, or after STR [Rn, Rm] */
      if (prev_str_reg || (prev_rt >= 0 && (rn == prev_rt || rm == prev_rt))) stall = 1;
    }
    prev_ls = kind == KIND_LS;
    prev_rt = rt;
    prev_str_reg = str_reg;
    /* Window callbacks run before the instruction's own count, so a window counts the instructions
       from `start` (included) to `stop` (excluded). */
    if (vaddr == start_addr)
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_start, QEMU_PLUGIN_CB_NO_REGS, NULL);
    if (vaddr == stop_addr)
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_stop, QEMU_PLUGIN_CB_NO_REGS, NULL);
    if (limit)
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_insn_limited, QEMU_PLUGIN_CB_NO_REGS, NULL);
    else
      qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &count, 1);
    if (kind == KIND_CBRANCH)
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_cbranch, QEMU_PLUGIN_CB_NO_REGS,
                                             (void *)(uintptr_t)(vaddr + size));
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &cycles, cost);
    if (stall)
      qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &stalls, stall);
  }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *udata)
{
  (void)id;
  (void)udata;
  report("");
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
  (void)info;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "limit=", 6) == 0) limit = strtoull(a + 6, NULL, 0);
    else if (strncmp(a, "limit_status=", 13) == 0) limit_status = atoi(a + 13);
    else if (strncmp(a, "start=", 6) == 0) start_addr = strtoull(a + 6, NULL, 0);
    else if (strncmp(a, "stop=", 5) == 0) stop_addr = strtoull(a + 5, NULL, 0);
    else if (strncmp(a, "each=", 5) == 0) each = atoi(a + 5);
    else {
      fprintf(stderr, "tinyexit insn plugin: unknown argument '%s' (use limit=, limit_status=, start=, stop=, each=)\n", a);
      return -1;
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
  qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
  return 0;
}
