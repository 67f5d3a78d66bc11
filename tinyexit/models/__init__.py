"""Model builders with exit points (`tinyexit.models.recipe` builds them from the recipes in models/). Importing this
package registers tinyexit's custom layers for loading."""
from tinyexit.models.dscnn import DSCNNConfig, build_dscnn
from tinyexit.models.exits import exit_spec, exits_with_macs, output_names
from tinyexit.models.layers import ChannelSlice
from tinyexit.models.macs import layer_macs, macs_per_exit, macs_per_layer

__all__ = ["DSCNNConfig", "build_dscnn", "exit_spec", "exits_with_macs", "output_names", "ChannelSlice", "layer_macs", "macs_per_exit",
           "macs_per_layer"]
