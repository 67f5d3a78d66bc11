/* Shared exit branch (tx_branch.h) over the generated stage table (tx_pipeline_config.c). */
#include <string.h>
#include "tx_branch.h"

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

int tx_branch_run(const int8_t *input, uint32_t stop, int8_t *boundary, int8_t *vector, int8_t *scores) {
  uint32_t k;
  tx_branch_clear(vector);
  for (k = 0; k <= stop && k < TX_SHARED_NUM_POINTS; ++k)
    tx_branch_advance(k, k == 0 ? input : boundary, boundary, vector);
  return tx_branch_classify(vector, scores);
}

int tx_branch_run_adaptive(const int8_t *input, tx_branch_stop_fn stop_now, void *ctx, int8_t *boundary,
                           int8_t *vector, int8_t *scores, uint32_t *point) {
  uint32_t k;
  tx_branch_clear(vector);
  for (k = 0; k < TX_SHARED_NUM_POINTS; ++k) {
    tx_branch_advance(k, k == 0 ? input : boundary, boundary, vector);
    if (k + 1 == TX_SHARED_NUM_POINTS || stop_now(k, ctx)) break;
  }
  *point = k;
  return tx_branch_classify(vector, scores);
}
