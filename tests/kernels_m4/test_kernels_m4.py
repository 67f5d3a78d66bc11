"""The cortex_m4 kernel variant (DSP extension: SMLAD, SXTB16, SMMULR, SSAT) on the emulated Cortex-M4
(QEMU mps2-an386), byte-exact with tflite_micro: the tests/ops sweeps of every kernel it implements (conv,
fused conv+add, depthwise, fused channel slice + depthwise, fully connected, average pool) plus cases aimed at its own paths (assembly 1x1 and 3x3 loops,
odd channel and pixel counts, clamps, in place, exact requantization), both conformance models on 20+
inputs, and its requantization arithmetic on 60,000 random cases. One firmware, one emulator run."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import conformance_model
from tests.kernels_m4._firmware import Job, parse, require_emulator, run_jobs
from tests.ops import (test_add, test_average_pool_2d, test_conv_2d, test_depthwise_conv_2d, test_fully_connected,
                       test_slice_depthwise)
from tests.ops._harness import Case, convert, output_tensor, set_quantization
from tests.ops._pool import pool

KERNELS = "cortex_m4"


def conv(shape, filters, k, s, pad, act=None):
    return test_conv_2d.conv(shape, filters, k, s, pad, act)


def dw(shape, k, s, pad, mult=1, act=None):
    return test_depthwise_conv_2d.dw(shape, k, s, pad, mult, act)


def input_zero_point(zp: int):
    """The input tensor's zero point set to `zp` (scale 0.02): the extreme input offsets (-127, 128) that the
    depthwise kernel folds into its per-group bias."""
    import tflite

    def patch(m: bytes) -> bytes:
        return set_quantization(m, int(tflite.Model.GetRootAsModel(m, 0).Subgraphs(0).Inputs(0)), 0.02, zp)
    return patch


def tiny_output_scale(m: bytes) -> bytes:
    """A very small output scale: requantization multipliers > 1 (left shifts), so that the bound check
    sends channels to the exact (tx_mbqm) path."""
    return set_quantization(m, output_tensor(m), 1e-5, 3)


def residual_add(shape, k=3, conv_first=False, relu=False, conv_act=None):
    """A conv whose result is added to its input (CONV_2D+ADD), no activation after the ADD unless `relu`
    (int8-wide range: tx_add_pairs), the conv as the ADD's first operand when `conv_first`; `conv_act`: the
    conv's own activation (a narrower range: the pair path, not the wide one)."""
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        a = keras.layers.Conv2D(shape[-1], 3, padding="same", activation="relu")(x)
        b = keras.layers.Conv2D(shape[-1], k, padding="same", activation=conv_act)(a)
        y = keras.layers.Add()([b, a] if conv_first else [a, b])
        return keras.Model(x, keras.layers.ReLU()(y) if relu else y)
    return build


def second_conv_zero_point(m: bytes) -> bytes:
    """The second CONV_2D's output (the ADD's operand in residual_add) at scale 0.05, zero point -60: with its
    relu, a range narrower than int8, so that conv takes the pair path (not the wide one)."""
    import tflite

    sg = tflite.Model.GetRootAsModel(m, 0).Subgraphs(0)
    model = tflite.Model.GetRootAsModel(m, 0)
    convs = [sg.Operators(i) for i in range(sg.OperatorsLength())
             if model.OperatorCodes(sg.Operators(i).OpcodeIndex()).BuiltinCode() == tflite.BuiltinOperator.CONV_2D]
    return set_quantization(m, int(convs[1].Outputs(0)), 0.05, -60)


def coarse_add_scale(m: bytes) -> bytes:
    """An ADD output scale far above the inputs' (TFLM needs the sum's multiplier below 1, so no left shift):
    a sum right shift > 22, which only the fused ADD's exact path (tx_add_elem) takes."""
    return set_quantization(m, output_tensor(m), 20.0, 3)


# Cases aimed at the variant's own paths (k = k_h * k_w * in_c; the assembly conv loop needs k % 8 == 0).
M4_CASES = [
    Case("m4_1x1_k16_asm", conv((5, 5, 16), 16, 1, 1, "same"), (5, 5, 16)),             # in place, odd pixels
    Case("m4_1x1_k8_odd_oc", conv((4, 3, 8), 7, 1, 1, "valid"), (4, 3, 8)),            # odd channel tail
    Case("m4_1x1_k24_s2", conv((7, 5, 24), 10, 1, 2, "valid"), (7, 5, 24)),            # direct, strided
    Case("m4_1x1_k12_c_path", conv((3, 4, 12), 6, 1, 1, "valid"), (3, 4, 12)),         # k % 8 == 4
    Case("m4_1x1_k5_tail", conv((3, 3, 5), 3, 1, 1, "valid"), (3, 3, 5)),              # k % 4 == 1
    Case("m4_3x3_k72_ring", conv((5, 6, 8), 8, 3, 1, "same"), (5, 6, 8)),              # im2col + ring, asm
    Case("m4_10x4_c1_s2", conv((13, 6, 1), 9, (10, 4), 2, "same", "relu"), (13, 6, 1)),  # KWS first conv shape
    Case("m4_1x1_c5_inplace", conv((4, 3, 5), 5, 1, 1, "same"), (4, 3, 5)),            # in place, odd channels
    Case("m4_1x1_c13_inplace", conv((3, 5, 13), 13, 1, 1, "same"), (3, 5, 13)),       # asm + 3 tail channels
    Case("m4_3x3_c3_k27", conv((6, 7, 3), 6, 3, 1, "same"), (6, 7, 3)),               # ResNet first conv shape
    Case("m4_1x1_one_oc", conv((3, 3, 8), 1, 1, 1, "valid"), (3, 3, 8)),               # no channel pair
    Case("m4_1x1_k16_relu6_clamps", conv((4, 5, 16), 6, 1, 1, "valid", "relu6"), (4, 5, 16),
         patch=lambda m: set_quantization(m, output_tensor(m), 0.05, -60)),              # asm clamp path
    Case("m4_conv_exact_rq", conv((4, 4, 8), 4, 3, 1, "same"), (4, 4, 8), patch=tiny_output_scale),
    Case("m4_conv_per_tensor_asm", conv((4, 5, 16), 6, 1, 1, "valid", "relu"), (4, 5, 16), per_channel=False),
    # The wide path (tx_conv_wpasses: 4 pixels x 2 channels over the generator's stream; WIDE_CASES):
    # pixel counts 25 / 15 / 14 / 9 (a last block of 1, 3, 2, 1 pixels; chunked runs: one row per call),
    # loop entries from the first to the last of its 16 steps (k = 2 ... 1152),
    # kp % 16 = 0 and 8 (the loop's second-half entry), partial patch words, in place, im2col with
    # padding and the ring, the input offset's extremes, per-tensor weights.
    Case("m4w_1x1_c64_inplace", conv((5, 5, 64), 64, 1, 1, "same", "relu"), (5, 5, 64)),
    Case("m4w_1x1_k12_s1", conv((3, 5, 12), 6, 1, 1, "valid"), (3, 5, 12)),
    Case("m4w_1x1_k40_mid", conv((2, 7, 40), 10, 1, 1, "valid", "relu"), (2, 7, 40)),
    Case("m4w_1x1_k5_partial", conv((3, 3, 5), 4, 1, 1, "valid"), (3, 3, 5)),
    Case("m4w_1x1_k24_s2_zp127", conv((7, 5, 24), 8, 1, 2, "valid"), (7, 5, 24), patch=input_zero_point(127)),
    Case("m4w_1x1_k16_zpm128", conv((4, 5, 16), 12, 1, 1, "same"), (4, 5, 16), patch=input_zero_point(-128)),
    Case("m4w_10x4_c1_s2", conv((13, 6, 1), 8, (10, 4), 2, "same", "relu"), (13, 6, 1)),   # KWS first conv
    Case("m4w_3x3_k72_ring_zp127", conv((5, 6, 8), 8, 3, 1, "same"), (5, 6, 8), patch=input_zero_point(127)),
    Case("m4w_3x3_k144_s2", conv((9, 7, 16), 16, 3, 2, "same", "relu"), (9, 7, 16)),
    Case("m4w_1x1_per_tensor", conv((4, 4, 32), 14, 1, 1, "valid"), (4, 4, 32), per_channel=False),
    Case("m4w_1x1_k2_oc2", conv((3, 3, 2), 2, 1, 1, "valid"), (3, 3, 2)),     # 2 steps: entry at the loop's last
    Case("m4w_3x3_k1152", conv((4, 3, 128), 4, 3, 1, "same"), (4, 3, 128)),   # 576 steps, rows widened in place
    # Patch rows of seg % 4 != 0 bytes copied by words (tx_convw_copy; columns widened by whole words): the
    # last window ending at the input's last byte (gathered), stride 2 with padding, one channel, k % 4 == 0.
    Case("m4w_3x3_c3_valid", conv((5, 6, 3), 4, 3, 1, "valid"), (5, 6, 3)),
    Case("m4w_3x3_c5_s2_same", conv((7, 7, 5), 6, 3, 2, "same"), (7, 7, 5)),
    Case("m4w_5x3_c1_valid", conv((6, 5, 1), 4, (5, 3), 1, "valid"), (6, 5, 1)),
    Case("m4w_2x3_c2_k12", conv((5, 6, 2), 2, (2, 3), 1, "same"), (5, 6, 2)),
    # Whole blocks of the rows path (tx_convw_block: 4 pixels of one row, windows inside), blocks across rows
    # and at the edges (per pixel), stride 2; in-place 3x3 whose ring reads wrap (tx_conv_gather's runs).
    Case("m4w_3x3_c16_valid_blocks", conv((6, 10, 16), 8, 3, 1, "valid"), (6, 10, 16)),
    Case("m4w_3x3_c16_w11_same", conv((5, 11, 16), 6, 3, 1, "same"), (5, 11, 16)),
    Case("m4w_3x3_c16_s2_valid", conv((7, 13, 16), 4, 3, 2, "valid"), (7, 13, 16)),
    Case("m4w_3x3_c4_ring_w9", conv((5, 9, 4), 4, 3, 1, "same"), (5, 9, 4)),
    Case("m4w_3x3_c12_ring", conv((6, 5, 12), 12, 3, 1, "same", "relu"), (6, 5, 12)),
    Case("m4_dw3_c8_inplace", dw((6, 5, 8), 3, 1, "same"), (6, 5, 8)),                 # asm groups, ring
    Case("m4_dw3_c6_tail", dw((5, 4, 6), 3, 1, "same", 1, "relu"), (5, 4, 6)),        # group + 2-channel tail
    Case("m4_dw3_c12_s2_valid", dw((7, 8, 12), 3, 2, "valid"), (7, 8, 12)),
    Case("m4_dw3_c4_relu6", dw((5, 5, 4), 3, 1, "same", 1, "relu6"), (5, 5, 4),
         patch=lambda m: set_quantization(m, output_tensor(m), 0.1, -40)),               # clamps: C path
    Case("m4_dw5_c8_tap_loop", dw((7, 6, 8), 5, 1, "same", 1, "relu"), (7, 6, 8)),     # groups, not 3x3
    Case("m4_dw3_exact_rq", dw((4, 4, 8), 3, 1, "same"), (4, 4, 8), patch=tiny_output_scale),
    Case("m4_dw3_per_tensor", dw((5, 5, 8), 3, 1, "same"), (5, 5, 8), per_channel=False),
    # 3x3 pixel pairs (tx_dw_groups9): pairs across rows, odd pixel counts (a last single pixel), in place
    # with the pending pixel, stride 2 with padding, one-row maps, extreme input offsets, KWS's 64 channels
    Case("m4_dw3_c16_w1_inplace", dw((7, 1, 16), 3, 1, "same"), (7, 1, 16)),          # every pair spans 2 rows
    Case("m4_dw3_c9_odd_inplace", dw((5, 3, 9), 3, 1, "same"), (5, 3, 9)),            # 15 pixels, 1 tail channel
    Case("m4_dw3_c20_s2_same", dw((9, 7, 20), 3, 2, "same", 1, "relu"), (9, 7, 20)),  # 5 x 4 outputs, padding
    Case("m4_dw3_c8_s2_odd_w", dw((6, 9, 8), 3, 2, "same"), (6, 9, 8)),               # 3 x 5 outputs
    Case("m4_dw3_c8_one_row", dw((1, 6, 8), 3, 1, "same"), (1, 6, 8)),
    Case("m4_dw3_c8_in_zp_127", dw((4, 5, 8), 3, 1, "same"), (4, 5, 8), patch=input_zero_point(127)),
    Case("m4_dw3_c12_in_zp_m128", dw((5, 4, 12), 3, 2, "same"), (5, 4, 12), patch=input_zero_point(-128)),
    Case("m4_dw3_c64_kws", dw((6, 5, 64), 3, 1, "same", 1, "relu"), (6, 5, 64)),
    Case("m4_dw3_c8_relu6_pairs", dw((5, 3, 8), 3, 1, "same", 1, "relu6"), (5, 3, 8),
         patch=lambda m: set_quantization(m, output_tensor(m), 0.05, -30)),              # asm clamp, odd width
    # 3x3 stride-1 row path (tx_dw_rows; ROWS_CASES): widths 1, 2 and odd, odd row counts (a last single row
    # of a pair), channels past the last group of 4 and below 4, VALID, clamps in the assembly and the tail,
    # the input offset's extremes; the chunked runs call it one row at a time (the ring between calls).
    Case("m4r_w1_c8_inplace", dw((6, 1, 8), 3, 1, "same"), (6, 1, 8)),
    Case("m4r_w2_c4_inplace", dw((5, 2, 4), 3, 1, "same", 1, "relu"), (5, 2, 4)),
    Case("m4r_w7_c12_odd_rows", dw((7, 7, 12), 3, 1, "same"), (7, 7, 12)),
    Case("m4r_c5_tail", dw((4, 5, 5), 3, 1, "same"), (4, 5, 5)),
    Case("m4r_c3_tail_only", dw((5, 4, 3), 3, 1, "same", 1, "relu"), (5, 4, 3)),
    Case("m4r_c1", dw((3, 3, 1), 3, 1, "same"), (3, 3, 1)),
    Case("m4r_valid_c8", dw((6, 7, 8), 3, 1, "valid"), (6, 7, 8)),
    Case("m4r_valid_c7_w3", dw((5, 3, 7), 3, 1, "valid"), (5, 3, 7)),                # one output column
    Case("m4r_valid_one_row_c6", dw((3, 6, 6), 3, 1, "valid", 1, "relu"), (3, 6, 6)),
    Case("m4r_one_row_c8", dw((1, 5, 8), 3, 1, "same"), (1, 5, 8)),
    Case("m4r_relu6_clamps_c6", dw((5, 4, 6), 3, 1, "same", 1, "relu6"), (5, 4, 6),
         patch=lambda m: set_quantization(m, output_tensor(m), 0.05, -30)),              # asm + tail clamps
    Case("m4r_zpm128_c8", dw((4, 5, 8), 3, 1, "same"), (4, 5, 8), patch=input_zero_point(-128)),
    Case("m4r_zp127_c9_valid", dw((5, 6, 9), 3, 1, "valid"), (5, 6, 9), patch=input_zero_point(127)),
    # right shift 0 (a multiplier >= 0.5): the row path refuses it, the tap-list pairs take it (in place)
    Case("m4_dw3_c8_inplace_right0", dw((6, 5, 8), 3, 1, "same"), (6, 5, 8),
         patch=lambda m: set_quantization(m, output_tensor(m), 2e-5, 3)),
    # Fused CONV_2D+ADD: the ADD's assembly rows (blocks of 4 pixels: n = 0 and 2 mod 4 elements), either
    # operand order, odd channels (the C pair path), a narrower range (C rows), the exact path.
    Case("m4_add_wide_c6_odd_px", residual_add((3, 5, 6)), (3, 5, 6)),              # 15 px: last block 18
    Case("m4_add_wide_c4_conv_first", residual_add((5, 3, 4), 1, conv_first=True), (5, 3, 4)),
    Case("m4_add_c5_pair", residual_add((4, 3, 5), conv_first=True), (4, 3, 5)),    # odd channels
    Case("m4_add_c8_relu", residual_add((3, 4, 8), 1, relu=True), (3, 4, 8)),
    Case("m4_add_c8_pairs", residual_add((3, 5, 8), conv_act="relu"), (3, 5, 8), patch=second_conv_zero_point),   # pair path, both pixels at once
    Case("m4_add_exact", residual_add((3, 3, 4)), (3, 3, 4), patch=coarse_add_scale),
    Case("m4_fc_odd", test_fully_connected.dense((37,), 9), (37,)),
    Case("m4_avg_global_c16", pool("avg", (9, 7, 16), (9, 7), 1, "valid"), (9, 7, 16)),
    Case("m4_avg_k3s2_c8", pool("avg", (7, 6, 8), 3, 2, "same"), (7, 6, 8)),
    Case("m4_avg_big_window", pool("avg", (17, 16, 4), (17, 16), 1, "valid"), (17, 16, 4)),
]

WIDE_CASES = [c.name for c in M4_CASES if c.name.startswith("m4w_")]
ROWS_CASES = [c.name for c in M4_CASES if c.name.startswith("m4r_")]
SWEEP = (test_conv_2d.CASES + test_conv_2d.RANDOM + test_depthwise_conv_2d.CASES + test_depthwise_conv_2d.RANDOM
         + test_fully_connected.CASES + test_fully_connected.SHAPES + test_add.CASES + test_average_pool_2d.CASES + M4_CASES)
# Channel slice -> depthwise read in place through a chain (as exit heads are): each with its producer.
SLICE = test_slice_depthwise.CASES
SLICE_MAPS = [Case(f"{c.name}_map", test_slice_depthwise.producer(c.input_shape), c.input_shape) for c in SLICE]
N_RANDOM = 12       # random full-range inputs per sweep model (+ structured ones)
CONFORMANCE = {"kws": ("kws_ref_model.tflite", 24), "resnet": ("pretrainedResnet_quant.tflite", 20)}


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    require_emulator()
    from tinyexit.toolchain import symbol_address
    from tinyexit.codegen import Link, generate, read_model
    from tinyexit.conformance import structured_inputs

    work = tmp_path_factory.mktemp("kernels_m4")
    rng = np.random.default_rng(5)
    paths, jobs = {}, []
    for c in SWEEP + SLICE + SLICE_MAPS:
        p = work / f"{c.name}.tflite"
        data = convert(c)
        p.write_bytes(c.patch(data) if c.patch else data)
        paths[c.name] = p
    for name, (file, n) in CONFORMANCE.items():
        paths[name] = conformance_model(file)
    report = generate(paths, work / "lib", kernels=KERNELS, measure=False, compare_tflm=False,
                      chain=[Link(m.name, (c.name,), None) for c, m in zip(SLICE, SLICE_MAPS)])
    for name, p in paths.items():
        g = read_model(p)
        shape = g.input.shape[1:]
        if name in CONFORMANCE:
            x = np.concatenate([rng.integers(-128, 128, size=(CONFORMANCE[name][1] - 4, *shape)),
                                structured_inputs(shape, g.input.zero_point, rng)[[0, 1, 6, 9]]])
            chunked = 0
        else:
            x = np.concatenate([rng.integers(-128, 128, size=(N_RANDOM, *shape)),
                                structured_inputs(shape, g.input.zero_point, rng)])
            chunked = 2
        jobs.append(Job(name, x.astype(np.int8).reshape(len(x), -1), g.output.nbytes, chunked))
    run, fw = run_jobs(work / "lib", jobs, work)
    got, rq = parse(run.output, jobs)
    # The optimized routines are in the image (the DSP path was compiled, not the reference fallback).
    routines = {s: symbol_address(fw.elf, s) for s in ("tx_conv_passes", "tx_conv_wpasses", "tx_dw_rows9")}
    return dict(paths=paths, jobs={j.name: j for j in jobs}, got=got, rq=rq, report=report, routines=routines,
                exit_code=run.exit_code)


def _check(emulated, name):
    from tinyexit.conformance import tflm_outputs

    job = emulated["jobs"][name]
    want = tflm_outputs(emulated["paths"][name], job.inputs)
    got = emulated["got"][name]
    bad = np.flatnonzero((got != want).any(axis=1))
    assert bad.size == 0, (f"{name}: {bad.size}/{len(got)} inputs differ (first {bad[0]}, chunked: "
                           f"{bad[0] < job.chunked}); got {got[bad[0]][:12]} want {want[bad[0]][:12]}")


@pytest.mark.emulator
@pytest.mark.parametrize("name", [c.name for c in SWEEP])
def test_sweep_case_matches_tflm_on_m4(emulated, name):
    _check(emulated, name)


def test_wide_cases_take_the_wide_path(emulated):
    """The m4w_ cases (and the KWS layers) reach tx_conv_wide; the odd-channel, clamping and exact ones do not."""
    from tinyexit.codegen import read_model
    from tinyexit.codegen.ops.conv_2d import with_wide_convs

    def wide(name):
        return [op.wide for op in with_wide_convs(read_model(emulated["paths"][name])).ops if op.name == "CONV_2D"]
    for name in WIDE_CASES:
        assert wide(name) == [True], name
    assert wide("kws") == [True] * 5
    for name in ("m4_1x1_k8_odd_oc", "m4_1x1_k16_relu6_clamps", "m4_conv_exact_rq"):
        assert wide(name) == [False], name


# The tap-list path (tx_dw_groups9 assembly): in a library with a row-path layer the other 3x3 layers take
# the C group loop (features.py: ~1 KB less code), so these cases also run in a library of their own, without
# any row-path layer: in place (a right shift of 0 keeps the row path off), stride 2, odd widths, tails.
TAPLIST = ["m4_dw3_c8_inplace_right0", "m4_dw3_c12_s2_valid", "m4_dw3_c20_s2_same", "m4_dw3_c8_s2_odd_w",
           "m4_dw3_c12_in_zp_m128", "m4_dw3_exact_rq", "m4_dw5_c8_tap_loop"]


@pytest.fixture(scope="module")
def emulated_taplist(emulated, tmp_path_factory):
    from tinyexit.codegen import generate, read_model

    work = tmp_path_factory.mktemp("kernels_m4_taplist")
    paths = {n: emulated["paths"][n] for n in TAPLIST}
    report = generate(paths, work / "lib", kernels=KERNELS, measure=False, compare_tflm=False)
    rng = np.random.default_rng(7)
    jobs = []
    for name, p in paths.items():
        g = read_model(p)
        x = rng.integers(-128, 128, size=(6, *g.input.shape[1:])).astype(np.int8)
        jobs.append(Job(name, x.reshape(len(x), -1), g.output.nbytes, 2))
    run, fw = run_jobs(work / "lib", jobs, work)
    got, _ = parse(run.output, jobs)
    symbols = {s: _has_symbol(fw.elf, s) for s in ("tx_dw_groups9", "tx_dw_rows9")}
    return dict(paths=paths, jobs={j.name: j for j in jobs}, got=got, report=report, symbols=symbols)


def _has_symbol(elf, name):
    from tinyexit.errors import TinyexitError
    from tinyexit.toolchain import symbol_address
    try:
        return symbol_address(elf, name) != 0
    except TinyexitError:
        return False


@pytest.mark.emulator
@pytest.mark.parametrize("name", TAPLIST)
def test_taplist_case_matches_tflm_on_m4(emulated_taplist, name):
    assert emulated_taplist["symbols"] == {"tx_dw_groups9": True, "tx_dw_rows9": False}
    _check(emulated_taplist, name)


def test_rows_cases_take_the_row_path(emulated):
    """The m4r_ cases, the 3x3 stride-1 sweep cases and the KWS depthwise layers reach tx_dw_rows in the layer
    plan; stride 2, other kernel sizes, depth multipliers > 1, a right shift of 0 and exact requantization
    do not (they keep the tap-list paths)."""
    from tinyexit.codegen import read_model
    from tinyexit.codegen.ops.depthwise_conv_2d import with_widened_tables

    def rows(name):
        return [op.rows for op in with_widened_tables(read_model(emulated["paths"][name]), rows=True).ops
                if op.name == "DEPTHWISE_CONV_2D"]
    for name in ROWS_CASES + ["m4_dw3_c8_inplace", "m4_dw3_c64_kws", "d_k3s1_same_inplace"]:
        assert rows(name) == [True], name
    assert rows("kws") == [True] * 4
    for name in ("m4_dw3_c12_s2_valid", "m4_dw5_c8_tap_loop", "d_m3_s1", "m4_dw3_exact_rq",
                 "m4_dw3_c8_inplace_right0"):
        assert rows(name) == [False], name
    # and only in the layer plan
    assert not any(op.rows for op in with_widened_tables(read_model(emulated["paths"]["kws"])).ops
                   if op.name == "DEPTHWISE_CONV_2D")


@pytest.mark.emulator
@pytest.mark.parametrize("name", [c.name for c in SLICE])
def test_fused_slice_depthwise_matches_tflm_on_m4(emulated, name):
    assert emulated["report"].chained
    fused = test_slice_depthwise.FUSED in emulated["report"].models[name].ops
    assert fused == (name not in test_slice_depthwise.UNFUSED)
    _check(emulated, name)


@pytest.mark.emulator
@pytest.mark.parametrize("name", sorted(CONFORMANCE))
def test_conformance_model_matches_tflm_on_m4(emulated, name):
    assert len(emulated["jobs"][name].inputs) >= 20
    _check(emulated, name)


@pytest.mark.emulator
def test_requantization_fast_path_equals_tflm_rounding(emulated):
    bad, tested = emulated["rq"]
    assert tested > 60_000 and bad == 0, f"{bad} of {tested} requantizations differ from tx_mbqm"


@pytest.mark.emulator
def test_firmware_uses_the_dsp_routines(emulated):
    assert emulated["exit_code"] == 0
    assert emulated["report"].kernels == KERNELS
    assert all(emulated["routines"].values())
    ops = {op for m in emulated["report"].models.values() for op in m.ops}
    assert {"CONV_2D", "CONV_2D+ADD", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= ops


def test_fused_add_cases_take_their_paths(emulated):
    """The m4_add_ cases are fused CONV_2D+ADDs in the operand order they say; only m4_add_exact needs the exact
    ADD (features.add_needs_exact, the generator's copy of tx_add_prepare's test); the others read the tables,
    made by the generator (ConvAdd.add_tables), as ResNet-8's three."""
    from tinyexit.codegen import read_model
    from tinyexit.codegen.features import add_needs_exact
    from tinyexit.codegen.fuse import fuse
    from tinyexit.codegen.ops.conv_2d import with_wide_convs
    from tinyexit.codegen.prepared import with_prepared_tables

    def fused(name):
        return [op for op in with_prepared_tables(fuse(read_model(emulated["paths"][name]))).ops
                if op.name == "CONV_2D+ADD"]
    for name in [c.name for c in M4_CASES if c.name.startswith("m4_add_")]:
        ops = fused(name)
        assert len(ops) == 1, name
        assert ops[0].conv_is_in1 == ("conv_first" in name or name == "m4_add_c5_pair"), name
        assert add_needs_exact(ops[0].add) == (name == "m4_add_exact"), name
        assert ops[0].add_tables == (name != "m4_add_exact"), name
        wide = [op.conv.wide for op in with_wide_convs(fuse(read_model(emulated["paths"][name]))).ops
                if op.name == "CONV_2D+ADD"]
        assert wide == [name not in ("m4_add_c5_pair", "m4_add_c8_pairs")], name   # else the pair path
    assert [op.add_tables for op in fused("resnet")] == [True] * 3
