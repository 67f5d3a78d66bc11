/* A hand-written stand-in for the generated model library, implementing the tx_model.h contract of
   docs/CONTRACTS.md: seg0 (16 -> 8), exit1 (8 -> 4 classes, after seg0), seg1 (8 -> 4 classes, final). */
#ifndef TX_MODEL_H
#define TX_MODEL_H
#include <stdint.h>

#define TX_ARENA_SIZE 64
extern int8_t tx_arena[TX_ARENA_SIZE];
typedef struct { uint32_t offset; uint32_t size; } tx_range_t;
typedef struct tx_model {
  const char *name;
  uint32_t num_steps;
  uint32_t input_offset, input_size;
  uint32_t output_offset, output_size;
  float input_scale; int32_t input_zero_point;
  float output_scale; int32_t output_zero_point;
  const uint32_t *units;
  void (*step)(uint32_t i, uint32_t unit_begin, uint32_t unit_end);
  const tx_range_t *live;
  const uint16_t *live_index;
  uint32_t macs;
} tx_model_t;
extern const tx_model_t tx_model_seg0, tx_model_exit1, tx_model_seg1;
int tx_invoke(const tx_model_t *m, const int8_t *input, int8_t *output);
#endif
