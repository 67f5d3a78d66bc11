/* The pipeline of the firmware, generated from pipeline.c.j2. */
#ifndef TX_PIPELINE_H
#define TX_PIPELINE_H

#include "tx_checkpoint.h"

extern tx_pipeline_t tx_pipeline;

#endif
