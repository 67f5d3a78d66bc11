/* tinyexit firmware application: runs the early-exit pipeline over test inputs and prints one line per
   input and a summary. Board-independent: it uses tx_hal.h only. The pipeline (models, exit policy, chaining)
   is the generated description tx_pipeline_config.h / .c, run by the runtime's walk (tx_checkpoint.c over
   tx_pipeline.c, checkpointing off: tx_rt_off.c); inputs from tx_app_inputs.c.

   Output (one line each, '\n'-terminated):
     TX BEGIN board=<name> inputs=<n> stages=<seg0>,<exit1>,<seg1>... exits=<exit1>,...,final unit=<ticks|cycles|none> no_exit=<0|1>
     TX R i=<index> exit=<exit index> class=<decision: argmax, or a temporal rule's> label=<label or -1> conf=<max int8> ticks=<t>,<t>,- out=<hex int8 bytes>
     TX END n=<n> correct=<count> exits=<count per exit> ticks=<sum of all stage ticks> stack=<bytes used>
   `ticks` lists one entry per stage in BEGIN's order, '-' for stages not run. */
#include <stdint.h>
#include <string.h>
#include "tx_hal.h"
#include "tx_board.h"
#include "tx_model.h"
#include "tx_pipeline.h"

#ifndef TX_APP_NO_EXIT
#define TX_APP_NO_EXIT 0  /* 1: never run exit heads (the no-early-exit baseline: the runtime without a policy) */
#endif
#ifndef TX_APP_SERIAL_INPUTS
#define TX_APP_SERIAL_INPUTS 0  /* 1: read inputs from the UART instead of the baked-in ones */
#endif
#define TX_APP_NUM_EXITS TX_PIPELINE_NUM_EXITS
#define TX_APP_NUM_STAGES TX_PIPELINE_NUM_STAGES
#define TX_APP_INPUT_SIZE TX_PIPELINE_INPUT_SIZE
#define TX_APP_NUM_INPUTS TX_PIPELINE_NUM_INPUTS
extern const int8_t tx_app_inputs[];   /* tx_app_inputs.c */
extern const int16_t tx_app_labels[];

/* The pipeline is the runtime's walk over the generated stage table (tx_pipeline.h), with checkpointing off:
   the segments, confidence models and exit heads, the generated exit policy, and, when the library is chained
   (TX_PIPELINE_CHAINED, docs/CONTRACTS.md "Chained models"), every stage reading its input in place with no
   stage buffer or copy. A result's output bytes lie in tx_arena (valid until the next inference). */
static tx_runtime_t runtime;

/* Temporal policy (tx_temporal.h): the inputs are consecutive inputs of a stream; the state lives across them. */
#if !TX_APP_NO_EXIT && defined(TX_PIPELINE_TEMPORAL)
#define TX_APP_TEMPORAL 1
static tx_pipeline_temporal_t temporal;
static int8_t temporal_ref[TX_PIPELINE_MAX_HEAD_OUTPUT];
#else
#define TX_APP_TEMPORAL 0
#endif

static int8_t input_buf[TX_APP_INPUT_SIZE];
static uint32_t stage_ticks[TX_APP_NUM_STAGES];
static uint8_t stage_ran[TX_APP_NUM_STAGES];
static uint32_t stage_t0;

static void put_u32(uint32_t v)
{
  char b[10];
  int n = 0;
  do {
    b[n++] = (char)('0' + v % 10u);
    v /= 10u;
  } while (v);
  while (n) tx_hal_putc(b[--n]);
}

static void put_i32(int32_t v)
{
  if (v < 0) {
    tx_hal_putc('-');
    put_u32((uint32_t)(-(v + 1)) + 1u);
  } else {
    put_u32((uint32_t)v);
  }
}

static void put_hex(const int8_t *p, uint32_t n)
{
  static const char digits[] = "0123456789abcdef";
  for (uint32_t i = 0; i < n; i++) {
    uint8_t b = (uint8_t)p[i];
    tx_hal_putc(digits[b >> 4]);
    tx_hal_putc(digits[b & 0xFu]);
  }
}

/* Markers around one inference: the QEMU instruction-count plugin counts the instructions between the
   entry of tx_bench_begin and the entry of tx_bench_end (printing is outside). Not inlined, not
   merged, so their addresses exist and are executed once per inference. */
__attribute__((noinline, noipa, used)) void tx_bench_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa, used)) void tx_bench_end(void) { __asm__ volatile("" ::: "memory"); }

/* The same around each stage the runtime runs (its on_stage hook; a second plugin run counts stages exactly). */
__attribute__((noinline, noipa, used)) void tx_stage_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa, used)) void tx_stage_end(void) { __asm__ volatile("" ::: "memory"); }

/* The runtime's stage hook: ticks of each stage that runs, between the instruction-count markers. */
static void on_stage(uint32_t stage, uint32_t begin, void *ctx)
{
  (void)ctx;
  if (begin) {
    stage_t0 = tx_hal_ticks();
    tx_stage_begin();
  } else {
    tx_stage_end();
    stage_ticks[stage] = tx_hal_ticks() - stage_t0;
    stage_ran[stage] = 1u;
  }
}

typedef struct {
  uint32_t exit_index;
  const int8_t *out;
  uint32_t out_size;
#if TX_APP_TEMPORAL
  int32_t decision;  /* the temporal rule's answer (the exit's argmax is not always it) */
#endif
} result_t;

/* Once, before the first inference: the runtime on the generated pipeline, checkpointing off (no NVM), with the
   generated exit policy (none for the no-exit baseline: the walk then skips every exit head). */
static int app_init(void)
{
  const tx_granularity_t off = {TX_CKPT_OFF, 1u};
#if TX_APP_TEMPORAL
  tx_pipeline_temporal_init(&temporal, temporal_ref);
  tx_pipeline.policy = tx_pipeline_temporal_policy;
  tx_pipeline.policy_ctx = &temporal;
#elif !TX_APP_NO_EXIT
  tx_pipeline.policy = tx_pipeline_policy;
#endif
  tx_pipeline.on_stage = on_stage;
  return tx_runtime_init(&runtime, &tx_pipeline, off);
}

static result_t infer(const int8_t *input)
{
  tx_result_t res = {TX_APP_NUM_EXITS - 1u, 0u, 0u, input};   /* (the runtime fills it; never fails once init passed) */
  result_t r;
  memset(stage_ran, 0, sizeof stage_ran);
  tx_bench_begin();
#if TX_APP_TEMPORAL
  tx_pipeline_temporal_begin(&temporal);
#endif
  tx_runtime_boot(&runtime, 0u, input);
  if (tx_runtime_run(&runtime, 0, 0u, &res) != TX_OK) tx_hal_puts("TX FAULT runtime\n");
  r.exit_index = res.exit_index;
  r.out = res.data;
  r.out_size = res.size;
#if TX_APP_TEMPORAL
  r.decision = tx_pipeline_temporal_end(&temporal, r.out, r.out_size);
#endif
  tx_bench_end();
  return r;
}

static uint32_t exit_counts[TX_APP_NUM_EXITS];
static uint32_t correct, total_ticks;

static void report(uint32_t index, int32_t label, result_t r)
{
  uint32_t cls = 0;
  for (uint32_t i = 1; i < r.out_size; i++)
    if (r.out[i] > r.out[cls]) cls = i;  /* first maximum, as numpy.argmax */
#if TX_APP_TEMPORAL
  cls = (uint32_t)r.decision;
#endif
  exit_counts[r.exit_index]++;
  if ((int32_t)cls == label) correct++;
  tx_hal_puts("TX R i=");
  put_u32(index);
  tx_hal_puts(" exit=");
  put_u32(r.exit_index);
  tx_hal_puts(" class=");
  put_u32(cls);
  tx_hal_puts(" label=");
  put_i32(label);
  tx_hal_puts(" conf=");
  put_i32(r.out[cls]);
  tx_hal_puts(" ticks=");
  for (uint32_t s = 0; s < TX_APP_NUM_STAGES; s++) {
    if (s) tx_hal_putc(',');
    if (stage_ran[s]) {
      put_u32(stage_ticks[s]);
      total_ticks += stage_ticks[s];
    } else {
      tx_hal_putc('-');
    }
  }
  tx_hal_puts(" out=");
  put_hex(r.out, r.out_size);
  tx_hal_putc('\n');
}

static uint32_t read_u32_le(void)
{
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)(tx_hal_getc() & 0xFF) << (8 * i);
  return v;
}

int main(void)
{
  uint32_t n = TX_APP_NUM_INPUTS;
#if TX_APP_SERIAL_INPUTS
  /* Inputs over the UART: after the READY line the host sends a 4-byte little-endian count, then
     count x TX_APP_INPUT_SIZE raw int8 bytes. */
  tx_hal_puts("TX READY input_size=");
  put_u32(TX_APP_INPUT_SIZE);
  tx_hal_putc('\n');
  n = read_u32_le();
#endif
  if (app_init() != TX_OK) {
    tx_hal_puts("TX FAULT runtime refused the pipeline\n");
    return 1;
  }
  tx_hal_puts("TX BEGIN board=" TX_BOARD_NAME " inputs=");
  put_u32(n);
  tx_hal_puts(" stages=" TX_PIPELINE_STAGE_NAMES " exits=" TX_PIPELINE_EXIT_NAMES " unit=" TX_TICK_UNIT " no_exit=");
  put_u32(TX_APP_NO_EXIT);
  tx_hal_putc('\n');
  for (uint32_t i = 0; i < n; i++) {
    int32_t label = -1;
#if TX_APP_SERIAL_INPUTS
    for (uint32_t j = 0; j < TX_APP_INPUT_SIZE; j++) input_buf[j] = (int8_t)tx_hal_getc();
#else
    memcpy(input_buf, tx_app_inputs + (size_t)i * TX_APP_INPUT_SIZE, TX_APP_INPUT_SIZE);
    label = tx_app_labels[i];
#endif
    report(i, label, infer(input_buf));
  }
  tx_hal_puts("TX END n=");
  put_u32(n);
  tx_hal_puts(" correct=");
  put_u32(correct);
  tx_hal_puts(" exits=");
  for (uint32_t e = 0; e < TX_APP_NUM_EXITS; e++) {
    if (e) tx_hal_putc(',');
    put_u32(exit_counts[e]);
  }
  tx_hal_puts(" ticks=");
  put_u32(total_ticks);
  tx_hal_puts(" stack=");
  put_u32(tx_hal_stack_used());
  tx_hal_putc('\n');
  (void)read_u32_le;
  return 0;
}
