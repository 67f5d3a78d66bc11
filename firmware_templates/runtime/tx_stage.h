/* The vocabulary of the generated pipeline description (tx_pipeline_config.h, rendered from tinyexit.pipeline):
 * stage roles, one stage of the table, exit-policy rules and checkpoint modes. Shared by the runtime
 * (tx_checkpoint.h) and the firmware that runs it: the app (app/tx_app.c), the campaigns, the shared branch. */
#ifndef TX_STAGE_H
#define TX_STAGE_H

#include <stdint.h>
#include "tx_model.h"

#define TX_STAGE_SEGMENT 0u
#define TX_STAGE_EXIT 1u
#define TX_STAGE_POOL 2u        /* shared exit branch: exit point k's pool, writes slice k of the vector */
#define TX_STAGE_BRANCH 3u      /* shared exit branch: the classifier over the vector (last stage) */
#define TX_STAGE_CONFIDENCE 4u  /* learned confidence of the exit head after it: the policy decides whether it runs */

typedef struct {
  const tx_model_t *model;
  uint8_t role;        /* TX_STAGE_SEGMENT: backbone segment; TX_STAGE_EXIT: exit head over the last segment's
                          output; TX_STAGE_CONFIDENCE: its confidence model, right before it;
                          TX_STAGE_POOL / TX_STAGE_BRANCH: shared exit branch (tx_checkpoint.h) */
  uint8_t exit_index;  /* index of the exit this stage produces (exit heads: 0, 1, ...; the last segment
                          gives the final exit, conventionally the highest index; pools: the exit point k) */
  uint32_t vector_offset;  /* pools: offset of slice k in the shared vector (its length = the pool's output) */
} tx_stage_t;

/* Exit-policy rules of kind "threshold" (policy.json): exit when the rule holds on the head's int8 output. */
#define TX_POLICY_MAX_SOFTMAX 0
#define TX_POLICY_MARGIN 1
#define TX_POLICY_ENTROPY 2
#define TX_POLICY_CONFIDENCE 3

/* Checkpoint modes (the checkpoint plan's granularity). */
#define TX_CKPT_NONE 0u    /* no checkpoint during the inference, only the result (continuous-power baseline) */
#define TX_CKPT_LAYERS 1u  /* commit after every `every` steps (layers) and at the end of each stage */
#define TX_CKPT_UNITS 2u   /* commit after every `every` work units (rows), also inside a layer */
#define TX_CKPT_OFF 3u     /* no NVM at all: the same walk over the stages, nothing committed (no power failures) */
/* Flag OR'ed into NONE, LAYERS or UNITS: just-in-time checkpointing (tx_checkpoint.h). TX_CKPT_NONE | TX_CKPT_JIT
   commits only when the power-fail warning is seen (and the result); LAYERS | JIT adds the periodic commits as
   the fallback policy. */
#define TX_CKPT_JIT 0x100u

#endif
