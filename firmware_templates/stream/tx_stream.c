/* tinyexit streaming keyword-spotting app (issue #15): 16-kHz int16 PCM arrives over the UART, the C front end
   (firmware_templates/frontend) turns it into MFCC frames in a ring of 49, and every hop the early-exit model
   classifies the last second of audio with the run's exit policy; a moving sum of the int8 posteriors over
   TX_STREAM_SMOOTH hops and a threshold with a refractory period decide detections.

   It reuses the bench app's pipeline (tx_app.c's app_init() and infer(): the runtime's walk over the segments,
   exit heads and policy of the generated tx_pipeline_config) by including tx_app.c with its main renamed; the configuration of the stream (hop,
   level, smoothing, threshold, refractory, classes, MACs per exit) is the generated tx_stream_config.h.

   Protocol ('\n'-terminated lines; the host mirror is tinyexit.stream_app):
     TX STREAM READY hop=<samples> first=16000 level=<L> smooth=<N> threshold_q=<T> refractory=<R>
     host -> 4-byte little-endian number of hops H
     TX BEGIN hops=<H>
     per hop i: TX NEED i=<i> n=<samples>   (the host sends n int16 little-endian samples: 16000 for hop 0,
                                             <hop> after; the firmware asks before it reads)
                TX H i=<i> fh=<FNV-1a of the 490 int8 features, 8 hex> exit=<exit index> class=<argmax or
                             temporal decision> det=<detected class or -1> macs=<MACs of the exit taken>
                             ticks=<ticks of the inference> gate=<-1 off, 0 skipped, 1 open>
                             floor=<the gate's Q8 noise floor, 0 with the gate off>
     TX END n=<H> dets=<detections> macs=<sum of macs> stack=<bytes used>

   Detection (integer, as tinyexit.streaming.detect on int8): sum[c] = the int8 posteriors of class c added over
   the last min(i + 1, N) hops; k = the first class with the largest sum; detect k when it is a keyword (not a
   "_" class), sum[k] >= threshold_q * count, and at least R hops passed since the last detection.

   The pre-model gate (TX_STREAM_GATE, tinyexit.stream_gate holds its rule and its Python mirror): on the hop's
   int8 features, before the model; a skipped hop runs no inference (exit=-1, class = the silence class, macs=0,
   ticks=0, the temporal policy's state untouched) and adds TX_STREAM_GATE_POSTERIOR (silence at probability 1)
   to the moving sum. */
#include <stdint.h>
#include <string.h>
#include "tx_hal.h"
#include "tx_frontend.h"
#include "tx_stream_config.h"

#define main tx_app_bench_main
#include "tx_app.c"
#undef main

#define TX_STREAM_FEATURES (TX_FE_NUM_FRAMES * TX_FE_NUM_MFCC)
#define TX_STREAM_CHUNK TX_FE_FRAME_STEP

static tx_frontend_state fe;
static int16_t chunk[TX_STREAM_CHUNK];
static int8_t history[TX_STREAM_SMOOTH][TX_STREAM_CLASSES];
static int32_t sums[TX_STREAM_CLASSES];
static const uint32_t exit_macs[TX_APP_NUM_EXITS] = {TX_STREAM_EXIT_MACS};
static const uint8_t is_keyword[TX_STREAM_CLASSES] = {TX_STREAM_KEYWORDS};

#if TX_STREAM_GATE
static int32_t gate_floor;   /* the noise floor in Q8: c0 codes * 256 */
static const int8_t gate_post[TX_STREAM_CLASSES] = {TX_STREAM_GATE_POSTERIOR};

/* 1 when c0 (the first MFCC of each frame: its log-mel energy) of frames GATE_FIRST..48 reaches the noise floor
   + GATE_MARGIN; the floor follows the window's quietest frame: down at once, up by 1/2^RISE of the distance. */
static int32_t gate_open(const int8_t *x, uint32_t hop)
{
  int32_t lo = 127, hi = -128;
  for (uint32_t f = 0; f < TX_FE_NUM_FRAMES; f++)
    if (x[f * TX_FE_NUM_MFCC] < lo) lo = x[f * TX_FE_NUM_MFCC];
  for (uint32_t f = TX_STREAM_GATE_FIRST; f < TX_FE_NUM_FRAMES; f++)
    if (x[f * TX_FE_NUM_MFCC] > hi) hi = x[f * TX_FE_NUM_MFCC];
  const int32_t m = lo * 256;
  if (hop == 0u || m <= gate_floor)
    gate_floor = m;
  else
    gate_floor += (m - gate_floor) >> TX_STREAM_GATE_RISE;   /* m - floor > 0: a defined shift */
  return hi * 256 - gate_floor >= (int32_t)TX_STREAM_GATE_MARGIN * 256;
}
#endif

static void put_hex32(uint32_t v)
{
  static const char digits[] = "0123456789abcdef";
  for (int s = 28; s >= 0; s -= 4) tx_hal_putc(digits[(v >> s) & 0xFu]);
}

static uint32_t fnv1a(const int8_t *p, uint32_t n)
{
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
  return h;
}

/* Markers around the front end's work (each push of samples, and the ring -> int8 features of a hop): the
   QEMU plugin counts the instructions between them (tinyexit stream --profile). Not inlined, so they exist. */
__attribute__((noinline, noipa, used)) void tx_fe_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa, used)) void tx_fe_end(void) { __asm__ volatile("" ::: "memory"); }

/* n samples from the UART (int16 little endian) into the front end, TX_STREAM_CHUNK at a time. */
static void receive(uint32_t n)
{
  while (n) {
    const uint32_t m = n < TX_STREAM_CHUNK ? n : TX_STREAM_CHUNK;
    for (uint32_t j = 0; j < m; j++) {
      const uint32_t lo = (uint32_t)tx_hal_getc() & 0xFFu;
      const uint32_t hi = (uint32_t)tx_hal_getc() & 0xFFu;
      chunk[j] = (int16_t)(uint16_t)(lo | (hi << 8));
    }
    tx_fe_begin();
    tx_frontend_push(&fe, chunk, m);
    tx_fe_end();
    n -= m;
  }
}

int main(void)
{
  uint32_t hops, dets = 0, total_macs = 0;
  int32_t last_det = -(int32_t)TX_STREAM_REFRACTORY;
  if (tx_frontend_init(&fe, TX_STREAM_LEVEL) != 0 ||
      tx_frontend_set_quant(&fe, TX_STREAM_INPUT_SCALE, TX_STREAM_INPUT_ZP) != 0) {
    tx_hal_puts("TX FAULT bad level or input quantization\n");
    return 1;
  }
  if (app_init() != TX_OK) {
    tx_hal_puts("TX FAULT runtime refused the pipeline\n");
    return 1;
  }
  tx_hal_puts("TX STREAM READY hop=");
  put_u32(TX_STREAM_HOP);
  tx_hal_puts(" first=16000 level=");
  put_u32((uint32_t)TX_STREAM_LEVEL);
  tx_hal_puts(" smooth=");
  put_u32(TX_STREAM_SMOOTH);
  tx_hal_puts(" threshold_q=");
  put_i32(TX_STREAM_THRESHOLD_Q);
  tx_hal_puts(" refractory=");
  put_u32(TX_STREAM_REFRACTORY);
  tx_hal_putc('\n');
  hops = read_u32_le();
  tx_hal_puts("TX BEGIN hops=");
  put_u32(hops);
  tx_hal_putc('\n');
  for (uint32_t i = 0; i < hops; i++) {
    const uint32_t need = i ? TX_STREAM_HOP : (uint32_t)TX_FE_CLIP_SAMPLES;
    tx_hal_puts("TX NEED i=");
    put_u32(i);
    tx_hal_puts(" n=");
    put_u32(need);
    tx_hal_putc('\n');
    receive(need);
    tx_fe_begin();
    tx_frontend_frames_int8(&fe, input_buf);   /* each frame was quantized once, when computed */
    int32_t gate = -1;
#if TX_STREAM_GATE
    gate = gate_open(input_buf, i);   /* counted with the front end (--profile) */
#endif
    tx_fe_end();
    int32_t exit_index = -1;
    uint32_t cls = 0, ticks = 0, macs = 0;
    const int8_t *post = 0;
#if TX_STREAM_GATE
    if (!gate) {
      post = gate_post;
      cls = TX_STREAM_GATE_SILENCE;
    } else
#endif
    {
      const uint32_t t0 = tx_hal_ticks();
      const result_t r = infer(input_buf);
      ticks = tx_hal_ticks() - t0;
      for (uint32_t c = 1; c < r.out_size; c++)
        if (r.out[c] > r.out[cls]) cls = c;
#if TX_APP_TEMPORAL
      cls = (uint32_t)r.decision;
#endif
      post = r.out;
      exit_index = (int32_t)r.exit_index;
      macs = exit_macs[r.exit_index];
    }
    /* moving sum over the last TX_STREAM_SMOOTH hops */
    int8_t *slot = history[i % TX_STREAM_SMOOTH];
    for (uint32_t c = 0; c < TX_STREAM_CLASSES; c++) {
      if (i >= TX_STREAM_SMOOTH) sums[c] -= slot[c];
      slot[c] = post[c];
      sums[c] += slot[c];
    }
    const int32_t count = (int32_t)(i + 1u < TX_STREAM_SMOOTH ? i + 1u : TX_STREAM_SMOOTH);
    uint32_t k = 0;
    for (uint32_t c = 1; c < TX_STREAM_CLASSES; c++)
      if (sums[c] > sums[k]) k = c;
    int32_t det = -1;
    if (is_keyword[k] && sums[k] >= (int32_t)TX_STREAM_THRESHOLD_Q * count &&
        (int32_t)i - last_det >= (int32_t)TX_STREAM_REFRACTORY) {
      det = (int32_t)k;
      last_det = (int32_t)i;
      dets++;
    }
    total_macs += macs;
    tx_hal_puts("TX H i=");
    put_u32(i);
    tx_hal_puts(" fh=");
    put_hex32(fnv1a(input_buf, TX_STREAM_FEATURES));
    tx_hal_puts(" exit=");
    put_i32(exit_index);
    tx_hal_puts(" class=");
    put_u32(cls);
    tx_hal_puts(" det=");
    put_i32(det);
    tx_hal_puts(" macs=");
    put_u32(macs);
    tx_hal_puts(" ticks=");
    put_u32(ticks);
    tx_hal_puts(" gate=");
    put_i32(gate);
    tx_hal_puts(" floor=");
#if TX_STREAM_GATE
    put_i32(gate_floor);
#else
    put_i32(0);
#endif
    tx_hal_putc('\n');
  }
  tx_hal_puts("TX END n=");
  put_u32(hops);
  tx_hal_puts(" dets=");
  put_u32(dets);
  tx_hal_puts(" macs=");
  put_u32(total_macs);
  tx_hal_puts(" stack=");
  put_u32(tx_hal_stack_used());
  tx_hal_putc('\n');
  (void)tx_app_bench_main;
  return 0;
}
