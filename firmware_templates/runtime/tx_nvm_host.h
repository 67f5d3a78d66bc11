/* Host-only additions of the host HALs (tx_nvm_file.c, tx_rt_host.c): fault injection and counters. */
#ifndef TX_NVM_HOST_H
#define TX_NVM_HOST_H

#include <stdint.h>

/* Exit status of a process whose power was cut on purpose. */
#define TX_CUT_EXIT_CODE 86

typedef struct {
  uint64_t events;          /* NVM events so far (words written + pages erased) */
  uint64_t words_written;
  uint64_t pages_erased;
} tx_nvm_host_stats_t;

const tx_nvm_host_stats_t *tx_nvm_host_stats(void);
/* Work units reported through tx_hal_work_done() in this process. */
uint64_t tx_hal_host_units(void);
/* Prints one "TXCUT ..." line on stderr and ends the process with _exit(TX_CUT_EXIT_CODE). */
void tx_nvm_host_power_cut(const char *where);

#endif
