/* The exit policy, one implementation for the firmware app (app/tx_app.c), the checkpointing runtime's hosts
 * (host_main.c, powerfail_main.c) and the shared branch's confidence mode: kind "threshold" of
 * tinyexit.pipeline.Policy (policy.json), decided on the int8 output q of an exit head in integer arithmetic,
 * as tinyexit.policy decides:
 *   max_softmax: max q >= threshold;  margin: q(1st) - q(2nd) >= threshold;
 *   entropy: sum of table[q + 128] <= threshold (-p ln p per int8 code, 2^-16 nat).
 * (confidence: the runtime runs the exit's confidence stage and tx_pipeline_policy tests its P(right) >= threshold.)
 * `rule` is a TX_POLICY_* constant (tx_stage.h); a pure function of the bytes, so it decides the same after a
 * power failure. Temporal policies (state across the inputs of a stream): tx_temporal.h. */
#ifndef TX_POLICY_H
#define TX_POLICY_H

#include <stdint.h>
#include "tx_stage.h"

/* What the rule measures on q: max q (max_softmax), q(1st) - q(2nd) (margin), or the entropy sum. */
static inline int32_t tx_policy_score(int rule, const int8_t *q, uint32_t n, const uint16_t *entropy)
{
  if (rule == TX_POLICY_ENTROPY) {
    int32_t h = 0;
    for (uint32_t i = 0; i < n; i++) h += (int32_t)entropy[q[i] + 128];
    return h;
  } else {
    int32_t top = -129, second = -129;
    for (uint32_t i = 0; i < n; i++) {
      if (q[i] > top) {
        second = top;
        top = q[i];
      } else if (q[i] > second) {
        second = q[i];
      }
    }
    return rule == TX_POLICY_MARGIN ? top - second : top;
  }
}

/* Nonzero: exit here (the score passes the threshold). */
static inline int tx_policy_passes(int rule, int32_t score, int32_t threshold)
{
  return rule == TX_POLICY_ENTROPY ? score <= threshold : score >= threshold;
}

static inline int tx_policy_exit(int rule, const int8_t *q, uint32_t n, int32_t threshold, const uint16_t *entropy)
{
  return tx_policy_passes(rule, tx_policy_score(rule, q, n, entropy), threshold);
}

#endif
