/* Checkpointing runtime, see tx_checkpoint.h for the protocol. */
#include "tx_checkpoint.h"

#include <string.h>

#include "tx_crc32.h"
#include "tx_rt_hal.h"
#include "tx_nvm.h"

#define HEADER_BYTES (TX_CKPT_HEADER_WORDS * 4u)
#define CRC_HEADER_BYTES (TX_CKPT_CRC_WORDS * 4u)   /* header bytes under the CRC (not LOW_MARK, not the CRC) */

/* Whether granularity `mode` checkpoints. A firmware built with TX_CKPT_OFF_ONLY (the bench app) runs only
 * TX_CKPT_OFF: the NVM paths (commits, slot reads, the fingerprint) and the energy polling compile out, and
 * tx_runtime_init refuses any other mode. */
#ifdef TX_CKPT_OFF_ONLY
#define CKPT_ON(mode) 0
#else
#define CKPT_ON(mode) ((mode) != TX_CKPT_OFF)
#endif

/* ---------------------------------------------------------------- pipeline shape */

/* Bytes of the boundary tensor stage s reads: the output of the last segment before it (0 for stage 0). */
static uint32_t boundary_len(const tx_pipeline_t *p, uint32_t s)
{
  while (s > 0u) {
    s--;
    if (p->stages[s].role == TX_STAGE_SEGMENT) return p->stages[s].model->output_size;
  }
  return 0u;
}

/* The boundary buffer belongs to the state while stage s still needs it: as its input before step 0 runs,
 * and during a whole confidence, exit head or pool stage (the next stages read it afterwards). The branch reads the
 * vector; only in confidence mode (a policy) does a segment run after it, so the boundary is state then. */
static int needs_boundary(const tx_pipeline_t *p, uint32_t s, uint32_t i, uint32_t u)
{
  const uint32_t role = p->stages[s].role;
  if (s == 0u) return 0;
  if (role == TX_STAGE_BRANCH) return p->policy != 0;
  return role == TX_STAGE_EXIT || role == TX_STAGE_POOL || role == TX_STAGE_CONFIDENCE || (i == 0u && u == 0u);
}

/* Bytes of the input of stage s (the model input for stage 0). */
static uint32_t stage_input_len(const tx_pipeline_t *p, uint32_t s)
{
  if (p->stages[s].role == TX_STAGE_BRANCH) return p->vector_size;
  return boundary_len(p, s);
}

/* The shared vector is state at every position (it accumulates the slices of all points run so far). */
static int has_vector(const tx_pipeline_t *p)
{
#ifdef TX_BROKEN_NO_VECTOR
  (void)p;
  return 0;
#else
  return p->vector != 0;
#endif
}

typedef void (*piece_fn)(void *ctx, int8_t *ram, uint32_t len);

/* Calls fn on each RAM range that makes up the state at position (s, i, u), in payload order, and returns
 * the total length. At (s, 0, 0) the model's input is not loaded yet: only the boundary is state. */
static uint32_t for_each_piece(const tx_pipeline_t *p, uint32_t s, uint32_t i, uint32_t u, piece_fn fn, void *ctx)
{
  uint32_t total = 0u;
  if (has_vector(p)) {
    if (fn) fn(ctx, p->vector, p->vector_size);
    total += p->vector_size;
  }
  if (needs_boundary(p, s, i, u)) {
    /* in the branch (confidence mode) the boundary holds the output of whichever segment ran last: all of it */
    uint32_t n = p->stages[s].role == TX_STAGE_BRANCH ? p->boundary_size : boundary_len(p, s);
    if (fn) fn(ctx, p->boundary, n);
    total += n;
  }
  if (i != 0u || u != 0u) {
    const tx_model_t *m = p->stages[s].model;
    uint32_t r;
    for (r = m->live_index[i]; r < m->live_index[i + 1u]; r++) {
      if (fn) fn(ctx, tx_arena + m->live[r].offset, m->live[r].size);
      total += m->live[r].size;
    }
  }
  return total;
}

static uint32_t fingerprint(const tx_pipeline_t *p)
{
  uint32_t crc = 0u, s, i;
  for (s = 0u; s < p->num_stages; s++) {
    const tx_model_t *m = p->stages[s].model;
    uint32_t shape[11];
    shape[0] = p->stages[s].role; shape[1] = p->stages[s].exit_index; shape[2] = m->num_steps;
    shape[3] = m->input_offset; shape[4] = m->input_size; shape[5] = m->output_offset;
    shape[6] = m->output_size; shape[7] = m->live_index[m->num_steps]; shape[8] = TX_ARENA_SIZE;
    shape[9] = p->stages[s].vector_offset;
    /* shared pipelines: the vector, whether the branch runs after every point (confidence mode) and whether
       low energy answers through a policy of its own */
    shape[10] = p->vector ? p->vector_size ^ (p->policy ? 0x80000000u : 0u) ^ (p->low_policy ? 0x40000000u : 0u)
                          : 0xFFFFFFFFu;
    crc = tx_crc32(crc, m->name, (uint32_t)strlen(m->name));
    crc = tx_crc32(crc, shape, sizeof shape);
    crc = tx_crc32(crc, m->units, m->num_steps * (uint32_t)sizeof m->units[0]);
    crc = tx_crc32(crc, m->live_index, (m->num_steps + 1u) * (uint32_t)sizeof m->live_index[0]);
    for (i = 0u; i < m->live_index[m->num_steps]; i++) crc = tx_crc32(crc, &m->live[i], sizeof m->live[i]);
  }
  return crc;
}

/* A shared-branch pipeline: seg, pool, seg, pool, ..., pool, branch; slices inside the vector. */
static int check_branch(const tx_pipeline_t *p)
{
  uint32_t s, n = p->num_stages;
  if (n < 3u || p->vector_size == 0u || p->stages[n - 1u].role != TX_STAGE_BRANCH ||
      p->stages[n - 2u].role != TX_STAGE_POOL || p->vector_zero_point < -128 || p->vector_zero_point > 127)
    return TX_ERR_CONFIG;
  for (s = 0u; s + 1u < n; s++) {
    const tx_stage_t *st = &p->stages[s];
    /* even stages are segments, odd ones their pools; pool k has exit index k */
    if (st->role != (s % 2u ? TX_STAGE_POOL : TX_STAGE_SEGMENT)) return TX_ERR_CONFIG;
    if (st->role == TX_STAGE_POOL && (st->exit_index != s / 2u || st->vector_offset > p->vector_size ||
                                      st->model->output_size > p->vector_size - st->vector_offset))
      return TX_ERR_CONFIG;
  }
  return TX_OK;
}

static int check_pipeline(const tx_pipeline_t *p, tx_granularity_t gran)
{
  uint32_t s, i, r;
  if (!p || !p->stages || p->num_stages == 0u) return TX_ERR_CONFIG;
  if (p->stages[0].role != TX_STAGE_SEGMENT) return TX_ERR_CONFIG;
  if (p->vector) {
    if (check_branch(p) != TX_OK) return TX_ERR_CONFIG;
  } else {
    if (p->stages[p->num_stages - 1u].role != TX_STAGE_SEGMENT) return TX_ERR_CONFIG;
    for (s = 0u; s < p->num_stages; s++) {
      const tx_stage_t *st = &p->stages[s];
      if (st->role != TX_STAGE_SEGMENT && st->role != TX_STAGE_EXIT && st->role != TX_STAGE_CONFIDENCE)
        return TX_ERR_CONFIG;
      /* a confidence stage decides whether the exit head of its exit, right after it, runs */
      if (st->role == TX_STAGE_CONFIDENCE && (p->stages[s + 1u].role != TX_STAGE_EXIT ||
                                               p->stages[s + 1u].exit_index != st->exit_index))
        return TX_ERR_CONFIG;
    }
  }
  if (gran.mode > TX_CKPT_OFF || (gran.mode <= TX_CKPT_UNITS && gran.mode != TX_CKPT_NONE && gran.every == 0u))
    return TX_ERR_CONFIG;
  if (p->stop && gran.mode != TX_CKPT_OFF) return TX_ERR_CONFIG;   /* a stop hook is not durable */
#ifdef TX_CKPT_OFF_ONLY
  if (gran.mode != TX_CKPT_OFF) return TX_ERR_CONFIG;
#endif
  /* in place only without checkpoints (tx_checkpoint.h); branch pipelines are planned model by model */
  if (p->chained && (gran.mode != TX_CKPT_OFF || p->vector)) return TX_ERR_CONFIG;
  for (s = 0u; s < p->num_stages; s++) {
    const tx_model_t *m = p->stages[s].model;
    if (!m || m->num_steps == 0u) return TX_ERR_CONFIG;
    if (s > 0u && m->input_size != stage_input_len(p, s)) return TX_ERR_CONFIG;
    if (p->stages[s].role == TX_STAGE_SEGMENT && s + 1u < p->num_stages && !p->chained &&
        (!p->boundary || p->boundary_size < m->output_size)) return TX_ERR_CONFIG;
    for (i = 0u; i < m->num_steps; i++) {
      if (m->units[i] == 0u || m->live_index[i] > m->live_index[i + 1u]) return TX_ERR_CONFIG;
    }
    for (r = 0u; r < m->live_index[m->num_steps]; r++) {
      if (m->live[r].offset > TX_ARENA_SIZE || m->live[r].size > TX_ARENA_SIZE - m->live[r].offset)
        return TX_ERR_CONFIG;
    }
  }
  return TX_OK;
}

static uint32_t max_payload(const tx_pipeline_t *p)
{
  uint32_t best = 0u, s, i, n;
  for (s = 0u; s < p->num_stages; s++) {
    const tx_model_t *m = p->stages[s].model;
    n = for_each_piece(p, s, 0u, 0u, 0, 0);
    if (n > best) best = n;
    for (i = 0u; i < m->num_steps; i++) {
      /* unit 1 stands for "inside step i" (for step 0 it differs from the (0,0) position) */
      n = for_each_piece(p, s, i, 1u, 0, 0);
      if (n > best) best = n;
    }
    if (m->output_size > best) best = m->output_size;   /* a DONE record */
  }
  return best;
}

/* ---------------------------------------------------------------- slots */

static int seq_newer(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }

/* Reads the full record header at NVM offset `base` (at most `room` bytes for the record); returns 1 when it is valid
 * (magic, length, and, with check_crc, the CRC over header and payload). */
static int read_at(uint32_t base, uint32_t room, uint32_t hdr[TX_CKPT_HEADER_WORDS], int check_crc)
{
  tx_nvm_read(base, hdr, 4u);   /* the magic first: most pages of a log hold no header */
  if (hdr[TX_H_MAGIC] != TX_CKPT_MAGIC || room < HEADER_BYTES) return 0;
  tx_nvm_read(base + 4u, hdr + 1, HEADER_BYTES - 4u);
  if (hdr[TX_H_VERSION] != TX_CKPT_VERSION) return 0;
  if (hdr[TX_H_PAYLOAD_LEN] > room - HEADER_BYTES) return 0;
#ifdef TX_BROKEN_NO_CRC
  (void)check_crc;
#else
  if (check_crc) {
    uint32_t crc = tx_crc32(0u, hdr, CRC_HEADER_BYTES);
    uint32_t off = base + HEADER_BYTES, left = hdr[TX_H_PAYLOAD_LEN];
    uint8_t chunk[64];
    while (left > 0u) {
      uint32_t n = left < sizeof chunk ? left : (uint32_t)sizeof chunk;
      tx_nvm_read(off, chunk, n);
      crc = tx_crc32(crc, chunk, n);
      off += n;
      left -= n;
    }
    if (crc != hdr[TX_H_CRC]) return 0;
  }
#endif
  return 1;
}

/* Reads slot `slot`'s header (a ring: the record at the slot's start); see read_at. */
static int read_slot(const tx_runtime_t *rt, uint32_t slot, uint32_t hdr[TX_CKPT_HEADER_WORDS], int check_crc)
{
  return read_at(slot * rt->slot_size, rt->slot_size, hdr, check_crc);
}

#define PACK_HEADER_BYTES (TX_CKPT_PACK_HEADER_WORDS * 4u)
#define PACKED_STAGE 0xFFFFFFFFu   /* TX_H_STAGE of a packed record read into the full layout (it holds no stage) */

/* Bytes of a packed record with `len` payload bytes (header, payload in whole words, CRC). */
static uint32_t pack_bytes(uint32_t len) { return PACK_HEADER_BYTES + (len + 3u) / 4u * 4u + 4u; }

static uint32_t page_ceil(uint32_t off) { return (off + TX_NVM_PAGE_SIZE - 1u) / TX_NVM_PAGE_SIZE * TX_NVM_PAGE_SIZE; }

/* A log: the record (full or packed) at NVM offset `off`, its header in the full layout (a packed one's fields
 * mapped, TX_H_STAGE = PACKED_STAGE, TX_H_FINGERPRINT = `fingerprint`, its CRC's seed); returns its size in bytes (whole words), 0 when none is valid there (with
 * check_crc: also its CRC). A packed record lies inside one page. */
static uint32_t record_at(uint32_t off, uint32_t hdr[TX_CKPT_HEADER_WORDS], int check_crc, uint32_t fingerprint)
{
  const uint32_t size = tx_nvm_size();
  uint32_t w[TX_CKPT_PACK_HEADER_WORDS], len, n;
  if (off % 4u || off + 4u > size) return 0u;
  tx_nvm_read(off, w, 4u);
  if ((w[TX_P_TAG] >> 24) != TX_CKPT_PACK_TAG) {
    if (w[0] != TX_CKPT_MAGIC || !read_at(off, size - off, hdr, check_crc)) return 0u;   /* one read: no record */
    return HEADER_BYTES + (hdr[TX_H_PAYLOAD_LEN] + 3u) / 4u * 4u;
  }
  len = w[TX_P_TAG] & TX_CKPT_PACK_MAX_LEN;
  n = pack_bytes(len);
  if (off / TX_NVM_PAGE_SIZE != (off + n - 1u) / TX_NVM_PAGE_SIZE || off + n > size) return 0u;
  tx_nvm_read(off + 4u, w + 1, PACK_HEADER_BYTES - 4u);
  memset(hdr, 0, TX_CKPT_HEADER_WORDS * 4u);
  hdr[TX_H_MAGIC] = TX_CKPT_MAGIC;
  hdr[TX_H_VERSION] = TX_CKPT_VERSION;
  hdr[TX_H_SEQ] = w[TX_P_SEQ];
  hdr[TX_H_FINGERPRINT] = fingerprint;   /* in its CRC: true of a record whose CRC was checked */
  hdr[TX_H_INPUT_ID] = w[TX_P_INPUT_ID];
  hdr[TX_H_STAGE] = PACKED_STAGE;
  hdr[TX_H_FLAGS] = (w[TX_P_TAG] >> 20) & 0xFu;
  hdr[TX_H_EXIT] = (w[TX_P_TAG] >> 12) & 0xFFu;
  hdr[TX_H_PAYLOAD_LEN] = len;
  hdr[TX_H_LOW_MARK] = 0xFFFFFFFFu;
  tx_nvm_read(off + n - 4u, &hdr[TX_H_CRC], 4u);
#ifdef TX_BROKEN_NO_CRC
  (void)check_crc;
#else
  if (check_crc) {
    uint8_t chunk[64];
    uint32_t crc = tx_crc32(tx_crc32(0u, &fingerprint, 4u), w, PACK_HEADER_BYTES), p = off + PACK_HEADER_BYTES;
    uint32_t left = len;
    while (left > 0u) {
      uint32_t k = left < sizeof chunk ? left : (uint32_t)sizeof chunk;
      tx_nvm_read(p, chunk, k);
      crc = tx_crc32(crc, chunk, k);
      p += k;
      left -= k;
    }
    if (crc != hdr[TX_H_CRC]) return 0u;
  }
#endif
  return n;
}

/* Writes nwords words at NVM offset `off`, into erased words. On flash the words equal to 0xFFFFFFFF are not
 * programmed (they already are): a page that reads all 0xFF then holds no programmed word (tx_checkpoint.h,
 * prepared slot). Without erase (FRAM) every word is written. */
static void program(uint32_t off, const uint32_t *src, uint32_t nwords)
{
#if TX_NVM_ERASE
  uint32_t k = 0u;
  while (k < nwords) {
    uint32_t run = k;
    while (run < nwords && src[run] != 0xFFFFFFFFu) run++;
    if (run > k) tx_nvm_write_words(off + 4u * k, src + k, run - k);
    k = run;
    while (k < nwords && src[k] == 0xFFFFFFFFu) k++;
  }
#else
  tx_nvm_write_words(off, src, nwords);
#endif
}

/* Streams bytes to NVM in whole words, keeping the CRC. */
typedef struct {
  uint32_t off;         /* NVM offset of the next word to write */
  uint32_t crc;
  uint32_t fill;        /* bytes in buf */
  uint32_t written;     /* bytes written to NVM */
  uint32_t buf[16];
} writer_t;

static void writer_flush(writer_t *w)
{
  uint32_t words = (w->fill + 3u) / 4u;
  if (w->fill % 4u) memset((uint8_t *)w->buf + w->fill, 0, 4u - w->fill % 4u);   /* pad: outside the CRC */
  if (words) program(w->off, w->buf, words);
  w->off += words * 4u;
  w->written += words * 4u;
  w->fill = 0u;
}

static void writer_put(void *ctx, int8_t *ram, uint32_t len)
{
  writer_t *w = (writer_t *)ctx;
  const uint8_t *src = (const uint8_t *)ram;
  w->crc = tx_crc32(w->crc, src, len);
  /* Fast path: nothing staged and a word-aligned source: whole words go to the NVM straight from RAM. */
  if (w->fill == 0u && ((uintptr_t)src & 3u) == 0u && len >= 4u) {
    uint32_t words = len / 4u;
    program(w->off, (const uint32_t *)(const void *)src, words);
    w->off += words * 4u;
    w->written += words * 4u;
    src += words * 4u;
    len -= words * 4u;
  }
  while (len > 0u) {
    uint32_t room = (uint32_t)sizeof w->buf - w->fill;
    uint32_t n = len < room ? len : room;
    memcpy((uint8_t *)w->buf + w->fill, src, n);
    w->fill += n;
    src += n;
    len -= n;
    if (w->fill == sizeof w->buf) writer_flush(w);
  }
}

typedef struct { uint32_t off; } reader_t;

static void reader_get(void *ctx, int8_t *ram, uint32_t len)
{
  reader_t *r = (reader_t *)ctx;
  tx_nvm_read(r->off, ram, len);
  r->off += len;
}

/* Bytes of a record of the largest size (whole pages): a log wraps when the rest is shorter. */
static uint32_t largest_bytes(const tx_runtime_t *rt) { return page_ceil(HEADER_BYTES + rt->max_payload); }

/* NVM offset of the next commit: a full record (`packed` 0) or a packed one of `packed` bytes.
 * A ring: the slot after the newest valid one (with two slots "the other one", with more the oldest: a ring
 * spreads the erases of flash over num_slots slots). A log: right after the newest record (a packed record of a
 * boot that already committed, when it fits inside that record's page), else the next page boundary, or page 0
 * when the rest from there is too short for a record of the largest size (whatever this one's size: where a full
 * record goes, and so where one cut short went, depends on the newest record only; prepare_slot relies on it; a
 * packed one cut short lies in the newest record's page, never written again). The newest record then lies at or
 * past the largest record's size (the NVM holds three of them), so it stays. */
static uint32_t next_base(const tx_runtime_t *rt, uint32_t packed)
{
#ifdef TX_BROKEN_SINGLE_SLOT
  (void)rt; (void)packed;
  return 0u;
#else
  if (rt->log) {
#ifdef TX_BROKEN_PACK_FRESH
    const uint32_t fresh = 0u;   /* broken on purpose: a boot's first commit packs into words a cut may have counted */
#else
    const uint32_t fresh = rt->fresh;
#endif
    uint32_t aligned;
    if (fresh) return rt->fresh_base;   /* a boot's first commit: found at init (find_fresh_base) */
    if (rt->cur_slot < 0) return 0u;
    if (packed && rt->cur_end / TX_NVM_PAGE_SIZE == (rt->cur_end + packed - 1u) / TX_NVM_PAGE_SIZE)
      return rt->cur_end;   /* inside the newest record's page, which no later boot writes again */
    aligned = page_ceil(rt->cur_end);
    return aligned + largest_bytes(rt) > rt->num_slots * TX_NVM_PAGE_SIZE ? 0u : aligned;
  }
  return (rt->cur_slot < 0 ? 0u : ((uint32_t)rt->cur_slot + 1u) % rt->num_slots) * rt->slot_size;
#endif
}

/* NVM offset of the newest record and of its payload. */
static uint32_t cur_base(const tx_runtime_t *rt)
{
  return rt->log ? rt->cur_off : (uint32_t)rt->cur_slot * rt->slot_size;
}

static uint32_t cur_payload(const tx_runtime_t *rt)
{
  return cur_base(rt) + (rt->cur_packed ? PACK_HEADER_BYTES : HEADER_BYTES);
}

#if TX_NVM_ERASE && !defined(TX_BROKEN_NO_ERASE)
/* Whether the page at `off` reads erased (every word 0xFFFFFFFF); stops at the first other word. */
static int page_erased(uint32_t off)
{
  uint32_t buf[64], k, n;   /* 256 bytes a read: fewer calls (an erased page is read whole) */
#ifdef TX_BROKEN_TRUST_FIRST_WORD
  tx_nvm_read(off, buf, 4u);   /* broken on purpose: a page whose first word reads erased counts as erased */
  return buf[0] == 0xFFFFFFFFu;
#endif
  for (n = 0u; n < TX_NVM_PAGE_SIZE; n += sizeof buf) {
    tx_nvm_read(off + n, buf, sizeof buf);
    for (k = 0u; k < 64u; k++)
      if (buf[k] != 0xFFFFFFFFu) return 0;
  }
  return 1;
}

/* Erases the page at `off` unless this boot's preparation erased it or it reads erased (see tx_checkpoint.h: a page
 * outside the prepared range holds no write cut short, so reading it erased means it is). */
static void erase_unless_erased(tx_runtime_t *rt, uint32_t off)
{
  const int prepared = off >= rt->prep_base && off < rt->prep_base + rt->prep_pages * TX_NVM_PAGE_SIZE;
  if (prepared || page_erased(off)) {
    rt->stats.nvm_pages_skipped++;
  } else {
    tx_nvm_erase_page(off);
    rt->stats.nvm_pages_erased++;
  }
}
#endif

/* Whether a result of `len` bytes from exit `exit_index` is committed as a packed record (a log on flash). */
static int packs(const tx_runtime_t *rt, uint32_t flags, uint32_t exit_index, uint32_t len)
{
#if TX_NVM_ERASE
  return rt->log && (flags & TX_CKPT_FLAG_DONE) && len <= TX_CKPT_PACK_MAX_LEN && exit_index <= 0xFFu &&
         pack_bytes(len) <= TX_NVM_PAGE_SIZE;
#else
  (void)rt; (void)flags; (void)exit_index; (void)len;
  return 0;   /* without erase a log keeps page-aligned records (an old record is invalidated at its CRC word) */
#endif
}

/* Commits position (s, i, u), or with TX_CKPT_FLAG_DONE the result `data` of exit `exit_index`.
 * Order: erase the target pages (a packed record inside the current page erases none), header without CRC,
 * payload, CRC word last. Until the CRC word lands the target is invalid and the previous checkpoint stays the
 * newest valid one. */
static void commit(tx_runtime_t *rt, uint32_t s, uint32_t i, uint32_t u, uint32_t flags, uint32_t exit_index,
                   const int8_t *data, uint32_t data_len)
{
  uint32_t hdr[TX_CKPT_HEADER_WORDS];
  writer_t w;
  uint32_t base, len, size, pages, k, packed;
  if (!CKPT_ON(rt->gran.mode)) return;   /* checkpointing off: nothing goes to NVM */
  len = (flags & TX_CKPT_FLAG_DONE) ? data_len : for_each_piece(rt->p, s, i, u, 0, 0);
  flags |= rt->low_energy ? TX_CKPT_FLAG_LOW_ENERGY : 0u;
  packed = (uint32_t)packs(rt, flags, exit_index, len);
  size = packed ? pack_bytes(len) : HEADER_BYTES + (len + 3u) / 4u * 4u;
  base = next_base(rt, packed ? size : 0u);
  /* pages to erase: those the record starts (a packed record after the newest one starts none) */
  pages = base % TX_NVM_PAGE_SIZE ? 0u : (size + TX_NVM_PAGE_SIZE - 1u) / TX_NVM_PAGE_SIZE;
  memset(hdr, 0, sizeof hdr);
  hdr[TX_H_MAGIC] = TX_CKPT_MAGIC;
  hdr[TX_H_VERSION] = TX_CKPT_VERSION;
  hdr[TX_H_SEQ] = rt->seq + 1u;
  hdr[TX_H_FINGERPRINT] = rt->fingerprint;
  hdr[TX_H_INPUT_ID] = rt->input_id;
  hdr[TX_H_STAGE] = s;
  hdr[TX_H_STEP] = i;
  hdr[TX_H_UNIT] = u;
  hdr[TX_H_FLAGS] = flags;
  /* unfinished checkpoints record the answering point once the shared branch has decided it */
  hdr[TX_H_EXIT] = (flags & TX_CKPT_FLAG_DONE) ? exit_index : rt->answer;
  hdr[TX_H_PAYLOAD_LEN] = len;
  hdr[TX_H_LOW_MARK] = 0xFFFFFFFFu;   /* never written by a commit: stays erased for a later low-energy mark */
  hdr[TX_H_CRC] = 0xFFFFFFFFu;   /* stays erased until the end */

  tx_hal_commit_mark(1u);
#if TX_NVM_ERASE
#ifndef TX_BROKEN_NO_ERASE
  if (rt->lazy_pages) {   /* where prepare_slot looked: the boot's first commit goes there (next_base: fresh) */
    for (k = 0u; k < rt->lazy_pages; k++) {
      tx_nvm_erase_page(rt->prep_base + k * TX_NVM_PAGE_SIZE);   /* whatever it reads: a cut may have counted words */
      rt->stats.nvm_pages_prepared++;
    }
    rt->prep_pages = rt->lazy_pages;
    rt->lazy_pages = 0u;
  }
  for (k = 0u; k < pages; k++) erase_unless_erased(rt, base + k * TX_NVM_PAGE_SIZE);
  /* these pages are written from now on: later commits of this boot check the rest of the prepared range */
  if (base < rt->prep_base + rt->prep_pages * TX_NVM_PAGE_SIZE && rt->prep_base < base + size)
    rt->prep_pages = 0u;
#else
  (void)k; (void)pages;
#endif
#else
  (void)k; (void)pages;
  {
    const uint32_t invalid = 0xFFFFFFFFu;   /* no erase: the old record here is invalidated first */
    tx_nvm_write_words(base + HEADER_BYTES - 4u, &invalid, 1u);
  }
#endif
  memset(&w, 0, sizeof w);
  if (packed) {
    uint32_t ph[TX_CKPT_PACK_HEADER_WORDS];
    ph[TX_P_TAG] = TX_CKPT_PACK_TAG << 24 | (flags & 0xFu) << 20 | exit_index << 12 | len;
    ph[TX_P_SEQ] = hdr[TX_H_SEQ];
    ph[TX_P_INPUT_ID] = rt->input_id;
    program(base, ph, TX_CKPT_PACK_HEADER_WORDS);
    w.off = base + PACK_HEADER_BYTES;
    w.crc = tx_crc32(tx_crc32(0u, &rt->fingerprint, 4u), ph, PACK_HEADER_BYTES);
  } else {
    /* the header without its CRC (on flash LOW_MARK and CRC stay erased; without erase LOW_MARK is written) */
    program(base, hdr, TX_NVM_ERASE ? TX_CKPT_CRC_WORDS : TX_CKPT_CRC_WORDS + 1u);
    w.off = base + HEADER_BYTES;
    w.crc = tx_crc32(0u, hdr, CRC_HEADER_BYTES);
  }
  if (flags & TX_CKPT_FLAG_DONE) writer_put(&w, (int8_t *)(uintptr_t)data, data_len);
  else for_each_piece(rt->p, s, i, u, writer_put, &w);
  writer_flush(&w);

  hdr[TX_H_CRC] = w.crc;
  program(packed ? base + size - 4u : base + HEADER_BYTES - 4u, &hdr[TX_H_CRC], 1u);   /* the commit point */
  tx_hal_commit_mark(0u);

  rt->cur_slot = (int32_t)(base / (rt->log ? TX_NVM_PAGE_SIZE : rt->slot_size));
  rt->cur_off = base;
  rt->cur_end = base + size;
  rt->cur_packed = packed;
  rt->fresh = 0u;                /* this boot wrote the newest record: nothing after it was cut short */
  rt->seq = hdr[TX_H_SEQ];
  rt->cur_in_progress = (flags & TX_CKPT_FLAG_DONE) ? 0u : 1u;
  rt->cur_stage = s;
  rt->cur_step = i;
  rt->cur_unit = u;
  rt->cur_answer = rt->answer;
  rt->low_pending = 0u;          /* the header carries the flag from now on */
  rt->stats.commits++;
  rt->stats.nvm_bytes_written += (packed ? PACK_HEADER_BYTES + 4u : HEADER_BYTES) + w.written;
}

/* ---------------------------------------------------------------- API */

static void set_newest(tx_runtime_t *rt, uint32_t off, uint32_t size, const uint32_t *hdr)
{
  rt->cur_slot = (int32_t)(off / (rt->log ? TX_NVM_PAGE_SIZE : rt->slot_size));
  rt->cur_off = off;
  rt->cur_end = off + size;
  rt->cur_packed = hdr[TX_H_STAGE] == PACKED_STAGE;
  rt->seq = hdr[TX_H_SEQ];
}

/* A log: the newest valid record (tx_checkpoint.h, packed records): the newest record starting a page (by seq),
 * then the chain of records after it (each right after the one before, seq increasing); its last one, or when
 * that is torn the one before it. A page start whose chain holds no valid record is dropped and the next newest
 * page start tried. */
static void find_newest_in_log(tx_runtime_t *rt)
{
  uint32_t hdr[TX_CKPT_HEADER_WORDS], rejected[(TX_CKPT_MAX_SLOTS + 31u) / 32u];
  const uint32_t end = rt->num_slots * TX_NVM_PAGE_SIZE;
  memset(rejected, 0, sizeof rejected);
  for (;;) {
    int32_t best = -1;
    uint32_t best_seq = 0u, page, off, n, prev = 0u, prev_n = 0u, seq;
    for (page = 0u; page < rt->num_slots; page++) {
      if ((rejected[page / 32u] >> (page % 32u)) & 1u) continue;
      if (!record_at(page * TX_NVM_PAGE_SIZE, hdr, 0, rt->fingerprint) ||
          (best >= 0 && !seq_newer(hdr[TX_H_SEQ], best_seq)))
        continue;
      best = (int32_t)page;
      best_seq = hdr[TX_H_SEQ];
    }
    if (best < 0) return;
    off = (uint32_t)best * TX_NVM_PAGE_SIZE;
    n = record_at(off, hdr, 0, rt->fingerprint);
    seq = best_seq;
    for (;;) {
      const uint32_t next = off + n;
      uint32_t m;
      if (next >= end) break;
      m = record_at(next, hdr, 0, rt->fingerprint);
      if (!m || !seq_newer(hdr[TX_H_SEQ], seq)) break;
      prev = off;
      prev_n = n;
      off = next;
      n = m;
      seq = hdr[TX_H_SEQ];
    }
    if (record_at(off, hdr, 1, rt->fingerprint)) {
      set_newest(rt, off, n, hdr);
      return;
    }
    if (prev_n && record_at(prev, hdr, 1, rt->fingerprint)) {
      set_newest(rt, prev, prev_n, hdr);
      return;
    }
    rejected[(uint32_t)best / 32u] |= 1u << ((uint32_t)best % 32u);
  }
}

#if TX_CKPT_MOVE_ON && TX_NVM_ERASE && !defined(TX_BROKEN_NO_ERASE) && !defined(TX_CKPT_OFF_ONLY)
/* Pages from `base` that a boot since the newest record visibly took (0: none): a JIT boot's preparation mark.
 * Only marks: a torn record header (the next sequence number) would be as safe to move past, but each one is a
 * candidate that find_newest_in_log must reject by a CRC pass and a rescan of the log at every later boot, so a
 * chain of them grows the work a boot does before its first commit until no charge reaches it (measured under
 * the RF trace with per-layer checkpoints: no inference in 400 boots). A page whose mark did not land reads erased
 * but for one counted write of word 0, and the boot that finds it erases it whatever it reads, as before. */
static uint32_t taken_pages(uint32_t base)
{
  uint32_t w;
  tx_nvm_read(base, &w, sizeof w);
  return w == TX_CKPT_PREP_MARK ? 1u : 0u;
}
#endif

/* A log at init: where the boot's first commit goes (rt->fresh_base). The page after the newest record (page 0 when
 * the rest is shorter than the largest record, next_base); with TX_CKPT_MOVE_ON on flash, past every range an attempt
 * since the newest record visibly took (taken_pages: a JIT preparation mark), each step wrapped the same way. Why
 * this is safe: every boot prepares and commits at the page the chain ends at when it starts, and writes word 0 of
 * it (the mark, or the commit's first word) before any other; so the pages past the chain's end hold no write since
 * their erase (they read erased or hold older records) but for word 0 of the end page, which the boot erases
 * whatever it reads (touched_pages >= 1); a marked page is never written again but by its own boot's commit. A
 * chain that would reach the newest record (or runs over every page) falls back to the page after it, its whole
 * largest range erased whatever it reads (fresh_all), so a wrap still keeps the newest record and the room of the
 * largest. */
static void find_fresh_base(tx_runtime_t *rt)
{
  const uint32_t size = rt->num_slots * TX_NVM_PAGE_SIZE, largest = largest_bytes(rt);
  uint32_t base = rt->cur_slot < 0 ? 0u : page_ceil(rt->cur_end);
  if (base + largest > size) base = 0u;
  rt->fresh_base = base;
  rt->fresh_all = 0u;
#if TX_CKPT_MOVE_ON && TX_NVM_ERASE && !defined(TX_BROKEN_NO_ERASE) && !defined(TX_CKPT_OFF_ONLY)
  {
    const uint32_t lo = rt->cur_off / TX_NVM_PAGE_SIZE * TX_NVM_PAGE_SIZE;
    uint32_t steps, n;
    for (steps = 0u; steps < rt->num_slots; steps++) {
      n = taken_pages(base);
      if (!n) {
        rt->fresh_base = base;
        return;
      }
      base += n * TX_NVM_PAGE_SIZE;
      if (base + largest > size) base = 0u;
      if (rt->cur_slot >= 0 && base < rt->cur_end && lo < base + largest) break;   /* would reach the newest */
    }
    rt->fresh_all = 1u;
  }
#endif
}

int tx_runtime_init(tx_runtime_t *rt, const tx_pipeline_t *p, tx_granularity_t gran)
{
  uint32_t hdr[TX_CKPT_HEADER_WORDS], slot, rejected[(TX_CKPT_MAX_SLOTS + 31u) / 32u];
  int rc;
  memset(rt, 0, sizeof *rt);
  rt->jit = (gran.mode & TX_CKPT_JIT) ? 1u : 0u;
  gran.mode &= ~TX_CKPT_JIT;
  if (rt->jit && (gran.mode == TX_CKPT_OFF || gran.mode > TX_CKPT_UNITS)) return TX_ERR_CONFIG;
  rc = check_pipeline(p, gran);
  if (rc != TX_OK) return rc;
  rt->p = p;
  rt->gran = gran;
  rt->cur_slot = -1;
  if (!CKPT_ON(gran.mode)) return TX_OK;   /* checkpointing off: no NVM */
  if (tx_nvm_open() != 0) return TX_ERR_NVM;
  rt->fingerprint = fingerprint(p);
  rt->max_payload = max_payload(p);
  rt->slot_size = (HEADER_BYTES + rt->max_payload + TX_NVM_PAGE_SIZE - 1u) / TX_NVM_PAGE_SIZE * TX_NVM_PAGE_SIZE;
  if (TX_CKPT_SLOTS == 0u && tx_nvm_size() / rt->slot_size >= 3u) {
    rt->log = 1u;   /* the whole NVM as a log of page-aligned records: see TX_CKPT_SLOTS */
    rt->slot_size = TX_NVM_PAGE_SIZE;
    rt->fresh = 1u;
  }
  rt->num_slots = TX_CKPT_SLOTS ? TX_CKPT_SLOTS : tx_nvm_size() / rt->slot_size;
  if (rt->num_slots > TX_CKPT_MAX_SLOTS) rt->num_slots = TX_CKPT_MAX_SLOTS;
  if (rt->num_slots < 2u || tx_nvm_size() / rt->slot_size < rt->num_slots) return TX_ERR_NVM_TOO_SMALL;
  if (rt->log) {
    find_newest_in_log(rt);
    find_fresh_base(rt);
    return TX_OK;
  }
  /* The newest valid slot: the newest candidate by header, its CRC checked; when that fails (a torn commit)
     the next newest. A ring of many slots costs one CRC pass per boot, not one per slot. */
  memset(rejected, 0, sizeof rejected);
  for (;;) {
    int32_t best = -1;
    uint32_t best_seq = 0u;
    for (slot = 0u; slot < rt->num_slots; slot++) {
      if ((rejected[slot / 32u] >> (slot % 32u)) & 1u) continue;
      if (!read_slot(rt, slot, hdr, 0) || (best >= 0 && !seq_newer(hdr[TX_H_SEQ], best_seq))) continue;
      best = (int32_t)slot;
      best_seq = hdr[TX_H_SEQ];
    }
    if (best < 0) break;
    if (read_slot(rt, (uint32_t)best, hdr, 1)) {
      set_newest(rt, (uint32_t)best * rt->slot_size, HEADER_BYTES + hdr[TX_H_PAYLOAD_LEN], hdr);
      break;
    }
    rejected[(uint32_t)best / 32u] |= 1u << ((uint32_t)best % 32u);
  }
  return TX_OK;
}

uint32_t tx_runtime_nvm_bytes(const tx_runtime_t *rt) { return rt->num_slots * rt->slot_size; }

/* A checkpoint's position must be one this pipeline can produce (the CRC proves the bytes are the ones
 * written; this also keeps a runtime built with TX_BROKEN_NO_CRC from indexing outside its tables). */
static int position_ok(const tx_runtime_t *rt, const uint32_t *hdr)
{
  const tx_pipeline_t *p = rt->p;
  uint32_t s = hdr[TX_H_STAGE], i = hdr[TX_H_STEP], u = hdr[TX_H_UNIT];
  const tx_model_t *m;
  if (s == PACKED_STAGE) return (hdr[TX_H_FLAGS] & TX_CKPT_FLAG_DONE) && hdr[TX_H_PAYLOAD_LEN] <= rt->max_payload;
  if (s >= p->num_stages) return 0;
  m = p->stages[s].model;
  if (hdr[TX_H_FLAGS] & TX_CKPT_FLAG_DONE) return hdr[TX_H_PAYLOAD_LEN] == m->output_size;
  if (i >= m->num_steps || u >= m->units[i]) return 0;
  /* in the branch stage the answering point is one of the pools' */
  if (p->stages[s].role == TX_STAGE_BRANCH && hdr[TX_H_EXIT] >= p->num_stages / 2u) return 0;
  return hdr[TX_H_PAYLOAD_LEN] == for_each_piece(p, s, i, u, 0, 0);
}

int tx_runtime_boot(tx_runtime_t *rt, uint32_t input_id, const int8_t *input)
{
  uint32_t hdr[TX_CKPT_HEADER_WORDS];
  rt->input_id = input_id;
  rt->input = input;
  rt->stage = rt->step = rt->unit = 0u;
  rt->low_energy = rt->low_pending = rt->cur_in_progress = rt->answer = 0u;
  /* a new inference, a new warning episode (the pages prepared since init stay trusted: nothing wrote them) */
  rt->warn_latched = rt->jit_pending = rt->done_in_ram = 0u;
  rt->boot = TX_BOOT_FRESH;
  /* RAM is lost at a power failure: the vector starts empty (every slice = zero point); a resume then
     restores it from the checkpoint */
  if (rt->p->vector) memset(rt->p->vector, (int)rt->p->vector_zero_point, rt->p->vector_size);
  if (CKPT_ON(rt->gran.mode) && rt->deferred && rt->deferred_id == input_id) {
    rt->done_exit = rt->deferred_exit;   /* delivered, not yet durable: the same result again */
    rt->done_size = rt->deferred_size;
    rt->done_in_ram = 1u;
    rt->boot = TX_BOOT_DONE;
    return (int)rt->boot;
  }
  if (!CKPT_ON(rt->gran.mode) || rt->cur_slot < 0) return (int)rt->boot;
  if (rt->log) record_at(rt->cur_off, hdr, 0, rt->fingerprint);
  else tx_nvm_read(cur_base(rt), hdr, HEADER_BYTES);
  if (hdr[TX_H_FINGERPRINT] != rt->fingerprint || hdr[TX_H_INPUT_ID] != input_id || !position_ok(rt, hdr))
    return (int)rt->boot;
  rt->stage = hdr[TX_H_STAGE] == PACKED_STAGE ? 0u : hdr[TX_H_STAGE];
  rt->low_energy = ((hdr[TX_H_FLAGS] & TX_CKPT_FLAG_LOW_ENERGY) || hdr[TX_H_LOW_MARK] != 0xFFFFFFFFu) ? 1u : 0u;
  if (hdr[TX_H_FLAGS] & TX_CKPT_FLAG_DONE) {
    rt->done_exit = hdr[TX_H_EXIT];
    rt->done_size = hdr[TX_H_PAYLOAD_LEN];
    rt->boot = TX_BOOT_DONE;
  } else {
    reader_t r;
    rt->step = hdr[TX_H_STEP];
    rt->unit = hdr[TX_H_UNIT];
    rt->answer = hdr[TX_H_EXIT];
    r.off = cur_payload(rt);
    for_each_piece(rt->p, rt->stage, rt->step, rt->unit, reader_get, &r);
    rt->cur_in_progress = 1u;
    rt->cur_stage = rt->stage;
    rt->cur_step = rt->step;
    rt->cur_unit = rt->unit;
    rt->cur_answer = rt->answer;
    rt->boot = TX_BOOT_RESUMED;
  }
  return (int)rt->boot;
}

static void poll_energy(tx_runtime_t *rt)
{
#ifdef TX_CKPT_OFF_ONLY
  (void)rt;   /* without checkpoints the stop hook, not the board, says when to answer early (tx_rt_off.c) */
#else
  if (!rt->low_energy && tx_hal_low_energy()) rt->low_energy = rt->low_pending = 1u;
#endif
}

/* Commits the deferred result (tx_checkpoint.h), if one waits: its own input id and low-energy flag; the state
 * of the inference going on (low energy not yet durable) is kept. */
static void commit_deferred(tx_runtime_t *rt)
{
  const uint32_t id = rt->input_id, low = rt->low_energy, pending = rt->low_pending;
  if (!rt->deferred) return;
  rt->input_id = rt->deferred_id;
  rt->low_energy = rt->deferred_low;
  commit(rt, 0u, 0u, 0u, TX_CKPT_FLAG_DONE, rt->deferred_exit, rt->deferred_data, rt->deferred_size);
  rt->input_id = id;
  rt->low_energy = low;
  rt->low_pending = pending;
  rt->deferred = 0u;
  rt->stats.deferred_commits++;
}

void tx_runtime_power_warning(tx_runtime_t *rt)
{
  if (CKPT_ON(rt->gran.mode)) commit_deferred(rt);
}

/* Just-in-time checkpointing: a warning seen by a poll opens an episode (its commit is pending); a poll without
 * it closes the episode, so the next warning commits again (tx_checkpoint.h). */
static void poll_warning(tx_runtime_t *rt)
{
#ifdef TX_CKPT_OFF_ONLY
  (void)rt;
#else
  if (!rt->jit) return;
  if (!tx_hal_power_warning()) {
    rt->warn_latched = 0u;
  } else if (!rt->warn_latched) {
    rt->warn_latched = rt->jit_pending = 1u;
    commit_deferred(rt);   /* first: the delivered result; the position follows at the next unit boundary */
  }
#ifdef TX_BROKEN_JIT_NO_LATCH
  else rt->jit_pending = 1u;   /* broken on purpose: every poll during the episode commits */
#endif
#endif
}

/* The newest checkpoint holds this very position: the same stage, step, unit and (the shared branch's stage recurs
 * once per point) the same answering point. */
static int at_newest(const tx_runtime_t *rt)
{
  return rt->cur_in_progress && rt->cur_stage == rt->stage && rt->cur_step == rt->step && rt->cur_unit == rt->unit &&
         (!rt->p->vector || rt->cur_answer == rt->answer);
}

/* Commits the position for a pending warning at a unit boundary (`at_boundary`; else at the next one), unless the
 * newest checkpoint already holds it. */
static void persist_jit(tx_runtime_t *rt, uint32_t at_boundary)
{
  if (!rt->jit_pending || !at_boundary) return;
  rt->jit_pending = 0u;
  if (at_newest(rt)) return;
  commit(rt, rt->stage, rt->step, rt->unit, 0u, 0u, 0, 0u);
  rt->stats.jit_commits++;
}

#if TX_NVM_ERASE && !defined(TX_BROKEN_NO_ERASE) && !defined(TX_CKPT_OFF_ONLY)
/* Pages from `base` that a commit cut short there may have written: a commit writes its header first, so while
 * no header is stored only the header's page (its words may have been counted by the NVMC and still read 0xFF);
 * once the header is there, the pages of its length (at most `max_pages`: a torn length counts as the largest). */
static uint32_t touched_pages(uint32_t base, uint32_t max_pages)
{
  uint32_t hdr[TX_CKPT_HEADER_WORDS], n;
  tx_nvm_read(base, hdr, HEADER_BYTES);
  if (hdr[TX_H_MAGIC] != TX_CKPT_MAGIC) return 1u;
  n = hdr[TX_H_PAYLOAD_LEN] > max_pages * TX_NVM_PAGE_SIZE ? max_pages
      : (HEADER_BYTES + hdr[TX_H_PAYLOAD_LEN] + TX_NVM_PAGE_SIZE - 1u) / TX_NVM_PAGE_SIZE;
  return n > max_pages ? max_pages : n;
}

/* Erases pages [first, first + n) (those from `touched` on only when they do not read erased). */
static void erase_range(tx_runtime_t *rt, uint32_t first, uint32_t n, uint32_t touched)
{
  uint32_t k;
  for (k = 0u; k < n; k++) {
    const uint32_t off = (first + k) * TX_NVM_PAGE_SIZE;
    if (k >= touched && page_erased(off)) continue;
    tx_nvm_erase_page(off);
    rt->stats.nvm_pages_prepared++;
  }
}
#endif

/* Prepares the slot of the next commit while energy is plentiful. The pages a commit cut short by the last
 * power failure may have written are erased whatever they read (touched_pages: such a word may read 0xFF yet count
 * against the NVMC's nWRITE, as the emulated flash counts it); that commit went where the next full record goes
 * (next_base: it depends on the newest valid record only; a packed one cut short inside the newest record's page
 * is never written over, tx_checkpoint.h). A ring does so at every run; a log once per boot (later commits of the
 * boot follow records it wrote itself). Just in time (rt->jit): also the rest of a record as large as the largest
 * (only pages that do not read erased), so that a JIT commit only writes. The prepared pages are trusted erased by
 * this boot's commits until one writes them (commit). */
static void prepare_slot(tx_runtime_t *rt)
{
#if TX_NVM_ERASE && !defined(TX_BROKEN_NO_ERASE) && !defined(TX_CKPT_OFF_ONLY)
  const uint32_t pages = largest_bytes(rt) / TX_NVM_PAGE_SIZE;
  const uint32_t base = next_base(rt, 0u);
  uint32_t touched, n;
  const uint32_t first = rt->log && rt->fresh == 1u;   /* this boot's first preparation of a log */
  if (rt->log && rt->fresh != 1u) {
    touched = 0u;
    /* nothing was cut short; a range this boot prepared and no commit wrote is still erased */
    if (!rt->jit || (rt->prep_base == base && rt->prep_pages >= pages)) return;
  } else {
    touched = rt->fresh_all ? pages : touched_pages(base, pages);
  }
  if (rt->fresh == 1u) rt->fresh = 2u;
  if (rt->log && !rt->jit) {   /* the boot's first commit erases them (a boot that never commits erases none) */
    rt->lazy_pages = touched;
    rt->prep_base = base;
    rt->prep_pages = 0u;
    return;
  }
  n = rt->jit ? pages : touched;
  erase_range(rt, base / TX_NVM_PAGE_SIZE, n, touched);
#if TX_CKPT_MOVE_ON
  if (first && rt->jit) {   /* taken: a next boot moves on when this one commits nothing (find_fresh_base) */
    const uint32_t mark = TX_CKPT_PREP_MARK;
    tx_nvm_write_words(base, &mark, 1u);   /* word 0 was just erased (touched >= 1) */
  }
#else
  (void)first;
#endif
  rt->prep_base = base;
  rt->prep_pages = n;
#else
  (void)rt;
#endif
}

/* Makes a low-energy signal seen by this boot durable, so that a resume after a power failure finishes at
 * the same exit point. With an unfinished checkpoint of this inference in NVM: clear its LOW_MARK word
 * (one word; the mark is outside the CRC and the word is still erased, so this is legal on flash and a torn
 * mark, any value but 0xFFFFFFFF, counts as a mark). Without one (the first stage, or granularity none):
 * commit the current position, which must then be a unit boundary (`at_boundary`); otherwise wait for the
 * next one. No exit point lies between that checkpoint and the signal (a checkpoint is committed at every
 * stage end, and a decision is taken only at a stage end). */
/* Whether the LOW_MARK of the newest record can stand for a signal seen now: a resume from that record must pass
 * no stage that decides on the signal (anything but a segment) which this walk has already passed without it. The
 * record lies in the current stage, or before it with only segments in between (stage ends are committed after
 * segments only, and the shared branch's walk jumps to the branch and back: a record at a later stage does not
 * qualify, nor one of another point: the branch stage recurs once per point). Otherwise the signal gets a record
 * of its own at the next boundary. */
static int mark_stands_for_now(const tx_runtime_t *rt)
{
  uint32_t s;
  if (rt->cur_stage > rt->stage || (rt->p->vector && rt->cur_answer != rt->answer)) return 0;   /* another point */
  for (s = rt->cur_stage; s < rt->stage; s++)
    if (rt->p->stages[s].role != TX_STAGE_SEGMENT) return 0;
  return 1;
}

static void periodic_commit(tx_runtime_t *rt);

static void persist_low(tx_runtime_t *rt, uint32_t at_boundary)
{
#ifdef TX_BROKEN_VOLATILE_LOW
  rt->low_pending = 0u;   /* broken on purpose: the latch lives in RAM until the next regular commit */
#endif
  if (!CKPT_ON(rt->gran.mode)) rt->low_pending = 0u;   /* nothing to make durable */
  if (!rt->low_pending) return;
  if (rt->cur_in_progress && mark_stands_for_now(rt)) {
    const uint32_t mark = 0u;
    tx_hal_commit_mark(1u);
    tx_nvm_write_words(cur_base(rt) + TX_H_LOW_MARK * 4u, &mark, 1u);   /* an unfinished record is a full one */
    tx_hal_commit_mark(0u);
    rt->stats.low_marks++;
    rt->low_pending = 0u;
  } else if (at_boundary) {
    periodic_commit(rt);   /* with JIT, prepares the next slot too (a JIT commit only writes) */
  }
}

/* A periodic commit of the current position (granularity layers or units); with just-in-time checkpoints too and
 * no warning going on, the next slot is prepared right after it, so that a JIT commit still only writes. */
static void periodic_commit(tx_runtime_t *rt)
{
  commit(rt, rt->stage, rt->step, rt->unit, 0u, 0u, 0, 0u);
  if (rt->jit && !rt->warn_latched) prepare_slot(rt);
}

static int finish(tx_runtime_t *rt, uint32_t exit_index, const int8_t *data, uint32_t size, int8_t *output,
                  uint32_t output_cap, tx_result_t *result)
{
  if (output ? size > output_cap : rt->gran.mode != TX_CKPT_OFF) return TX_ERR_OUTPUT;
  rt->deferred = 0u;   /* a result waiting for the warning is superseded by this one (delivered after it) */
  if (TX_CKPT_DEFER_RESULTS && rt->jit && !rt->warn_latched && size <= TX_CKPT_DEFER_MAX) {
    memcpy(rt->deferred_data, data, size);
    rt->deferred = 1u;
    rt->deferred_id = rt->input_id;
    rt->deferred_exit = exit_index;
    rt->deferred_size = size;
    rt->deferred_low = rt->low_energy;
  } else {
    commit(rt, rt->stage, 0u, 0u, TX_CKPT_FLAG_DONE, exit_index, data, size);
  }
  if (output) memcpy(output, data, size);
  result->exit_index = exit_index;
  result->size = size;
  result->resumed = rt->boot;
  result->data = output ? output : data;   /* in the arena: valid until the next run */
  return TX_OK;
}

int tx_runtime_run(tx_runtime_t *rt, int8_t *output, uint32_t output_cap, tx_result_t *result)
{
  const tx_pipeline_t *p = rt->p;
  const uint32_t mode = rt->gran.mode, every = rt->gran.every;
  uint32_t since = 0u;   /* units (TX_CKPT_UNITS) or steps (TX_CKPT_LAYERS) since the last commit */

  if (CKPT_ON(mode) && rt->boot == TX_BOOT_DONE) {
    if (!output || rt->done_size > output_cap) return TX_ERR_OUTPUT;
    if (rt->done_in_ram) memcpy(output, rt->deferred_data, rt->done_size);
    else tx_nvm_read(cur_payload(rt), output, rt->done_size);
    result->exit_index = rt->done_exit;
    result->size = rt->done_size;
    result->resumed = rt->boot;
    result->data = output;
    return TX_OK;
  }
  if (CKPT_ON(mode)) prepare_slot(rt);
  for (;;) {
    const tx_stage_t *st = &p->stages[rt->stage];
    const tx_model_t *m = st->model;
    const int8_t *out;
    /* without a policy, once the branch runs the answer is decided: the signal changes nothing any more */
    const int decided = st->role == TX_STAGE_BRANCH && !p->policy;
    poll_energy(rt);
    poll_warning(rt);
    if (decided) rt->low_pending = 0u;
    persist_low(rt, 1u);
    persist_jit(rt, 1u);
    /* Exit heads run when the policy wants to look at them or energy is short; skipping one is decided
       again identically after a resume (same flag, same policy). */
    if (st->role == TX_STAGE_EXIT && !rt->low_energy && !p->policy) {
      rt->stage++;
      continue;
    }
    /* A confidence model runs only to consult the policy; with low energy its head answers anyway. */
    if (st->role == TX_STAGE_CONFIDENCE && (rt->low_energy || !p->policy)) {
      rt->stage++;
      continue;
    }
    if (p->on_stage) p->on_stage(rt->stage, 1u, p->stage_ctx);
    /* chained: the input is already where the segment before left it (the first stage reads rt->input) */
    if (rt->step == 0u && rt->unit == 0u && (rt->stage == 0u || !p->chained)) {
      const int8_t *src = rt->stage == 0u ? rt->input : st->role == TX_STAGE_BRANCH ? p->vector : p->boundary;
      memmove(tx_arena + m->input_offset, src, m->input_size);
    }
    while (rt->step < m->num_steps) {
      const uint32_t n = m->units[rt->step];
      while (rt->unit < n) {
        uint32_t end = n;
        if (mode == TX_CKPT_UNITS && since >= every) {   /* due since a stage whose end is not committed */
          periodic_commit(rt);
          since = 0u;
        }
        if (mode == TX_CKPT_UNITS && n - rt->unit > every - since) end = rt->unit + (every - since);
        /* just in time: with TX_CKPT_JIT_UNITS the warning is polled after at most that many units (its latency) */
        if (TX_CKPT_JIT_UNITS && rt->jit && end - rt->unit > TX_CKPT_JIT_UNITS) end = rt->unit + TX_CKPT_JIT_UNITS;
        m->step(rt->step, rt->unit, end);
        tx_hal_work_done(end - rt->unit);
        rt->stats.units_run += end - rt->unit;
        rt->stats.steps_started++;
        if (mode == TX_CKPT_UNITS) since += end - rt->unit;
        rt->unit = end;
        poll_energy(rt);
        poll_warning(rt);
        if (mode == TX_CKPT_UNITS && since >= every && rt->unit < n) {
          periodic_commit(rt);
          since = 0u;
        }
        if (!decided) persist_low(rt, rt->unit < n);
        persist_jit(rt, rt->unit < n);
      }
      rt->step++;
      rt->unit = 0u;
      if (mode == TX_CKPT_LAYERS) since++;
      /* the end of the stage is committed below, with the boundary instead of the arena */
      if (mode != TX_CKPT_NONE && since >= every && rt->step < m->num_steps) {
        periodic_commit(rt);
        since = 0u;
      }
      if (!decided) persist_low(rt, rt->step < m->num_steps);
      persist_jit(rt, rt->step < m->num_steps);
    }
    if (p->on_stage) p->on_stage(rt->stage, 0u, p->stage_ctx);
    out = tx_arena + m->output_offset;
    if (st->role == TX_STAGE_SEGMENT) {
      if (rt->stage + 1u == p->num_stages) return finish(rt, st->exit_index, out, m->output_size, output, output_cap, result);
      if (!p->chained) memcpy(p->boundary, out, m->output_size);
    } else if (st->role == TX_STAGE_BRANCH) {
      /* Without a policy the branch runs once the answer is decided. With one (confidence mode) it runs after
         every point k = rt->answer and the policy decides from its scores (a pure function of them, so a
         resume decides the same); the last point answers anyway, low energy too unless low_policy (then its
         own rule on the same scores; the latch is durable, so a resume decides the same). */
      if (!p->policy || 2u * rt->answer + 3u == p->num_stages ||
          (rt->low_energy && (!p->low_policy || p->low_policy(rt->answer, out, m->output_size, p->policy_ctx))) ||
          p->policy(rt->answer, out, m->output_size, p->policy_ctx))
        return finish(rt, rt->answer, out, m->output_size, output, output_cap, result);
      rt->stage = 2u * rt->answer + 1u;   /* ++ below: segment k+1 */
    } else if (st->role == TX_STAGE_POOL) {
      /* slice k; copying again after a resume writes the same bytes (the pool's output is the same) */
      memcpy(p->vector + st->vector_offset, out, m->output_size);
      if (p->stop && !rt->low_energy && p->stop(st->exit_index, p->stop_ctx)) rt->low_energy = 1u;
      if (p->policy || rt->low_energy || rt->stage + 2u == p->num_stages) {
        /* exit point k answers (or, with a policy, is looked at): to the branch; the checkpoint below records k */
        rt->answer = st->exit_index;
        rt->stage = p->num_stages - 2u;   /* ++ below: the branch */
      }
    } else if (st->role == TX_STAGE_CONFIDENCE) {
      /* the policy on the confidence output: run the head (and answer there) or skip it (++ twice) */
      /* low energy latched while it ran: the head answers, as a resume from before this stage does (it skips the
         confidence model then) */
      if (!rt->low_energy && !p->policy(st->exit_index, out, m->output_size, p->policy_ctx)) rt->stage++;
    } else if (rt->low_energy || (rt->stage > 0u && p->stages[rt->stage - 1u].role == TX_STAGE_CONFIDENCE) ||
               p->policy(st->exit_index, out, m->output_size, p->policy_ctx)) {
      /* an exit head after its confidence stage answers: it runs only when that stage passed (or low energy) */
      return finish(rt, st->exit_index, out, m->output_size, output, output_cap, result);
    }
    rt->stage++;
    rt->step = 0u;
    /* A stage end is committed after a segment only: a pool, a branch that did not answer, an exit head that did
       not answer or a confidence model adds no state worth a flash record (the pool's slice is recomputed from the
       boundary in the checkpoint before it, the others decide again identically from the same bytes and the
       durable low-energy latch), so a resume re-runs them instead. */
    if (mode != TX_CKPT_NONE && st->role == TX_STAGE_SEGMENT) {
      periodic_commit(rt);
      since = 0u;
    }
    persist_low(rt, 1u);
    persist_jit(rt, 1u);
  }
}

int tx_pipeline_infer(tx_runtime_t *rt, const tx_pipeline_t *p, tx_granularity_t gran, uint32_t input_id,
                      const int8_t *input, int8_t *output, uint32_t output_cap, tx_result_t *result)
{
  int rc = tx_runtime_init(rt, p, gran);
  if (rc != TX_OK) return rc;
  tx_runtime_boot(rt, input_id, input);
  return tx_runtime_run(rt, output, output_cap, result);
}
