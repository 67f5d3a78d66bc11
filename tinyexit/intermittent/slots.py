"""Reading the checkpoint slots the C runtime writes (firmware_templates/runtime/tx_checkpoint.h), with an
independent CRC (zlib), so the harness judges what is committed in NVM without trusting the runtime."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = 0x4B435854          # "TXCK"
VERSION = 2                 # 2: word 14 = LOW_MARK, outside the CRC
HEADER_WORDS = 16
HEADER_BYTES = HEADER_WORDS * 4
CRC_HEADER_BYTES = 14 * 4    # header words under the CRC (not LOW_MARK, not the CRC)
LOW_MARK_WORD = 14
FLAG_DONE = 1
FLAG_LOW_ENERGY = 2
PAGE_SIZE = 4096


@dataclass(frozen=True)
class SlotRecord:
    slot: int
    seq: int
    fingerprint: int
    input_id: int
    stage: int
    step: int
    unit: int
    flags: int
    exit_index: int
    payload: bytes
    low_mark: bool = False      # LOW_MARK word cleared after the commit: low energy was seen after it

    @property
    def done(self) -> bool:
        return bool(self.flags & FLAG_DONE)

    @property
    def low_energy(self) -> bool:
        """Low energy latched: in the header's flags, or marked after the commit."""
        return bool(self.flags & FLAG_LOW_ENERGY) or self.low_mark

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.stage, self.step, self.unit)


def read_slot(image: bytes, slot: int, slot_size: int, log: bool = False) -> SlotRecord | None:
    """The record in `slot`, or None when the slot is not valid (magic, version, length or CRC). `log`: the NVM
    is a log (TX_CKPT_SLOTS 0): slots are pages and a record may span the pages after its own."""
    base = slot * slot_size
    if base + HEADER_BYTES > len(image):
        return None
    words = struct.unpack_from(f"<{HEADER_WORDS}I", image, base)
    magic, version, seq, fp, input_id, stage, step, unit, flags, exit_index, length = words[:11]
    room = len(image) - base if log else slot_size
    if magic != MAGIC or version != VERSION or length > room - HEADER_BYTES:
        return None
    payload = bytes(image[base + HEADER_BYTES: base + HEADER_BYTES + length])
    crc = zlib.crc32(payload, zlib.crc32(bytes(image[base: base + CRC_HEADER_BYTES])))
    if crc != words[15]:
        return None
    return SlotRecord(slot, seq, fp, input_id, stage, step, unit, flags, exit_index, payload,
                      words[LOW_MARK_WORD] != 0xFFFFFFFF)


def _newer(a: int, b: int) -> bool:
    return ((a - b) & 0xFFFFFFFF) not in (0,) and ((a - b) & 0xFFFFFFFF) < 0x80000000


def newest_valid(image: bytes, slot_size: int, num_slots: int = 2, log: bool = False) -> SlotRecord | None:
    """The newest valid checkpoint (sequence numbers compared modulo 2**32, as the runtime does)."""
    best = None
    for slot in range(num_slots):
        rec = read_slot(image, slot, slot_size, log)
        if rec is not None and (best is None or _newer(rec.seq, best.seq)):
            best = rec
    return best
