/* Non-volatile memory HAL used by the checkpointing runtime.
 *
 * The interface follows the most restrictive NVM we target, the nRF52840 flash controller (NVMC): pages of
 * TX_NVM_PAGE_SIZE bytes are erased to 0xFF as a whole, and 32-bit words are then written, a write only
 * clearing bits. FRAM, the QEMU PSRAM and a host file accept the same calls, so the runtime is written once.
 *
 * Implementations: tx_nvm_file.c (host, an mmap'ed file, with fault injection), tx_nvm_psram.c (QEMU
 * mps2-an386, file-backed PSRAM), tx_nvm_nrf52.c (nRF52840 NVMC). Define TX_NVM_NVMC_RULES to make the
 * host and PSRAM variants abort on any access the real NVMC would not accept (see tx_nvm_rules.h).
 */
#ifndef TX_NVM_H
#define TX_NVM_H

#include <stdint.h>

#define TX_NVM_PAGE_SIZE 4096u
#define TX_NVM_WORD_SIZE 4u

/* 1: the NVM is flash (a page must be erased before its words are written again); 0: byte-writable memory
 * without erase, e.g. an SPI FRAM (tx_nvm_erase_page is then never called by the runtime: tx_checkpoint.h). */
#ifndef TX_NVM_ERASE
#define TX_NVM_ERASE 1
#endif

/* Prepares the NVM; returns 0 on success. Called once per boot before any other tx_nvm_* call. */
int tx_nvm_open(void);
/* Usable bytes, a multiple of TX_NVM_PAGE_SIZE. */
uint32_t tx_nvm_size(void);
/* Any byte range inside [0, tx_nvm_size()). */
void tx_nvm_read(uint32_t offset, void *dst, uint32_t len);
/* Sets one page to 0xFF. offset is a multiple of TX_NVM_PAGE_SIZE. */
void tx_nvm_erase_page(uint32_t offset);
/* Writes nwords 32-bit words at offset (a multiple of 4). Each target word must be erased (or only lose
 * bits): flash cannot set a bit without erasing its page. */
void tx_nvm_write_words(uint32_t offset, const uint32_t *src, uint32_t nwords);

#endif
