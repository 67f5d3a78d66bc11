/* Runtime hooks of a firmware that runs the pipeline with checkpointing off (TX_CKPT_OFF): no NVM, no
 * low-energy signal from the board (the caller's stop hook decides instead), no work accounting. The runtime
 * never calls the NVM functions in that mode; they exist so that the one runtime links unchanged. */
#include "tx_nvm.h"
#include "tx_rt_hal.h"

int tx_hal_low_energy(void) { return 0; }
int tx_hal_power_warning(void) { return 0; }
void tx_hal_work_done(uint32_t units) { (void)units; }
void tx_hal_commit_mark(uint32_t begin) { (void)begin; }

int tx_nvm_open(void) { return -1; }
uint32_t tx_nvm_size(void) { return 0u; }
void tx_nvm_read(uint32_t offset, void *dst, uint32_t len) { (void)offset; (void)dst; (void)len; }
void tx_nvm_erase_page(uint32_t offset) { (void)offset; }
void tx_nvm_write_words(uint32_t offset, const uint32_t *src, uint32_t nwords) { (void)offset; (void)src; (void)nwords; }
