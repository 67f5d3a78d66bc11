/* Temporal exit policies (Sponner et al.), the integer mirror of tinyexit.policy.decisions.temporal_decide_q:
 * decided on the int8 output q of the FIRST early exit of consecutive inputs of a stream, with a small state.
 *   difference (TX_TEMPORAL_DIFFERENCE): keep the last decision while sum_c (q_c - r_c)^2 <= param, r the
 *     reference output (the one that opened the scene, or the previous input's with reference_previous);
 *   patience (TX_TEMPORAL_PATIENCE): stop when the exit's argmax has agreed with the last decision on param
 *     consecutive inputs (this one included).
 * Composition with max-softmax: stopping also needs max_c q_c >= gate (-128: no gate). When the rule does
 * not stop, the caller runs the full model and reports its prediction with tx_temporal_final.
 *
 *   tx_temporal_t s; tx_temporal_init(&s, ref_buf, n);
 *   if (tx_temporal_early(&s, &cfg, q, n)) decision = s.last;          stop at the first exit
 *   else { ...run the rest (q may be overwritten)...; tx_temporal_final(&s, &cfg, final_argmax); decision = final_argmax; } */
#ifndef TX_TEMPORAL_H
#define TX_TEMPORAL_H

#include <stdint.h>
#include <string.h>

#define TX_TEMPORAL_NONE 0
#define TX_TEMPORAL_DIFFERENCE 1
#define TX_TEMPORAL_PATIENCE 2

typedef struct {
  int kind;                /* TX_TEMPORAL_* */
  int32_t param;           /* difference: largest kept squared distance; patience: k >= 1 */
  int32_t gate;            /* max-softmax code the first exit's max must reach to stop (-128: none) */
  int reference_previous;  /* difference: 1 = compare with the previous input, 0 = with the scene's first */
} tx_temporal_cfg_t;

typedef struct {
  int32_t last;     /* the last decision of the full model, -1: none yet */
  uint32_t streak;  /* patience: consecutive agreements of the exit's argmax with `last` */
  int8_t *ref;      /* difference: reference output (n bytes, caller's buffer) */
  uint8_t has_ref;
  int32_t early;    /* patience: the first exit's argmax on the current input */
} tx_temporal_t;

static inline void tx_temporal_init(tx_temporal_t *s, int8_t *ref_buf, uint32_t n)
{
  s->last = -1;
  s->streak = 0u;
  s->ref = ref_buf;
  s->has_ref = 0u;
  s->early = -1;
  if (ref_buf) memset(ref_buf, 0, n);
}

static inline uint32_t tx_temporal_argmax(const int8_t *q, uint32_t n)
{
  uint32_t c = 0;
  for (uint32_t i = 1; i < n; i++)
    if (q[i] > q[c]) c = i;  /* first maximum, as numpy.argmax */
  return c;
}

/* Nonzero: stop at the first exit and answer s->last. Updates the state either way; when it does not stop,
 * the state already holds what it needs of q (difference: q is the new reference; patience: its argmax), so q
 * may be overwritten by the rest of the model before tx_temporal_final. */
static inline int tx_temporal_early(tx_temporal_t *s, const tx_temporal_cfg_t *c, const int8_t *q, uint32_t n)
{
  int32_t top = -129;
  for (uint32_t i = 0; i < n; i++)
    if (q[i] > top) top = q[i];
  const int gate_ok = top >= c->gate;
  if (c->kind == TX_TEMPORAL_DIFFERENCE) {
    if (s->has_ref && gate_ok) {
      int32_t d2 = 0;
      for (uint32_t i = 0; i < n; i++) {
        const int32_t d = (int32_t)q[i] - (int32_t)s->ref[i];
        d2 += d * d;
      }
      if (d2 <= c->param) {
        if (c->reference_previous) memcpy(s->ref, q, n);
        return 1;
      }
    }
    memcpy(s->ref, q, n);  /* the full model runs: this output opens the scene */
    s->has_ref = 1u;
    return 0;
  }
  if (c->kind == TX_TEMPORAL_PATIENCE) {
    s->early = (int32_t)tx_temporal_argmax(q, n);
    s->streak = (s->last >= 0 && s->early == s->last) ? s->streak + 1u : 0u;
    return (int32_t)s->streak >= c->param && gate_ok;
  }
  return 0;
}

/* The full model ran (tx_temporal_early returned 0) and predicted `final_class`: the new last decision. */
static inline void tx_temporal_final(tx_temporal_t *s, const tx_temporal_cfg_t *c, int32_t final_class)
{
  if (c->kind == TX_TEMPORAL_PATIENCE && final_class != s->last)
    s->streak = s->early == final_class ? 1u : 0u;
  s->last = final_class;
}

#endif
