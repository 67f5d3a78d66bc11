/* Host driver of the checkpointing runtime, used by the power-failure harness (tinyexit.intermittent).
 * One process = one boot: RAM starts empty, the NVM (TX_NVM_FILE) is what the previous boots left.
 *
 *   tx_powerfail info [THRESHOLD]
 *       (with the THRESHOLD policy set, as `run` sets it) prints "TXINFO nvm_bytes=... slot_size=... max_payload=... fingerprint=... input_size=..."
 *   tx_powerfail layout
 *       prints "TXSTAGE index=S role=R exit=E units=u0,u1,..." per stage (work units of each step): where a
 *       position (stage, step, unit) lies in the inference, for the harness
 *   tx_powerfail run INPUT_FILE INPUT_ID MODE EVERY [THRESHOLD]
 *       MODE: none|layers|units, or jit-none|jit-layers|jit-units (just-in-time commits on the power-fail
 *       warning, TX_WARN_UNITS in tx_rt_host.c, besides the mode's own)
 *       boots, resumes or starts the inference of INPUT_FILE's bytes, commits the result and prints
 *       "RESULT input=ID exit=E boot=fresh|resumed|done size=N hex=..." on stdout and
 *       "TXSTAT ..." (this boot's counters) on stderr. With THRESHOLD, exit heads run and the pipeline
 *       stops at the first whose largest output byte is >= THRESHOLD.
 * Exit status: 0 done, TX_CUT_EXIT_CODE when the harness cut the power, 2 on usage or configuration errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_checkpoint.h"
#include "tx_nvm_host.h"
#include "tx_pipeline.h"
#include "tx_policy.h"

static int8_t input[TX_ARENA_SIZE];
static int8_t output[TX_ARENA_SIZE];
static tx_runtime_t rt;

static int threshold_policy(uint32_t exit_index, const int8_t *out, uint32_t size, void *ctx)
{
  (void)exit_index;
  return tx_policy_exit(TX_POLICY_MAX_SOFTMAX, out, size, *(const int32_t *)ctx, 0);
}

static int32_t low_threshold;

static int low_threshold_policy(uint32_t exit_index, const int8_t *out, uint32_t size, void *ctx)
{
  (void)exit_index; (void)ctx;
  return tx_policy_exit(TX_POLICY_MAX_SOFTMAX, out, size, low_threshold, 0);
}

/* THRESHOLD[:LOW]: the confidence-mode policy (max score >= THRESHOLD) and, after a colon, low energy's own. */
static void set_policy(const char *arg, int32_t *threshold)
{
  char *end;
  *threshold = (int32_t)strtol(arg, &end, 0);
  tx_pipeline.policy = threshold_policy;
  tx_pipeline.policy_ctx = threshold;
  if (*end == ':') {
    low_threshold = (int32_t)strtol(end + 1, NULL, 0);
    tx_pipeline.low_policy = low_threshold_policy;
  }
}

static const char *boot_name(uint32_t b)
{
  return b == TX_BOOT_DONE ? "done" : b == TX_BOOT_RESUMED ? "resumed" : "fresh";
}

int main(int argc, char **argv)
{
  tx_granularity_t gran = { TX_CKPT_LAYERS, 1u };
  static int32_t threshold;
  tx_result_t res;
  uint32_t input_id, k;
  size_t got;
  FILE *f;
  int rc;

  if (argc >= 2 && strcmp(argv[1], "info") == 0) {
    if (argc >= 3) set_policy(argv[2], &threshold);   /* the policy changes a shared pipeline's fingerprint and payloads */
    rc = tx_runtime_init(&rt, &tx_pipeline, gran);
    if (rc != TX_OK && rc != TX_ERR_NVM_TOO_SMALL) { fprintf(stderr, "init failed: %d\n", rc); return 2; }
    printf("TXINFO nvm_bytes=%u slots=%u slot_size=%u log=%u max_payload=%u fingerprint=%u input_size=%u stages=%u\n",
           (unsigned)tx_runtime_nvm_bytes(&rt), (unsigned)rt.num_slots, (unsigned)rt.slot_size, (unsigned)rt.log,
           (unsigned)rt.max_payload,
           (unsigned)rt.fingerprint, (unsigned)tx_pipeline.stages[0].model->input_size,
           (unsigned)tx_pipeline.num_stages);
    return 0;
  }
  if (argc >= 2 && strcmp(argv[1], "layout") == 0) {
    uint32_t s, i;
    for (s = 0u; s < tx_pipeline.num_stages; s++) {
      const tx_model_t *m = tx_pipeline.stages[s].model;
      printf("TXSTAGE index=%u role=%u exit=%u offset=%u name=%s units=", (unsigned)s,
             (unsigned)tx_pipeline.stages[s].role, (unsigned)tx_pipeline.stages[s].exit_index,
             (unsigned)tx_pipeline.stages[s].vector_offset, m->name);
      for (i = 0u; i < m->num_steps; i++) printf(i ? ",%u" : "%u", (unsigned)m->units[i]);
      printf("\n");
    }
    return 0;
  }
  if (argc < 6 || strcmp(argv[1], "run") != 0) {
    fprintf(stderr, "usage: %s info [THRESHOLD[:LOW]] | layout | run INPUT_FILE INPUT_ID [jit-]none|layers|units EVERY "
                    "[THRESHOLD[:LOW]]\n", argv[0]);
    return 2;
  }
  input_id = (uint32_t)strtoul(argv[3], NULL, 0);
  {
    const char *mode = argv[4];
    const uint32_t jit = strncmp(mode, "jit-", 4) == 0 ? TX_CKPT_JIT : 0u;
    if (jit) mode += 4;
    gran.mode = (strcmp(mode, "none") == 0 ? TX_CKPT_NONE : strcmp(mode, "units") == 0 ? TX_CKPT_UNITS : TX_CKPT_LAYERS) | jit;
  }
  gran.every = (uint32_t)strtoul(argv[5], NULL, 0);
  if (argc >= 7) set_policy(argv[6], &threshold);
  f = fopen(argv[2], "rb");
  if (!f) { perror(argv[2]); return 2; }
  got = fread(input, 1, sizeof input, f);
  fclose(f);
  if (got != tx_pipeline.stages[0].model->input_size) {
    fprintf(stderr, "%s: %u bytes, the model's input has %u\n", argv[2], (unsigned)got,
            (unsigned)tx_pipeline.stages[0].model->input_size);
    return 2;
  }
  rc = tx_runtime_init(&rt, &tx_pipeline, gran);
  if (rc != TX_OK) { fprintf(stderr, "tx_runtime_init failed: %d\n", rc); return 2; }
  tx_runtime_boot(&rt, input_id, input);
  fprintf(stderr, "TXBOOT boot=%s stage=%u step=%u unit=%u\n", boot_name(rt.boot), (unsigned)rt.stage,
          (unsigned)rt.step, (unsigned)rt.unit);
  rc = tx_runtime_run(&rt, output, sizeof output, &res);
  if (rc != TX_OK) { fprintf(stderr, "tx_runtime_run failed: %d\n", rc); return 2; }
  {
    const tx_nvm_host_stats_t *s = tx_nvm_host_stats();
    fprintf(stderr, "TXSTAT commits=%u nvm_bytes=%u erases=%u units=%u events=%llu low_marks=%u jit_commits=%u "
            "prepared=%u skipped=%u\n",
            (unsigned)rt.stats.commits, (unsigned)rt.stats.nvm_bytes_written, (unsigned)rt.stats.nvm_pages_erased,
            (unsigned)rt.stats.units_run, (unsigned long long)s->events, (unsigned)rt.stats.low_marks,
            (unsigned)rt.stats.jit_commits, (unsigned)rt.stats.nvm_pages_prepared, (unsigned)rt.stats.nvm_pages_skipped);
  }
  printf("RESULT input=%u exit=%u boot=%s size=%u hex=", (unsigned)input_id, (unsigned)res.exit_index,
         boot_name(res.resumed), (unsigned)res.size);
  for (k = 0u; k < res.size; k++) printf("%02x", (unsigned)(uint8_t)output[k]);
  printf("\n");
  return 0;
}
