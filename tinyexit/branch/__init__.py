"""Shared exit branch (FreeML, docs/DESIGN.md 3): one exit classifier over every exit point of a frozen backbone,
quantized to int8 by segments and generated as C that can stop after any point ("anytime").

    vector.py    the exit points and the shared vector: default_points, check_points, VectorLayout, pooled_features
    train.py     the float branch and the stage: BranchConfig, fit_branch, trecx_head, train_heads, train_branch
    quantize.py  int8: quantize_branch, param_bytes, BranchInt8Chain (tflite_micro), build_manifest,
                 read_branch_manifest
    report.py    the report for people: plot_branch, format_report
    firmware.py  the generated C library and the anytime driver
See docs/CONTRACTS.md (RUN/branch/) for the files."""
from tinyexit.branch.quantize import BranchInt8Chain, param_bytes, quantize_branch, read_branch_manifest
from tinyexit.branch.report import format_report
from tinyexit.branch.train import BranchConfig, fit_branch, train_branch, train_heads, trecx_head
from tinyexit.branch.vector import VectorLayout, check_points, default_points, pooled_features

__all__ = ["BranchConfig", "BranchInt8Chain", "VectorLayout", "check_points", "default_points",
           "fit_branch", "format_report", "param_bytes", "pooled_features", "quantize_branch",
           "read_branch_manifest", "train_heads", "train_branch", "trecx_head"]
