/* The pipeline the runtime runs: the generated stage table (tx_pipeline_config.c, rendered from tinyexit.pipeline)
   with RAM for the tensor a segment hands to the next stages (none when the library is chained) and, for the
   shared exit branch, the vector of pooled exit-point features (part of every checkpoint); the generated exit
   policies. */
#include "tx_pipeline.h"
#include "tx_policy.h"

/* The arena is shared by all models: the boundary tensor lives here, unless the library keeps it in place and
   the firmware never checkpoints (tx_checkpoint.c's TX_CKPT_OFF_ONLY: the runtime refuses a chained pipeline
   with checkpoints). */
#if TX_PIPELINE_CHAINED && defined(TX_CKPT_OFF_ONLY)
#define TX_IN_PLACE 1u
#define TX_BOUNDARY 0
#define TX_BOUNDARY_SIZE 0u
#elif defined(TX_PIPELINE_BOUNDARY_SIZE)
#if TX_PIPELINE_BOUNDARY_SIZE
static int8_t tx_boundary[TX_PIPELINE_BOUNDARY_SIZE];   /* the largest output of a segment that is not the last */
#define TX_IN_PLACE 0u
#define TX_BOUNDARY tx_boundary
#define TX_BOUNDARY_SIZE TX_PIPELINE_BOUNDARY_SIZE
#else
#define TX_IN_PLACE 0u
#define TX_BOUNDARY 0   /* one segment: nothing to hand on */
#define TX_BOUNDARY_SIZE 0u
#endif
#else
#ifdef TX_MAX_OUTPUT_SIZE
static int8_t tx_boundary[TX_MAX_OUTPUT_SIZE];   /* the largest model output of the library */
#else
static int8_t tx_boundary[TX_ARENA_SIZE];
#endif
#define TX_IN_PLACE 0u
#define TX_BOUNDARY tx_boundary
#define TX_BOUNDARY_SIZE (uint32_t)sizeof tx_boundary
#endif

#if TX_PIPELINE_VECTOR_SIZE
/* Shared exit branch: slice k written by pool k, read by the branch. */
static int8_t tx_vector[TX_PIPELINE_VECTOR_SIZE];
#define TX_VECTOR tx_vector
#else
#define TX_VECTOR 0
#endif

tx_pipeline_t tx_pipeline = { tx_pipeline_stages, TX_PIPELINE_NUM_STAGES, TX_BOUNDARY, TX_BOUNDARY_SIZE, 0, 0,
                              TX_VECTOR, TX_PIPELINE_VECTOR_SIZE, TX_PIPELINE_VECTOR_ZERO_POINT, 0, 0,
                              TX_IN_PLACE, 0, 0, 0 };

#ifdef TX_PIPELINE_NUM_EXITS
int tx_pipeline_policy(uint32_t exit_index, const int8_t *q, uint32_t n, void *ctx)
{
  (void)ctx;
#if TX_PIPELINE_POLICY == TX_POLICY_CONFIDENCE
  (void)n;
  return (int32_t)q[TX_PIPELINE_CONF_INDEX] >= tx_pipeline_threshold_q[exit_index];
#elif TX_PIPELINE_POLICY == TX_POLICY_ENTROPY
  return tx_policy_exit(TX_POLICY_ENTROPY, q, n, tx_pipeline_threshold_q[exit_index], tx_pipeline_entropy[exit_index]);
#else
  return tx_policy_exit(TX_PIPELINE_POLICY, q, n, tx_pipeline_threshold_q[exit_index], 0);
#endif
}
#endif

#ifdef TX_PIPELINE_TEMPORAL
static const tx_temporal_cfg_t temporal_cfg = {TX_PIPELINE_TEMPORAL, TX_PIPELINE_TEMPORAL_PARAM,
                                               TX_PIPELINE_TEMPORAL_GATE, TX_PIPELINE_TEMPORAL_REFERENCE_PREVIOUS};

void tx_pipeline_temporal_init(tx_pipeline_temporal_t *t, int8_t *ref_buf)
{
  tx_temporal_init(&t->state, ref_buf, TX_PIPELINE_MAX_HEAD_OUTPUT);
  tx_pipeline_temporal_begin(t);
}

void tx_pipeline_temporal_begin(tx_pipeline_temporal_t *t)
{
  t->first = 1u;
  t->decision = -1;
}

int tx_pipeline_temporal_policy(uint32_t exit_index, const int8_t *q, uint32_t n, void *ctx)
{
  tx_pipeline_temporal_t *t = (tx_pipeline_temporal_t *)ctx;
  (void)exit_index;
  if (!t->first) return 0;   /* later heads never exit */
  t->first = 0u;
  if (!tx_temporal_early(&t->state, &temporal_cfg, q, n)) return 0;
  t->decision = t->state.last;
  return 1;
}

int32_t tx_pipeline_temporal_end(tx_pipeline_temporal_t *t, const int8_t *out, uint32_t size)
{
  if (t->decision < 0) {   /* the full model answered: its prediction is the new last decision */
    t->decision = (int32_t)tx_temporal_argmax(out, size);
    tx_temporal_final(&t->state, &temporal_cfg, t->decision);
  }
  return t->decision;
}
#endif
