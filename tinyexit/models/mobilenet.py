"""MobileNetV1 (width 0.25, 96x96x3: MLPerf Tiny visual wake words) with an early exit.

Backbone: conv 3x3 stride 2 -> 13 depthwise-separable blocks -> global average pool -> Dense -> softmax.
The exit sits on the 24x24x32 feature map (after block 3): 1x1 conv to 64 -> 2x2 depthwise stride 2 ->
4x4 average pool -> Dense -> softmax. Outputs: exit softmax first, final last; `block3_out` is the exit point.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras
from keras import layers

from tinyexit.models.heads import conv_dw_head

# (pointwise filters at width 1.0, stride of the depthwise conv) for the 13 blocks of MobileNetV1
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))


@dataclass(frozen=True)
class MobileNetConfig:
    input_shape: tuple[int, int, int] = (96, 96, 3)
    num_classes: int = 2
    alpha: float = 0.25
    exits_after: tuple[int, ...] = (3,)      # 1-based block indices (block 3 ends at 24x24x32 for 96x96 input)
    head_filters: int = 64
    bn_momentum: float = 0.9
    loss_weights: dict = field(default_factory=lambda: {"exit": 0.4, "final": 1.0})

    def __post_init__(self):
        bad = [b for b in self.exits_after if not 1 <= b < len(BLOCKS)]
        if bad:
            raise ValueError(f"exits_after={self.exits_after}: exits go after blocks 1..{len(BLOCKS) - 1}")


def build_mobilenet_v1(cfg: MobileNetConfig | None = None) -> keras.Model:
    cfg = cfg or MobileNetConfig()
    bn = lambda name: layers.BatchNormalization(momentum=cfg.bn_momentum, name=name)  # noqa: E731
    inp = keras.Input(cfg.input_shape, name="image")
    x = layers.Conv2D(int(32 * cfg.alpha), 3, strides=2, padding="same", use_bias=False, name="conv0")(inp)
    x = layers.ReLU(6.0, name="conv0_relu")(bn("conv0_bn")(x))
    exits = []
    for b, (filters, stride) in enumerate(BLOCKS, start=1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"block{b}_dw")(x)
        x = layers.ReLU(6.0, name=f"block{b}_dw_relu")(bn(f"block{b}_dw_bn")(x))
        x = layers.Conv2D(int(filters * cfg.alpha), 1, use_bias=False, name=f"block{b}_pw")(x)
        x = layers.ReLU(6.0, name=f"block{b}_out")(bn(f"block{b}_pw_bn")(x))
        if b in cfg.exits_after:
            exits.append(conv_dw_head(x, f"exit{b}", cfg.head_filters, cfg.num_classes, cfg.bn_momentum, 6.0))
    x = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]), name="final_pool")(x)
    x = layers.Flatten(name="final_flatten")(x)
    x = layers.Dense(cfg.num_classes, name="final_dense")(x)
    return keras.Model(inp, exits + [layers.Softmax(name="final")(x)], name="mobilenet_v1_exits")
