"""Rewrites every metrics.parquet under a run dir with polars, as AlpaSim's runtime writes them
(polars' defaults: zstd, large strings, its own column order and row groups), so the aggregate
benchmark measures drivekit on AlpaSim-written input and not only on its own files.

Usage: polars_rewrite.py RUN_DIR
"""
import os
import sys

import polars as pl

n = 0
for root, _dirs, files in os.walk(os.path.join(sys.argv[1], "rollouts")):
    if "metrics.parquet" in files:
        path = os.path.join(root, "metrics.parquet")
        df = pl.read_parquet(path)
        # AlpaSim's column order (its MetricReturn fields), not drivekit's.
        df = df.select(["timestamps_us", "values", "valid", "name", "time_aggregation",
                        "clipgt_id", "rollout_id", "run_uuid", "run_name"])
        tmp = path + ".polars-tmp"
        df.write_parquet(tmp)
        os.replace(tmp, path)
        n += 1
print(f"rewrote {n} metrics.parquet files with polars {pl.__version__}", file=sys.stderr)
