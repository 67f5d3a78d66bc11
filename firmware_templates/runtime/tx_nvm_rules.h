/* Checks of the nRF52840 NVMC rules, shared by the HALs that emulate flash over plain memory (host file,
 * QEMU PSRAM). A violation calls tx_hal_fatal(): tests must see it, never a silently "working" write.
 *   - erase: whole 4 KiB pages, page-aligned;
 *   - write: 32-bit words at word-aligned offsets, inside the NVM;
 *   - a write can only clear bits (new value & ~old value == 0): writing a word that was not erased since
 *     its last write is refused unless it only clears bits;
 *   - with TX_NVM_MAX_WRITES_PER_WORD counters (host only, it needs a RAM shadow), at most that many writes
 *     per word between two erases (nRF52840: nWRITE = 2). */
#ifndef TX_NVM_RULES_H
#define TX_NVM_RULES_H

#include <stdint.h>
#include "tx_rt_hal.h"
#include "tx_nvm.h"

static inline void tx_nvmc_check_erase(uint32_t offset, uint32_t size)
{
  if (offset % TX_NVM_PAGE_SIZE != 0u) tx_hal_fatal("NVMC rule: erase of a page that is not page-aligned");
  if (offset >= size) tx_hal_fatal("NVMC rule: erase outside the NVM");
}

static inline void tx_nvmc_check_write(uint32_t offset, uint32_t nwords, uint32_t size)
{
  if (offset % TX_NVM_WORD_SIZE != 0u) tx_hal_fatal("NVMC rule: write at an offset that is not word-aligned");
  if (offset > size || nwords > (size - offset) / TX_NVM_WORD_SIZE) tx_hal_fatal("NVMC rule: write outside the NVM");
}

/* old: the word's current content; value: the word to write. */
static inline void tx_nvmc_check_word(uint32_t old, uint32_t value)
{
  if ((value & ~old) != 0u) tx_hal_fatal("NVMC rule: write sets bits that are 0 (write without erase)");
}

#endif
