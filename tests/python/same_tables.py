"""Reads two Parquet files with pyarrow, pandas and polars and checks they hold the same table.

Usage: same_tables.py OURS REFERENCE
OURS is a metrics file drivekit wrote (string columns encoded from their dictionary keys),
REFERENCE the same rows through the arrow-rs ArrowWriter. Besides the rows, the row groups and each
string column's min/max statistics must agree, and a filter on a string column (which readers may
answer from the statistics and dictionary pages) must select the same rows.
"""
import sys

import pandas as pd
import polars as pl
import pyarrow.parquet as pq

ours, ref = sys.argv[1], sys.argv[2]

a, b = pq.read_table(ours), pq.read_table(ref)
assert a.num_rows == b.num_rows > 0, (a.num_rows, b.num_rows)
assert a.schema == b.schema, (a.schema, b.schema)
assert a.equals(b), "pyarrow: tables differ"

ad = pq.read_table(ours, read_dictionary=["name", "rollout_id"])
assert ad.column("name").combine_chunks().dictionary_decode().equals(b.column("name").combine_chunks())

pd.testing.assert_frame_equal(pd.read_parquet(ours), pd.read_parquet(ref))

pa_, pb = pl.read_parquet(ours), pl.read_parquet(ref)
assert pa_.equals(pb), "polars: tables differ"
q = lambda p: pl.scan_parquet(p).filter(pl.col("name") == "metric_7").collect()
fa, fb = q(ours), q(ref)
assert fa.height > 0 and fa.equals(fb), (fa.height, fb.height)

ma, mb = pq.ParquetFile(ours).metadata, pq.ParquetFile(ref).metadata
assert ma.num_row_groups == mb.num_row_groups, (ma.num_row_groups, mb.num_row_groups)
for g in range(ma.num_row_groups):
    assert ma.row_group(g).num_rows == mb.row_group(g).num_rows
    for c in range(ma.num_columns):
        ca, cb = ma.row_group(g).column(c), mb.row_group(g).column(c)
        if ca.physical_type != "BYTE_ARRAY":
            continue
        assert ca.statistics.min == cb.statistics.min, (g, ca.path_in_schema, ca.statistics, cb.statistics)
        assert ca.statistics.max == cb.statistics.max, (g, ca.path_in_schema)
        assert ca.statistics.null_count == 0
        assert ca.has_dictionary_page and "RLE_DICTIONARY" in ca.encodings, (ca.path_in_schema, ca.encodings)
print("same tables in pyarrow, pandas and polars:", a.num_rows, "rows,", ma.num_row_groups, "row groups")
