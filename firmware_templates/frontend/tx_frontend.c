/* MLPerf Tiny's KWS front end in float32 C: see tx_frontend.h for the pipeline, the levels and why float.
 * The constant tables (Hann window, twiddles, mel weights, DCT) are rendered from TensorFlow's own tables by
 * tinyexit.frontend into tx_frontend_tables.{h,c}. */
#include "tx_frontend.h"

#include <math.h>
#include <string.h>

#include "tx_frontend_tables.h"

#define HALF_FFT (TX_FE_FFT_LENGTH / 2)                   /* 256: the complex FFT's length */
#define OVERLAP (TX_FE_FRAME_LENGTH - TX_FE_FRAME_STEP)   /* 160 samples shared by consecutive frames */
#define NUM_BINS (TX_FE_LAST_BIN - TX_FE_FIRST_BIN + 1)   /* the FFT bins any mel weight reads */

/* Square root: correctly rounded (IEEE) on both sides, so host and firmware agree bit for bit. On a core with
 * a single-precision FPU, the VSQRT instruction: sqrtf would call newlib's libm (errno handling), which the
 * firmware does not link. */
static inline float fe_sqrt(float x)
{
#if defined(__ARM_FP) && (__ARM_FP & 4)
  float r;
  __asm__("vsqrt.f32 %0, %1" : "=t"(r) : "t"(x));
  return r;
#else
  return sqrtf(x);
#endif
}

/* Natural log of a positive normal float (here x >= 1e-6): Cephes' logf (the algorithm Eigen's, hence
 * TensorFlow's, float log descends from), within 2 ulp of the exact log. Our own rather than libm's so that the
 * host build and the firmware compute the same bits (glibc and newlib differ) and the firmware needs no libm.
 * x = m 2^e with m in [sqrt(1/2), sqrt(2)); log x = log1p(m - 1) + e ln 2, ln 2 split in two parts
 * (0.693359375 exact in few bits, -2.12194440e-4 the rest) so that e ln 2 adds without rounding error. */
static float fe_log(float x)
{
  uint32_t u;
  int32_t e;
  float m, z, y;
  memcpy(&u, &x, sizeof u);
  e = (int32_t)((u >> 23) & 0xffu) - 126;          /* x = m 2^e with m in [0.5, 1) */
  u = (u & 0x007fffffu) | 0x3f000000u;
  memcpy(&m, &u, sizeof m);
  if (m < 0.707106781186547524f) {
    e -= 1;
    m = m + m - 1.0f;
  } else {
    m = m - 1.0f;
  }
  z = m * m;
  y = ((((((((7.0376836292e-2f * m - 1.1514610310e-1f) * m + 1.1676998740e-1f) * m - 1.2420140846e-1f) * m +
            1.4249322787e-1f) * m - 1.6668057665e-1f) * m + 2.0000714765e-1f) * m - 2.4999993993e-1f) * m +
       3.3333331174e-1f) * m * z;
  y += -2.12194440e-4f * (float)e;
  y += -0.5f * z;
  z = m + y;
  return z + 0.693359375f * (float)e;
}

/* In-place complex FFT of HALF_FFT = 256 points (re, im interleaved), radix 2, decimation in time, on input
 * already in bit-reversed order (compute_frame writes it so). The 8 radix-2 stages run as 4 passes of two
 * stages each (radix 2^2: the same butterflies, each value loaded and stored once per pass):
 *   stages 2 and 4 have the twiddles 1 and -i: no multiplications;
 *   stages L and 2L (L = 8, 32, 128, h = L / 2) over the values b + j, + h, + 2h, + 3h (b a multiple of 4h,
 *   j < h): stage L pairs (0, h) and (2h, 3h), both with W_L^j; stage 2L pairs (0, 2h) with W_2L^j and
 *   (h, 3h) with W_2L^(j+h) = -i W_2L^j (the rotation is exact: a swap and a sign).
 * W_L^j = W512^(j 512 / L), read from tx_fe_cos / tx_fe_sin (W512^k = cos - i sin of 2 pi k / 512) at an index
 * below 256 since j < L / 2. */
static void fft_complex(float *a)
{
  uint32_t i, j, b, len;
  for (i = 0; i < 2 * HALF_FFT; i += 8) {
    float *x = a + i;
    const float b0r = x[0] + x[2], b0i = x[1] + x[3], b1r = x[0] - x[2], b1i = x[1] - x[3];
    const float b2r = x[4] + x[6], b2i = x[5] + x[7], b3r = x[4] - x[6], b3i = x[5] - x[7];
    x[0] = b0r + b2r;   /* j = 0: twiddle 1 */
    x[1] = b0i + b2i;
    x[4] = b0r - b2r;
    x[5] = b0i - b2i;
    x[2] = b1r + b3i;   /* j = 1: twiddle -i, (-i) b3 = (b3i, -b3r) */
    x[3] = b1i - b3r;
    x[6] = b1r - b3i;
    x[7] = b1i + b3r;
  }
  for (len = 8; len <= HALF_FFT / 2; len <<= 2) {
    const uint32_t h = len >> 1, s1 = TX_FE_FFT_LENGTH / len, s2 = TX_FE_FFT_LENGTH / (2 * len);
    for (j = 0; j < h; j++) {
      const float w1r = tx_fe_cos[j * s1], w1i = -tx_fe_sin[j * s1];
      const float w2r = tx_fe_cos[j * s2], w2i = -tx_fe_sin[j * s2];
      for (b = j; b < HALF_FFT; b += 4 * h) {
        float *p0 = a + 2 * b, *p1 = p0 + 2 * h, *p2 = p0 + 4 * h, *p3 = p0 + 6 * h;
        const float x0r = p0[0], x0i = p0[1], x1r = p1[0], x1i = p1[1];
        const float x2r = p2[0], x2i = p2[1], x3r = p3[0], x3i = p3[1];
        /* stage len: (0, h) and (2h, 3h) with w1 */
        const float t1r = w1r * x1r - w1i * x1i, t1i = w1r * x1i + w1i * x1r;
        const float t3r = w1r * x3r - w1i * x3i, t3i = w1r * x3i + w1i * x3r;
        const float y0r = x0r + t1r, y0i = x0i + t1i, y1r = x0r - t1r, y1i = x0i - t1i;
        const float y2r = x2r + t3r, y2i = x2i + t3i, y3r = x2r - t3r, y3i = x2i - t3i;
        /* stage 2 len: (0, 2h) with w2, (h, 3h) with -i w2 */
        const float u2r = w2r * y2r - w2i * y2i, u2i = w2r * y2i + w2i * y2r;
        const float v3r = w2r * y3r - w2i * y3i, v3i = w2r * y3i + w2i * y3r;
        p0[0] = y0r + u2r;
        p0[1] = y0i + u2i;
        p2[0] = y0r - u2r;
        p2[1] = y0i - u2i;
        p1[0] = y1r + v3i;   /* (-i) v3 = (v3i, -v3r) */
        p1[1] = y1i - v3r;
        p3[0] = y1r - v3i;
        p3[1] = y1i + v3r;
      }
    }
  }
}

/* One frame: the 480 raw samples in s->pcm -> 10 MFCCs in out. The 512 real inputs (windowed frame, then
 * 32 zeros) read as 256 complex values z[m] = x[2m] + i x[2m+1] are exactly the interleaved array; after the
 * 256-point FFT Z, bin k of the real FFT is X[k] = E + W512^k O with E = (Z[k] + conj Z[256-k]) / 2,
 * O = (Z[k] - conj Z[256-k]) / 2i. Only bins FIRST..LAST (those with a mel weight) are formed. The windowed
 * samples are written straight to their bit-reversed places (tx_fe_bitrev), which the FFT expects. */
static void compute_frame(tx_frontend_state *s, float level, float out[TX_FE_NUM_MFCC])
{
  float mag[NUM_BINS], logmel[TX_FE_NUM_MEL];
  float *a = s->fft;
  uint32_t i, k, c, w;

  /* as TensorFlow: (x / level) first, then times the window (same float operations, same order); complex
   * value m = samples 2m and 2m + 1; m >= 240 are the zero padding */
  for (i = 0; i < TX_FE_FRAME_LENGTH / 2; i++) {
    float *z = a + 2 * tx_fe_bitrev[i];
    z[0] = ((float)s->pcm[2 * i] / level) * tx_fe_hann[2 * i];
    z[1] = ((float)s->pcm[2 * i + 1] / level) * tx_fe_hann[2 * i + 1];
  }
  for (; i < HALF_FFT; i++) {
    float *z = a + 2 * tx_fe_bitrev[i];
    z[0] = z[1] = 0.0f;
  }
  fft_complex(a);
  for (k = TX_FE_FIRST_BIN; k <= TX_FE_LAST_BIN; k++) {
    const uint32_t m = (HALF_FFT - k) & (HALF_FFT - 1);   /* 256 - k, and 0 for k = 0 */
    const float ar = a[2 * k], ai = a[2 * k + 1], br = a[2 * m], bi = -a[2 * m + 1];
    const float er = 0.5f * (ar + br), ei = 0.5f * (ai + bi);
    const float or_ = 0.5f * (ai - bi), oi = -0.5f * (ar - br);
    const float cr = tx_fe_cos[k], ci = -tx_fe_sin[k];
    const float xr = er + (cr * or_ - ci * oi);
    const float xi = ei + (cr * oi + ci * or_);
    mag[k - TX_FE_FIRST_BIN] = fe_sqrt(xr * xr + xi * xi);
  }
  /* mel bin j: the weights tx_fe_mel_weight[w ..] of the bins tx_fe_mel_start[j] .. (packed, in order) */
  for (c = 0, w = 0; c < TX_FE_NUM_MEL; c++) {
    const float *m = mag + (tx_fe_mel_start[c] - TX_FE_FIRST_BIN);
    float acc = 0.0f;
    for (k = 0; k < tx_fe_mel_count[c]; k++) acc += tx_fe_mel_weight[w + k] * m[k];
    w += tx_fe_mel_count[c];
    logmel[c] = fe_log(acc + 1e-6f);
  }
  for (c = 0; c < TX_FE_NUM_MFCC; c++) {
    float acc = 0.0f;
    for (k = 0; k < TX_FE_NUM_MEL; k++) acc += tx_fe_dct[c][k] * logmel[k];
    out[c] = acc;
  }
}

static void reset(tx_frontend_state *s, int32_t mode)
{
  uint32_t f;
  memset(s->pcm, 0, sizeof s->pcm);
  s->fill = 0;
  s->head = 0;
  s->frames = 0;
  s->mode = mode;
  /* the features of digital silence (any level divides zeros to zeros) fill the ring */
  compute_frame(s, 1.0f, s->ring[0]);
  for (f = 1; f < TX_FE_NUM_FRAMES; f++) memcpy(s->ring[f], s->ring[0], sizeof s->ring[0]);
}

int tx_frontend_init(tx_frontend_state *s, float level)
{
  if (level == 0.0f || !isfinite(level)) return -1;
  reset(s, TX_FE_LEVEL_FIXED);
  s->level = level;
  s->peak = s->decay = s->floor = 0.0f;
  return 0;
}

int tx_frontend_init_peak(tx_frontend_state *s, float decay, float least)
{
  if (!(decay > 0.0f && decay <= 1.0f) || !(least > 0.0f) || !isfinite(least)) return -1;
  reset(s, TX_FE_LEVEL_PEAK);
  s->level = least;
  s->peak = 0.0f;
  s->decay = decay;
  s->floor = least;
  return 0;
}

uint32_t tx_frontend_push(tx_frontend_state *s, const int16_t *pcm, size_t n)
{
  uint32_t done = 0;
  while (n > 0) {
    size_t take = TX_FE_FRAME_LENGTH - s->fill, i;
    if (take > n) take = n;
    if (s->mode == TX_FE_LEVEL_PEAK) {
      for (i = 0; i < take; i++)
        if ((float)pcm[i] > s->peak) s->peak = (float)pcm[i];
    }
    for (i = 0; i < take; i++) s->pcm[s->fill + i] = pcm[i];
    s->fill += (uint32_t)take;
    pcm += take;
    n -= take;
    if (s->fill == TX_FE_FRAME_LENGTH) {
      if (s->mode == TX_FE_LEVEL_PEAK) s->level = s->peak > s->floor ? s->peak : s->floor;
      compute_frame(s, s->level, s->ring[s->head]);
      s->head = s->head + 1 == TX_FE_NUM_FRAMES ? 0 : s->head + 1;
      s->frames++;
      done++;
      for (i = 0; i < OVERLAP; i++) s->pcm[i] = s->pcm[TX_FE_FRAME_STEP + i];   /* no overlap: 160 < 320 */
      s->fill = OVERLAP;
      if (s->mode == TX_FE_LEVEL_PEAK) s->peak *= s->decay;
    }
  }
  return done;
}

void tx_frontend_frames(const tx_frontend_state *s, float out[TX_FE_NUM_FRAMES][TX_FE_NUM_MFCC])
{
  uint32_t f, r = s->head;
  for (f = 0; f < TX_FE_NUM_FRAMES; f++) {
    memcpy(out[f], s->ring[r], sizeof out[f]);
    r = r + 1 == TX_FE_NUM_FRAMES ? 0 : r + 1;
  }
}

void tx_frontend_clip(const int16_t *pcm, size_t n, float out[TX_FE_NUM_FRAMES][TX_FE_NUM_MFCC])
{
  static tx_frontend_state state;
  static const int16_t zeros[TX_FE_FRAME_STEP];
  int32_t peak = n ? pcm[0] : 0;
  size_t i, used = n < TX_FE_CLIP_SAMPLES ? n : TX_FE_CLIP_SAMPLES;
  for (i = 1; i < n; i++)
    if (pcm[i] > peak) peak = pcm[i];
  /* MLPerf's signed maximum over the whole clip (before it is cut to one second); 0 leaves it unscaled */
  (void)tx_frontend_init(&state, peak != 0 ? (float)peak : 1.0f);
  tx_frontend_push(&state, pcm, used);
  while (used < TX_FE_CLIP_SAMPLES) {
    const size_t z = TX_FE_CLIP_SAMPLES - used < TX_FE_FRAME_STEP ? TX_FE_CLIP_SAMPLES - used : TX_FE_FRAME_STEP;
    tx_frontend_push(&state, zeros, z);
    used += z;
  }
  tx_frontend_frames(&state, out);
}

void tx_frontend_quantize(const float *x, size_t n, float scale, int32_t zero_point, int8_t *out)
{
  size_t i;
  for (i = 0; i < n; i++) {
    /* numpy's float32 steps of quantize_array: v = x / scale; r = sign(v) * floor(|v| + 0.5); q = r + zp,
     * saturated. |v| + 0.5 is capped at 256 before the floor: any |r| >= 256 saturates q the same way (the
     * zero point lies in [-128, 127]), and the cap keeps the integer conversion (floor of a non-negative
     * float: truncation) in range without libm's floorf. x must be finite (features are). */
    const float v = x[i] / scale;
    float a = (v < 0.0f ? -v : v) + 0.5f, r, q;
    if (a > 256.0f) a = 256.0f;
    r = (float)(int32_t)a;
    if (v < 0.0f) r = -r;
    q = r + (float)zero_point;
    out[i] = (int8_t)(q < -128.0f ? -128 : (q > 127.0f ? 127 : (int32_t)q));
  }
}
