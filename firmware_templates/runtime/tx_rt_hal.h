/* Hooks the checkpointing runtime calls besides the NVM (tx_nvm.h); not the board HAL (boards/tx_hal.h).
 * Each board (and the host harness)
 * provides them. */
#ifndef TX_RT_HAL_H
#define TX_RT_HAL_H

#include <stdint.h>

/* Nonzero when the energy store is about to run out (nRF52840: the POF comparator fired). The pipeline
 * then finishes at the next exit point instead of running the whole network. */
int tx_hal_low_energy(void);

/* Nonzero while the supply is below the power-fail warning level (nRF52840: POFWARN, the POF comparator's
 * threshold crossed). Not an exit policy: with just-in-time checkpointing (TX_CKPT_JIT) the runtime commits its
 * position at once when it sees the warning (one commit per warning episode) and computes on; the energy left
 * decides whether the power dies. Polled at unit boundaries, like tx_hal_low_energy(). A board may report an
 * episode once (an event cleared on read) or for as long as it lasts (a level): the runtime commits on the
 * first poll that sees it and again only after a poll that did not. */
int tx_hal_power_warning(void);

/* Called after each piece of model work with the number of work units just executed (accounting; the host
 * harness also cuts power here when asked). */
void tx_hal_work_done(uint32_t units);

/* Called with begin=1 before a checkpoint commit touches the NVM and with begin=0 after its last word
 * (profiling: the emulated campaign aims cuts at commits with it). May do nothing. */
void tx_hal_commit_mark(uint32_t begin);

/* An unrecoverable programming error (NVMC rule broken, corrupt configuration): report and stop. */
void tx_hal_fatal(const char *message);

#endif
