"""Shared exit branch (FreeML, DESIGN.md 3): one exit classifier over every exit point of a frozen backbone,
quantized to int8 by segments and generated as C that can stop after any point ("anytime").
See tinyexit/shared/branch.py for the method and docs/CONTRACTS.md (RUN/shared/) for the files."""
from tinyexit.shared.branch import (SHARED_DIR, SharedConfig, SharedInt8Chain, VectorLayout, check_points,
                                    default_points, fit_branch, format_report, param_bytes, pooled_features,
                                    quantize_shared, read_shared_manifest, train_heads, train_shared,
                                    trecx_head)

__all__ = ["SHARED_DIR", "SharedConfig", "SharedInt8Chain", "VectorLayout", "check_points", "default_points",
           "fit_branch", "format_report", "param_bytes", "pooled_features", "quantize_shared",
           "read_shared_manifest", "train_heads", "train_shared", "trecx_head"]
