/* The pipeline of the generated stage table (tx_pipeline_config.{h,c}, rendered from tinyexit.pipeline) as the
   runtime runs it: tx_pipeline.c. Used by the checkpointing campaigns (host_main.c, powerfail_main.c) and, with
   checkpointing off, by the bench app (app/tx_app.c). */
#ifndef TX_PIPELINE_H
#define TX_PIPELINE_H

#include "tx_checkpoint.h"
#include "tx_pipeline_config.h"

/* The stage table with its RAM (boundary, vector) and TX_PIPELINE_CHAINED; no policy, no hooks: a caller sets
   them before tx_runtime_init. */
extern tx_pipeline_t tx_pipeline;

#ifdef TX_PIPELINE_NUM_EXITS
/* The generated exit policy (a tx_exit_policy_t, ctx unused): tx_policy.h's rule TX_PIPELINE_POLICY with the
   exit's tx_pipeline_threshold_q (and entropy table); confidence: exit when the confidence model's
   P(right) = q[TX_PIPELINE_CONF_INDEX] >= the threshold (the walk calls it on the confidence stage only). */
int tx_pipeline_policy(uint32_t exit_index, const int8_t *q, uint32_t n, void *ctx);
#endif

#ifdef TX_PIPELINE_TEMPORAL
/* The generated temporal policy (tx_temporal.h): the first exit head the walk reaches decides by the temporal
   rule, later heads never exit. Not a pure function of the bytes (state across the inputs of a stream): with
   checkpointing off only. Per inference: _begin, then the run with tx_pipeline_temporal_policy and the state as
   the policy's ctx, then _end with the result, which feeds a full-model answer back to the rule. */
typedef struct {
  tx_temporal_t state;
  uint32_t first;     /* no exit head has been looked at in this inference yet */
  int32_t decision;   /* the rule's answer when the first head stopped, else -1 */
} tx_pipeline_temporal_t;

void tx_pipeline_temporal_init(tx_pipeline_temporal_t *t, int8_t *ref_buf);   /* TX_PIPELINE_MAX_HEAD_OUTPUT bytes */
void tx_pipeline_temporal_begin(tx_pipeline_temporal_t *t);
int tx_pipeline_temporal_policy(uint32_t exit_index, const int8_t *q, uint32_t n, void *ctx);
/* The decision of this inference: the rule's, or the argmax of the full model's output (then fed back). */
int32_t tx_pipeline_temporal_end(tx_pipeline_temporal_t *t, const int8_t *out, uint32_t size);
#endif

#endif
