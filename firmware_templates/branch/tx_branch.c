/* Shared exit branch (tx_branch.h) over the generated stage table (tx_pipeline_config.c). */
#include <string.h>
#include "tx_branch.h"
#include "tx_checkpoint.h"

/* The anytime loops are the checkpointing runtime's walk over the same stage table, with checkpointing off
   (TX_CKPT_OFF: no NVM) and a stop hook after each exit point, or (every point) a policy that sees the branch's
   scores after each point: one runtime, configured, not a copy. */
static int run(const int8_t *input, tx_stop_fn stop, void *ctx, tx_exit_policy_t policy, void *policy_ctx,
               int8_t *boundary, int8_t *vector, int8_t *scores, uint32_t *point) {
  tx_pipeline_t p = { tx_pipeline_stages, TX_PIPELINE_NUM_STAGES, boundary, TX_SHARED_BOUNDARY_SIZE, policy, policy_ctx,
                      vector, TX_SHARED_VECTOR_SIZE, TX_SHARED_VECTOR_ZERO_POINT, stop, ctx, 0u, 0, 0, 0 };
  const tx_granularity_t off = { TX_CKPT_OFF, 0u };
  tx_runtime_t rt;
  tx_result_t r;
  uint32_t c;
  int best = 0;
  if (tx_pipeline_infer(&rt, &p, off, 0u, input, scores, TX_SHARED_NUM_CLASSES, &r) != TX_OK) return -1;
  *point = r.exit_index;
  for (c = 1; c < TX_SHARED_NUM_CLASSES; ++c)
    if (scores[c] > scores[best]) best = (int)c;
  return best;
}

static int stop_after(uint32_t k, void *ctx) { return k >= *(const uint32_t *)ctx; }

int tx_branch_run(const int8_t *input, uint32_t stop, int8_t *boundary, int8_t *vector, int8_t *scores) {
  uint32_t point;
  return run(input, stop_after, &stop, 0, 0, boundary, vector, scores, &point);
}

int tx_branch_run_adaptive(const int8_t *input, tx_branch_stop_fn stop_now, void *ctx, int8_t *boundary,
                           int8_t *vector, int8_t *scores, uint32_t *point) {
  return run(input, stop_now, ctx, 0, 0, boundary, vector, scores, point);
}

/* Confidence mode with a policy that never stops: the branch runs after every point; point k's scores go to row
   k (ctx: the rows); the last point answers anyway, into the last row. */
static int keep_scores(uint32_t k, const int8_t *scores, uint32_t n, void *ctx) {
  memcpy((int8_t *)ctx + k * TX_SHARED_NUM_CLASSES, scores, n);
  return 0;
}

int tx_branch_run_all(const int8_t *input, int8_t *boundary, int8_t *vector, int8_t *scores_all) {
  uint32_t point;
  int8_t *last = scores_all + (TX_SHARED_NUM_POINTS - 1u) * TX_SHARED_NUM_CLASSES;
  return run(input, 0, 0, keep_scores, scores_all, boundary, vector, last, &point) < 0 ? -1 : 0;
}
