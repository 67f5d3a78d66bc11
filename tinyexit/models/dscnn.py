"""DS-CNN keyword spotter (MLPerf Tiny KWS) with T-RecX early exits and early-view assistance.

Backbone: conv 10x4 stride 2 (64 filters) -> N depthwise-separable blocks (3x3 depthwise + 1x1 conv, each
followed by batch norm and ReLU) -> average pool over the whole map -> Dense -> softmax.
An exit after block k: the first `head_channels` channels -> 3x3 depthwise stride 2 -> BN -> ReLU -> 2x2
average pool -> Dense -> softmax. With early-view assistance the final classifier also sees the same kind of
depthwise branch over the last feature map, whose depthwise kernel is copied from the nearest exit head's
during the first part of training (see `tinyexit.train.EarlyViewSync`).

Outputs: one softmax per exit in order of depth, the final exit last. Layer names are stable (`block2_out`
is the exit point after block 2) so later stages can split the model at exit points.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras
from keras import layers

from tinyexit.models.layers import ChannelSlice


@dataclass(frozen=True)
class DSCNNConfig:
    input_shape: tuple[int, int, int] = (49, 10, 1)
    num_classes: int = 12
    filters: int = 64
    blocks: int = 4
    exits_after: tuple[int, ...] = (2,)     # 1-based block indices after which an exit is attached
    head_channels: int = 32
    early_view: bool = True
    dropout_stem: float = 0.2
    dropout_final: float = 0.4
    # Batch-norm statistics follow the data faster than Keras' default 0.99, so that short runs (and the
    # first epochs of long ones) evaluate with usable moving averages; MFCC inputs are far from zero mean.
    bn_momentum: float = 0.9
    loss_weights: dict = field(default_factory=lambda: {"exit": 0.3, "final": 1.0})

    def __post_init__(self):
        bad = [b for b in self.exits_after if not 1 <= b < self.blocks]
        if bad:
            raise ValueError(f"exits_after={self.exits_after}: exits go after blocks 1..{self.blocks - 1}")
        if self.head_channels > self.filters:
            raise ValueError(f"head_channels={self.head_channels} exceeds filters={self.filters}")


def _exit_branch(x, prefix: str, cfg: DSCNNConfig):
    """The T-RecX head body up to the flattened vector (shared by exits and the early-view branch)."""
    x = ChannelSlice(0, cfg.head_channels, name=f"{prefix}_slice")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name=f"{prefix}_dw")(x)
    x = layers.BatchNormalization(momentum=cfg.bn_momentum, name=f"{prefix}_bn")(x)
    x = layers.ReLU(name=f"{prefix}_relu")(x)
    x = layers.AveragePooling2D(2, name=f"{prefix}_pool")(x)
    return layers.Flatten(name=f"{prefix}_flatten")(x)


def build_dscnn(cfg: DSCNNConfig | None = None) -> keras.Model:
    cfg = cfg or DSCNNConfig()
    inp = keras.Input(cfg.input_shape, name="mfcc")
    x = layers.Conv2D(cfg.filters, (10, 4), strides=2, padding="same", use_bias=False, name="conv0")(inp)
    x = layers.BatchNormalization(momentum=cfg.bn_momentum, name="conv0_bn")(x)
    x = layers.ReLU(name="conv0_relu")(x)
    x = layers.Dropout(cfg.dropout_stem, name="conv0_dropout")(x)
    exits = []
    for b in range(1, cfg.blocks + 1):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"block{b}_dw")(x)
        x = layers.BatchNormalization(momentum=cfg.bn_momentum, name=f"block{b}_dw_bn")(x)
        x = layers.ReLU(name=f"block{b}_dw_relu")(x)
        x = layers.Conv2D(cfg.filters, 1, use_bias=False, name=f"block{b}_pw")(x)
        x = layers.BatchNormalization(momentum=cfg.bn_momentum, name=f"block{b}_pw_bn")(x)
        x = layers.ReLU(name=f"block{b}_out")(x)
        if b in cfg.exits_after:
            h = _exit_branch(x, f"exit{b}", cfg)
            h = layers.Dense(cfg.num_classes, name=f"exit{b}_dense")(h)
            exits.append(layers.Softmax(name=f"exit{b}")(h))
    x = layers.Dropout(cfg.dropout_final, name="final_dropout")(x)
    pooled = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]), name="final_pool")(x)
    feats = layers.Flatten(name="final_flatten")(pooled)
    if cfg.early_view and cfg.exits_after:
        ev = _exit_branch(x, "ev", cfg)
        feats = layers.Concatenate(name="final_concat")([feats, ev])
    logits = layers.Dense(cfg.num_classes, name="final_dense")(feats)
    final = layers.Softmax(name="final")(logits)
    return keras.Model(inp, exits + [final], name="dscnn_exits")
