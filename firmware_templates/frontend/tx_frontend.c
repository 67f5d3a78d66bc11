/* MLPerf Tiny's KWS front end in float32 C: see tx_frontend.h for the pipeline, the levels and why float.
 * The constant tables (Hann window, twiddles, mel weights, DCT) are rendered from TensorFlow's own tables by
 * tinyexit.frontend into tx_frontend_tables.{h,c}. */
#include "tx_frontend.h"

#include <math.h>
#include <string.h>

#include "tx_frontend_tables.h"

#define HALF_FFT (TX_FE_FFT_LENGTH / 2)                   /* 256: the complex FFT's length */
#define OVERLAP (TX_FE_FRAME_LENGTH - TX_FE_FRAME_STEP)   /* 160 samples shared by consecutive frames */

/* Step markers for tinyexit.frontend.step_profile: with TX_FE_PROFILE the bench defines tx_fe_mark0..6 (empty,
 * not inlined) and the emulator counts the instructions between consecutive marks; without it they vanish. */
#ifdef TX_FE_PROFILE
void tx_fe_mark0(void);
void tx_fe_mark1(void);
void tx_fe_mark2(void);
void tx_fe_mark3(void);
void tx_fe_mark4(void);
void tx_fe_mark5(void);
void tx_fe_mark6(void);
#define FE_MARK(k) tx_fe_mark##k()
#else
#define FE_MARK(k) ((void)0)
#endif

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

/* The 4-point DFT y_m = sum_r (-i)^(r m) x_r of (x0..x3) into y0..y3 (each a pair of float names re, im). */
#define FE_DFT4(x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i, y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i)                     \
  do {                                                                                                           \
    const float t0r_ = x0r + x2r, t0i_ = x0i + x2i, t1r_ = x0r - x2r, t1i_ = x0i - x2i;                          \
    const float t2r_ = x1r + x3r, t2i_ = x1i + x3i, t3r_ = x1r - x3r, t3i_ = x1i - x3i;                          \
    y0r = t0r_ + t2r_;                                                                                           \
    y0i = t0i_ + t2i_;                                                                                           \
    y2r = t0r_ - t2r_;                                                                                           \
    y2i = t0i_ - t2i_;                                                                                           \
    y1r = t1r_ + t3i_; /* t1 + (-i) t3, (-i) t3 = (t3i, -t3r) */                                                 \
    y1i = t1i_ - t3r_;                                                                                           \
    y3r = t1r_ - t3i_; /* t1 + i t3 */                                                                           \
    y3i = t1i_ + t3r_;                                                                                           \
  } while (0)

#define SQRT_HALF 0.707106781186547524f   /* cos(pi / 4) */

/* Radix-8 passes of the 256-point complex FFT, decimation in time, in place on a (re, im interleaved): on
 * entry a holds the 64 4-point DFTs of the first pass (compute_frame) in the order a 4 x 8 x 8 DIT wants, so
 * the output comes out in natural order. The pass of span L = 8q (q = 4, then 32) turns the eight length-q
 * DFTs of each group of L values into one length-L DFT: value j of sub-DFT r (r = 0..7) times W_L^(r j), then
 * the 8-point DFT across r, as two 4-point DFTs (even and odd r) joined by W8^m (1, (1 - i)/sqrt 2, -i,
 * -(1 + i)/sqrt 2). The twiddles W_L^(r j), r = 1..7, of every (pass, j) are read in order from tx_fe_twiddle
 * (14 floats each). */
/* The 8-point DFT across r of x_r = (x<r>r, x<r>i), r = 0..7, stored to p[r d], p[r d + 1]: two 4-point DFTs
 * (even and odd r) joined by W8^m = 1, (1 - i)/sqrt 2, -i, -(1 + i)/sqrt 2. */
#define FE_DFT8_STORE(p, d)                                                                                     \
  do {                                                                                                          \
    float e0r, e0i, e1r, e1i, e2r, e2i, e3r, e3i, o0r, o0i, o1r, o1i, o2r, o2i, o3r, o3i, ur, ui;               \
    FE_DFT4(x0r, x0i, x2r, x2i, x4r, x4i, x6r, x6i, e0r, e0i, e1r, e1i, e2r, e2i, e3r, e3i);                    \
    FE_DFT4(x1r, x1i, x3r, x3i, x5r, x5i, x7r, x7i, o0r, o0i, o1r, o1i, o2r, o2i, o3r, o3i);                    \
    p[0] = e0r + o0r;                                                                                           \
    p[1] = e0i + o0i;                                                                                           \
    p[4 * d] = e0r - o0r;                                                                                       \
    p[4 * d + 1] = e0i - o0i;                                                                                   \
    ur = (o1r + o1i) * SQRT_HALF; /* W8 o1 */                                                                   \
    ui = (o1i - o1r) * SQRT_HALF;                                                                               \
    p[d] = e1r + ur;                                                                                            \
    p[d + 1] = e1i + ui;                                                                                        \
    p[5 * d] = e1r - ur;                                                                                        \
    p[5 * d + 1] = e1i - ui;                                                                                    \
    p[2 * d] = e2r + o2i; /* W8^2 o2 = -i o2 = (o2i, -o2r) */                                                   \
    p[2 * d + 1] = e2i - o2r;                                                                                   \
    p[6 * d] = e2r - o2i;                                                                                       \
    p[6 * d + 1] = e2i + o2r;                                                                                   \
    ur = (o3i - o3r) * SQRT_HALF; /* W8^3 o3 */                                                                 \
    ui = -(o3r + o3i) * SQRT_HALF;                                                                              \
    p[3 * d] = e3r + ur;                                                                                        \
    p[3 * d + 1] = e3i + ui;                                                                                    \
    p[7 * d] = e3r - ur;                                                                                        \
    p[7 * d + 1] = e3i - ui;                                                                                    \
  } while (0)

/* Radix-8 passes of the 256-point complex FFT, decimation in time, in place on a (re, im interleaved): on
 * entry a holds the 64 4-point DFTs of the first pass (compute_frame) in the order a 4 x 8 x 8 DIT wants, so
 * the output comes out in natural order. The pass of span L = 8q (q = 4, then 32) turns the eight length-q
 * DFTs of each group of L values into one length-L DFT: value j of sub-DFT r (r = 0..7) times W_L^(r j), then
 * the 8-point DFT across r. j = 0 (twiddles 1) goes without multiplications; the twiddles W_L^(r j), r = 1..7,
 * of every (pass, j >= 1) are read in order from tx_fe_twiddle (14 floats each). */
static void fft_radix8(float *a)
{
  const float *w = tx_fe_twiddle;
  uint32_t q, j, b;
  for (q = 4; q < HALF_FFT; q <<= 3) {
    const uint32_t d = 2 * q;   /* floats between the sub-DFTs */
    for (b = 0; b < 2 * HALF_FFT; b += 8 * d) {
      float *p = a + b;
      const float x0r = p[0], x0i = p[1], x1r = p[d], x1i = p[d + 1], x2r = p[2 * d], x2i = p[2 * d + 1];
      const float x3r = p[3 * d], x3i = p[3 * d + 1], x4r = p[4 * d], x4i = p[4 * d + 1];
      const float x5r = p[5 * d], x5i = p[5 * d + 1], x6r = p[6 * d], x6i = p[6 * d + 1];
      const float x7r = p[7 * d], x7i = p[7 * d + 1];
      FE_DFT8_STORE(p, d);
    }
    for (j = 1; j < q; j++, w += 14) {
      for (b = 2 * j; b < 2 * HALF_FFT; b += 8 * d) {
        float *p = a + b;
        const float x0r = p[0], x0i = p[1];
        const float x1r = p[d] * w[0] - p[d + 1] * w[1], x1i = p[d] * w[1] + p[d + 1] * w[0];
        const float x2r = p[2 * d] * w[2] - p[2 * d + 1] * w[3], x2i = p[2 * d] * w[3] + p[2 * d + 1] * w[2];
        const float x3r = p[3 * d] * w[4] - p[3 * d + 1] * w[5], x3i = p[3 * d] * w[5] + p[3 * d + 1] * w[4];
        const float x4r = p[4 * d] * w[6] - p[4 * d + 1] * w[7], x4i = p[4 * d] * w[7] + p[4 * d + 1] * w[6];
        const float x5r = p[5 * d] * w[8] - p[5 * d + 1] * w[9], x5i = p[5 * d] * w[9] + p[5 * d + 1] * w[8];
        const float x6r = p[6 * d] * w[10] - p[6 * d + 1] * w[11], x6i = p[6 * d] * w[11] + p[6 * d + 1] * w[10];
        const float x7r = p[7 * d] * w[12] - p[7 * d + 1] * w[13], x7i = p[7 * d] * w[13] + p[7 * d + 1] * w[12];
        FE_DFT8_STORE(p, d);
      }
    }
  }
}

/* First FFT pass of block (r1, r): the 4-point DFT of z[m0 + 64 n], n = 0..3, m0 = 8 r1 + r, windowed from the
 * samples x = pcm + 2 m0 (z[m] = samples 2m and 2m + 1, times the window h = hann + 2 m0), into
 * y = a + 2 (32 r + 4 r1): where the 4 x 8 x 8 decimation in time wants it. Without z3 (samples >= 480: the zero
 * padding) when m0 >= 48. */
#define FE_FIRST_BLOCK(Z3R, Z3I)                                                                                \
  do {                                                                                                          \
    const float z0r = (float)x[0] * h[0], z0i = (float)x[1] * h[1];                                             \
    const float z1r = (float)x[128] * h[128], z1i = (float)x[129] * h[129];                                     \
    const float z2r = (float)x[256] * h[256], z2i = (float)x[257] * h[257];                                     \
    FE_DFT4(z0r, z0i, z1r, z1i, z2r, z2i, Z3R, Z3I, y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]);            \
  } while (0)

/* One frame: the 480 raw samples in s->pcm (then 32 zeros) -> 10 MFCCs in out.
 *
 * FFT: the 512 real inputs read as 256 complex values z[m] = x[2m] + i x[2m+1]. The first radix-4 pass reads
 * them straight from the samples, windowed (FE_FIRST_BLOCK); fft_radix8 does the two radix-8 passes. After the
 * 256-point FFT Z, bin k of the real FFT is X[k] = E + W512^k O with E = (Z[k] + conj Z[256-k]) / 2,
 * O = (Z[k] - conj Z[256-k]) / 2i; only bins FIRST..LAST (those with a mel weight) are formed, and without
 * the two halves: 2 X[k].
 *
 * Scale: TensorFlow divides the samples by the level first; here the samples stay in int16 units and the
 * level (and the 1/2 of E and O) is applied to the 40 mel energies: one multiplication each instead of 480
 * divisions. Linear, so only the rounding differs (by a few ulp, far below an int8 step of the features).
 *
 * Mel: each bin k has weight for at most two consecutive mel bins, s - 1 (falling edge) and s (rising edge),
 * with its segment s = s(k) non-decreasing in k (tinyexit.frontend.tables checks it): the bins of segment s
 * end at tx_fe_mel_end[s]; tx_fe_bin's row holds bin k's weights for s - 1 and s (0 where it has none:
 * adding 0 * m = +0 leaves a sum unchanged). Mel bin s - 1 is complete at the end of segment s. */
static void compute_frame(tx_frontend_state *s, float level, float out[TX_FE_NUM_MFCC])
{
  float logmel[TX_FE_NUM_MEL];
  float *a = s->fft;
  const float scale = 0.5f / level;
  uint32_t r1, r, k, c, seg;

  FE_MARK(0);
  {
    const int16_t *x = s->pcm;
    const float *h = tx_fe_hann;
    for (r1 = 0; r1 < 6; r1++) {
      for (r = 0; r < 8; r++, x += 2, h += 2) {
        float *y = a + 64 * r + 8 * r1;
        FE_FIRST_BLOCK((float)x[384] * h[384], (float)x[385] * h[385]);
      }
    }
    for (; r1 < 8; r1++) {
      for (r = 0; r < 8; r++, x += 2, h += 2) {
        float *y = a + 64 * r + 8 * r1;
        FE_FIRST_BLOCK(0.0f, 0.0f);
      }
    }
  }
  FE_MARK(1);
  fft_radix8(a);
  FE_MARK(2);
  {
    /* bin k: pa = Z[k], pb = Z[256 - k] (k >= 1), t = its row of tx_fe_bin: W512^k (re, im), down, up */
    const float *pa = a + 2 * TX_FE_FIRST_BIN, *pb = a + 2 * (HALF_FFT - TX_FE_FIRST_BIN), *t = tx_fe_bin[0];
    float lo = 0.0f;
    for (seg = 0; seg <= TX_FE_NUM_MEL; seg++) {
      const float *end = a + 2 * tx_fe_mel_end[seg];
      float hi = 0.0f;
      for (; pa < end; pa += 2, pb -= 2, t += 4) {
        /* 2E = A + conj B, 2O = (A - conj B) / i = (ai + bi, br - ar) */
        const float er = pa[0] + pb[0], ei = pa[1] - pb[1], or_ = pa[1] + pb[1], oi = pb[0] - pa[0];
        const float xr = er + (t[0] * or_ - t[1] * oi);
        const float xi = ei + (t[0] * oi + t[1] * or_);
        const float mag = fe_sqrt(xr * xr + xi * xi);
        lo += t[2] * mag;
        hi += t[3] * mag;
      }
      if (seg > 0) logmel[seg - 1] = lo * scale + 1e-6f;
      lo = hi;
    }
  }
  FE_MARK(3);
  FE_MARK(4);
  for (c = 0; c < TX_FE_NUM_MEL; c++) logmel[c] = fe_log(logmel[c]);
  FE_MARK(5);
  {
    /* DCT-II: row c of the matrix is symmetric in n <-> 39 - n for even c and antisymmetric for odd c, so
     * out[c] = sum over n < 20 of dct[n][c] (logmel[n] +- logmel[39 - n]); ten sums kept in registers */
    float o0 = 0.0f, o1 = 0.0f, o2 = 0.0f, o3 = 0.0f, o4 = 0.0f, o5 = 0.0f, o6 = 0.0f, o7 = 0.0f, o8 = 0.0f,
          o9 = 0.0f;
    for (k = 0; k < TX_FE_NUM_MEL / 2; k++) {
      const float *d = tx_fe_dct_half[k];
      const float sp = logmel[k] + logmel[TX_FE_NUM_MEL - 1 - k], sm = logmel[k] - logmel[TX_FE_NUM_MEL - 1 - k];
      o0 += d[0] * sp;
      o1 += d[1] * sm;
      o2 += d[2] * sp;
      o3 += d[3] * sm;
      o4 += d[4] * sp;
      o5 += d[5] * sm;
      o6 += d[6] * sp;
      o7 += d[7] * sm;
      o8 += d[8] * sp;
      o9 += d[9] * sm;
    }
    out[0] = o0;
    out[1] = o1;
    out[2] = o2;
    out[3] = o3;
    out[4] = o4;
    out[5] = o5;
    out[6] = o6;
    out[7] = o7;
    out[8] = o8;
    out[9] = o9;
  }
  FE_MARK(6);
}

static void reset(tx_frontend_state *s, int32_t mode)
{
  uint32_t f;
  memset(s->pcm, 0, sizeof s->pcm);
  s->fill = 0;
  s->head = 0;
  s->frames = 0;
  s->mode = mode;
  s->qscale = 0.0f;
  s->qzp = 0;
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
    memcpy(s->pcm + s->fill, pcm, take * sizeof *pcm);
    s->fill += (uint32_t)take;
    pcm += take;
    n -= take;
    if (s->fill == TX_FE_FRAME_LENGTH) {
      if (s->mode == TX_FE_LEVEL_PEAK) s->level = s->peak > s->floor ? s->peak : s->floor;
      compute_frame(s, s->level, s->ring[s->head]);
      if (s->qscale > 0.0f)
        tx_frontend_quantize(s->ring[s->head], TX_FE_NUM_MFCC, s->qscale, s->qzp, s->qring[s->head]);
      s->head = s->head + 1 == TX_FE_NUM_FRAMES ? 0 : s->head + 1;
      s->frames++;
      done++;
      memcpy(s->pcm, s->pcm + TX_FE_FRAME_STEP, OVERLAP * sizeof *s->pcm);   /* disjoint: 160 < 320 */
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

int tx_frontend_set_quant(tx_frontend_state *s, float scale, int32_t zero_point)
{
  if (!(scale > 0.0f) || !isfinite(scale) || zero_point < -128 || zero_point > 127) return -1;
  s->qscale = scale;
  s->qzp = zero_point;
  tx_frontend_quantize(&s->ring[0][0], TX_FE_NUM_FRAMES * TX_FE_NUM_MFCC, scale, zero_point, &s->qring[0][0]);
  return 0;
}

void tx_frontend_frames_int8(const tx_frontend_state *s, int8_t out[TX_FE_NUM_FRAMES * TX_FE_NUM_MFCC])
{
  /* the oldest frames qring[head ..] first, then qring[0 .. head) */
  const size_t older = (TX_FE_NUM_FRAMES - s->head) * TX_FE_NUM_MFCC;
  memcpy(out, s->qring[s->head], older);
  memcpy(out + older, s->qring[0], s->head * TX_FE_NUM_MFCC);
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
     * float: truncation) in range without libm's floorf; r + zp is exact in integers as in float. x must be
     * finite (features are). */
    const float v = x[i] / scale;
    const int neg = v < 0.0f;
    float a = (neg ? -v : v) + 0.5f;
    int32_t r;
    if (a > 256.0f) a = 256.0f;
    r = (int32_t)a;
    if (neg) r = -r;
    r += zero_point;   /* |r| <= 256, zero_point in [-128, 127]: the sum and saturation in integers */
    out[i] = (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
  }
}
