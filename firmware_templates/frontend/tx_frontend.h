/* MLPerf Tiny's keyword-spotting front end (tinyexit.data.features.front_end) in C: 16-kHz int16 PCM ->
 * 49 frames x 10 MFCCs, per clip or incrementally, plus the quantization to the model's int8 input.
 *
 *   frame f covers samples [320 f, 320 f + 480) of the clip (30 ms, step 20 ms); each frame:
 *   x / level (MLPerf divides the clip by its signed maximum) -> periodic Hann window (480) -> zero-padded
 *   real FFT of 512 -> magnitude of bins -> 40 mel bins, 20-4000 Hz -> log(mel + 1e-6) -> DCT-II scaled
 *   by sqrt(2/40) (tf.signal.mfccs_from_log_mel_spectrograms) -> the first 10 coefficients.
 * How (tx_frontend.c): the 512 real samples as a 256-point complex FFT, 8 x 8 x 4 decimation in time, the window
 * applied as pass 1 reads the samples, the last pass never stored (its butterflies j and 64 - j give both halves
 * of four bins of the real FFT), only bins 1..127 formed, each mel weight applied once (a bin feeds two
 * neighbouring mel bins), the log of the 40 mel energies, the DCT as a half-size table product.
 *
 * Why float32 and not fixed point: the reference is TensorFlow's float32 pipeline, and a float32 C pipeline
 * follows it operation for operation (the same window, mel and DCT constants, rendered from TensorFlow's own
 * tables), so the int8 model inputs come out identical on nearly every element. The Cortex-M4F has a
 * single-precision FPU (one-cycle multiply-accumulate, 14-cycle divide and square root), so float costs little
 * there. The log is our own (Cephes' logf) and the square root the FPU's VSQRT: the firmware needs no libm and
 * computes the same bits as the host build (C99 mode: GCC contracts no a * b + c into a fused multiply-add).
 * Fixed point would need its own log, block scaling in the FFT to keep both quiet and loud frames in range,
 * and a separate error analysis against TensorFlow; on a core without an FPU it would be worth it.
 *
 * Levels (the divisor of the samples). MLPerf divides each clip by its own signed maximum, which a stream
 * cannot know in advance. The incremental state therefore divides by a level:
 *   TX_FE_LEVEL_FIXED  a constant level (a fixed gain of 1/level); with level = the clip's signed maximum
 *                      and the clip pushed whole, the result equals tx_frontend_clip bit for bit;
 *   TX_FE_LEVEL_PEAK   a running peak: the largest sample seen (signed, like MLPerf's maximum), decayed by
 *                      `decay` after every frame, never below `floor` (so silence is not amplified to full
 *                      scale). A frame is divided by the level at the moment it completes.
 * Samples are kept raw (int16) until their frame completes, so a frame is scaled with one level.
 *
 * No dynamic allocation; the state is the caller's (5,564 bytes). Not thread safe: tx_frontend_clip uses
 * one static state (dropped by the linker's --gc-sections when tx_frontend_clip is not called). */
#ifndef TX_FRONTEND_H
#define TX_FRONTEND_H

#include <stddef.h>
#include <stdint.h>

#define TX_FE_SAMPLE_RATE 16000
#define TX_FE_CLIP_SAMPLES 16000   /* a clip is padded with zeros (or cut) to one second */
#define TX_FE_FRAME_LENGTH 480
#define TX_FE_FRAME_STEP 320       /* one hop: each 320 new samples complete one frame */
#define TX_FE_FFT_LENGTH 512
#define TX_FE_NUM_MEL 40
#define TX_FE_NUM_MFCC 10
#define TX_FE_NUM_FRAMES 49        /* 1 + (16000 - 480) / 320 */

enum { TX_FE_LEVEL_FIXED = 0, TX_FE_LEVEL_PEAK = 1 };

typedef struct {
  /* The samples of the frame being filled, raw: pcm[0 .. fill) are the latest `fill` samples. Invariant:
   * 0 <= fill < TX_FE_FRAME_LENGTH between calls; after a frame completes its last 160 samples (the
   * overlap with the next frame) move to the front and fill = 160. pcm[480 .. 512) stay 0: the FFT's zero
   * padding, read in place. */
  int16_t pcm[TX_FE_FFT_LENGTH];
  uint32_t fill;
  /* The ring of the last 49 frames: ring[head] is the oldest (the next to be overwritten). Before 49
   * frames were computed the older slots hold the features of digital silence. */
  float ring[TX_FE_NUM_FRAMES][TX_FE_NUM_MFCC];
  uint32_t head;
  uint32_t frames;                 /* frames computed since tx_frontend_init (wraps after 2^32) */
  int32_t mode;                    /* TX_FE_LEVEL_* */
  float level;                     /* FIXED: the divisor */
  float peak, decay, floor;        /* PEAK: running signed maximum, its decay per frame, the least level */
  float fft[TX_FE_FFT_LENGTH];     /* work space: 256 complex values (re, im interleaved) */
  /* With tx_frontend_set_quant (qscale > 0): qring[f] = ring[f] quantized, kept in step with the ring */
  int8_t qring[TX_FE_NUM_FRAMES][TX_FE_NUM_MFCC];
  float qscale;
  int32_t qzp;
} tx_frontend_state;

/* A state with a fixed level (samples are divided by `level`, i.e. a gain of 1/level). Returns 0, or -1
 * (state untouched) when level is 0 or not finite. */
int tx_frontend_init(tx_frontend_state *s, float level);

/* A state with a running-peak level (see above): decay in (0, 1], least (the floor) > 0 in int16 units.
 * Returns 0, or -1 for parameters out of range. */
int tx_frontend_init_peak(tx_frontend_state *s, float decay, float least);

/* Consume n samples; computes the frames that became complete (one per 320 samples once the first 480
 * arrived) into the ring. Returns the number of frames computed. */
uint32_t tx_frontend_push(tx_frontend_state *s, const int16_t *pcm, size_t n);

/* The ring in time order (out[0] the oldest, out[48] the newest frame). */
void tx_frontend_frames(const tx_frontend_state *s, float out[TX_FE_NUM_FRAMES][TX_FE_NUM_MFCC]);

/* Also keep the model's int8 input: from now on each frame is quantized (tx_frontend_quantize with scale,
 * zero_point) once, when it is computed, instead of the whole ring every hop; the frames already in the ring
 * are quantized now. Returns 0, or -1 (state untouched) for scale <= 0 or not finite, or zero_point outside
 * [-128, 127]. tx_frontend_init / _init_peak turn it off. */
int tx_frontend_set_quant(tx_frontend_state *s, float scale, int32_t zero_point);

/* After tx_frontend_set_quant: the int8 ring in time order, the same bytes as tx_frontend_frames followed by
 * tx_frontend_quantize of all 490 values. */
void tx_frontend_frames_int8(const tx_frontend_state *s, int8_t out[TX_FE_NUM_FRAMES * TX_FE_NUM_MFCC]);

/* One clip as MLPerf computes it: divided by its signed maximum over all n samples (left as is when that
 * maximum is 0), zero-padded or cut to 16000 samples, 49 frames. */
void tx_frontend_clip(const int16_t *pcm, size_t n, float out[TX_FE_NUM_FRAMES][TX_FE_NUM_MFCC]);

/* float -> int8 as tinyexit.quantize.qparams.quantize_array (TFLite's QUANTIZE): v = x / scale in float,
 * rounded half away from zero, plus zero_point, saturated to [-128, 127]. */
void tx_frontend_quantize(const float *x, size_t n, float scale, int32_t zero_point, int8_t *out);

#endif
