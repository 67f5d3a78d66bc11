"""Small Keras layers the exit heads need, registered so saved models load again (`import tinyexit.models`)."""
from __future__ import annotations

import keras

from tinyexit.channel_slice import channel_slice_class


@keras.saving.register_keras_serializable(package="tinyexit")
class ChannelSlice(channel_slice_class(keras)):
    """Keep channels [start, stop) of an NHWC feature map; one STRIDED_SLICE in TFLite. The layer is written
    once in tinyexit.channel_slice (the compress worker builds its tf_keras twin there too)."""
