/* Driver of tests/test_runtime_walk.py: the runtime's walk (tx_checkpoint.c, checkpointing off: tx_rt_off.c)
   over seg0, conf1 (confidence of exit 0), exit1, seg1 of walk_model.c.
     walk_host run THRESHOLD|none CHAINED < 16 input bytes    prints "exit=E stages=<hook trace> out=<hex>"
     walk_host init                                          prints the tx_runtime_init codes of the cases below */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tx_checkpoint.h"

static const tx_stage_t stages[4] = {{&tx_model_seg0, TX_STAGE_SEGMENT, 1u, 0u}, {&tx_model_conf1, TX_STAGE_CONFIDENCE, 0u, 0u},
                                     {&tx_model_exit1, TX_STAGE_EXIT, 0u, 0u}, {&tx_model_seg1, TX_STAGE_SEGMENT, 1u, 0u}};
/* a confidence stage followed by a segment instead of its head */
static const tx_stage_t bad[3] = {{&tx_model_seg0, TX_STAGE_SEGMENT, 0u, 0u}, {&tx_model_conf1, TX_STAGE_CONFIDENCE, 0u, 0u},
                                  {&tx_model_seg1, TX_STAGE_SEGMENT, 1u, 0u}};
static int8_t boundary[8];
static char trace[128];

static int conf_policy(uint32_t exit_index, const int8_t *q, uint32_t n, void *ctx)
{
  (void)exit_index;
  return n == 2u && (int32_t)q[1] >= *(const int32_t *)ctx;   /* P(right) >= threshold */
}

static void hook(uint32_t stage, uint32_t begin, void *ctx)
{
  (void)ctx;
  sprintf(trace + strlen(trace), "%s%c%u", trace[0] ? "," : "", begin ? 'b' : 'e', (unsigned)stage);
}

int main(int argc, char **argv)
{
  tx_pipeline_t p = {stages, 4u, boundary, sizeof boundary, 0, 0, 0, 0u, 0, 0, 0, 0u, hook, 0, 0};
  const tx_granularity_t off = {TX_CKPT_OFF, 1u}, layers = {TX_CKPT_LAYERS, 1u};
  tx_runtime_t rt;
  if (argc == 2 && strcmp(argv[1], "init") == 0) {
    tx_pipeline_t chained = p, broken = p;
    chained.chained = 1u;
    chained.boundary = 0;
    broken.stages = bad;
    broken.num_stages = 3u;
    printf("off=%d chained_off=%d chained_layers=%d layers=%d bad_confidence=%d\n", tx_runtime_init(&rt, &p, off),
           tx_runtime_init(&rt, &chained, off), tx_runtime_init(&rt, &chained, layers),
           tx_runtime_init(&rt, &p, layers), tx_runtime_init(&rt, &broken, off));
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "run") == 0) {
    int8_t input[16];
    int32_t threshold = 0;
    tx_result_t r;
    uint32_t i;
    if (fread(input, 1, sizeof input, stdin) != sizeof input) return 2;
    if (strcmp(argv[2], "none") != 0) {
      threshold = (int32_t)strtol(argv[2], 0, 10);
      p.policy = conf_policy;
      p.policy_ctx = &threshold;
    }
    if (atoi(argv[3])) {
      p.chained = 1u;
      p.boundary = 0;   /* in place: a copy through the boundary would crash */
      p.boundary_size = 0u;
    }
    if (tx_runtime_init(&rt, &p, off) != TX_OK) return 3;
    tx_runtime_boot(&rt, 0u, input);
    if (tx_runtime_run(&rt, 0, 0u, &r) != TX_OK) return 4;
    printf("exit=%u stages=%s out=", (unsigned)r.exit_index, trace);
    for (i = 0; i < r.size; i++) printf("%02x", (unsigned)(uint8_t)r.data[i]);
    printf("\n");
    return 0;
  }
  return 2;
}
