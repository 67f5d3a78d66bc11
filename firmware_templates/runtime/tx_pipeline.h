/* The pipeline of the checkpointing runtime: tx_pipeline.c over the generated tx_pipeline_config.c. */
#ifndef TX_PIPELINE_H
#define TX_PIPELINE_H

#include "tx_checkpoint.h"

extern tx_pipeline_t tx_pipeline;

#endif
