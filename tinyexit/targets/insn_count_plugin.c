/* tinyexit instruction counter: a QEMU TCG plugin (plugin API version 1, QEMU 7.2).
 *
 * Debian's QEMU accepts -plugin but ships no qemu-plugin.h, so the few API functions used here are
 * declared below with their v1 signatures. Build: gcc -shared -fPIC -O2 -o libinsncount.so this.c
 *
 * Arguments (-plugin lib.so,arg=value,...):
 *   limit=N        exit QEMU after exactly N executed guest instructions (exit status 124 by default)
 *   limit_status=S the exit status used when the limit is reached
 *   start=ADDR     first instruction of a measured window (e.g. the entry of a marker function)
 *   stop=ADDR      instruction that closes the window; windows may repeat, their counts add up
 *   each=1         also print every window's count as it closes: tinyexit-window n=K insns=W
 *
 * Every instruction gets an inline counter increment, so the counts are exact (not per translation
 * block). Output through qemu_plugin_outs, visible with `-d plugin` (and `-D file`):
 *   tinyexit-insns total=T windows=K window_insns=W [limit_reached=N]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t count;          /* instructions executed so far (single vCPU) */
static uint64_t limit;          /* 0: no limit */
static int limit_status = 124;
static uint64_t start_addr = UINT64_MAX, stop_addr = UINT64_MAX;
static int in_window;
static uint64_t window_begin, window_insns, windows;
static int reported;
static int each;

static void report(const char *extra)
{
  char line[256];
  if (reported) return;
  reported = 1;
  snprintf(line, sizeof line, "tinyexit-insns total=%llu windows=%llu window_insns=%llu%s\n",
           (unsigned long long)count, (unsigned long long)windows, (unsigned long long)window_insns, extra);
  qemu_plugin_outs(line);
}

/* With a limit the count is incremented in a callback that can stop QEMU before the next instruction. */
static void on_insn_limited(unsigned int vcpu, void *udata)
{
  (void)vcpu;
  (void)udata;
  if (count == limit) {
    char extra[64];
    snprintf(extra, sizeof extra, " limit_reached=%llu", (unsigned long long)limit);
    report(extra);
    fflush(NULL);
    exit(limit_status);
  }
  count++;
}

static void on_start(unsigned int vcpu, void *udata)
{
  (void)vcpu;
  (void)udata;
  if (!in_window) {
    in_window = 1;
    window_begin = count;
  }
}

static void on_stop(unsigned int vcpu, void *udata)
{
  (void)vcpu;
  (void)udata;
  if (in_window) {
    in_window = 0;
    window_insns += count - window_begin;
    if (each) {
      char line[96];
      snprintf(line, sizeof line, "tinyexit-window n=%llu insns=%llu\n", (unsigned long long)windows,
               (unsigned long long)(count - window_begin));
      qemu_plugin_outs(line);
    }
    windows++;
  }
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; i++) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
    /* Window callbacks run before the instruction's own count, so a window counts the instructions
       from `start` (included) to `stop` (excluded). */
    if (vaddr == start_addr)
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_start, QEMU_PLUGIN_CB_NO_REGS, NULL);
    if (vaddr == stop_addr)
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_stop, QEMU_PLUGIN_CB_NO_REGS, NULL);
    if (limit)
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_insn_limited, QEMU_PLUGIN_CB_NO_REGS, NULL);
    else
      qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &count, 1);
  }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *udata)
{
  (void)id;
  (void)udata;
  report("");
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
  (void)info;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "limit=", 6) == 0) limit = strtoull(a + 6, NULL, 0);
    else if (strncmp(a, "limit_status=", 13) == 0) limit_status = atoi(a + 13);
    else if (strncmp(a, "start=", 6) == 0) start_addr = strtoull(a + 6, NULL, 0);
    else if (strncmp(a, "stop=", 5) == 0) stop_addr = strtoull(a + 5, NULL, 0);
    else if (strncmp(a, "each=", 5) == 0) each = atoi(a + 5);
    else {
      fprintf(stderr, "tinyexit insn plugin: unknown argument '%s' (use limit=, limit_status=, start=, stop=, each=)\n", a);
      return -1;
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
  qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
  return 0;
}
