/* tinyexit firmware application: runs the early-exit pipeline over test inputs and prints one line per
   input and a summary. Board-independent: it uses tx_hal.h only. Configuration (models, thresholds,
   buffer sizes) comes from the generated pipeline description tx_pipeline_config.h / .c (its app view);
   inputs from tx_app_inputs.c.

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
#include "tx_pipeline_config.h"
#include "tx_policy.h"

/* Temporal policy (tx_temporal.h): the inputs are consecutive inputs of a stream; the state lives across them. */
#if !TX_APP_NO_EXIT && defined(TX_PIPELINE_TEMPORAL)
#define TX_APP_TEMPORAL 1
static const tx_temporal_cfg_t temporal_cfg = {TX_PIPELINE_TEMPORAL, TX_PIPELINE_TEMPORAL_PARAM, TX_PIPELINE_TEMPORAL_GATE,
                                               TX_PIPELINE_TEMPORAL_REFERENCE_PREVIOUS};
static tx_temporal_t temporal;
static int8_t temporal_ref[TX_APP_MAX_HEAD_OUTPUT];
#else
#define TX_APP_TEMPORAL 0
#endif

#if TX_APP_CHAINED
/* Chained library (docs/CONTRACTS.md, "Chained models"): segment k's output range in tx_arena is the input
   range of its confidence model, its exit head and segment k+1, and the first two never write there. So
   every stage after the first runs on what the arena already holds (tx_invoke(m, 0, 0)) and outputs are
   read in place: no stage buffers, no copies. The outputs of a result stay valid until the next infer. */
#define STAGE_BUF(b) ((int8_t *)0)
#else
/* Library planned model by model: each stage's output is copied out. Ping-pong: even segments write
   stage_buf0, odd ones stage_buf1 (each sized for its segments). */
static int8_t stage_buf0[TX_APP_BUF0_SIZE];
static int8_t stage_buf1[TX_APP_BUF1_SIZE];
#if !TX_APP_NO_EXIT
static int8_t head_buf[TX_APP_MAX_HEAD_OUTPUT];
#if TX_APP_POLICY == TX_APP_POLICY_CONFIDENCE
static int8_t conf_buf[TX_APP_MAX_CONF_OUTPUT];
#endif
#endif
#define STAGE_BUF(b) (b)
#endif
static int8_t input_buf[TX_APP_INPUT_SIZE];
static uint32_t stage_ticks[TX_APP_NUM_STAGES];
static uint8_t stage_ran[TX_APP_NUM_STAGES];

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

/* The same around each stage's tx_invoke (a second plugin run counts stages exactly). */
__attribute__((noinline, noipa, used)) void tx_stage_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa, used)) void tx_stage_end(void) { __asm__ volatile("" ::: "memory"); }

/* Runs one stage on `in` (0: on the arena's input range as it is) and returns its output: `out` when given
   (copied there), else the model's output range in the arena. */
static const int8_t *run_stage(uint32_t stage, const tx_model_t *m, const int8_t *in, int8_t *out)
{
  uint32_t t0 = tx_hal_ticks();
  tx_stage_begin();
  tx_invoke(m, in, out);
  tx_stage_end();
  stage_ticks[stage] = tx_hal_ticks() - t0;
  stage_ran[stage] = 1u;
  return out ? out : tx_arena + m->output_offset;
}

typedef struct {
  uint32_t exit_index;
  const int8_t *out;
  uint32_t out_size;
#if TX_APP_TEMPORAL
  int32_t decision;  /* the temporal rule's answer (the exit's argmax is not always it) */
#endif
} result_t;

#if !TX_APP_NO_EXIT && TX_APP_POLICY != TX_APP_POLICY_CONFIDENCE
/* The calibrated policy on the int8 output q of head k (tx_policy.h; confidence: see infer). */
static int exit_here(uint32_t k, const int8_t *q, uint32_t n)
{
#if TX_APP_POLICY == TX_APP_POLICY_ENTROPY
  const int32_t score = tx_policy_score(TX_APP_POLICY, q, n, tx_app_entropy[k]);
#else
  const int32_t score = tx_policy_score(TX_APP_POLICY, q, n, 0);
#endif
  return tx_policy_passes(TX_APP_POLICY, score, tx_app_threshold_q[k]);
}
#endif

static result_t infer(const int8_t *input)
{
#if TX_APP_TEMPORAL
  result_t r = {TX_APP_NUM_EXITS - 1u, 0, 0, -1};
  int first_head = 1;
#else
  result_t r = {TX_APP_NUM_EXITS - 1u, 0, 0};
#endif
  const int8_t *in = input;
  memset(stage_ran, 0, sizeof stage_ran);
  tx_bench_begin();
  for (uint32_t k = 0; k < TX_APP_NUM_SEGMENTS; k++) {
    const tx_model_t *seg = tx_app_segments[k];
    const int8_t *out = run_stage(tx_app_segment_stage[k], seg, in, STAGE_BUF((k % 2u) ? stage_buf1 : stage_buf0));
    in = TX_APP_CHAINED ? 0 : out;  /* what the next stages read: the copy, or the arena as it is */
    if (k + 1u == TX_APP_NUM_SEGMENTS) {
      r.out = out;
      r.out_size = seg->output_size;
      break;
    }
#if !TX_APP_NO_EXIT
    const tx_model_t *head = tx_app_heads[k];
#if TX_APP_POLICY == TX_APP_POLICY_CONFIDENCE
    /* Learned confidence: the confidence model reads the exit point's map (this segment's output) and
       gives int8 [P(wrong), P(right)]; exit when P(right) >= threshold_q. Only then the exit head runs,
       to answer. */
    if (head) {
      const int8_t *c = run_stage(tx_app_segment_stage[k] + 1u, tx_app_confs[k], in, STAGE_BUF(conf_buf));
      if ((int32_t)c[TX_APP_CONF_INDEX] >= tx_app_threshold_q[k]) {
        r.out = run_stage(tx_app_segment_stage[k] + 2u, head, in, STAGE_BUF(head_buf));
        r.exit_index = tx_app_head_exit[k];
        r.out_size = head->output_size;
        break;
      }
    }
#else
    if (head) {
      const int8_t *q = run_stage(tx_app_segment_stage[k] + 1u, head, in, STAGE_BUF(head_buf));
#if TX_APP_TEMPORAL
      /* The first head decides by the temporal rule (its gate: this head's threshold); later heads never
         exit (threshold 128). */
      if (first_head) {
        first_head = 0;
        if (tx_temporal_early(&temporal, &temporal_cfg, q, head->output_size)) {
          r.exit_index = tx_app_head_exit[k];
          r.out = q;
          r.out_size = head->output_size;
          r.decision = temporal.last;
          break;
        }
        continue;
      }
#endif
      if (exit_here(k, q, head->output_size)) {
        r.exit_index = tx_app_head_exit[k];
        r.out = q;
        r.out_size = head->output_size;
        break;
      }
    }
#endif
#endif
  }
#if TX_APP_TEMPORAL
  if (r.decision < 0) {  /* the full model answered: its prediction is the new last decision */
    r.decision = (int32_t)tx_temporal_argmax(r.out, r.out_size);
    tx_temporal_final(&temporal, &temporal_cfg, r.decision);
  }
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
#if TX_APP_TEMPORAL
  tx_temporal_init(&temporal, temporal_ref, TX_APP_MAX_HEAD_OUTPUT);
#endif
  tx_hal_puts("TX BEGIN board=" TX_BOARD_NAME " inputs=");
  put_u32(n);
  tx_hal_puts(" stages=" TX_APP_STAGE_NAMES " exits=" TX_APP_EXIT_NAMES " unit=" TX_TICK_UNIT " no_exit=");
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
