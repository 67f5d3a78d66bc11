"""Small Keras layers the exit heads need, registered so saved models load again (`import tinyexit.models`)."""
from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tinyexit")
class ChannelSlice(keras.layers.Layer):
    """Keep channels [start, stop) of an NHWC feature map (T-RecX heads look at the first 32 channels).
    Converts to one STRIDED_SLICE in TFLite."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}
