"""int8 by segments (docs/CONTRACTS.md, "RUN/quant/manifest.json").

The trained Keras model is cut at its exit points into *segments* (model input -> exit point 1 -> ... ->
final softmax) and *exit heads* (exit point k -> exit k softmax). By default the whole model is converted once
to a full-integer int8 .tflite and its int8 graph is cut at the exit-point tensors; alternatively each piece is
converted on its own and the boundary quantization is made to agree exactly (segment k's output scale/zero point
written into segment k+1's input and into every head attached after segment k). Chaining the int8 pieces gives
the same bytes as the whole int8 model (tests/test_quantize.py).

    convert.py   Keras graph surgery and TFLite conversion: split_model, boundary_activations, convert_int8
    cut.py       the .tflite flatbuffer: tensor_qparams, tensor_shape, set_input_qparams, set_tensor_qparams,
                 cut_tflite, find_boundary, output_order, count_macs
    oracle.py    the int8 chain on tflite_micro: TflmModel, Int8Pipeline (a run's: `Run(path).oracle()`)
    qparams.py   QParams, quantize_array, dequantize_array
    stage.py     quantize_model(model, points, representative) and quantize_run(run_dir) -> RUN/quant/
"""
from tinyexit.quantize.convert import _quiet, _rebuild, boundary_activations, convert_int8, split_model
from tinyexit.quantize.cut import (_all_qparams, _opcode, _subgraph, count_macs, cut_tflite, find_boundary, output_order,
                                   set_input_qparams, set_tensor_qparams, tensor_qparams, tensor_shape)
from tinyexit.quantize.oracle import Int8Pipeline, TflmModel, seg_out_shape
from tinyexit.quantize.qparams import QParams, dequantize_array, quantize_array
from tinyexit.quantize.stage import DEFAULT_NUM_CALIBRATION, quantize_model, quantize_run

__all__ = ["DEFAULT_NUM_CALIBRATION", "Int8Pipeline", "QParams", "TflmModel", "boundary_activations", "convert_int8",
           "count_macs", "cut_tflite", "dequantize_array", "find_boundary", "output_order", "quantize_array",
           "quantize_model", "quantize_run", "seg_out_shape", "set_input_qparams", "set_tensor_qparams",
           "split_model", "tensor_qparams", "tensor_shape", "_all_qparams", "_opcode", "_quiet", "_rebuild", "_subgraph"]
