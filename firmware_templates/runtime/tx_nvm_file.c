/* Host NVM HAL: the NVM is a file mapped with mmap(MAP_SHARED), so every word written is in the file the
 * moment it is written and survives the process being killed (RAM lost, NVM kept).
 *
 * Environment:
 *   TX_NVM_FILE     path of the NVM image (its size, a multiple of 4 KiB, is the NVM size)
 *   TX_CUT_EVENTS=k cut the power after exactly k NVM events (one event = one 32-bit word written or one
 *                   page erased); a cut on an erase leaves the page half erased. The process ends with
 *                   _exit(TX_CUT_EXIT_CODE) at once, without flushing anything: like a brown-out.
 *   TX_CUT_TORN=1   a cut that lands on a word write leaves that word half programmed (some of the bits it
 *                   would clear stay set), as flash interrupted mid-write can.
 * Power cuts after a number of work units are in tx_rt_host.c.
 * Built with TX_NVM_NVMC_RULES it also enforces the nRF52840 NVMC rules (tx_nvm_rules.h), including at
 * most TX_NVM_MAX_WRITES_PER_WORD writes per word between erases. */
#define _DEFAULT_SOURCE
#include "tx_nvm.h"
#include "tx_nvm_host.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tx_rt_hal.h"
#include "tx_nvm_rules.h"

#ifndef TX_NVM_MAX_WRITES_PER_WORD
#define TX_NVM_MAX_WRITES_PER_WORD 2u   /* nRF52840 product specification: nWRITE */
#endif
#define TX_NVM_FILE_MAX (16u * 1024u * 1024u)

static uint8_t *nvm;
static uint32_t nvm_size;
static uint64_t events, cut_events = UINT64_MAX;
static int torn;
static tx_nvm_host_stats_t stats;
#ifdef TX_NVM_NVMC_RULES
static uint8_t writes_since_erase[TX_NVM_FILE_MAX / TX_NVM_WORD_SIZE];
#endif

static uint64_t env_u64(const char *name, uint64_t fallback)
{
  const char *v = getenv(name);
  return (v && *v) ? strtoull(v, NULL, 0) : fallback;
}

int tx_nvm_open(void)
{
  const char *path = getenv("TX_NVM_FILE");
  struct stat st;
  int fd;
  if (nvm) return 0;
  if (!path) { fprintf(stderr, "tx_nvm_file: set TX_NVM_FILE to the NVM image path\n"); return -1; }
  fd = open(path, O_RDWR);
  if (fd < 0 || fstat(fd, &st) != 0) { perror(path); return -1; }
  if (st.st_size <= 0 || st.st_size % TX_NVM_PAGE_SIZE != 0 || st.st_size > (off_t)TX_NVM_FILE_MAX) {
    fprintf(stderr, "tx_nvm_file: %s: size must be a nonzero multiple of %u up to %u bytes\n", path,
            TX_NVM_PAGE_SIZE, TX_NVM_FILE_MAX);
    close(fd);
    return -1;
  }
  nvm_size = (uint32_t)st.st_size;
  nvm = mmap(NULL, nvm_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (nvm == MAP_FAILED) { nvm = NULL; perror("mmap"); return -1; }
  cut_events = env_u64("TX_CUT_EVENTS", UINT64_MAX);
  torn = env_u64("TX_CUT_TORN", 0) != 0;
  return 0;
}

uint32_t tx_nvm_size(void) { return nvm_size; }

void tx_nvm_read(uint32_t offset, void *dst, uint32_t len)
{
  if (offset > nvm_size || len > nvm_size - offset) tx_hal_fatal("NVM read outside the NVM");
  memcpy(dst, nvm + offset, len);
}

/* Counts one event; when the budget is spent the power goes. */
static int power_left(void)
{
  if (events >= cut_events) return 0;
  events++;
  return 1;
}

void tx_nvm_erase_page(uint32_t offset)
{
#ifdef TX_NVM_NVMC_RULES
  tx_nvmc_check_erase(offset, nvm_size);
  memset(writes_since_erase + offset / TX_NVM_WORD_SIZE, 0, TX_NVM_PAGE_SIZE / TX_NVM_WORD_SIZE);
#else
  if (offset % TX_NVM_PAGE_SIZE || offset >= nvm_size) tx_hal_fatal("NVM erase outside the NVM or unaligned");
#endif
  if (!power_left()) {
    memset(nvm + offset, 0xFF, TX_NVM_PAGE_SIZE / 2u);   /* interrupted erase: part of the page done */
    tx_nvm_host_power_cut("erase");
  }
  memset(nvm + offset, 0xFF, TX_NVM_PAGE_SIZE);
  stats.pages_erased++;
}

void tx_nvm_write_words(uint32_t offset, const uint32_t *src, uint32_t nwords)
{
  uint32_t k;
#ifdef TX_NVM_NVMC_RULES
  tx_nvmc_check_write(offset, nwords, nvm_size);
#else
  if (offset % TX_NVM_WORD_SIZE || offset > nvm_size || nwords > (nvm_size - offset) / TX_NVM_WORD_SIZE)
    tx_hal_fatal("NVM write outside the NVM or unaligned");
#endif
  for (k = 0u; k < nwords; k++) {
    uint32_t off = offset + k * TX_NVM_WORD_SIZE;
#ifdef TX_NVM_NVMC_RULES
    uint32_t old;
    memcpy(&old, nvm + off, sizeof old);
    tx_nvmc_check_word(old, src[k]);
    if (++writes_since_erase[off / TX_NVM_WORD_SIZE] > TX_NVM_MAX_WRITES_PER_WORD)
      tx_hal_fatal("NVMC rule: word written more than nWRITE times without erase");
#endif
    if (!power_left()) {
      if (torn) {
        /* a deterministic pseudo-random subset of the bits to clear is cleared */
        uint32_t cur, mix = (uint32_t)(events * 2654435761u);
        memcpy(&cur, nvm + off, sizeof cur);
        cur &= src[k] | (mix ^ (mix >> 13));
        memcpy(nvm + off, &cur, sizeof cur);
      }
      tx_nvm_host_power_cut("write");
    }
    memcpy(nvm + off, &src[k], sizeof src[k]);   /* a 32-bit word lands whole, as on the NVMC */
    stats.words_written++;
  }
}

const tx_nvm_host_stats_t *tx_nvm_host_stats(void)
{
  stats.events = events;
  return &stats;
}
