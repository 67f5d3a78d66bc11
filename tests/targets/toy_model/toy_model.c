/* A hand-written stand-in for the generated model library (its tx_model.h is rendered from the generator's
   template by tests/standin_library.py): seg0 (16 -> 8), exit1 (8 -> 4 classes, after seg0), seg1 (8 -> 4
   classes, final). Integer dense layers with fixed pseudo-random weights; arbitrary but deterministic
   arithmetic, so host and target builds must print identical bytes. */
#include <string.h>
#include "tx_model.h"

int8_t tx_arena[TX_ARENA_SIZE] __attribute__((aligned(8)));

static int8_t weight(uint32_t layer, uint32_t o, uint32_t i)
{
  uint32_t h = (layer * 2654435761u) ^ (o * 40503u) ^ (i * 2246822519u);
  h ^= h >> 13;
  h *= 3266489917u;
  h ^= h >> 16;
  return (int8_t)(h & 0xFFu);
}

static void dense(uint32_t layer, const int8_t *in, uint32_t n_in, int8_t *out, uint32_t n_out, int shift)
{
  for (uint32_t o = 0; o < n_out; o++) {
    int32_t acc = (int32_t)layer * 37;
    for (uint32_t i = 0; i < n_in; i++) acc += (int32_t)in[i] * weight(layer, o, i);
    acc >>= shift;
    out[o] = (int8_t)(acc > 127 ? 127 : acc < -128 ? -128 : acc);
  }
}

static const uint32_t one_unit[1] = {1u};
static const tx_range_t live_all[1] = {{0u, TX_ARENA_SIZE}};
static const uint16_t live_idx[2] = {0u, 1u};

static void step_seg0(uint32_t i, uint32_t b, uint32_t e) { (void)i; (void)b; (void)e; dense(1, tx_arena, 16, tx_arena + 32, 8, 9); }
static void step_exit1(uint32_t i, uint32_t b, uint32_t e) { (void)i; (void)b; (void)e; dense(2, tx_arena, 8, tx_arena + 32, 4, 7); }
static void step_seg1(uint32_t i, uint32_t b, uint32_t e) { (void)i; (void)b; (void)e; dense(3, tx_arena, 8, tx_arena + 32, 4, 7); }

#define MODEL(n, insz, outsz, macs_) \
  const tx_model_t tx_model_##n = {#n, 1u, 0u, insz, 32u, outsz, 1.0f / 16, 0, 1.0f / 256, -128, \
                                   one_unit, step_##n, live_all, live_idx, macs_}
MODEL(seg0, 16u, 8u, 128u);
MODEL(exit1, 8u, 4u, 32u);
MODEL(seg1, 8u, 4u, 32u);

int tx_invoke(const tx_model_t *m, const int8_t *input, int8_t *output)
{
  memcpy(tx_arena + m->input_offset, input, m->input_size);
  for (uint32_t s = 0; s < m->num_steps; s++) m->step(s, 0u, m->units[s]);
  memcpy(output, tx_arena + m->output_offset, m->output_size);
  return 0;
}
