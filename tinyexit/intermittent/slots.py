"""Reading the checkpoint slots the C runtime writes (firmware_templates/runtime/tx_checkpoint.h), with an
independent CRC (zlib), so the harness judges what is committed in NVM without trusting the runtime."""
from __future__ import annotations

import dataclasses
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


PACK_TAG = 0xC5             # a packed result record (a log on flash): tag word's top byte
PACK_HEADER_BYTES = 12      # tag, seq, input id; then the payload (whole words) and the CRC (seeded with the
#                             pipeline's fingerprint, which the record does not store)


@dataclass(frozen=True)
class SlotRecord:
    slot: int                   # its slot (a log: the page it starts in)
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
    offset: int = -1            # NVM offset of the record (a log); -1: slot x slot size
    packed: bool = False        # a packed result record (no position, no LOW_MARK)

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


def pack_bytes(length: int) -> int:
    """Bytes of a packed record with `length` payload bytes."""
    return PACK_HEADER_BYTES + -(-length // 4) * 4 + 4


def read_packed(image: bytes, offset: int, fingerprint: int) -> SlotRecord | None:
    """The packed result record at byte `offset` of the firmware whose pipeline fingerprint is `fingerprint`, or
    None when none is valid there (tag, inside one page, CRC)."""
    if offset % 4 or offset + PACK_HEADER_BYTES + 4 > len(image):
        return None
    tag, seq, input_id = struct.unpack_from("<3I", image, offset)
    if tag >> 24 != PACK_TAG:
        return None
    length = tag & 0xFFF
    n = pack_bytes(length)
    if offset // PAGE_SIZE != (offset + n - 1) // PAGE_SIZE or offset + n > len(image):
        return None
    payload = bytes(image[offset + PACK_HEADER_BYTES: offset + PACK_HEADER_BYTES + length])
    crc = zlib.crc32(struct.pack("<I", fingerprint))
    crc = zlib.crc32(payload, zlib.crc32(bytes(image[offset: offset + PACK_HEADER_BYTES]), crc))
    if crc != struct.unpack_from("<I", image, offset + n - 4)[0]:
        return None
    return SlotRecord(offset // PAGE_SIZE, seq, fingerprint, input_id, 0, 0, 0, (tag >> 20) & 0xF,
                      (tag >> 12) & 0xFF, payload, False, offset, True)


def log_records(image: bytes, fingerprint: int | None = None) -> list[SlotRecord]:
    """Every valid record of a log, wherever it lies: each word-aligned offset holding a record's magic or a
    packed record's tag is parsed and kept when its CRC matches (whatever the runtime's own walk finds). Packed
    records are checked against `fingerprint` (None: left out, their CRC cannot be checked without it)."""
    import numpy as np
    words = np.frombuffer(bytes(image[: len(image) // 4 * 4]), dtype="<u4")
    out = []
    for k in np.flatnonzero((words == MAGIC) | ((words >> 24) == PACK_TAG)):
        off = int(k) * 4
        if int(words[k]) >> 24 == PACK_TAG:
            rec = read_packed(image, off, fingerprint) if fingerprint is not None else None
        else:
            rec = _read_full(image, off)
        if rec is not None:
            out.append(rec)
    return out


def _read_full(image: bytes, offset: int) -> SlotRecord | None:
    rec = read_slot(image, offset, 1, log=True)
    return None if rec is None else dataclasses.replace(rec, slot=offset // PAGE_SIZE, offset=offset)


def _newer(a: int, b: int) -> bool:
    return ((a - b) & 0xFFFFFFFF) not in (0,) and ((a - b) & 0xFFFFFFFF) < 0x80000000


def newest_valid(image: bytes, slot_size: int, num_slots: int = 2, log: bool = False,
                 fingerprint: int | None = None) -> SlotRecord | None:
    """The newest valid checkpoint (sequence numbers compared modulo 2**32, as the runtime does). A log: over
    every valid record anywhere in it (log_records), packed ones of firmware `fingerprint` included."""
    best = None
    recs = log_records(image[: num_slots * slot_size], fingerprint) if log else \
        (read_slot(image, slot, slot_size, log) for slot in range(num_slots))
    for rec in recs:
        if rec is not None and (best is None or _newer(rec.seq, best.seq)):
            best = rec
    return best
