/* Emulator bench of the front end (tinyexit.frontend.hop_instructions): TX_FE_HOPS hops of 320
 * pseudo-random samples (speech level, about -12 dBFS), each tx_frontend_push between tx_bench_begin and
 * tx_bench_end (one instruction-count window per hop, one frame computed in each), then
 * "FE hop frames hash" per hop on the UART: hash is FNV-1a (32 bits) over the bytes of the new frame's 10 floats,
 * which the host build of the same samples must reproduce. The first 160 samples are pushed outside the windows, so every hop completes one frame. */
#include "tx_frontend.h"
#include "tx_hal.h"

#ifndef TX_FE_HOPS
#define TX_FE_HOPS 8
#endif

__attribute__((noinline, noipa, used)) void tx_bench_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa, used)) void tx_bench_end(void) { __asm__ volatile("" ::: "memory"); }

#ifdef TX_FE_PROFILE
/* the front end's step markers (tx_frontend.c): empty, their addresses open and close the counted windows */
#define FE_MARKER(k) \
  __attribute__((noinline, noipa, used)) void tx_fe_mark##k(void) { __asm__ volatile("" ::: "memory"); }
FE_MARKER(0)
FE_MARKER(1)
FE_MARKER(2)
FE_MARKER(3)
FE_MARKER(4)
FE_MARKER(5)
FE_MARKER(6)
#endif

static tx_frontend_state state;
static int16_t hop[TX_FE_FRAME_STEP];
static uint32_t seed = 12345u;

static int16_t sample(void)
{
  seed = seed * 1664525u + 1013904223u;   /* LCG: deterministic, no library */
  return (int16_t)((int32_t)(seed >> 16) - 32768) / 4;
}

static uint32_t fnv1a(const void *p, uint32_t n)
{
  const uint8_t *b = (const uint8_t *)p;
  uint32_t h = 2166136261u, i;
  for (i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
  return h;
}

static void put_int(int32_t v)
{
  char buf[12];
  int k = 11;
  const int neg = v < 0;
  buf[k] = 0;
  if (neg) v = -v;
  do {
    buf[--k] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  if (neg) buf[--k] = '-';
  tx_hal_putc(' ');
  tx_hal_puts(buf + k);
}

static void put_uint(uint32_t v)
{
  char buf[11];
  int k = 10;
  buf[k] = 0;
  do {
    buf[--k] = (char)('0' + v % 10u);
    v /= 10u;
  } while (v);
  tx_hal_putc(' ');
  tx_hal_puts(buf + k);
}

int main(void)
{
  uint32_t h, i, done;
  float frames[TX_FE_NUM_FRAMES][TX_FE_NUM_MFCC];
  tx_hal_init();
  if (tx_frontend_init(&state, 8192.0f) != 0) tx_hal_exit(1);
  for (i = 0; i < TX_FE_FRAME_LENGTH - TX_FE_FRAME_STEP; i++) hop[i] = sample();
  tx_frontend_push(&state, hop, TX_FE_FRAME_LENGTH - TX_FE_FRAME_STEP);
  for (h = 0; h < TX_FE_HOPS; h++) {
    for (i = 0; i < TX_FE_FRAME_STEP; i++) hop[i] = sample();
    tx_bench_begin();
    done = tx_frontend_push(&state, hop, TX_FE_FRAME_STEP);
    tx_bench_end();
    tx_frontend_frames(&state, frames);
    tx_hal_puts("FE");
    put_int((int32_t)h);
    put_int((int32_t)done);
    put_uint(fnv1a(frames[TX_FE_NUM_FRAMES - 1], sizeof frames[0]));
    tx_hal_puts("\n");
  }
  tx_hal_exit(0);
}
