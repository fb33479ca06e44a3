"""Reads aggregate's Parquet outputs with pyarrow, pandas and polars: they must be ordinary files.

Usage: read_outputs.py RUN_DIR EXPECTED_ROWS
Checks the schemas, the row counts and that metrics_unprocessed.parquet holds exactly the rows of
every batch's metrics.parquet (with the combined run_uuid).
"""
import glob
import json
import os
import sys

import pandas as pd
import polars as pl
import pyarrow.parquet as pq

run, expected_rows = sys.argv[1], int(sys.argv[2])
agg = os.path.join(run, "aggregate")

res = pd.read_parquet(os.path.join(agg, "metrics_results.parquet"))
assert len(res) == 1, res
for c in ["run_name", "run_uuid", "n_clips", "n_rollouts", "speed", "speed_std", "speed_p05", "speed_p95"]:
    assert c in res.columns, (c, list(res.columns))

by_scene = pl.read_parquet(os.path.join(agg, "metrics_results_by_scene.parquet"))
assert "clipgt_id" in by_scene.columns and by_scene.height >= 1

# metrics_unprocessed.parquet is a dataset directory (part-*.parquet): each reader takes the dir.
unp = pq.read_table(os.path.join(agg, "metrics_unprocessed.parquet"))
assert len(pd.read_parquet(os.path.join(agg, "metrics_unprocessed.parquet"))) == unp.num_rows
assert unp.num_rows == expected_rows, (unp.num_rows, expected_rows)
assert str(unp.schema.field("name").type) == "string", unp.schema
assert str(unp.schema.field("timestamps_us").type) == "int64"
assert str(unp.schema.field("values").type) == "double"
assert len(set(unp.column("run_uuid").to_pylist())) == 1

inputs = pl.concat(
    [pl.read_parquet(f) for f in sorted(glob.glob(os.path.join(run, "**", "metrics.parquet"), recursive=True))]
)
unp_pl = pl.read_parquet(os.path.join(agg, "metrics_unprocessed.parquet"))
key = ["clipgt_id", "rollout_id", "name", "timestamps_us"]
a = inputs.drop("run_uuid").sort(key)
b = unp_pl.drop("run_uuid").sort(key)
assert a.equals(b), "unprocessed rows differ from the inputs"

summary = json.load(open(os.path.join(agg, "results-summary.json")))
assert summary["run_uuid"] == res["run_uuid"][0]
print("python readers ok:", len(res.columns), "result columns,", unp.num_rows, "unprocessed rows")
