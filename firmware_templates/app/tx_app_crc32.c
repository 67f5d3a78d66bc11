/* The runtime's CRC-32 for the bench app: the app runs the runtime with checkpointing off (TX_CKPT_OFF), which
   never computes a CRC, so the half-byte table (64 B of flash) replaces the 4 KiB slicing tables. */
#define TX_CRC32_SMALL 1
#include "tx_crc32.c"
