/* Stand-in for a generated model library (docs/CONTRACTS.md, "Generated C library"): its tx_model.h is rendered
 * from the generator's template (tests/standin_library.py), the models are a few small deterministic int8 layers.
 * Lets the checkpointing runtime be tested without the code generator; the tests also run on real generated
 * models. Layers work row by row (one unit = one output row) and read neighbouring input rows, one is in place,
 * and the models' arena areas overlap, so a runtime that restores too little, or hands tensors over through the
 * arena, gives different bytes. */
#include <string.h>

#include "tx_model.h"

int8_t tx_arena[TX_ARENA_SIZE] __attribute__((aligned(8)));

static int8_t sat(int32_t acc, int shift)
{
  int32_t v = (acc + (1 << (shift - 1))) >> shift;
  return (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
}

/* deterministic weights in [-7, 7] */
static int32_t wgt(uint32_t seed, uint32_t k) { return (int32_t)((k * 37u + seed * 11u + (k >> 3)) % 15u) - 7; }

/* 3x3 conv, "same" padding (zeros), HWC, rows [r0, r1) of the output */
static void conv3(const int8_t *in, int8_t *out, int h, int w, int cin, int cout, uint32_t seed, int shift, int r0, int r1)
{
  int y, x, co, dy, dx, ci;
  for (y = r0; y < r1; y++)
    for (x = 0; x < w; x++)
      for (co = 0; co < cout; co++) {
        int32_t acc = (int32_t)co * 5 - 9;
        for (dy = -1; dy <= 1; dy++)
          for (dx = -1; dx <= 1; dx++) {
            int yy = y + dy, xx = x + dx;
            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
            for (ci = 0; ci < cin; ci++)
              acc += in[(yy * w + xx) * cin + ci] *
                     wgt(seed, (uint32_t)((((co * 3 + dy + 1) * 3 + dx + 1) * cin) + ci));
          }
        out[(y * w + x) * cout + co] = sat(acc, shift);
      }
}

static void pool2(const int8_t *in, int8_t *out, int w, int c, int maxpool, int r0, int r1)
{
  int y, x, k;
  for (y = r0; y < r1; y++)
    for (x = 0; x < w / 2; x++)
      for (k = 0; k < c; k++) {
        int8_t a = in[((2 * y) * w + 2 * x) * c + k], b = in[((2 * y) * w + 2 * x + 1) * c + k];
        int8_t d = in[((2 * y + 1) * w + 2 * x) * c + k], e = in[((2 * y + 1) * w + 2 * x + 1) * c + k];
        int32_t v;
        if (maxpool) { v = a > b ? a : b; v = v > d ? v : d; v = v > e ? v : e; }
        else v = (a + b + d + e + 2) >> 2;
        out[(y * (w / 2) + x) * c + k] = (int8_t)v;
      }
}

static void dense(const int8_t *in, int8_t *out, int n, int m, uint32_t seed, int shift)
{
  int o, k;
  for (o = 0; o < m; o++) {
    int32_t acc = o * 3;
    for (k = 0; k < n; k++) acc += in[k] * wgt(seed, (uint32_t)(o * n + k));
    out[o] = sat(acc, shift);
  }
}

#define A tx_arena

/* seg0: 12x12x1 @0 -> conv3 -> 12x12x4 @256 -> in-place activation -> maxpool -> 6x6x4 @0 */
static void seg0_step(uint32_t i, uint32_t b, uint32_t e)
{
  uint32_t k;
  if (i == 0u) conv3(A + 0, A + 256, 12, 12, 1, 4, 1u, 3, (int)b, (int)e);
  else if (i == 1u) {
    for (k = b * 48u; k < e * 48u; k++) {       /* in place: x -> x/2 + 5 for x >= 0, x/4 otherwise */
      int8_t v = A[256 + k];
      A[256 + k] = (int8_t)(v >= 0 ? v / 2 + 5 : v / 4);
    }
  } else pool2(A + 256, A + 0, 12, 4, 1, (int)b, (int)e);
}
static const uint32_t seg0_units[] = { 12, 12, 6 };
static const tx_range_t seg0_live[] = { {0, 144}, {256, 576}, {256, 576}, {256, 576}, {0, 144} };
static const uint16_t seg0_live_index[] = { 0, 2, 3, 5 };
const tx_model_t tx_model_seg0 = { "seg0", 3, 0, 144, 0, 144, 1.0f, 0, 1.0f, 0, seg0_units, seg0_step,
                                   seg0_live, seg0_live_index, 12 * 12 * 4 * 9 };

/* exit0: 6x6x4 @128 (overlaps seg0's output) -> avgpool -> 3x3x4 @512 -> dense 36->5 @600 */
static void exit0_step(uint32_t i, uint32_t b, uint32_t e)
{
  if (i == 0u) pool2(A + 128, A + 512, 6, 4, 0, (int)b, (int)e);
  else dense(A + 512, A + 600, 36, 5, 2u, 4);
}
static const uint32_t exit0_units[] = { 3, 1 };
static const tx_range_t exit0_live[] = { {128, 144}, {512, 36}, {512, 36}, {600, 5} };
static const uint16_t exit0_live_index[] = { 0, 2, 4 };
const tx_model_t tx_model_exit0 = { "exit0", 2, 128, 144, 600, 5, 1.0f, 0, 1.0f, 0, exit0_units, exit0_step,
                                    exit0_live, exit0_live_index, 36 * 5 };

/* seg1: 6x6x4 @1024 -> conv3 -> 6x6x8 @1200 -> avgpool -> 3x3x8 @1024 */
static void seg1_step(uint32_t i, uint32_t b, uint32_t e)
{
  if (i == 0u) conv3(A + 1024, A + 1200, 6, 6, 4, 8, 3u, 5, (int)b, (int)e);
  else pool2(A + 1200, A + 1024, 6, 8, 0, (int)b, (int)e);
}
static const uint32_t seg1_units[] = { 6, 3 };
static const tx_range_t seg1_live[] = { {1024, 144}, {1200, 288}, {1200, 288}, {1024, 72} };
static const uint16_t seg1_live_index[] = { 0, 2, 4 };
const tx_model_t tx_model_seg1 = { "seg1", 2, 1024, 144, 1024, 72, 1.0f, 0, 1.0f, 0, seg1_units, seg1_step,
                                   seg1_live, seg1_live_index, 6 * 6 * 8 * 36 };

/* exit1: 3x3x8 @0 -> dense 72->5 @100 */
static void exit1_step(uint32_t i, uint32_t b, uint32_t e)
{
  (void)i; (void)b; (void)e;
  dense(A + 0, A + 100, 72, 5, 4u, 5);
}
static const uint32_t exit1_units[] = { 1 };
static const tx_range_t exit1_live[] = { {0, 72}, {100, 5} };
static const uint16_t exit1_live_index[] = { 0, 2 };
const tx_model_t tx_model_exit1 = { "exit1", 1, 0, 72, 100, 5, 1.0f, 0, 1.0f, 0, exit1_units, exit1_step,
                                    exit1_live, exit1_live_index, 72 * 5 };

/* seg2: 3x3x8 @2048 -> conv3 -> 3x3x8 @2200 -> dense 72->5 @2048 */
static void seg2_step(uint32_t i, uint32_t b, uint32_t e)
{
  if (i == 0u) conv3(A + 2048, A + 2200, 3, 3, 8, 8, 5u, 5, (int)b, (int)e);
  else dense(A + 2200, A + 2048, 72, 5, 6u, 5);
}
static const uint32_t seg2_units[] = { 3, 1 };
static const tx_range_t seg2_live[] = { {2048, 72}, {2200, 72}, {2200, 72}, {2048, 5} };
static const uint16_t seg2_live_index[] = { 0, 2, 4 };
const tx_model_t tx_model_seg2 = { "seg2", 2, 2048, 72, 2048, 5, 1.0f, 0, 1.0f, 0, seg2_units, seg2_step,
                                   seg2_live, seg2_live_index, 3 * 3 * 8 * 72 + 360 };

int tx_invoke(const tx_model_t *m, const int8_t *input, int8_t *output)
{
  uint32_t i;
  memmove(tx_arena + m->input_offset, input, m->input_size);
  for (i = 0; i < m->num_steps; i++) m->step(i, 0, m->units[i]);
  memcpy(output, tx_arena + m->output_offset, m->output_size);
  return 0;
}
