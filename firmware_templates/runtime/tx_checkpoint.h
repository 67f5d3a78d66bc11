/* Checkpointing runtime: runs a pipeline of generated models (segment 0, exit head, segment 1, ...) so
 * that an inference survives power failures, and commits its result to NVM.
 *
 * Progress (stage, step, unit) and the arena ranges live at that point (the generated `live` table) are
 * committed to one of two (TX_CKPT_SLOTS) NVM slots. Each slot = a 64-byte header (magic, sequence number, pipeline
 * fingerprint, input id, position, flags, payload length, CRC-32) followed by the payload. A slot is valid
 * only when its CRC matches; the newest valid slot wins; a commit always rewrites another slot (the
 * oldest), and the CRC word is written last, so a cut anywhere in a commit leaves the previous checkpoint intact.
 *
 * Work between two commits is idempotent: a resume restores every live range from the checkpoint, so the
 * arena holds exactly the bytes it held when the checkpoint was taken, and re-running the step from that
 * unit yields the same bytes (also for in-place ops).
 *
 * The result (output bytes + which exit) is committed as a DONE checkpoint; it counts only once committed.
 * A boot that finds the DONE checkpoint of the same input returns it without recomputing.
 *
 * Compile-time flags that deliberately break the runtime (tests show the campaign then fails):
 *   TX_BROKEN_SINGLE_SLOT  every commit rewrites slot 0 (a cut mid-commit loses the only checkpoint)
 *   TX_BROKEN_NO_CRC       a slot is accepted without checking its CRC (torn slots are resumed from)
 *   TX_BROKEN_NO_ERASE     commits write without erasing (the NVMC rules must catch it)
 *   TX_BROKEN_NO_VECTOR    the shared vector is not part of the checkpoints (a resume loses earlier slices)
 *   TX_BROKEN_VOLATILE_LOW a low-energy signal is kept in RAM until the next regular commit (a cut before it
 *                          loses the signal)
 *   TX_BROKEN_JIT_NO_LATCH just-in-time: commits at every poll while the warning lasts (not once per episode)
 *   TX_BROKEN_TRUST_FIRST_WORD  a page counts as erased when its first word reads 0xFFFFFFFF (a half-erased
 *                          page is written without an erase)
 *   TX_BROKEN_PACK_FRESH   a log: a boot's first commit packs a result right after the newest record (into words a
 *                          commit cut short may have counted against nWRITE)
 *
 * Just-in-time checkpointing (granularity mode | TX_CKPT_JIT): tx_hal_power_warning() is polled at every unit
 * boundary (where tx_hal_low_energy() is). The first poll that sees it latches the episode and the current
 * position is committed at once (at the next unit boundary when the poll is at a step's end); the walk then
 * computes on. Rule: one commit per warning episode: after a JIT commit no other until a poll has seen the
 * warning clear (then a new warning is a new episode) or a new boot (RAM lost). A JIT commit is skipped when the
 * newest checkpoint already holds this very position (a warning right after a resume). With TX_CKPT_NONE | JIT
 * nothing else is committed but the result; with LAYERS | JIT the periodic commits go on as well.
 *
 * Prepared slot: before the walk (tx_runtime_run, energy still plentiful) the pages a commit cut short by the last
 * power failure may have written (it went where the next commit goes: its header page, or once its header is
 * stored the pages of its length) are erased whatever they read (a word that reads 0xFF may have been half
 * programmed: it counts against the NVMC's nWRITE); no other page can hold a write cut short. Just in time, the
 * rest of the next record's pages (a record of the largest size) too, when they do not read erased, so that a JIT
 * commit writes only. commit() erases a page only when it is not erased
 * already: a page erased by this boot's preparation is trusted; any other is read and counts as erased only when
 * every word is 0xFFFFFFFF (a half-erased page is erased again). Commits never program a word to 0xFFFFFFFF (it
 * already is after an erase), so such a page holds no programmed word. The page erases so saved are counted
 * (stats.nvm_pages_skipped). Caveat for real flash: an erase cut short may leave cells that read 1 without being
 * fully erased; the emulations here cannot show that (they erase words one by one).
 *
 * Packed records (a log, TX_CKPT_SLOTS 0, on flash): a result (DONE) record whose payload is small is written
 * in a compact form (TX_CKPT_PACK_*: tag, seq, input id, payload, CRC last; 12 + payload + 4 bytes)
 * right after the newest record, inside that record's page when it fits (a packed record never crosses a page);
 * records that hold a checkpoint (activations) start a page as before. A page is erased only when the log enters
 * it from its start, so erases per inference = bytes committed per inference / page size, spread over the log.
 * The first commit of a boot starts on a new page (the pages a commit cut short by the last power failure may
 * have written are erased by the preparation whatever they read): the words after the newest record may hold
 * such a commit (a word may have been counted by the NVMC's nWRITE and still read 0xFF) and are never written
 * again before their page is erased (without just-in-time checkpoints that erase is done by the boot's first
 * commit, not at the start of the boot: a boot cut before it commits erases nothing, which under a harvester is
 * most boots). Later commits of the same boot pack after the newest record (this boot wrote
 * it, nothing after it was cut short). Where a commit may go depends on the newest record only: right after it,
 * or the next page boundary, or page 0 when the rest from that boundary is too short for a record of the largest
 * size. Boot: the newest record is found by reading each page's first word (its seq when a record starts the page)
 * and walking the records that follow the newest page start (every later record lies on that chain); only the
 * chain's last record can be torn (a cut commit is the last write of its boot, the next boot starts a new page).
 *
 * Deferred results (TX_CKPT_DEFER_RESULTS 1, just-in-time granularities only; an explicit build mode): a result is
 * delivered when tx_runtime_run returns it, and its DONE record waits in RAM (rt->deferred) for the power warning:
 * the runtime's own poll (the first of a warning episode commits it at once, before the JIT checkpoint of the
 * inference going on) or tx_runtime_power_warning() from the application's warning handler (e.g. while idle).
 * A later result replaces it unwritten (delivering result n+1 implies n was delivered), so on continuous power
 * the flash is not written at all. A result delivered while a warning episode goes on is committed at once.
 * Guarantee, under just-in-time's contract (every power failure is preceded by the warning with the energy for
 * the commits it triggers): each result is delivered exactly once across power failures: after a reboot the
 * newest record is the last delivered result (its input boots TX_BOOT_DONE, not recomputed) or a checkpoint of
 * the inference after it. When the contract is broken (the power goes before the deferred commit ends: a cut
 * inside it leaves the previous record, as any torn commit) the result is recomputed, the same bytes, and
 * delivered again: at least once, never a wrong or lost result.
 *
 * NVM without erase (TX_NVM_ERASE 0, an SPI FRAM: byte-writable, nothing to erase): commits never erase, and
 * they write every word (0xFFFFFFFF too); a commit first sets the target slot's CRC word to 0xFFFFFFFF
 * (invalidates the old record there), then the header with LOW_MARK = 0xFFFFFFFF, the payload, the CRC last.
 *
 * Shared exit branch (FreeML, docs/DESIGN.md 3): a pipeline with a vector (p->vector) is
 *   seg0, pool0, seg1, pool1, ..., seg(N-1), pool(N-1), branch
 * Pool k reads the boundary (exit point k's feature map) and its output is copied into slice k of the vector;
 * the branch reads the vector. After pool k the runtime answers (jumps to the branch, records k as the
 * answering point) when energy is low or k is the last point; otherwise it runs segment k+1. The vector is
 * part of every checkpoint; the answering point is recorded in every checkpoint after the decision.
 * Confidence mode (a shared pipeline with p->policy): the branch runs after every point k and the pipeline
 * answers at the first point whose branch scores pass the policy (or on low energy, or at the last point).
 * With p->low_policy, low energy does not answer by itself: from the first point at/after the signal on, a point
 * answers when its scores pass low_policy (a looser rule: answer early when energy is short only if the scores
 * allow it), else the walk computes on (and its checkpoints keep the latch).
 *
 * Checkpointing off (granularity TX_CKPT_OFF): the same walk without NVM (nothing committed, nothing resumed);
 * the pipeline's stop hook may answer after exit point k. The shared branch's anytime firmware and the bench
 * app (app/tx_app.c) run so.
 *
 * Learned confidence (a TX_STAGE_CONFIDENCE stage right before the exit head of the same exit): the policy
 * decides on the confidence model's output (e.g. [P(wrong), P(right)]) whether that head runs; when it runs,
 * the pipeline answers there (no second decision on the head's output); otherwise the walk skips the head.
 * Both are decided by the position alone (a head stage is reached only through a passing confidence stage or
 * with low energy), so a resume at the head answers there as the uninterrupted run would.
 *
 * Chained library (p->chained: the library plans the stages through its arena, tx_model.h's TX_CHAIN_*): a
 * stage after the first reads its input where the segment before it left it in the arena (exit heads and
 * confidence models never write there), so there is no boundary buffer and no copy. Only with TX_CKPT_OFF:
 * a checkpoint at a stage start would have to save that arena range instead of the boundary buffer, which the
 * walk does not do (tx_runtime_init refuses the combination).
 *
 * Stage hook (p->on_stage): called with begin=1 before a stage's input is loaded and begin=0 after its last
 * step (not for skipped stages); a resumed stage gets begin=1 again in the new boot. The bench app counts
 * ticks and instruction windows with it.
 *
 * Low energy is latched durably: once tx_hal_low_energy() has said so, the runtime clears the LOW_MARK word of
 * the newest checkpoint of this inference (one word write, outside the CRC, legal on flash without an erase)
 * or, when it has none yet or a resume from it would pass a decision already taken without the signal (an exit
 * head, pool, branch or confidence stage between it and now), commits one at the next boundary; every later
 * checkpoint carries TX_CKPT_FLAG_LOW_ENERGY. So no exit point lies between the latched checkpoint and the
 * signal: a resume finishes at the same exit point the uninterrupted run would have (the first at/after it).
 * Stage ends are committed after segments only: a pool, a branch or exit head that did not answer, or a
 * confidence model adds no state worth a flash record (a resume re-runs it and decides the same).
 */
#ifndef TX_CHECKPOINT_H
#define TX_CHECKPOINT_H

#include <stdint.h>
#include "tx_model.h"
#include "tx_stage.h"   /* roles, tx_stage_t, TX_CKPT_* modes */

/* Number of slots, >= 2. Two are enough for correctness; on flash, more slots used as a ring divide the erases
 * per page (nRF52840: 10,000 cycles) by num_slots / 2. 0: the whole NVM. When it holds three of the largest
 * records it is a log (see "Packed records" above): a checkpoint record starts a page, a small result record is
 * packed right after the newest record inside its page, and the log wraps to page 0 when the rest is too short
 * for a record of the largest size, so page erases spread evenly over all pages whatever the records' sizes and
 * erases per inference = bytes committed per inference / page size; otherwise a ring of as many slots as fit
 * (at least 2). */
#ifndef TX_CKPT_SLOTS
#define TX_CKPT_SLOTS 2u
#endif
#define TX_CKPT_MAX_SLOTS 2048u   /* a ring of more is cut to this (8 MiB of one-page slots) */

/* Just in time: at most this many work units per piece of work, i.e. how often the power-fail warning is polled
 * (the JIT commit comes at most this many units after the warning); 0: whole steps, as the other modes run them.
 * Smaller means a smaller energy reserve for the work between warning and commit but more step() calls; measured
 * on runs/kws-default with the Cortex-M4 kernels (emulated nRF52840, warning at 7 points): 0 -> +0.01 %
 * instructions, up to 496 k instructions from warning to commit; 16 -> +1.7 %, 248 k; 4 -> +10 %, 63 k;
 * 1 -> +53 %, 33 k (a kernel call costs much more than one unit's work). */
#ifndef TX_CKPT_JIT_UNITS
#define TX_CKPT_JIT_UNITS 0u
#endif

/* Deferred results (see above): 1 to defer; results of more than TX_CKPT_DEFER_MAX bytes are committed at once. */
/* Move on (a log on flash): a boot's first commit does not go to the page after the newest record when an attempt
 * since that record visibly took it (a record header with the next sequence number, or a JIT boot's preparation
 * mark TX_CKPT_PREP_MARK), but past what that attempt may have written, and so on: the erases of boots that make
 * no progress spread over the log instead of piling on one page (README: "Wear under a harvester"). 0: as before. */
#ifdef TX_BROKEN_NO_MOVE_ON
#define TX_CKPT_MOVE_ON 0   /* the wear before the rule, for the test that shows it falls (not wrong, only worn) */
#endif
#ifndef TX_CKPT_MOVE_ON
#define TX_CKPT_MOVE_ON 1
#endif
/* Written at word 0 of a page a JIT boot prepared for its first commit: only bit 29 cleared, which is 0 in
 * TX_CKPT_MAGIC and in every packed tag (0xC5 top byte), so the commit's first word then only clears bits (its
 * second write of that word, within the NVMC's two). */
#define TX_CKPT_PREP_MARK 0xDFFFFFFFu

#ifndef TX_CKPT_DEFER_RESULTS
#define TX_CKPT_DEFER_RESULTS 0
#endif
#ifndef TX_CKPT_DEFER_MAX
#define TX_CKPT_DEFER_MAX 64u
#endif

typedef struct {
  uint32_t mode;
  uint32_t every;      /* >= 1 */
} tx_granularity_t;

/* Early-exit policy: nonzero to stop at this exit. Must be a pure function of the output bytes (it runs
 * again after a power failure). NULL: exit heads run only when tx_hal_low_energy() said so. */
typedef int (*tx_exit_policy_t)(uint32_t exit_index, const int8_t *output, uint32_t size, void *ctx);

/* Shared exit branch without checkpoints (TX_CKPT_OFF): after exit point k's pool, nonzero to answer there
 * (e.g. the caller's own energy estimate; the anytime firmware of branch/). Checkpointed pipelines keep it 0:
 * their low-energy signal is tx_hal_low_energy(), made durable (see above). */
typedef int (*tx_stop_fn)(uint32_t point, void *ctx);

/* Called around each stage the walk runs (see above): `stage` indexes p->stages. */
typedef void (*tx_stage_fn)(uint32_t stage, uint32_t begin, void *ctx);

typedef struct {
  const tx_stage_t *stages;
  uint32_t num_stages;        /* stages[0] and stages[num_stages-1] are segments */
  int8_t *boundary;           /* RAM for the tensor a segment hands to the next stages (the arena is shared
                                 by all models, so an exit head would overwrite it there) */
  uint32_t boundary_size;     /* >= the largest segment output */
  tx_exit_policy_t policy;
  void *policy_ctx;
  int8_t *vector;             /* shared exit branch: the vector (RAM); NULL for a pipeline of exit heads */
  uint32_t vector_size;
  int32_t vector_zero_point;  /* every slice holds it before its point has run (0.0: adds nothing) */
  tx_stop_fn stop;            /* TX_CKPT_OFF only: answer after exit point k when stop(k, stop_ctx) (0: never) */
  void *stop_ctx;
  uint32_t chained;           /* TX_CKPT_OFF only: stages read their input in place (boundary may be NULL) */
  tx_stage_fn on_stage;       /* 0: none */
  void *stage_ctx;
  tx_exit_policy_t low_policy; /* shared branch in confidence mode: once low energy is latched, point k answers
                                  when its scores pass this one (e.g. a looser threshold) or the policy; 0: low
                                  energy answers at the next point whatever the scores. Pure, like the policy;
                                  called with policy_ctx (the two rules share one context). */
} tx_pipeline_t;

typedef struct {
  uint32_t commits;           /* checkpoints written by this boot (the result included) */
  uint32_t nvm_bytes_written; /* header + payload bytes of those commits */
  uint32_t nvm_pages_erased;
  uint32_t units_run;         /* work units executed by this boot */
  uint32_t steps_started;     /* step() calls */
  uint32_t low_marks;         /* LOW_MARK words written (low energy made durable without a commit) */
  uint32_t jit_commits;       /* just-in-time commits (on a power-fail warning) */
  uint32_t nvm_pages_prepared; /* pages erased by the preparation at the start of tx_runtime_run */
  uint32_t nvm_pages_skipped; /* pages a commit did not erase because they were erased already */
  uint32_t deferred_commits;  /* deferred results committed (on a power warning) */
} tx_stats_t;

#define TX_BOOT_FRESH 0     /* no usable checkpoint for this input: starts at the beginning */
#define TX_BOOT_RESUMED 1   /* continues from a checkpoint */
#define TX_BOOT_DONE 2      /* the result of this input is already committed */

typedef struct {
  const tx_pipeline_t *p;
  tx_granularity_t gran;      /* mode without TX_CKPT_JIT (see jit) */
  uint32_t jit;               /* 1: just-in-time checkpoints on tx_hal_power_warning() */
  uint32_t fingerprint;       /* CRC of the pipeline's shape: a checkpoint of another firmware is ignored */
  uint32_t max_payload;       /* largest payload of any position */
  uint32_t slot_size;         /* bytes per slot, whole pages */
  uint32_t num_slots;         /* slots in the ring: TX_CKPT_SLOTS, or as many as fit when it is 0 */
  uint32_t log;               /* 1: the NVM is a log (TX_CKPT_SLOTS 0): a slot is a page, records span pages */
  int32_t cur_slot;           /* slot holding the newest valid checkpoint (a log: its page); -1: none */
  uint32_t cur_off, cur_end;  /* a log: NVM offset of the newest record and of the word after it */
  uint32_t cur_packed;        /* the newest record is a packed one (TX_CKPT_PACK_*) */
  uint32_t fresh;             /* a log: 1 until this boot's preparation, 2 until its first commit (see above) */
  uint32_t lazy_pages;        /* a log without JIT: pages the boot's first commit erases first, whatever they read */
  uint32_t fresh_base;        /* a log: where this boot's first commit goes (TX_CKPT_MOVE_ON, found at init) */
  uint32_t fresh_all;         /* 1: fresh_base is the fallback, its whole range is erased whatever it reads */
  uint32_t seq;               /* its sequence number */
  /* position of the computation */
  uint32_t input_id;
  const int8_t *input;
  uint32_t stage, step, unit;
  uint32_t low_energy;        /* latched: finish at the next exit point */
  uint32_t low_pending;       /* latched in RAM by this boot, not yet durable in NVM */
  uint32_t cur_in_progress;   /* cur_slot holds an unfinished checkpoint of this inference */
  uint32_t cur_stage, cur_step, cur_unit;   /* its position (valid with cur_in_progress) */
  uint32_t cur_answer;        /* its answering point (the shared branch: the branch stage recurs, once per point) */
  uint32_t warn_latched;      /* a warning episode is going on and has been committed (or is pending) */
  uint32_t jit_pending;       /* its commit waits for the next unit boundary */
  uint32_t prep_base, prep_pages;   /* NVM pages erased by this boot's preparation (trusted erased) */
  uint32_t answer;            /* shared branch: the exit point that answers (valid in the branch stage) */
  uint32_t boot;              /* TX_BOOT_* of the last tx_runtime_boot() */
  uint32_t done_exit;         /* when DONE: exit index of the result */
  uint32_t done_size;
  uint32_t done_in_ram;       /* the DONE of this boot is the deferred result (rt->deferred_data) */
  uint32_t deferred;          /* a delivered result waits for the power warning (TX_CKPT_DEFER_RESULTS) */
  uint32_t deferred_id, deferred_exit, deferred_size, deferred_low;
  int8_t deferred_data[TX_CKPT_DEFER_MAX];
  tx_stats_t stats;
} tx_runtime_t;

typedef struct {
  uint32_t exit_index;        /* which exit produced the output */
  uint32_t size;              /* output bytes */
  uint32_t resumed;           /* TX_BOOT_* of this boot */
  const int8_t *data;         /* the output bytes: `output` when given, else in tx_arena (valid until the next
                                 run; TX_CKPT_OFF only) */
} tx_result_t;

#define TX_OK 0
#define TX_ERR_CONFIG -1      /* bad pipeline (boundary too small, shapes that do not chain, bad granularity,
                                 a chained pipeline or a stop hook with checkpointing on) */
#define TX_ERR_NVM -2         /* tx_nvm_open() failed */
#define TX_ERR_NVM_TOO_SMALL -3
#define TX_ERR_OUTPUT -4      /* output buffer too small */

/* Checks the pipeline and NVM and finds the newest valid checkpoint. */
int tx_runtime_init(tx_runtime_t *rt, const tx_pipeline_t *p, tx_granularity_t gran);
/* NVM bytes the slots take (num_slots slots). */
uint32_t tx_runtime_nvm_bytes(const tx_runtime_t *rt);
/* Positions the runtime for input `input_id` (the same bytes at every boot for the same id): resumes from
 * the newest valid checkpoint of this input, or starts fresh. Returns TX_BOOT_*. */
int tx_runtime_boot(tx_runtime_t *rt, uint32_t input_id, const int8_t *input);
/* Runs to the end, committing checkpoints on the way and the result last; copies the output to `output`
 * (NULL with TX_CKPT_OFF: not copied, result->data points into the arena). */
int tx_runtime_run(tx_runtime_t *rt, int8_t *output, uint32_t output_cap, tx_result_t *result);

/* The power-fail warning, from the application (e.g. its POFWARN handler while no inference runs): commits the
 * deferred result, if any (TX_CKPT_DEFER_RESULTS); nothing otherwise. */
void tx_runtime_power_warning(tx_runtime_t *rt);

/* Convenience: init + boot + run. */
int tx_pipeline_infer(tx_runtime_t *rt, const tx_pipeline_t *p, tx_granularity_t gran, uint32_t input_id,
                      const int8_t *input, int8_t *output, uint32_t output_cap, tx_result_t *result);

/* Slot format, also parsed by tinyexit/intermittent/slots.py. */
#define TX_CKPT_MAGIC 0x4B435854u      /* "TXCK" little-endian */
#define TX_CKPT_VERSION 2u             /* 2: LOW_MARK word outside the CRC */
#define TX_CKPT_HEADER_WORDS 16u       /* the CRC is the last word; it covers words 0..13 and the payload */
#define TX_CKPT_FLAG_DONE 1u
#define TX_CKPT_FLAG_LOW_ENERGY 2u
enum {
  TX_H_MAGIC, TX_H_VERSION, TX_H_SEQ, TX_H_FINGERPRINT, TX_H_INPUT_ID, TX_H_STAGE, TX_H_STEP, TX_H_UNIT,
  TX_H_FLAGS, TX_H_EXIT, TX_H_PAYLOAD_LEN, TX_H_R0, TX_H_R1, TX_H_R2, TX_H_LOW_MARK, TX_H_CRC
};
/* TX_H_LOW_MARK stays erased (0xFFFFFFFF) when the slot is written; any other value = low energy was seen
 * after this checkpoint. TX_H_EXIT of an unfinished checkpoint: the answering point once decided. */
#define TX_CKPT_CRC_WORDS 14u

/* Packed result record (a log on flash, see above): word 0 = TX_CKPT_PACK_TAG << 24 | flags << 20 | exit << 12 |
 * payload bytes, then seq, input id, the payload (whole words, zero padded), and last the CRC-32 of the pipeline
 * fingerprint (a word, not stored: a record of another firmware fails its CRC), the three header words and the
 * payload bytes. Payload <= TX_CKPT_PACK_MAX_LEN bytes, exit < 256. */
#define TX_CKPT_PACK_TAG 0xC5u
#define TX_CKPT_PACK_HEADER_WORDS 3u
#define TX_CKPT_PACK_MAX_LEN 0xFFFu
enum { TX_P_TAG, TX_P_SEQ, TX_P_INPUT_ID };

#endif
