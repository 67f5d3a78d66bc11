/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the same value as zlib's crc32(), so the host
 * tools can check what the firmware wrote. Default: slicing by 4 (4 KiB table); TX_CRC32_SMALL: a 64-byte
 * table, about 4.5 times slower. */
#ifndef TX_CRC32_H
#define TX_CRC32_H

#include <stdint.h>

/* Continue a CRC: start with crc = 0; tx_crc32(tx_crc32(0, a, n), b, m) == CRC of a followed by b. */
uint32_t tx_crc32(uint32_t crc, const void *data, uint32_t len);

#endif
