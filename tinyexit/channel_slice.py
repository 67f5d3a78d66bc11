"""ChannelSlice, written once for both Keras flavours: Keras 3 (tinyexit.models.layers) and tf_keras (the
legacy-Keras child of tinyexit.research.compress.worker). This module imports no Keras itself, so the child can use
it without loading Keras 3."""
from __future__ import annotations


def channel_slice_class(keras):
    """The ChannelSlice layer class on the given keras module (`keras` or `tf.keras`)."""

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

    return ChannelSlice
