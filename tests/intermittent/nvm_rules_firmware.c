/* Drives the board NVM layer (tx_nvm_board.c with TX_NVM_NVMC_RULES and the emulated flash's shadow,
 * TX_NVM_EMU_SHADOW) through one scenario, as firmware on the emulated board. The scenario number is the first
 * word at TX_PF_MAILBOX (the test writes it into the PSRAM file). The legal ones end with status 0; a rule
 * violation must end with a FAULT line and status 3 (tx_hal_fatal). */
#include <stdint.h>
#include <string.h>

#include "tx_hal.h"
#include "tx_nvm.h"
#include "tx_rt_hal.h"

int tx_hal_low_energy(void) { return 0; }
void tx_hal_work_done(uint32_t units) { (void)units; }
void tx_hal_commit_mark(uint32_t begin) { (void)begin; }
void tx_hal_fatal(const char *message)
{
  tx_hal_puts("FAULT ");
  tx_hal_puts(message);
  tx_hal_putc('\n');
  tx_hal_exit(3);
}

int main(void)
{
  uint32_t w[2] = { 0x12345678u, 0x0F0F0F0Fu }, v, scenario;
  tx_hal_init();
  memcpy(&scenario, (const void *)(uintptr_t)TX_PF_MAILBOX, 4u);
  if (tx_nvm_open() != 0) tx_hal_exit(2);
  switch (scenario) {
  case 0:   /* legal: erase, write, erase, write other values */
    tx_nvm_erase_page(0u);
    tx_nvm_write_words(0u, w, 2u);
    tx_nvm_erase_page(0u);
    w[0] = 0xCAFEF00Du;
    tx_nvm_write_words(0u, w, 1u);
    tx_nvm_read(0u, &v, 4u);
    tx_hal_exit(v == 0xCAFEF00Du ? 0 : 1);
  case 1:   /* legal: a second write that only clears bits */
    tx_nvm_erase_page(0u);
    tx_nvm_write_words(0u, w, 1u);
    w[0] = 0x12345670u;
    tx_nvm_write_words(0u, w, 1u);
    tx_nvm_read(0u, &v, 4u);
    tx_hal_exit(v == 0x12345670u ? 0 : 1);
  case 2:   /* write without erase: sets bits that are 0 */
    tx_nvm_erase_page(0u);
    tx_nvm_write_words(0u, w, 1u);
    w[0] = 0xFFFFFFFFu;
    tx_nvm_write_words(0u, w, 1u);
    break;
  case 3:
    tx_nvm_write_words(4098u, w, 1u);
    break;
  case 4:
    tx_nvm_erase_page(100u);
    break;
  case 5:   /* nWRITE = 2: a third write of a word between erases, even of the same value */
    tx_nvm_erase_page(0u);
    tx_nvm_write_words(4u, &w[1], 1u);
    tx_nvm_write_words(4u, &w[1], 1u);
    tx_nvm_write_words(4u, &w[1], 1u);
    break;
  case 6:
    tx_nvm_write_words(tx_nvm_size(), w, 1u);
    break;
  case 7:   /* erase, then two writes: legal; the boot ends (a power cycle) */
    tx_nvm_erase_page(0u);
    tx_nvm_write_words(8u, &w[1], 1u);
    tx_nvm_write_words(8u, &w[1], 1u);
    tx_hal_exit(0);
  case 8:   /* the next boot after 7 writes the word a third time: the count survived the power cycle */
    tx_nvm_write_words(8u, &w[1], 1u);
    break;
  default:
    tx_hal_exit(2);
  }
  tx_hal_puts("no violation detected\n");
  tx_hal_exit(0);
}
