/* Hooks the checkpointing runtime calls besides the NVM (tx_nvm.h); not the board HAL (boards/tx_hal.h).
 * Each board (and the host harness)
 * provides them. */
#ifndef TX_RT_HAL_H
#define TX_RT_HAL_H

#include <stdint.h>

/* Nonzero when the energy store is about to run out (nRF52840: the POF comparator fired). The pipeline
 * then finishes at the next exit point instead of running the whole network. */
int tx_hal_low_energy(void);

/* Called after each piece of model work with the number of work units just executed (accounting; the host
 * harness also cuts power here when asked). */
void tx_hal_work_done(uint32_t units);

/* Called with begin=1 before a checkpoint commit touches the NVM and with begin=0 after its last word
 * (profiling: the emulated campaign aims cuts at commits with it). May do nothing. */
void tx_hal_commit_mark(uint32_t begin);

/* An unrecoverable programming error (NVMC rule broken, corrupt configuration): report and stop. */
void tx_hal_fatal(const char *message);

#endif
