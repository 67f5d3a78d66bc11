"""ResNet-8 (MLPerf Tiny image classification, 32x32x3) with a T-RecX early exit.

Backbone: conv 3x3 (16) -> three residual stacks (16, 32 stride 2, 64 stride 2; a 1x1 stride-2 conv on the
shortcut where the shape changes) -> 8x8 average pool -> Dense -> softmax. The exit sits after the first
stack (32x32x16): 1x1 conv to 32 -> 2x2 depthwise stride 2 -> 4x4 average pool -> Dense -> softmax.
Outputs: exit softmax(es) first, the final softmax last; `stack1_out` is the first exit point.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras
from keras import layers

from tinyexit.models.heads import conv_dw_head


@dataclass(frozen=True)
class ResNet8Config:
    input_shape: tuple[int, int, int] = (32, 32, 3)
    num_classes: int = 10
    filters: tuple[int, ...] = (16, 32, 64)
    exits_after: tuple[int, ...] = (1,)     # 1-based stack indices
    head_filters: int = 32
    bn_momentum: float = 0.9
    loss_weights: dict = field(default_factory=lambda: {"exit": 0.5, "final": 1.0})

    def __post_init__(self):
        bad = [s for s in self.exits_after if not 1 <= s < len(self.filters)]
        if bad:
            raise ValueError(f"exits_after={self.exits_after}: exits go after stacks 1..{len(self.filters) - 1}")


def _bn(cfg, name):
    return layers.BatchNormalization(momentum=cfg.bn_momentum, name=name)


def build_resnet8(cfg: ResNet8Config | None = None) -> keras.Model:
    cfg = cfg or ResNet8Config()
    inp = keras.Input(cfg.input_shape, name="image")
    x = layers.Conv2D(cfg.filters[0], 3, padding="same", use_bias=False, name="conv0")(inp)
    x = _bn(cfg, "conv0_bn")(x)
    x = layers.ReLU(name="conv0_relu")(x)
    exits = []
    for s, f in enumerate(cfg.filters, start=1):
        stride = 1 if s == 1 else 2
        y = layers.Conv2D(f, 3, strides=stride, padding="same", use_bias=False, name=f"stack{s}_conv1")(x)
        y = _bn(cfg, f"stack{s}_bn1")(y)
        y = layers.ReLU(name=f"stack{s}_relu1")(y)
        y = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"stack{s}_conv2")(y)
        y = _bn(cfg, f"stack{s}_bn2")(y)
        if stride != 1 or x.shape[-1] != f:
            x = layers.Conv2D(f, 1, strides=stride, use_bias=False, name=f"stack{s}_shortcut")(x)
            x = _bn(cfg, f"stack{s}_shortcut_bn")(x)
        x = layers.Add(name=f"stack{s}_add")([x, y])
        x = layers.ReLU(name=f"stack{s}_out")(x)
        if s in cfg.exits_after:
            exits.append(conv_dw_head(x, f"exit{s}", cfg.head_filters, cfg.num_classes, cfg.bn_momentum))
    x = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]), name="final_pool")(x)
    x = layers.Flatten(name="final_flatten")(x)
    x = layers.Dense(cfg.num_classes, name="final_dense")(x)
    return keras.Model(inp, exits + [layers.Softmax(name="final")(x)], name="resnet8_exits")
