/* A hand-written stand-in library for the runtime walk's test (tests/test_runtime_walk.py) and the target tests'
   firmware app (tests/targets/fw_helpers.py; tx_model.h rendered by tests/standin_library.py), planned as a chain through a 64-byte arena: seg0 [0,16) -> [32,40); its readers
   conf1 [32,40) -> [48,50) and exit1 [32,40) -> [52,56) never write [32,40); seg1 [32,40) -> [0,4). Integer dense
   layers with hashed weights, mirrored by the test in numpy. */
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

static void dense(uint32_t layer, uint32_t in, uint32_t n_in, uint32_t out, uint32_t n_out, int shift)
{
  int8_t y[8];
  for (uint32_t o = 0; o < n_out; o++) {
    int32_t acc = (int32_t)layer * 37;
    for (uint32_t i = 0; i < n_in; i++) acc += (int32_t)tx_arena[in + i] * weight(layer, o, i);
    acc >>= shift;   /* arithmetic shift (gcc), as numpy's >> */
    y[o] = (int8_t)(acc > 127 ? 127 : acc < -128 ? -128 : acc);
  }
  memcpy(tx_arena + out, y, n_out);
}

static const uint32_t one_unit[1] = {1u};
static const tx_range_t live_all[1] = {{0u, TX_ARENA_SIZE}};
static const uint16_t live_idx[2] = {0u, 1u};

static void step_seg0(uint32_t i, uint32_t b, uint32_t e) { (void)i; (void)b; (void)e; dense(1, 0, 16, 32, 8, 9); }
static void step_conf1(uint32_t i, uint32_t b, uint32_t e) { (void)i; (void)b; (void)e; dense(4, 32, 8, 48, 2, 7); }
static void step_exit1(uint32_t i, uint32_t b, uint32_t e) { (void)i; (void)b; (void)e; dense(2, 32, 8, 52, 4, 7); }
static void step_seg1(uint32_t i, uint32_t b, uint32_t e) { (void)i; (void)b; (void)e; dense(3, 32, 8, 0, 4, 7); }

#define MODEL(n, in_off, insz, out_off, outsz) \
  const tx_model_t tx_model_##n = {#n, 1u, in_off, insz, out_off, outsz, 1.0f / 16, 0, 1.0f / 256, -128, \
                                   one_unit, step_##n, live_all, live_idx, (insz) * (outsz)}   /* MACs */
MODEL(seg0, 0u, 16u, 32u, 8u);
MODEL(conf1, 32u, 8u, 48u, 2u);
MODEL(exit1, 32u, 8u, 52u, 4u);
MODEL(seg1, 32u, 8u, 0u, 4u);

int tx_invoke(const tx_model_t *m, const int8_t *input, int8_t *output)
{
  if (input) memmove(tx_arena + m->input_offset, input, m->input_size);
  for (uint32_t s = 0; s < m->num_steps; s++) m->step(s, 0u, m->units[s]);
  if (output) memcpy(output, tx_arena + m->output_offset, m->output_size);
  return 0;
}
