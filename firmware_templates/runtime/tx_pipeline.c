/* The pipeline the checkpointing runtime runs: the generated stage table (tx_pipeline_config.c, rendered from
   tinyexit.pipeline) with RAM for the tensor a segment hands to the next stages and, for the shared exit
   branch, the vector of pooled exit-point features (part of every checkpoint). */
#include "tx_checkpoint.h"
#include "tx_pipeline.h"
#include "tx_pipeline_config.h"

/* The arena is shared by all models: the boundary tensor lives here. */
#ifdef TX_MAX_OUTPUT_SIZE
static int8_t tx_boundary[TX_MAX_OUTPUT_SIZE];   /* the largest model output of the library */
#else
static int8_t tx_boundary[TX_ARENA_SIZE];
#endif

#if TX_PIPELINE_VECTOR_SIZE
/* Shared exit branch: slice k written by pool k, read by the branch. */
static int8_t tx_vector[TX_PIPELINE_VECTOR_SIZE];
#define TX_VECTOR tx_vector
#else
#define TX_VECTOR 0
#endif

tx_pipeline_t tx_pipeline = { tx_pipeline_stages, TX_PIPELINE_NUM_STAGES, tx_boundary, (uint32_t)sizeof tx_boundary,
                              0, 0, TX_VECTOR, TX_PIPELINE_VECTOR_SIZE, TX_PIPELINE_VECTOR_ZERO_POINT, 0, 0 };
