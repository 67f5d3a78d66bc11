"""Shared exit branch (FreeML, DESIGN.md 3): one exit classifier over every exit point of a frozen backbone,
quantized to int8 by segments and generated as C that can stop after any point ("anytime").
See tinyexit/branch/train.py for the method and docs/CONTRACTS.md (RUN/branch/) for the files."""
from tinyexit.branch.train import (BranchConfig, BranchInt8Chain, VectorLayout, check_points,
                                    default_points, fit_branch, format_report, param_bytes, pooled_features,
                                    quantize_branch, read_branch_manifest, train_heads, train_branch,
                                    trecx_head)

__all__ = ["BranchConfig", "BranchInt8Chain", "VectorLayout", "check_points", "default_points",
           "fit_branch", "format_report", "param_bytes", "pooled_features", "quantize_branch",
           "read_branch_manifest", "train_heads", "train_branch", "trecx_head"]
