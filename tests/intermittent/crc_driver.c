/* Prints tx_crc32 of argv[1]'s bytes (hex string), whole and split at every position of argv[2] (a list
 * of offsets), from several start alignments; the test compares with zlib. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_crc32.h"

int main(int argc, char **argv)
{
  static unsigned char storage[4096 + 8];
  unsigned k, n = argc > 1 ? (unsigned)strlen(argv[1]) / 2u : 0u, shift;
  if (n > 4096u) return 2;
  for (shift = 0; shift < 4u; shift++) {       /* misaligned starts exercise the head loop */
    unsigned char *buf = storage + shift;
    uint32_t whole, split;
    unsigned cut = argc > 2 ? (unsigned)atoi(argv[2]) % (n + 1u) : 0u;
    for (k = 0; k < n; k++) {
      unsigned v;
      if (sscanf(argv[1] + 2 * k, "%2x", &v) != 1) return 2;
      buf[k] = (unsigned char)v;
    }
    whole = tx_crc32(0u, buf, n);
    split = tx_crc32(tx_crc32(0u, buf, cut), buf + cut, n - cut);
    printf("%08x %08x\n", (unsigned)whole, (unsigned)split);
  }
  return 0;
}
