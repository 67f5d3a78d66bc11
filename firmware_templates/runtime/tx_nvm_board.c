/* NVM HAL over a board's NVM driver (firmware_templates/boards/tx_hal.h: tx_hal_nvm_*), for firmware:
 * the nRF52840's NVMC flash, the flash simulation of the emulated nRF52840, or the PSRAM of QEMU's
 * mps2-an386 (file-backed with memory-backend-file, so it survives QEMU being stopped: docs/DESIGN.md 7 (B)).
 *
 * TX_NVM_RESERVED_TAIL bytes at the end of the board's NVM are left out (the emulated campaign keeps its
 * mailbox there). With TX_NVM_NVMC_RULES every access is checked against the NVMC rules first
 * (tx_nvm_rules.h): on a board whose NVM is plain RAM, a runtime that would break real flash is caught. */
#include "tx_nvm.h"

#include <string.h>

#include "tx_hal.h"
#include "tx_nvm_rules.h"
#include "tx_rt_hal.h"

#ifndef TX_NVM_RESERVED_TAIL
#define TX_NVM_RESERVED_TAIL 0u
#endif

/* memcpy for large aligned blocks: newlib-nano's memcpy goes byte by byte, and restoring a checkpoint
 * copies kilobytes. */
static void copy_bytes(void *dst, const uint8_t *src, uint32_t len)
{
  if ((((uintptr_t)dst | (uintptr_t)src) & 3u) == 0u) {
    uint32_t *d = (uint32_t *)dst;
    const uint32_t *s = (const uint32_t *)(const void *)src;
    for (; len >= 4u; len -= 4u) *d++ = *s++;
    dst = d;
    src = (const uint8_t *)s;
  }
  memcpy(dst, src, len);
}

int tx_nvm_open(void)
{
  /* the runtime's page size must be a multiple of the board's (nRF52840 and mps2-an386: 4 KiB) */
  if (tx_hal_nvm_page_size() == 0u || TX_NVM_PAGE_SIZE % tx_hal_nvm_page_size() != 0u) return -1;
  return tx_hal_nvm_size() > TX_NVM_RESERVED_TAIL ? 0 : -1;
}

uint32_t tx_nvm_size(void)
{
  return (tx_hal_nvm_size() - TX_NVM_RESERVED_TAIL) / TX_NVM_PAGE_SIZE * TX_NVM_PAGE_SIZE;
}

void tx_nvm_read(uint32_t offset, void *dst, uint32_t len)
{
  if (offset > tx_nvm_size() || len > tx_nvm_size() - offset) tx_hal_fatal("NVM read outside the NVM");
  copy_bytes(dst, tx_hal_nvm() + offset, len);
}

void tx_nvm_erase_page(uint32_t offset)
{
  uint32_t k;
#ifdef TX_NVM_NVMC_RULES
  tx_nvmc_check_erase(offset, tx_nvm_size());
#endif
  for (k = 0u; k < TX_NVM_PAGE_SIZE; k += tx_hal_nvm_page_size())
    if (tx_hal_nvm_erase_page(offset + k) != 0) tx_hal_fatal("NVM page erase refused by the board driver");
}

void tx_nvm_write_words(uint32_t offset, const uint32_t *src, uint32_t nwords)
{
#ifdef TX_NVM_NVMC_RULES
  uint32_t k, old;
  tx_nvmc_check_write(offset, nwords, tx_nvm_size());
  for (k = 0u; k < nwords; k++) {
    memcpy(&old, tx_hal_nvm() + offset + 4u * k, 4u);
    tx_nvmc_check_word(old, src[k]);
  }
#endif
  if (tx_hal_nvm_write(offset, src, nwords * TX_NVM_WORD_SIZE) != 0) tx_hal_fatal("NVM write refused by the board driver");
}
