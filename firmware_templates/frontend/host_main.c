/* Host driver of the front end, for tinyexit.frontend (tests, conformance benchmark):
 *
 *   tx_frontend_host IN N OUT MODE [LEVEL] [CHUNK] [SCALE ZP QOUT]
 *   tx_frontend_host IN N OUT quant SCALE ZP
 *
 * IN holds clips of N int16 samples each (native byte order); OUT gets 49 x 10 float32 features per clip.
 * MODE clip: tx_frontend_clip. MODE push: a fresh state per clip, all N samples pushed CHUNK at a time (then
 * zeros up to 16000 samples when N is shorter), the ring's 49 frames written; LEVEL "max" (the clip's signed
 * maximum: the per-clip result when N <= 16000), "fixed:L" or "peak:DECAY:FLOOR". With SCALE ZP QOUT the
 * features are also quantized into QOUT (int8): MODE clip with tx_frontend_quantize, MODE push from the
 * state's int8 ring (tx_frontend_set_quant before the first sample), which must equal tx_frontend_quantize of
 * the float ring (exit status 3 if not). MODE quant: IN holds N float32 values, OUT gets their int8. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_frontend.h"

static tx_frontend_state state;
static float feats[TX_FE_NUM_FRAMES][TX_FE_NUM_MFCC];
static int8_t q[TX_FE_NUM_FRAMES * TX_FE_NUM_MFCC];

static int fail(const char *what)
{
  fprintf(stderr, "tx_frontend_host: %s\n", what);
  return 2;
}

static int push_clip(const int16_t *pcm, size_t n, const char *level, size_t chunk, float scale, int32_t zp)
{
  static const int16_t zeros[TX_FE_FRAME_STEP];
  size_t used = n, i;
  int ok;
  if (strcmp(level, "max") == 0) {
    int32_t peak = n ? pcm[0] : 0;
    for (i = 1; i < n; i++)
      if (pcm[i] > peak) peak = pcm[i];
    ok = tx_frontend_init(&state, peak != 0 ? (float)peak : 1.0f);
  } else if (strncmp(level, "fixed:", 6) == 0) {
    ok = tx_frontend_init(&state, strtof(level + 6, NULL));
  } else if (strncmp(level, "peak:", 5) == 0) {
    char *end;
    const float decay = strtof(level + 5, &end);
    ok = *end == ':' ? tx_frontend_init_peak(&state, decay, strtof(end + 1, NULL)) : -1;
  } else {
    return -1;
  }
  if (ok != 0 || (scale > 0.0f && tx_frontend_set_quant(&state, scale, zp) != 0)) return -1;
  for (i = 0; i < used; i += chunk) tx_frontend_push(&state, pcm + i, used - i < chunk ? used - i : chunk);
  for (; used < TX_FE_CLIP_SAMPLES; used += TX_FE_FRAME_STEP) {
    const size_t z = TX_FE_CLIP_SAMPLES - used < TX_FE_FRAME_STEP ? TX_FE_CLIP_SAMPLES - used : TX_FE_FRAME_STEP;
    tx_frontend_push(&state, zeros, z);
  }
  tx_frontend_frames(&state, feats);
  if (scale > 0.0f) tx_frontend_frames_int8(&state, q);
  return 0;
}

/* MODE quant: N float32 values -> N int8 values */
static int quant(const char *in_path, size_t n, const char *out_path, float scale, int32_t zp)
{
  float *x = (float *)malloc((n ? n : 1) * sizeof *x);
  int8_t *y = (int8_t *)malloc(n ? n : 1);
  FILE *in = fopen(in_path, "rb"), *out = fopen(out_path, "wb");
  if (!x || !y || !in || !out || fread(x, sizeof *x, n, in) != n) return fail("quant: cannot read IN");
  tx_frontend_quantize(x, n, scale, zp, y);
  fwrite(y, 1, n, out);
  fclose(in);
  free(x);
  free(y);
  return fclose(out) != 0 ? fail("cannot write OUT") : 0;
}

int main(int argc, char **argv)
{
  FILE *in, *out, *qout = NULL;
  int16_t *pcm;
  size_t n, chunk = TX_FE_FRAME_STEP;
  float scale = 0.0f;
  int32_t zp = 0;
  const char *level = "max";
  int push;
  if (argc != 5 && argc != 6 && argc != 7 && argc != 8 && argc != 10)
    return fail("usage: tx_frontend_host IN N OUT clip|push [LEVEL] [CHUNK] [SCALE ZP QOUT]");
  n = (size_t)strtoul(argv[2], NULL, 10);
  if (argc == 7 && strcmp(argv[4], "quant") == 0)
    return quant(argv[1], n, argv[3], strtof(argv[5], NULL), (int32_t)strtol(argv[6], NULL, 10));
  push = strcmp(argv[4], "push") == 0;
  if (!push && strcmp(argv[4], "clip") != 0) return fail("MODE is clip or push");
  if (argc >= 6) level = argv[5];
  if (argc >= 7) chunk = (size_t)strtoul(argv[6], NULL, 10);
  if (argc == 8 || chunk == 0) return fail("CHUNK must be > 0, and SCALE ZP QOUT come together");
  if (argc == 10) {
    scale = strtof(argv[7], NULL);
    zp = (int32_t)strtol(argv[8], NULL, 10);
    if (!(scale > 0.0f)) return fail("SCALE must be > 0");
  }
  pcm = (int16_t *)malloc((n ? n : 1) * sizeof *pcm);   /* host only: the firmware never allocates */
  in = fopen(argv[1], "rb");
  out = fopen(argv[3], "wb");
  if (argc == 10) qout = fopen(argv[9], "wb");
  if (!pcm || !in || !out || (argc == 10 && !qout)) return fail("cannot open the files or allocate");
  while (fread(pcm, sizeof *pcm, n, in) == n) {
    if (push) {
      if (push_clip(pcm, n, level, chunk, scale, zp) != 0)
        return fail("bad LEVEL (max, fixed:L, peak:DECAY:FLOOR) or SCALE ZP");
    } else {
      tx_frontend_clip(pcm, n, feats);
    }
    fwrite(feats, sizeof feats, 1, out);
    if (qout) {
      static int8_t want[TX_FE_NUM_FRAMES * TX_FE_NUM_MFCC];
      tx_frontend_quantize(&feats[0][0], TX_FE_NUM_FRAMES * TX_FE_NUM_MFCC, scale, zp, want);
      if (!push) memcpy(q, want, sizeof q);
      if (memcmp(q, want, sizeof q) != 0) {
        fprintf(stderr, "tx_frontend_host: the int8 ring differs from the quantized float ring\n");
        return 3;
      }
      fwrite(q, sizeof q, 1, qout);
    }
    if (n == 0) break;
  }
  fclose(in);
  free(pcm);
  if (qout && fclose(qout) != 0) return fail("cannot write QOUT");
  return fclose(out) != 0 ? fail("cannot write OUT") : 0;
}
