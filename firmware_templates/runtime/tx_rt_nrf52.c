/* Runtime hooks (tx_rt_hal.h) for the real nRF52840: low energy = the power-fail comparator's warning
 * (POWER.EVENTS_POFWARN, nRF52840 product specification 5.3.7). Call tx_rt_nrf52_init() once at boot with
 * the threshold code (POFCON.THRESHOLD: 4 = 1.7 V ... 15 = 2.8 V, 100 mV steps); from then on the runtime
 * finishes at the next exit point once VDD has dropped below it.
 * Compiled in the tests; not run here (no board): the register addresses are the datasheet's. */
#include <stdint.h>

#include "tx_hal.h"
#include "tx_rt_hal.h"

#define NRF_POWER_BASE 0x40000000u
#define POWER_EVENTS_POFWARN (*(volatile uint32_t *)(NRF_POWER_BASE + 0x108u))
#define POWER_POFCON (*(volatile uint32_t *)(NRF_POWER_BASE + 0x510u))

void tx_rt_nrf52_init(uint32_t threshold_code);

void tx_rt_nrf52_init(uint32_t threshold_code)
{
  POWER_EVENTS_POFWARN = 0u;
  POWER_POFCON = 1u | ((threshold_code & 0xFu) << 1);   /* POF enable, THRESHOLD */
}

/* The event stays set once VDD crossed the threshold: the decision is latched by the runtime anyway. */
int tx_hal_low_energy(void) { return POWER_EVENTS_POFWARN != 0u; }

void tx_hal_work_done(uint32_t units) { (void)units; }

void tx_hal_commit_mark(uint32_t begin) { (void)begin; }

void tx_hal_fatal(const char *message)
{
  tx_hal_puts("FAULT tinyexit runtime: ");
  tx_hal_puts(message);
  tx_hal_putc('\n');
  tx_hal_exit(3);
}
