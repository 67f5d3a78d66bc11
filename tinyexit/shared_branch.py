"""Alias of `tinyexit.shared` (the shared exit branch), under the name the issue uses."""
from tinyexit.shared import (SHARED_DIR, SharedConfig, SharedInt8Chain, VectorLayout, check_points,
                             default_points, fit_branch, format_report, param_bytes, pooled_features,
                             quantize_shared, read_shared_manifest, train_heads, train_shared, trecx_head)

__all__ = ["SHARED_DIR", "SharedConfig", "SharedInt8Chain", "VectorLayout", "check_points", "default_points",
           "fit_branch", "format_report", "param_bytes", "pooled_features", "quantize_shared",
           "read_shared_manifest", "train_heads", "train_shared", "trecx_head"]
