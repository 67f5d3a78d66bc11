/* The runtime for the bench app, which runs it with checkpointing off only (TX_CKPT_OFF): the walk
   (tx_checkpoint.c) with its NVM paths compiled out (TX_CKPT_OFF_ONLY), and the generated pipeline
   (tx_pipeline.c), which then runs a chained library in place (no boundary buffer). */
#define TX_CKPT_OFF_ONLY 1
#include "tx_checkpoint.c"
#include "tx_pipeline.c"
