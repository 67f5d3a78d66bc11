/* NVM HAL over a board's NVM driver (firmware_templates/boards/tx_hal.h: tx_hal_nvm_*), for firmware:
 * the nRF52840's NVMC flash, the flash simulation of the emulated nRF52840, or the PSRAM of QEMU's
 * mps2-an386 (file-backed with memory-backend-file, so it survives QEMU being stopped: docs/DESIGN.md 7 (B)).
 *
 * TX_NVM_RESERVED_TAIL bytes at the end of the board's NVM are left out (the emulated campaign keeps its
 * mailbox there). With TX_NVM_NVMC_RULES every access is checked against the NVMC rules first
 * (tx_nvm_rules.h): on a board whose NVM is plain RAM, a runtime that would break real flash is caught.
 * With TX_NVM_EMU_SHADOW (an emulated board, tx_nvm_emu.h) each page erase and word write is also counted in
 * memory that survives a cut: erases per page (wear), writes per word since the erase (checked against
 * TX_NVM_MAX_WRITES_PER_WORD, the NVMC's nWRITE), and a log of the operations with their tick. */
#include "tx_nvm.h"

#include <string.h>

#include "tx_board.h"
#include "tx_hal.h"
#include "tx_nvm_emu.h"
#include "tx_nvm_rules.h"
#include "tx_rt_hal.h"

#ifndef TX_NVM_RESERVED_TAIL
#define TX_NVM_RESERVED_TAIL 0u
#endif
#ifndef TX_HAL_NVM_MAPPED
#define TX_HAL_NVM_MAPPED 1   /* tx_board.h: 0 for an NVM reached through a bus (tx_hal_nvm_read) */
#endif

#if TX_HAL_NVM_MAPPED
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
#endif

#ifndef TX_NVM_MAX_WRITES_PER_WORD
#define TX_NVM_MAX_WRITES_PER_WORD 2u   /* nRF52840 product specification: nWRITE */
#endif

#ifdef TX_NVM_EMU_SHADOW
#define EMU_WORD(off) ((volatile uint32_t *)(uintptr_t)(TX_NVM_EMU_SHADOW + (off)))

void tx_nvm_emu_log(uint32_t kind, uint32_t offset, uint32_t nwords)
{
  volatile uint32_t *hdr = EMU_WORD(0u);
  uint32_t n = hdr[1];
  if (hdr[0] == TX_NVM_EMU_MAGIC && n < hdr[2]) {
    volatile uint32_t *e = EMU_WORD(TX_NVM_EMU_LOG + n * (uint32_t)sizeof(tx_nvm_emu_event_t));
    e[0] = kind; e[1] = offset; e[2] = nwords; e[3] = tx_hal_ticks();
  }
  hdr[1] = n + 1u;   /* counts past the capacity too: the harness sees that events were lost */
}

/* Counts an erase of the page at `offset` (and resets its words' write counts) before it happens. */
static void emu_erase(uint32_t offset)
{
  volatile uint8_t *w = (volatile uint8_t *)(uintptr_t)(TX_NVM_EMU_SHADOW + TX_NVM_EMU_WRITES + offset / 4u);
  uint32_t k, page = offset / TX_NVM_PAGE_SIZE;
  tx_nvm_emu_log(TX_NVM_EV_ERASE, offset, 0u);
  if (page < TX_NVM_EMU_MAX_PAGES) EMU_WORD(TX_NVM_EMU_ERASES)[page]++;
  for (k = 0u; k < TX_NVM_PAGE_SIZE / 4u; k++) w[k] = 0u;
}

/* Counts a write of nwords words at `offset` before it happens; more than nWRITE writes of a word between
 * two erases of its page break the NVMC's rules. */
static void emu_write(uint32_t offset, uint32_t nwords)
{
  volatile uint8_t *w = (volatile uint8_t *)(uintptr_t)(TX_NVM_EMU_SHADOW + TX_NVM_EMU_WRITES + offset / 4u);
  uint32_t k;
  tx_nvm_emu_log(TX_NVM_EV_WRITE, offset, nwords);
  for (k = 0u; k < nwords; k++) {
#if TX_NVM_ERASE
    if (w[k] >= TX_NVM_MAX_WRITES_PER_WORD) tx_hal_fatal("NVMC rule: word written more than nWRITE times without erase");
#endif
    if (w[k] < 255u) w[k] = (uint8_t)(w[k] + 1u);   /* without erase (FRAM) only counted */
  }
}
/* Every erase and write runs between these two markers: an instruction-count window on them gives the
 * instructions the emulated NVM operations take (driver, rule checks, shadow), which a real NVMC replaces by
 * its erase and write time (the CPU waits). */
__attribute__((noinline, noipa, used)) void tx_nvm_emu_enter(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa, used)) void tx_nvm_emu_leave(void) { __asm__ volatile("" ::: "memory"); }
#define EMU_ENTER() tx_nvm_emu_enter()
#define EMU_LEAVE() tx_nvm_emu_leave()
#else
void tx_nvm_emu_log(uint32_t kind, uint32_t offset, uint32_t nwords) { (void)kind; (void)offset; (void)nwords; }
#define EMU_ENTER() ((void)0)
#define EMU_LEAVE() ((void)0)
#endif

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
#if TX_HAL_NVM_MAPPED
  copy_bytes(dst, tx_hal_nvm() + offset, len);
#else
  tx_hal_nvm_read(offset, dst, len);   /* an NVM on a bus (SPI FRAM): through its driver */
#endif
}

void tx_nvm_erase_page(uint32_t offset)
{
  uint32_t k;
  EMU_ENTER();
#ifdef TX_NVM_NVMC_RULES
  tx_nvmc_check_erase(offset, tx_nvm_size());
#endif
#ifdef TX_NVM_EMU_SHADOW
  emu_erase(offset);
#endif
  for (k = 0u; k < TX_NVM_PAGE_SIZE; k += tx_hal_nvm_page_size())
    if (tx_hal_nvm_erase_page(offset + k) != 0) tx_hal_fatal("NVM page erase refused by the board driver");
  EMU_LEAVE();
}

void tx_nvm_write_words(uint32_t offset, const uint32_t *src, uint32_t nwords)
{
#ifdef TX_NVM_NVMC_RULES
  uint32_t k, old;
#endif
  EMU_ENTER();
#ifdef TX_NVM_NVMC_RULES
  tx_nvmc_check_write(offset, nwords, tx_nvm_size());
  for (k = 0u; k < nwords; k++) {
    memcpy(&old, tx_hal_nvm() + offset + 4u * k, 4u);
    tx_nvmc_check_word(old, src[k]);
  }
#endif
#ifdef TX_NVM_EMU_SHADOW
  emu_write(offset, nwords);
#endif
  if (tx_hal_nvm_write(offset, src, nwords * TX_NVM_WORD_SIZE) != 0) tx_hal_fatal("NVM write refused by the board driver");
  EMU_LEAVE();
}
