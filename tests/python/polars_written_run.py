"""A run whose metrics.parquet was written by polars (as AlpaSim writes it: zstd, large strings),
aggregated by drivekit and read back with pandas.

Usage: polars_written_run.py AGGREGATE_BIN WORK_DIR
"""
import os
import subprocess
import sys

import pandas as pd
import polars as pl

exe, work = sys.argv[1], sys.argv[2]
batch = os.path.join(work, "rollouts", "clipA", "b0")
os.makedirs(batch)
rows = []
for i, values in enumerate([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]):
    for t, v in enumerate(values):
        for name, agg, val in [("speed", "mean", v), ("offroad", "max", 0.0), ("collision_any", "max", 0.0)]:
            rows.append(dict(timestamps_us=t * 100_000, values=val, valid=True, name=name,
                             time_aggregation=agg, clipgt_id="clipA", rollout_id=f"b0-{i}",
                             run_uuid="uuid-1", run_name="polars-run"))
# Column order differs from drivekit's on purpose.
pl.DataFrame(rows).write_parquet(os.path.join(batch, "metrics.parquet"))
open(os.path.join(batch, "_complete"), "w").close()

subprocess.run([exe, work, "--quiet"], check=True)
res = pd.read_parquet(os.path.join(work, "aggregate", "metrics_results.parquet"))
# Trajectory means 2 and 4 → two rollout uids → mean 3, sample std √2.
assert abs(res["speed"][0] - 3.0) < 1e-12, res["speed"][0]
assert abs(res["speed_std"][0] - 2 ** 0.5) < 1e-12, res["speed_std"][0]
assert res["n_rollouts"][0] == 2
print("polars-written run aggregated:", res["speed"][0], res["speed_std"][0])

# The polars-written file's column chunks are copied as polars encoded them (every column
# optional, as polars writes it), and its rows survive unchanged.
import glob
import pyarrow.parquet as pq
# metrics_unprocessed.parquet is a dataset directory of part files; one batch → one part.
out_parts = glob.glob(os.path.join(work, "aggregate", "metrics_unprocessed.parquet", "part-*.parquet"))
assert len(out_parts) == 1, out_parts
out_meta = pq.ParquetFile(out_parts[0]).metadata
in_meta = pq.ParquetFile(os.path.join(batch, "metrics.parquet")).metadata
assert out_meta.num_row_groups == in_meta.num_row_groups == 1
out_cols = {out_meta.row_group(0).column(i).path_in_schema: out_meta.row_group(0).column(i) for i in range(9)}
for i in range(9):
    c = in_meta.row_group(0).column(i)
    if c.path_in_schema == "run_uuid":
        continue
    o = out_cols[c.path_in_schema]
    assert (o.compression, o.encodings, o.total_compressed_size) == (c.compression, c.encodings, c.total_compressed_size), c.path_in_schema
assert all(f.nullable for f in pq.read_schema(out_parts[0]))
unp = pl.read_parquet(os.path.join(work, "aggregate", "metrics_unprocessed.parquet"))
src = pl.read_parquet(os.path.join(batch, "metrics.parquet"))
key = ["rollout_id", "name", "timestamps_us"]
cols = ["name", "timestamps_us", "values", "valid", "time_aggregation", "clipgt_id", "rollout_id", "run_name"]
assert unp.select(cols).sort(key).equals(src.select(cols).sort(key)), "copied rows differ"
assert unp["run_uuid"].unique().to_list() != ["uuid-1"] and unp["run_uuid"].n_unique() == 1
print("unprocessed rows copied from the polars input, chunk for chunk")
