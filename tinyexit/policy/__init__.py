"""Exit decisions: policies over int8 (firmware) and float outputs, and risk-controlled thresholds.

    decisions   MaxSoftmax, Margin, Entropy (static), DifferenceDetection, TemporalPatience (streams);
                each .evaluate_q(outputs_q, qparams, exit_macs) / .evaluate(outputs, exit_macs) -> PolicyResult
    risk        losses (gap, consistency) and threshold selection: ltt, ucb, crc (and naive, for contrast)
    streams     scene_stream: correlated streams from a labelled split, for the temporal policies
    calibrate   calibrate_run(run_dir, epsilon, delta, ...) -> writes RUN/policy.json and RUN/calibration.png
"""
from tinyexit.policy.decisions import (ENTROPY_FRAC_BITS, NEVER, DifferenceDetection, Entropy, Margin,
                                       MaxSoftmax, PolicyResult, QParams, TemporalPatience, entropy_table)
from tinyexit.policy.risk import METHODS, RISKS, hb_p_value, hb_ucb, loss_matrix, select

__all__ = ["ENTROPY_FRAC_BITS", "NEVER", "DifferenceDetection", "Entropy", "Margin", "MaxSoftmax",
           "PolicyResult", "QParams", "TemporalPatience", "entropy_table", "METHODS", "RISKS", "hb_p_value",
           "hb_ucb", "loss_matrix", "select"]
