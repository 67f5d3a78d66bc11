"""Exit heads shared by the image models (T-RecX): 1x1 conv -> 2x2 depthwise stride 2 -> 4x4 average pool ->
Dense -> softmax, each conv followed by batch norm and the backbone's activation."""
from __future__ import annotations

from keras import layers


def conv_dw_head(x, name: str, filters: int, num_classes: int, bn_momentum: float, relu_max: float | None = None):
    """The exit head on feature map `x`; layer names start with `name_`, the softmax is called `name`."""
    def bn_relu(h, suffix):
        h = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_{suffix}bn")(h)
        return layers.ReLU(relu_max, name=f"{name}_{suffix}relu")(h)

    h = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_conv")(x)
    h = bn_relu(h, "")
    h = layers.DepthwiseConv2D(2, strides=2, use_bias=False, name=f"{name}_dw")(h)
    h = bn_relu(h, "dw_")
    h = layers.AveragePooling2D(4, name=f"{name}_pool")(h)
    h = layers.Flatten(name=f"{name}_flatten")(h)
    h = layers.Dense(num_classes, name=f"{name}_dense")(h)
    return layers.Softmax(name=name)(h)
