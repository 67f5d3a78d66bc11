"""tinyexit.codegen.features: the kernel code paths a library needs. The requantization predicate must give
what the C (tx_rq_make_bound) decides at run time, or a path the kernels take would be missing."""
import subprocess
from dataclasses import replace

from tests.conftest import conformance_model, require_program
from tinyexit import toolchain
from tinyexit.codegen import fuse, generate, plan_memory, read_model
from tinyexit.codegen.features import KernelFeatures, kernel_features, rq_needs_exact
from tinyexit.codegen.ops.conv_2d import with_wide_convs
from tinyexit.codegen.ops.depthwise_conv_2d import with_widened_tables

SHIFTS = range(-31, 32)
BOUNDS = sorted({0, 1, 255 * 128, (1 << 29) - 1, 1 << 29, (1 << 30) - 1, 1 << 30, (1 << 31) + 5, (1 << 40)}
                | {(1 << e) + d for e in range(0, 31) for d in (-1, 0, 1) if (1 << e) + d >= 0})

DRIVER = """#include <stdio.h>
#include <inttypes.h>
{% include "kernels/tx_fixedpoint.h.j2" %}
{% include "kernels/cortex_m4/_requant.h.j2" %}
static const int32_t shifts[] = { {{ shifts }} };
static const uint64_t bounds[] = { {{ bounds }} };
int main(void) {
  uint32_t i, j;
  for (i = 0; i < sizeof shifts / sizeof shifts[0]; ++i)
    for (j = 0; j < sizeof bounds / sizeof bounds[0]; ++j) {
      tx_rq_t q;
      printf("%" PRIu32 "\\n", tx_rq_make_bound(&q, 1 << 30, shifts[i], bounds[j], -3));
    }
  return 0;
}
"""


def test_rq_predicate_is_the_c_one(tmp_path):
    require_program("gcc", "apt-get install -y gcc make")
    # The header's inline asm helpers are not used here, so the host compiler never emits them.
    src = toolchain.render_string(DRIVER,banner="", shifts=", ".join(map(str, SHIFTS)),
                                         bounds=", ".join(f"{b}ull" for b in BOUNDS))
    (tmp_path / "rq.c").write_text(src)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-I", str(tmp_path), "-o",
                    str(tmp_path / "rq"), str(tmp_path / "rq.c")], check=True)
    got = [int(v) for v in subprocess.run([str(tmp_path / "rq")], check=True, capture_output=True,
                                          text=True).stdout.split()]
    want = [int(rq_needs_exact(1 << 30, s, b)) for s in SHIFTS for b in BOUNDS]
    assert got == want
    assert 0 < sum(want) < len(want)


def _features(path, wide=False):
    g = fuse(read_model(path, name="m"))
    g = with_wide_convs(with_widened_tables(g, rows=True)) if wide else g  # as generate makes cortex_m4 graphs
    return kernel_features({"m": g}, {"m": plan_memory(g)})


def test_conformance_models_need_few_paths():
    kws = _features(conformance_model("kws_ref_model.tflite"))
    assert kws == KernelFeatures(conv_passes=True, conv_direct=True, conv_im2col=True, dw_groups9=True,
                                 dw_old=True, dw_ring=True, pool_avg=True)
    resnet = _features(conformance_model("pretrainedResnet_quant.tflite"))
    # the first conv has k = 3 * 3 * 3 (not a multiple of 8): its last channel pair goes through tx_conv_pair
    # and its FC has 10 outputs: the last 2 rows run in C (fc_rest)
    assert resnet == KernelFeatures(conv_passes=True, conv_direct=True, conv_im2col=True, conv_ring=True,
                                    conv_pair=True, pool_avg=True, fc_rest=True)
    # With the wide streams (every conv of both models, fused ADDs included), no pair-path code at all; the
    # KWS depthwise layers all take the row path (the layer plan): no tap-list code either.
    assert _features(conformance_model("kws_ref_model.tflite"), wide=True) == KernelFeatures(
        conv_wide=True, conv_im2col=True, dw_rows=True, pool_avg=True)
    # ResNet-8's 3-channel first conv (k = 27, not in place) copies its patch rows by words (conv_wide_words); no
    # 1x1 or in-place conv of it has k % 4 != 0 (conv_wide_part)
    assert _features(conformance_model("pretrainedResnet_quant.tflite"), wide=True) == KernelFeatures(
        conv_wide=True, conv_im2col=True, conv_ring=True, conv_wide_rows=True, conv_wide_words=True, pool_avg=True,
        fc_rest=True)


def test_taplist_layers_beside_the_row_path_take_the_c_loop():
    """A library with row-path layers compiles no tap-list assembly for its other 3x3 layers (the C group
    loop, ~1 KB less code), and the tap-list ring code only when one of those runs in place."""
    g = with_widened_tables(fuse(read_model(conformance_model("kws_ref_model.tflite"), name="m")), rows=True)
    i = next(k for k, op in enumerate(g.ops) if op.name == "DEPTHWISE_CONV_2D")
    mixed = replace(g, ops=g.ops[:i] + (replace(g.ops[i], rows=False, widened=True),) + g.ops[i + 1:])
    f = kernel_features({"m": mixed}, {"m": plan_memory(mixed)})
    assert f.dw_rows and f.dw_old and f.dw_groups and not f.dw_groups9 and f.dw_ring
    f = kernel_features({"m": g}, {"m": plan_memory(g)})
    assert f.dw_rows and not (f.dw_old or f.dw_groups or f.dw_groups9 or f.dw_ring)
    f = kernel_features({"m": mixed}, {"m": plan_memory(mixed, inplace=False)})
    assert not f.dw_ring


def test_exact_requantization_is_flagged():
    g = fuse(read_model(conformance_model("kws_ref_model.tflite"), name="m"))
    # a left shift of 12: the first conv's |acc| (up to 40 * 255 * 128 + |bias|, ~2^20.3) << 13 may overflow
    big = replace(g.ops[0], shift=tuple(12 for _ in g.ops[0].shift))
    flags = kernel_features({"m": replace(g, ops=(big,) + g.ops[1:])}, {"m": plan_memory(g)})
    assert flags.conv_exact and flags.conv_pair and not flags.dw_exact
    assert not _features(conformance_model("kws_ref_model.tflite")).conv_exact


def test_library_emits_only_the_paths_used(tmp_path):
    generate({"kws": conformance_model("kws_ref_model.tflite")}, tmp_path / "lib", kernels="cortex_m4",
             measure=False, compare_tflm=False)
    conv = (tmp_path / "lib" / "tx_conv.c").read_text()
    assert "#define TX_CONV_PAIR 0" in conv and "#define TX_CONV_PASSES 0" in conv and "#define TX_CONV_WIDE 1" in conv
    pool = (tmp_path / "lib" / "tx_pool.c").read_text()
    dsp = pool.split("#else")[0]      # the DSP build (the #else branch is the reference file for the host)
    assert "tx_maxpool_s8(" not in dsp and "tx_avgpool_s8_reference(" not in dsp
