/* Drives the host NVM HAL built with TX_NVM_NVMC_RULES through one scenario (argv[1]); the tests expect
 * the legal ones to end with status 0 and every rule violation to abort with "NVMC rule". */
#include <stdio.h>
#include <string.h>

#include "tx_nvm.h"

int main(int argc, char **argv)
{
  uint32_t w[2] = { 0x12345678u, 0x0F0F0F0Fu }, v;
  const char *s = argc > 1 ? argv[1] : "";
  if (tx_nvm_open() != 0) return 2;
  tx_nvm_erase_page(0u);
  tx_nvm_write_words(0u, w, 2u);
  if (strcmp(s, "erase-write") == 0) {           /* legal: erase, write, erase, write other values */
    tx_nvm_erase_page(0u);
    w[0] = 0xCAFEF00Du;
    tx_nvm_write_words(0u, w, 1u);
    tx_nvm_read(0u, &v, 4u);
    return v == 0xCAFEF00Du ? 0 : 1;
  } else if (strcmp(s, "clear-bits") == 0) {     /* legal: a second write that only clears bits */
    w[0] = 0x12345670u;
    tx_nvm_write_words(0u, w, 1u);
    tx_nvm_read(0u, &v, 4u);
    return v == 0x12345670u ? 0 : 1;
  } else if (strcmp(s, "write-without-erase") == 0) {
    w[0] = 0xFFFFFFFFu;                          /* sets bits that are 0 */
    tx_nvm_write_words(0u, w, 1u);
  } else if (strcmp(s, "unaligned-write") == 0) {
    tx_nvm_write_words(4098u, w, 1u);
  } else if (strcmp(s, "unaligned-erase") == 0) {
    tx_nvm_erase_page(100u);
  } else if (strcmp(s, "third-write") == 0) {    /* nWRITE = 2: a third write of a word without erase */
    tx_nvm_write_words(4u, &w[1], 1u);
    tx_nvm_write_words(4u, &w[1], 1u);
  } else if (strcmp(s, "outside") == 0) {
    tx_nvm_write_words(tx_nvm_size(), w, 1u);
  }
  printf("no violation detected\n");
  return 0;
}
