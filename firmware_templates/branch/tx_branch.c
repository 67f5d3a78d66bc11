/* Shared exit branch (tx_branch.h) over the generated stage table (tx_pipeline_config.c). */
#include <string.h>
#include "tx_branch.h"
#include "tx_checkpoint.h"

void tx_branch_clear(int8_t *vector) {
  memset(vector, TX_SHARED_VECTOR_ZERO_POINT, TX_SHARED_VECTOR_SIZE);
}

void tx_branch_advance(uint32_t k, const int8_t *input, int8_t *boundary, int8_t *vector) {
  const tx_stage_t *segment = &tx_pipeline_stages[2u * k], *pool = segment + 1;
  tx_invoke(segment->model, input, boundary);
  tx_invoke(pool->model, boundary, vector + pool->vector_offset);
}

int tx_branch_classify(const int8_t *vector, int8_t *scores) {
  uint32_t c;
  int best = 0;
  tx_invoke(tx_pipeline_stages[TX_PIPELINE_NUM_STAGES - 1u].model, vector, scores);
  for (c = 1; c < TX_SHARED_NUM_CLASSES; ++c)
    if (scores[c] > scores[best]) best = (int)c;
  return best;
}

/* The anytime loops are the checkpointing runtime's walk over the same stage table, with checkpointing off
   (TX_CKPT_OFF: no NVM) and a stop hook after each exit point: one runtime, configured, not a copy. */
static int run(const int8_t *input, tx_stop_fn stop, void *ctx, int8_t *boundary, int8_t *vector, int8_t *scores,
               uint32_t *point) {
  tx_pipeline_t p = { tx_pipeline_stages, TX_PIPELINE_NUM_STAGES, boundary, TX_SHARED_BOUNDARY_SIZE, 0, 0, vector,
                      TX_SHARED_VECTOR_SIZE, TX_SHARED_VECTOR_ZERO_POINT, stop, ctx };
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
  return run(input, stop_after, &stop, boundary, vector, scores, &point);
}

int tx_branch_run_adaptive(const int8_t *input, tx_branch_stop_fn stop_now, void *ctx, int8_t *boundary,
                           int8_t *vector, int8_t *scores, uint32_t *point) {
  return run(input, stop_now, ctx, boundary, vector, scores, point);
}
