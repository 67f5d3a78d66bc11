"""Re-quantize a run with a fixed batch of 1 (frozen concrete function) instead of the Keras model's dynamic
batch. Workaround used for the board benchmark while the code generator cannot read the SHAPE ->
STRIDED_SLICE -> PACK -> RESHAPE chain that Keras' Flatten becomes with a dynamic batch: with batch 1 the
converter folds it into one RESHAPE. Same weights and representative data as `tinyexit quantize`.

    cp -r runs/kws /tmp/kwsrun && .venv/bin/python benchmarks/quantize_fixed_batch.py /tmp/kwsrun
    .venv/bin/python -m tinyexit calibrate /tmp/kwsrun --epsilon 0.02 --delta 0.1
    .venv/bin/python -m tinyexit bench /tmp/kwsrun --board nrf52840 --emulate --inputs 100
"""
import sys
import numpy as np
import tensorflow as tf
import tinyexit.quantize as Q

orig = Q.convert_int8
def convert_int8_fixed(model, representative):
    rep = np.asarray(representative, np.float32)
    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]
    spec = tf.TensorSpec([1] + list(model.inputs[0].shape[1:]), tf.float32)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    frozen = convert_variables_to_constants_v2(fn)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with Q._quiet():
        return bytes(conv.convert())
Q.convert_int8 = convert_int8_fixed
rep = Q.quantize_run(sys.argv[1], num_eval=200, verify_whole=False, log=print)
print(rep["exits"])
