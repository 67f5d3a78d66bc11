/* Shared exit branch (FreeML): one classifier for every exit point, so inference can stop after any
 * point ("anytime"), e.g. when tx_hal_low_energy() says the energy is running out.
 * Point k: segment k (stage 2k of the pipeline's stage table) runs on the previous boundary (the model input
 * for k = 0), pool k (stage 2k+1) averages its output into slice k of the vector (its vector offset, its
 * output's length), the branch (the last stage) maps the vector to classes. Slices of points not
 * yet computed hold TX_SHARED_VECTOR_ZERO_POINT (the int8 code of 0.0), so they add nothing. */
#ifndef TX_SHARED_H
#define TX_SHARED_H
#include <stdint.h>
#include "tx_model.h"
#include "tx_pipeline_config.h"   /* the generated description: seg0, pool0, ..., pool(N-1), branch */

#define TX_SHARED_NUM_POINTS TX_PIPELINE_NUM_POINTS
#define TX_SHARED_VECTOR_SIZE TX_PIPELINE_VECTOR_SIZE
#define TX_SHARED_VECTOR_ZERO_POINT TX_PIPELINE_VECTOR_ZERO_POINT
#define TX_SHARED_NUM_CLASSES TX_PIPELINE_NUM_CLASSES
#define TX_SHARED_INPUT_SIZE TX_PIPELINE_INPUT_SIZE
#define TX_SHARED_BOUNDARY_SIZE TX_PIPELINE_SEGMENT_OUTPUT_MAX   /* largest segment output */

/* Every point's answer: points 0..N-1 with the branch after each; row k of `scores_all` (TX_SHARED_NUM_POINTS x
 * TX_SHARED_NUM_CLASSES) = the branch's scores after point k. Returns 0 (-1: the pipeline was refused). */
int tx_branch_run_all(const int8_t *input, int8_t *boundary, int8_t *vector, int8_t *scores_all);
/* Anytime inference: points 0..stop, then the branch; returns the class (-1: the pipeline was refused). */
int tx_branch_run(const int8_t *input, uint32_t stop, int8_t *boundary, int8_t *vector, int8_t *scores);

/* Energy-adaptive inference: after each point k, `stop_now(k, ctx)` says whether to answer now (e.g. the
 * board's low-energy signal, tx_hal_low_energy()); the last point always answers. Returns the class and
 * stores the point that answered in *point. */
typedef int (*tx_branch_stop_fn)(uint32_t k, void *ctx);   /* = tx_stop_fn of the runtime (tx_checkpoint.h) */
int tx_branch_run_adaptive(const int8_t *input, tx_branch_stop_fn stop_now, void *ctx, int8_t *boundary,
                           int8_t *vector, int8_t *scores, uint32_t *point);

#endif /* TX_SHARED_H */
