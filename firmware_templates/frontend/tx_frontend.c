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

/* First FFT pass of block (r1, r) (fft_magnitudes): x = pcm + 2 m0, h = hann + 2 m0, y its 16 output floats;
 * S(k) is sample k from x as a float (FE_RAW or FE_DIV: divided by the level); z7 (samples 448, 449) is
 * given, as 0 for the zero padding. */
#define FE_RAW(k) ((float)x[k])
#define FE_DIV(k) ((float)x[k] / level)
#define FE_FIRST_BLOCK8(S, Z7R, Z7I)                                                                            \
  do {                                                                                                          \
    const float x0r = S(0) * h[0], x0i = S(1) * h[1], x1r = S(64) * h[64], x1i = S(65) * h[65];                 \
    const float x2r = S(128) * h[128], x2i = S(129) * h[129], x3r = S(192) * h[192], x3i = S(193) * h[193];     \
    const float x4r = S(256) * h[256], x4i = S(257) * h[257], x5r = S(320) * h[320], x5i = S(321) * h[321];     \
    const float x6r = S(384) * h[384], x6i = S(385) * h[385], x7r = Z7R, x7i = Z7I;                             \
    FE_DFT8_STORE(y, 2);                                                                                        \
  } while (0)

/* Pass 1 over the frame with the sample expression S: block (r1, r) has m0 = 4 r1 + r, the samples in order;
 * z[m0 + 224] is zero padding (samples >= 480) when m0 >= 16, i.e. r1 >= 4. */
#define FE_FIRST_PASS(S)                                                                                        \
  do {                                                                                                          \
    const int16_t *x = pcm;                                                                                     \
    const float *h = tx_fe_hann;                                                                                \
    for (r1 = 0; r1 < 4; r1++) {                                                                                \
      for (r = 0; r < 4; r++, x += 2, h += 2) {                                                                 \
        float *y = a + 128 * r + 16 * r1;                                                                       \
        FE_FIRST_BLOCK8(S, S(448) * h[448], S(449) * h[449]);                                                   \
      }                                                                                                         \
    }                                                                                                           \
    for (; r1 < 8; r1++) {                                                                                      \
      for (r = 0; r < 4; r++, x += 2, h += 2) {                                                                 \
        float *y = a + 128 * r + 16 * r1;                                                                       \
        FE_FIRST_BLOCK8(S, 0.0f, 0.0f);                                                                         \
      }                                                                                                         \
    }                                                                                                           \
  } while (0)

/* Magnitude of bin k of the real FFT, times 2, from A = Z[k] and B = Z[256 - k] of the 256-point complex FFT
 * and w = W512^k = (cos, -sin)(2 pi k / 512): 2X[k] = 2E + W512^k 2O with 2E = A + conj B and
 * 2O = (A - conj B) / i = (ai + bi, br - ar). */
static inline float bin_magnitude(float ar, float ai, float br, float bi, const float *w)
{
  const float er = ar + br, ei = ai - bi, or_ = ai + bi, oi = br - ar;
  const float xr = er + (w[0] * or_ - w[1] * oi);
  const float xi = ei + (w[0] * oi + w[1] * or_);
  return fe_sqrt(xr * xr + xi * xi);
}

/* The last FFT pass (radix 4, span 256) of the butterfly at j: the inputs p[0], p[128], p[256], p[384] (floats;
 * values j, j + 64, j + 128, j + 192) times 1, (w1r, w1i), (w2r, w2i), (w3r, w3i), their 4-point DFT into the
 * outputs Z[j + 64 m] = (y<m>r, y<m>i), m = 0..3, kept in registers (not stored). */
#define FE_LAST_BUTTERFLY(p, w1r, w1i, w2r, w2i, w3r, w3i, y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i)                 \
  do {                                                                                                          \
    const float x0r_ = p[0], x0i_ = p[1];                                                                       \
    const float x1r_ = p[128] * (w1r) - p[129] * (w1i), x1i_ = p[128] * (w1i) + p[129] * (w1r);                 \
    const float x2r_ = p[256] * (w2r) - p[257] * (w2i), x2i_ = p[256] * (w2i) + p[257] * (w2r);                 \
    const float x3r_ = p[384] * (w3r) - p[385] * (w3i), x3i_ = p[384] * (w3i) + p[385] * (w3r);                 \
    FE_DFT4(x0r_, x0i_, x1r_, x1i_, x2r_, x2i_, x3r_, x3i_, y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i);             \
  } while (0)

/* The 256-point complex FFT of the windowed frame, decimation in time, 8 x 8 x 4, and the magnitudes of the
 * real FFT's bins 1..127 into mag[1..127] (times 2; mag[0] is not written):
 *   pass 1 (radix 8, no twiddles) reads the samples in order, windowed (FE_FIRST_BLOCK8): block (r1, r) is the
 *     8-point DFT of z[m0 + 32 n], n = 0..7, m0 = 4 r1 + r, z[m] = samples 2m and 2m + 1 times the window; it
 *     goes to values 8 (8 r + r1) .. + 7, where the 8 x 8 x 4 decimation in time wants it. z[m0 + 224] is
 *     zero padding (samples >= 480) when m0 >= 16.
 *   pass 2 (radix 8, span 64): value j of sub-DFT r times W64^(r j) (tx_fe_twiddle8, j >= 1), the 8-point DFT
 *     across r;
 *   pass 3 (radix 4, span 256) is never stored: butterflies j and 64 - j (j = 1..31) give Z[j + 64 m] and
 *     Z[64 - j + 64 m], i.e. both Z[k] and Z[256 - k] of bins j, 64 - j, 64 + j and 128 - j (j = 0 and 32 give
 *     bins 64, 32 and 96); their twiddles W256^(r j) come from tx_fe_twiddle4, those of 64 - j from the same:
 *     W256^(r (64 - j)) = (-i)^r conj W256^(r j) (exact: swaps and signs). */
static void fft_magnitudes(const int16_t *pcm, float level, float *a, float mag[HALF_FFT / 2])
{
  uint32_t r1, r, j, b;
  if (level == 1.0f)
    FE_FIRST_PASS(FE_RAW);
  else
    FE_FIRST_PASS(FE_DIV);
  FE_MARK(1);
  for (b = 0; b < 2 * HALF_FFT; b += 128) {   /* pass 2, j = 0: twiddles 1 */
    float *p = a + b;
    const float x0r = p[0], x0i = p[1], x1r = p[16], x1i = p[17], x2r = p[32], x2i = p[33];
    const float x3r = p[48], x3i = p[49], x4r = p[64], x4i = p[65], x5r = p[80], x5i = p[81];
    const float x6r = p[96], x6i = p[97], x7r = p[112], x7i = p[113];
    FE_DFT8_STORE(p, 16);
  }
  for (j = 1; j < 8; j++) {
    const float *w = tx_fe_twiddle8[j - 1];
    for (b = 2 * j; b < 2 * HALF_FFT; b += 128) {
      float *p = a + b;
      const float x0r = p[0], x0i = p[1];
      const float x1r = p[16] * w[0] - p[17] * w[1], x1i = p[16] * w[1] + p[17] * w[0];
      const float x2r = p[32] * w[2] - p[33] * w[3], x2i = p[32] * w[3] + p[33] * w[2];
      const float x3r = p[48] * w[4] - p[49] * w[5], x3i = p[48] * w[5] + p[49] * w[4];
      const float x4r = p[64] * w[6] - p[65] * w[7], x4i = p[64] * w[7] + p[65] * w[6];
      const float x5r = p[80] * w[8] - p[81] * w[9], x5i = p[80] * w[9] + p[81] * w[8];
      const float x6r = p[96] * w[10] - p[97] * w[11], x6i = p[96] * w[11] + p[97] * w[10];
      const float x7r = p[112] * w[12] - p[113] * w[13], x7i = p[112] * w[13] + p[113] * w[12];
      FE_DFT8_STORE(p, 16);
    }
  }
  FE_MARK(2);
  {
    float y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i;
    const float *w = tx_fe_twiddle4[0];
    FE_LAST_BUTTERFLY(a, w[0], w[1], w[2], w[3], w[4], w[5], y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i);
    mag[64] = bin_magnitude(y1r, y1i, y3r, y3i, tx_fe_split[64]);         /* Z[64], Z[192] */
    w = tx_fe_twiddle4[32];
    FE_LAST_BUTTERFLY((a + 64), w[0], w[1], w[2], w[3], w[4], w[5], y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i);
    mag[32] = bin_magnitude(y0r, y0i, y3r, y3i, tx_fe_split[32]);         /* Z[32], Z[224] */
    mag[96] = bin_magnitude(y1r, y1i, y2r, y2i, tx_fe_split[96]);         /* Z[96], Z[160] */
  }
  for (j = 1; j < 32; j++) {
    const float *w = tx_fe_twiddle4[j];
    const float *p = a + 2 * j, *pp = a + 2 * (64 - j);
    float y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i, v0r, v0i, v1r, v1i, v2r, v2i, v3r, v3i;
    FE_LAST_BUTTERFLY(p, w[0], w[1], w[2], w[3], w[4], w[5], y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i);
    FE_LAST_BUTTERFLY(pp, -w[1], -w[0], -w[2], w[3], w[5], w[4], v0r, v0i, v1r, v1i, v2r, v2i, v3r, v3i);
    /* y_m = Z[j + 64 m], v_m = Z[64 - j + 64 m] */
    mag[j] = bin_magnitude(y0r, y0i, v3r, v3i, tx_fe_split[j]);
    mag[64 - j] = bin_magnitude(v0r, v0i, y3r, y3i, tx_fe_split[64 - j]);
    mag[64 + j] = bin_magnitude(y1r, y1i, v2r, v2i, tx_fe_split[64 + j]);
    mag[128 - j] = bin_magnitude(v1r, v1i, y2r, y2i, tx_fe_split[128 - j]);
  }
}

/* One frame: the 480 raw samples in s->pcm (then 32 zeros) -> 10 MFCCs in out.
 *
 * FFT (fft_magnitudes): the 512 real inputs read as 256 complex values z[m] = x[2m] + i x[2m+1]; after the
 * 256-point FFT Z, bin k of the real FFT is X[k] = E + W512^k O with E = (Z[k] + conj Z[256-k]) / 2,
 * O = (Z[k] - conj Z[256-k]) / 2i, formed without the two halves: 2 X[k].
 *
 * Level: TensorFlow divides the samples by the level, then multiplies by the window; so does pass 1 (the same
 * float operations: where a mel bin holds only float32 rounding noise, e.g. far from a pure tone, its log
 * follows that rounding, so the C must round as TensorFlow does). When the level is a power of two (+-2^e,
 * e.g. the stream's default 8192) the division is exact and commutes with every rounding after it (scaling by
 * 2^e is exact in float and the FFT, the square root and the sums are scale-invariant, barring underflow,
 * i.e. levels beyond 2^60): the samples then stay in int16 units and 1/|level| is applied to the 40 mel
 * energies instead of 480 divisions (14 cycles each), with the same bits. The 1/2 of E and O goes there too.
 *
 * Mel: each bin k has weight for at most two consecutive mel bins, s - 1 (falling edge) and s (rising edge),
 * with its segment s = s(k) non-decreasing in k (tinyexit.frontend.tables checks it): the bins of segment s
 * end at tx_fe_mel_end[s]; tx_fe_mel's row holds bin k's weights for s - 1 and s (0 where it has none:
 * adding 0 * m = +0 leaves a sum unchanged). Mel bin s - 1 is complete at the end of segment s. */
static void compute_frame(tx_frontend_state *s, float level, float out[TX_FE_NUM_MFCC])
{
  float logmel[TX_FE_NUM_MEL], mag[HALF_FFT / 2];
  uint32_t k, c, seg, u;
  float divisor = level, scale = 0.5f;

  memcpy(&u, &level, sizeof u);
#ifdef TX_FE_ALWAYS_DIVIDE
  u = 1u; /* tests only: never the shortcut, to show it changes no bit */
#endif
  if ((u & 0x007fffffu) == 0 && ((u >> 23) & 0xffu) != 0 && ((u >> 23) & 0xffu) != 0xffu) {
    /* level = +-2^e: dividing by it is exact, so it moves to the mel energies (see above) */
    divisor = 1.0f;
    scale = 0.5f / (level < 0.0f ? -level : level);
  }
  FE_MARK(0);
  fft_magnitudes(s->pcm, divisor, s->fft, mag);
  FE_MARK(3);
  {
    const float *m = mag + TX_FE_FIRST_BIN, *t = tx_fe_mel[0];
    float lo = 0.0f;
    for (seg = 0; seg <= TX_FE_NUM_MEL; seg++) {
      const float *end = mag + tx_fe_mel_end[seg];
      float hi = 0.0f;
      for (; m < end; m++, t += 2) {
        lo += t[0] * *m;
        hi += t[1] * *m;
      }
      if (seg > 0) logmel[seg - 1] = lo * scale + 1e-6f;
      lo = hi;
    }
  }
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
