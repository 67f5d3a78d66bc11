/* The emulated flash's shadow: what an NVMC keeps in its cells and a harness wants to read, kept by the
 * firmware of an emulated board in memory that survives a power cut (the file-backed PSRAM of QEMU's
 * mps2-an386, outside the NVM). Enabled by defining TX_NVM_EMU_SHADOW to its address (the emulated campaign,
 * tinyexit/intermittent/nvm_events.py, which reads it with the same layout):
 *   +0x0000  header: magic, events logged (also those past the capacity), capacity (set by the harness), 0
 *   +0x1000  erase count of each NVM page (uint32), up to TX_NVM_EMU_MAX_PAGES pages: the flash's wear
 *   +0x3000  writes of each NVM word since its page was erased (uint8): the NVMC's nWRITE rule
 *   +TX_NVM_EMU_LOG  event log: {kind, offset, nwords, ticks} per NVM operation or mark, in order
 * Counters and log are written before the operation they describe, so a cut inside it still counts it (an
 * interrupted erase wears the page; an interrupted write counts against nWRITE). */
#ifndef TX_NVM_EMU_H
#define TX_NVM_EMU_H

#include <stdint.h>

#define TX_NVM_EMU_MAGIC 0x45564E54u          /* "TNVE" */
#define TX_NVM_EMU_ERASES 0x1000u
#define TX_NVM_EMU_MAX_PAGES 2048u            /* NVM up to 8 MiB of 4 KiB pages */
#define TX_NVM_EMU_WRITES 0x3000u
#define TX_NVM_EMU_LOG 0x203000u              /* after the write counts of 8 MiB (2 Mi words) */

enum { TX_NVM_EV_ERASE = 1, TX_NVM_EV_WRITE = 2, TX_NVM_EV_COMMIT_BEGIN = 3, TX_NVM_EV_COMMIT_END = 4,
       TX_NVM_EV_RESULT = 5, TX_NVM_EV_MARK = 6 };

typedef struct {
  uint32_t kind, offset, nwords, ticks;
} tx_nvm_emu_event_t;

/* Appends one event (kind, NVM offset, words) stamped with tx_hal_ticks(); does nothing without a shadow. */
void tx_nvm_emu_log(uint32_t kind, uint32_t offset, uint32_t nwords);

#endif
