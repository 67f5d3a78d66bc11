/* tinyexit board HAL: the only board-specific API the firmware uses. One implementation per board
   variant is generated into tx_hal.c from firmware_templates/boards/{uart,tick,nvm,exit}/. */
#ifndef TX_HAL_H
#define TX_HAL_H
#include <stdint.h>

void tx_hal_init(void);

/* UART: blocking byte I/O. */
void tx_hal_putc(char c);
int tx_hal_getc(void);
void tx_hal_puts(const char *s);

/* Free-running tick counter (unit: TX_TICK_UNIT in tx_board.h). Call at least once per 2^24 ticks
   when the counter is SysTick (24 bits, extended in software without interrupts). */
uint32_t tx_hal_ticks(void);

/* NVM: memory-mapped reads at tx_hal_nvm(); writes through the driver. Offsets are from the NVM start.
   'nrf_nvmc' (real flash) and 'flash_sim' (the same rules in RAM, for emulation): erasing a page sets it
   to 0xFF, a word write can only clear bits (write to erased words). 'ram' (PSRAM, CCM): plain writes;
   erase also sets 0xFF, so code written for flash works unchanged. */
const uint8_t *tx_hal_nvm(void);
uint32_t tx_hal_nvm_size(void);
uint32_t tx_hal_nvm_page_size(void);
int tx_hal_nvm_erase_page(uint32_t offset);                          /* offset: page aligned; 0 = ok */
int tx_hal_nvm_write(uint32_t offset, const void *src, uint32_t len); /* word aligned offset and len */
/* Reads len bytes at offset: a copy from tx_hal_nvm() for a memory-mapped NVM; 'spi_fram' (an external SPI FRAM,
   byte writes, no erase: erase_page is a no-op) reads through its bus, tx_hal_nvm() is not usable there
   (TX_HAL_NVM_MAPPED 0 in tx_board.h). */
void tx_hal_nvm_read(uint32_t offset, void *dst, uint32_t len);

/* Stack high-water mark in bytes (0 where it is not measured, e.g. the host build). */
uint32_t tx_hal_stack_used(void);

/* End the run: semihosting SYS_EXIT_EXTENDED in emulation (the emulator's exit status is `code`),
   otherwise stop the core. */
void tx_hal_exit(int code) __attribute__((noreturn));

#endif
