/* Firmware of the emulated power-failure campaign (tinyexit/intermittent/emulated.py). One QEMU run = one
 * boot: RAM starts from the image, the NVM (file-backed PSRAM) is what earlier boots left. The harness
 * cuts the power after exactly N instructions (QEMU plugin `limit=N`), so a cut can land anywhere, also
 * inside a checkpoint write, and is replayed exactly by the same N on the same NVM image.
 *
 * What to run comes from a mailbox at TX_PF_MAILBOX (a page of the file-backed PSRAM outside the NVM; without
 * it, the last NVM page, left out of the runtime's NVM by TX_NVM_RESERVED_TAIL), written by the harness before
 * each boot; no UART input, so the instruction count of a boot does not depend on host timing. Inputs are
 * baked in (tx_pf_inputs.c). With TX_NVM_EMU_SHADOW the commit marks and the committed result also go to the
 * emulated flash's event log (tx_nvm_emu.h), next to the erases and writes. Output lines:
 *   TXBOOT boot=fresh|resumed|done
 *   RESULT input=ID exit=E boot=... size=N hex=...    (the delivery; then the power warning of the boot's end)
 *   TXSTAT commits=C nvm_bytes=B units=U nvm_used=N slots=S log=0|1 jit_commits=J erases=E prepared=P skipped=K
 *          max_payload=M fp=F (the pipeline's fingerprint) deferred=D (deferred results committed)
 *   TXCOMMITS t0-t1,t0-t1,...          SysTick ticks at the start/end of the first commits
 * then the firmware exits with status 0 (semihosting). FAULT line and status 3 on a runtime fatal error. */
#include <stdint.h>
#include <string.h>

#include "tx_board.h"
#include "tx_checkpoint.h"
#include "tx_hal.h"
#include "tx_nvm.h"
#include "tx_nvm_emu.h"
#include "tx_pipeline.h"
#include "tx_policy.h"
#include "tx_rt_hal.h"

#define MAILBOX_MAGIC 0x424D5854u     /* "TXMB" */
#ifndef TX_NVM_RESERVED_TAIL
#define TX_NVM_RESERVED_TAIL 0u
#endif
#define MAX_MARKS 64u
#define NO_THRESHOLD 0x7FFFFFFF

extern const int8_t tx_pf_inputs[];
extern const uint32_t tx_pf_num_inputs, tx_pf_input_size;

/* Written by tinyexit/intermittent/emulated.py (EmulatedTarget.mailbox), same layout. mode: TX_CKPT_NONE, LAYERS
   or UNITS, | TX_CKPT_JIT. warn_at_instruction: the power-fail warning (tx_hal_power_warning) is raised once
   the boot's instruction count from reset, tick_origin + SysTick ticks x TX_INSTRUCTIONS_PER_TICK (as
   nvm_events.py counts), reaches it; 0xFFFFFFFF: never. count: inferences this boot runs one after the other
   (input ids input_id, input_id + 1, ...: continuous power, one init; 0 counts as 1); the lines are the last one's,
   TXSTAT's counters those of the whole boot. warmup_id: unless 0xFFFFFFFF, the boot first runs an inference of
   that id (same input) and drops its result, so that the next commits of the boot pack after its result record
   (tx_checkpoint.h: a boot's first commit starts a page); granularity none only (it would end a checkpoint's
   resume). */
typedef struct {
  uint32_t magic, input_index, input_id, low_energy_units, mode, every;
  int32_t threshold;
  uint32_t warn_at_instruction, tick_origin, count, warmup_id;
  int32_t low_threshold;   /* with a threshold (confidence mode): low energy answers only at a point whose max
                              score reaches it (tx_pipeline_t.low_policy); NO_THRESHOLD: at the next point */
} mailbox_t;

static tx_runtime_t rt;
#ifdef TX_MAX_OUTPUT_SIZE
static int8_t output[TX_MAX_OUTPUT_SIZE];
#else
static int8_t output[TX_ARENA_SIZE];
#endif
static uint32_t units_done, low_energy_units = 0xFFFFFFFFu;
static uint32_t warn_tick = 0xFFFFFFFFu;   /* the first SysTick count at which the warning holds */
static uint32_t marks[2u * MAX_MARKS], num_marks;
static int32_t threshold, low_threshold;

/* ---- runtime hooks (tx_rt_hal.h) ---- */
int tx_hal_low_energy(void) { return units_done >= low_energy_units; }
/* A level: once raised it stays (the capacitor keeps falling in this boot unless the energy model says
   otherwise, which a later boot's mailbox does). */
int tx_hal_power_warning(void) { return tx_hal_ticks() >= warn_tick; }
void tx_hal_work_done(uint32_t units) { units_done += units; }
void tx_hal_commit_mark(uint32_t begin)
{
  tx_nvm_emu_log(begin ? TX_NVM_EV_COMMIT_BEGIN : TX_NVM_EV_COMMIT_END, 0u, 0u);
  if (num_marks < 2u * MAX_MARKS && (num_marks % 2u) == (begin ? 0u : 1u)) marks[num_marks++] = tx_hal_ticks();
}
void tx_hal_fatal(const char *message)
{
  tx_hal_puts("FAULT tinyexit runtime: ");
  tx_hal_puts(message);
  tx_hal_putc('\n');
  tx_hal_exit(3);
}

/* ---- output ---- */
static void put_u32(uint32_t v)
{
  char b[10];
  int n = 0;
  do { b[n++] = (char)('0' + v % 10u); v /= 10u; } while (v);
  while (n) tx_hal_putc(b[--n]);
}

static void put_kv(const char *key, uint32_t v)
{
  tx_hal_putc(' ');
  tx_hal_puts(key);
  tx_hal_putc('=');
  put_u32(v);
}

static const char *boot_name(uint32_t b)
{
  return b == TX_BOOT_DONE ? "done" : b == TX_BOOT_RESUMED ? "resumed" : "fresh";
}

static int threshold_policy(uint32_t exit_index, const int8_t *out, uint32_t size, void *ctx)
{
  (void)exit_index; (void)ctx;
  return tx_policy_exit(TX_POLICY_MAX_SOFTMAX, out, size, threshold, 0);
}

static int low_threshold_policy(uint32_t exit_index, const int8_t *out, uint32_t size, void *ctx)
{
  (void)exit_index; (void)ctx;
  return tx_policy_exit(TX_POLICY_MAX_SOFTMAX, out, size, low_threshold, 0);
}

/* The measured inference (init + boot + run) lies between these two markers (plugin window). */
__attribute__((noinline, noipa, used)) void tx_pf_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa, used)) void tx_pf_end(void) { __asm__ volatile("" ::: "memory"); }

int main(void)
{
  static const char hex[] = "0123456789abcdef";
  mailbox_t mb;
  tx_granularity_t gran;
  tx_result_t res;
  uint32_t k, last_id = 0u;
  int rc;

  tx_hal_init();
#ifdef TX_PF_MAILBOX
  memcpy(&mb, (const void *)(uintptr_t)TX_PF_MAILBOX, sizeof mb);
#else
  memcpy(&mb, tx_hal_nvm() + tx_hal_nvm_size() - TX_NVM_RESERVED_TAIL, sizeof mb);
#endif
  if (mb.magic != MAILBOX_MAGIC || mb.input_index >= tx_pf_num_inputs || (mb.mode & ~TX_CKPT_JIT) > TX_CKPT_UNITS) {
    tx_hal_puts("FAULT no valid mailbox in the last NVM page\n");
    tx_hal_exit(2);
  }
  low_energy_units = mb.low_energy_units;
  if (mb.warn_at_instruction != 0xFFFFFFFFu) {
    /* the smallest tick count t with tick_origin + floor(t x instructions per tick) >= N */
    const double ipt = (double)TX_INSTRUCTIONS_PER_TICK;
    const double need = (double)mb.warn_at_instruction - (double)mb.tick_origin;
    uint32_t t = need <= 0.0 || ipt <= 0.0 ? 0u : (uint32_t)(need / ipt);
    if (ipt > 0.0) {   /* exact: the counting below is nvm_events.py's */
      while (t > 0u && mb.tick_origin + (uint32_t)((double)(t - 1u) * ipt) >= mb.warn_at_instruction) t--;
      while (mb.tick_origin + (uint32_t)((double)t * ipt) < mb.warn_at_instruction) t++;
    }
    warn_tick = t;
  }
  gran.mode = mb.mode;
  gran.every = mb.every;
  if (mb.threshold != NO_THRESHOLD) {
    threshold = mb.threshold;
    tx_pipeline.policy = threshold_policy;
    if (mb.low_threshold != NO_THRESHOLD) {
      low_threshold = mb.low_threshold;
      tx_pipeline.low_policy = low_threshold_policy;
    }
  }
  tx_pf_begin();
  rc = tx_runtime_init(&rt, &tx_pipeline, gran);
  if (rc == TX_OK && mb.warmup_id != 0xFFFFFFFFu) {
    tx_runtime_boot(&rt, mb.warmup_id, tx_pf_inputs + mb.input_index * tx_pf_input_size);
    rc = tx_runtime_run(&rt, output, sizeof output, &res);
  }
  for (k = 0u; rc == TX_OK && (k == 0u || k < mb.count); k++) {
    last_id = mb.input_id + k;
    tx_runtime_boot(&rt, last_id, tx_pf_inputs + mb.input_index * tx_pf_input_size);
    rc = tx_runtime_run(&rt, output, sizeof output, &res);
    if (rc == TX_OK) tx_nvm_emu_log(TX_NVM_EV_RESULT, res.exit_index, res.size);
  }
  tx_pf_end();
  if (rc == TX_ERR_NVM_TOO_SMALL) {
    tx_hal_puts("FAULT tinyexit runtime: the board's NVM is too small for two checkpoint slots");
    put_kv("need", tx_runtime_nvm_bytes(&rt));
    put_kv("have", tx_nvm_size());
    tx_hal_putc('\n');
    tx_hal_exit(3);
  }
  if (rc != TX_OK) {
    tx_hal_puts("FAULT tinyexit runtime: error");
    put_kv("rc", (uint32_t)-rc);
    tx_hal_putc('\n');
    tx_hal_exit(3);
  }
  tx_hal_puts("TXBOOT boot=");
  tx_hal_puts(boot_name(rt.boot));
  /* the result is delivered here (a deferred one is not durable yet) */
  tx_hal_puts("\nRESULT");
  put_kv("input", last_id);
  put_kv("exit", res.exit_index);
  tx_hal_puts(" boot=");
  tx_hal_puts(boot_name(res.resumed));
  put_kv("size", res.size);
  tx_hal_puts(" hex=");
  for (k = 0u; k < res.size; k++) {
    tx_hal_putc(hex[(uint8_t)output[k] >> 4]);
    tx_hal_putc(hex[(uint8_t)output[k] & 0xFu]);
  }
  tx_hal_putc('\n');
  /* the boot ends: the power goes, announced by the warning (just in time's contract): a deferred result is
     committed now (TX_CKPT_DEFER_RESULTS; nothing otherwise) */
  tx_runtime_power_warning(&rt);
  tx_hal_puts("TXSTAT");
  put_kv("commits", rt.stats.commits);
  put_kv("nvm_bytes", rt.stats.nvm_bytes_written);
  put_kv("units", rt.stats.units_run);
  put_kv("nvm_used", tx_runtime_nvm_bytes(&rt));
  put_kv("slots", rt.num_slots);
  put_kv("log", rt.log);
  put_kv("jit_commits", rt.stats.jit_commits);
  put_kv("erases", rt.stats.nvm_pages_erased);
  put_kv("prepared", rt.stats.nvm_pages_prepared);
  put_kv("skipped", rt.stats.nvm_pages_skipped);
  put_kv("max_payload", rt.max_payload);
  put_kv("fp", rt.fingerprint);
  put_kv("deferred", rt.stats.deferred_commits);
  tx_hal_puts("\nTXCOMMITS ");
  for (k = 0u; k + 1u < num_marks; k += 2u) {
    put_u32(marks[k]);
    tx_hal_putc('-');
    put_u32(marks[k + 1u]);
    tx_hal_putc(',');
  }
  tx_hal_putc('\n');
  tx_hal_exit(0);
}
