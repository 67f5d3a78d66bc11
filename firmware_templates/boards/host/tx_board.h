/* tinyexit host build: no board, no tick counter. */
#ifndef TX_BOARD_H
#define TX_BOARD_H
#define TX_BOARD_NAME "host"
#define TX_BOARD_EMULATED 0
#define TX_CLOCK_HZ 0u
#define TX_TICK_UNIT "none"
#define TX_INSTRUCTIONS_PER_TICK 0
#endif
