/* Runtime hooks (tx_rt_hal.h) for the real nRF52840, behind the POWER peripheral's power-fail comparator (POF).
 * nRF52840 Product Specification v1.x, chapter "POWER - Power supply", section "Power-fail comparator" and its
 * register table (POWER base 0x40000000):
 *   EVENTS_POFWARN  +0x108  set by hardware when VDD falls below POFCON.THRESHOLD (an event: it is generated on
 *                           the falling crossing, stays 1 until software writes 0)
 *   POFCON          +0x510  bit 0 POF (enable the comparator), bits 4:1 THRESHOLD (V17 = 4 ... V28 = 15:
 *                           1.7 V to 2.8 V in 100 mV steps; values below 4 must not be used), bits 11:8
 *                           THRESHOLDVDDH (VDDH supply, unused here)
 * Call tx_rt_nrf52_init() once at boot with the threshold code. Two signals are drawn from the one event:
 *   tx_hal_power_warning()  just-in-time checkpointing: 1 once per event (the event is cleared when read, so a
 *                           supply that recovers and falls again gives a new episode and a new commit)
 *   tx_hal_low_energy()     the energy-adaptive exits: sticky for the rest of the boot once the event was seen
 * Caution (PS v1.7 "POWER", and nRF52840 erratum 242 "NVMC operations during POFWARN cause the CPU to hang"):
 * with the comparator enabled and VDD below the threshold the NVMC refuses flash writes. A just-in-time
 * checkpoint into the internal flash must turn POF off first (tx_rt_nrf52_pof_off); with an external FRAM
 * (boards/nrf52840-fram.yaml) it can stay on.
 * Compiled in the tests; not run here (no board): the register addresses are the PS's. */
#include <stdint.h>

#include "tx_hal.h"
#include "tx_rt_hal.h"

#define NRF_POWER_BASE 0x40000000u
#define POWER_EVENTS_POFWARN (*(volatile uint32_t *)(NRF_POWER_BASE + 0x108u))
#define POWER_POFCON (*(volatile uint32_t *)(NRF_POWER_BASE + 0x510u))

void tx_rt_nrf52_init(uint32_t threshold_code);
void tx_rt_nrf52_pof_off(void);

static uint32_t pof_seen;   /* the event was seen in this boot (RAM: a new boot starts without it) */

void tx_rt_nrf52_init(uint32_t threshold_code)
{
  POWER_EVENTS_POFWARN = 0u;
  POWER_POFCON = 1u | ((threshold_code & 0xFu) << 1);   /* POF enable, THRESHOLD */
  pof_seen = 0u;
}

/* Turns the comparator off (POFCON.POF = 0): needed before NVMC writes below the threshold (see above). */
void tx_rt_nrf52_pof_off(void) { POWER_POFCON = POWER_POFCON & ~1u; }

int tx_hal_power_warning(void)
{
  if (POWER_EVENTS_POFWARN == 0u) return 0;
  POWER_EVENTS_POFWARN = 0u;   /* one episode per falling crossing */
  pof_seen = 1u;
  return 1;
}

/* Sticky: the runtime latches the exit decision anyway. */
int tx_hal_low_energy(void) { return pof_seen || POWER_EVENTS_POFWARN != 0u; }

void tx_hal_work_done(uint32_t units) { (void)units; }

void tx_hal_commit_mark(uint32_t begin) { (void)begin; }

void tx_hal_fatal(const char *message)
{
  tx_hal_puts("FAULT tinyexit runtime: ");
  tx_hal_puts(message);
  tx_hal_putc('\n');
  tx_hal_exit(3);
}
