/* Host HAL hooks for the harness.
 * Environment:
 *   TX_CUT_UNITS=k        cut the power once k work units have run in this boot (between two pieces of
 *                         work, i.e. before the next commit)
 *   TX_LOW_ENERGY_UNITS=k tx_hal_low_energy() turns true once k work units have run in this boot
 *   TX_WARN_UNITS=a[-b][,c[-d]...]  tx_hal_power_warning() is true while a <= work units of this boot < b
 *                         (no b: to the end of the boot); up to 4 episodes
 *   TX_TRACE_COMMITS=1    prints "TXMARK begin=0|1 events=N" at the start and end of every NVM commit (and
 *                         LOW_MARK write: one event) on stderr, so a test can aim a cut at it */
#define _DEFAULT_SOURCE
#include "tx_rt_hal.h"
#include "tx_nvm_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t units;
static uint32_t last_piece;   /* units of the last piece of work (the one a units cut ends) */
static int configured;
static uint64_t cut_units = UINT64_MAX, low_units = UINT64_MAX;
static int trace_commits;
#define MAX_WARN 4
static uint64_t warn_from[MAX_WARN], warn_to[MAX_WARN];
static int num_warn;

static void configure(void)
{
  const char *v;
  if (configured) return;
  configured = 1;
  if ((v = getenv("TX_CUT_UNITS")) && *v) cut_units = strtoull(v, NULL, 0);
  if ((v = getenv("TX_LOW_ENERGY_UNITS")) && *v) low_units = strtoull(v, NULL, 0);
  trace_commits = (v = getenv("TX_TRACE_COMMITS")) != NULL && *v == '1';
  if ((v = getenv("TX_WARN_UNITS")) && *v) {
    char *end;
    while (num_warn < MAX_WARN && *v) {
      warn_from[num_warn] = strtoull(v, &end, 0);
      warn_to[num_warn] = UINT64_MAX;
      if (*end == '-') warn_to[num_warn] = strtoull(end + 1, &end, 0);
      num_warn++;
      v = *end == ',' ? end + 1 : "";
    }
  }
}

int tx_hal_power_warning(void)
{
  int k;
  configure();
  for (k = 0; k < num_warn; k++)
    if (units >= warn_from[k] && units < warn_to[k]) return 1;
  return 0;
}

int tx_hal_low_energy(void)
{
  configure();
  return units >= low_units;
}

void tx_hal_work_done(uint32_t n)
{
  configure();
  units += n;
  last_piece = n;
  if (units >= cut_units) tx_nvm_host_power_cut("work");
}

void tx_hal_commit_mark(uint32_t begin)
{
  configure();
  if (trace_commits)
    fprintf(stderr, "TXMARK begin=%u events=%llu\n", (unsigned)begin,
            (unsigned long long)tx_nvm_host_stats()->events);
}

void tx_hal_fatal(const char *message)
{
  fprintf(stderr, "tinyexit runtime: fatal: %s\n", message);
  fflush(stderr);
  abort();
}

void tx_nvm_host_power_cut(const char *where)
{
  const tx_nvm_host_stats_t *s = tx_nvm_host_stats();
  char line[160];
  int n = snprintf(line, sizeof line, "TXCUT where=%s events=%llu units=%llu last=%u\n", where,
                   (unsigned long long)s->events, (unsigned long long)units, (unsigned)last_piece);
  if (n > 0) {
    ssize_t w = write(2, line, (size_t)n);   /* unbuffered: nothing else survives the cut */
    (void)w;
  }
  _exit(TX_CUT_EXIT_CODE);
}

uint64_t tx_hal_host_units(void) { return units; }
