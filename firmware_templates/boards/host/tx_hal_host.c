/* tinyexit HAL for a host build of the firmware (tests compare it with the emulated board):
   stdout/stdin as the UART, no tick counter (always 0), NVM in a static buffer with flash rules. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tx_hal.h"

#define HOST_NVM_SIZE 16384u
#define HOST_NVM_PAGE 4096u
static uint8_t host_nvm[HOST_NVM_SIZE];

void tx_hal_init(void) { memset(host_nvm, 0xFF, sizeof host_nvm); }
void tx_hal_putc(char c) { putchar(c); }
int tx_hal_getc(void)
{
  int c = getchar();
  if (c == EOF) exit(4);  /* input ended: nothing more to run */
  return c;
}
void tx_hal_puts(const char *s) { fputs(s, stdout); }
uint32_t tx_hal_ticks(void) { return 0u; }
uint32_t tx_hal_stack_used(void) { return 0u; }
const uint8_t *tx_hal_nvm(void) { return host_nvm; }
uint32_t tx_hal_nvm_size(void) { return HOST_NVM_SIZE; }
uint32_t tx_hal_nvm_page_size(void) { return HOST_NVM_PAGE; }
int tx_hal_nvm_erase_page(uint32_t offset)
{
  if (offset % HOST_NVM_PAGE || offset >= HOST_NVM_SIZE) return -1;
  memset(host_nvm + offset, 0xFF, HOST_NVM_PAGE);
  return 0;
}
int tx_hal_nvm_write(uint32_t offset, const void *src, uint32_t len)
{
  if ((offset | len) & 3u || offset + len > HOST_NVM_SIZE) return -1;
  for (uint32_t i = 0; i < len; i++) host_nvm[offset + i] &= ((const uint8_t *)src)[i];
  return 0;
}
void tx_hal_exit(int code)
{
  fflush(stdout);
  exit(code);
}
