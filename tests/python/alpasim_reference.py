"""Cross-check of drivekit's aggregation against AlpaSim's semantics evaluated by polars itself.

AlpaSim aggregates with polars (NVlabs/alpasim, src/eval/src/eval/aggregation/processing.py and
modifiers.py). This script re-states that pipeline in polars expressions — pivot, the modifier
chain with polars' own null/Kleene semantics, time aggregation, mean over clips, km per incident,
mean/std over rollouts — on a seeded random run with nulls, NaN, late eval_relevant, black images,
collisions, offroad and large path deviations, and compares with drivekit's
metrics_results.parquet. Usage: alpasim_reference.py AGGREGATE_BIN WORK_DIR
"""
import glob
import hashlib
import math
import os
import random
import subprocess
import sys

import polars as pl

exe, work = sys.argv[1], sys.argv[2]
rng = random.Random(12345)
RUN_UUID, RUN_NAME = "run-uuid-a", "reference"
METRICS = [
    ("collision_any", "max"), ("collision_front", "max"), ("collision_lateral", "max"),
    ("collision_rear", "max"), ("offroad", "max"), ("img_is_black", "max"),
    ("eval_relevant", "max"), ("dist_to_gt_trajectory", "max"), ("dist_traveled_m", "last"),
    ("speed", "mean"), ("plan_deviation", "median"), ("min_distance_to_obstacle_m", "min"),
    ("time_to_collision_s", "min"), ("progress_rel_to_total", "last"),
]


def rollout_rows(clip, rid, steps):
    rows = []
    start = rng.choice([0, 0, 1, 3])
    crash = rng.randrange(2, steps) if rng.random() < 0.3 else None
    kind = rng.choice(["collision_front", "collision_lateral", "collision_rear"])
    off = rng.randrange(2, steps) if rng.random() < 0.2 else None
    black = rng.random() < 0.08
    drift = rng.uniform(0.0, 0.6)
    for t in range(steps):
        crashed = crash is not None and t >= crash
        vals = {
            "collision_any": float(crashed),
            "collision_front": float(crashed and kind == "collision_front"),
            "collision_lateral": float(crashed and kind == "collision_lateral"),
            "collision_rear": float(crashed and kind == "collision_rear"),
            "offroad": float(off is not None and t >= off),
            "img_is_black": float(black and t == steps // 2),
            "eval_relevant": float(t >= start),
            "dist_to_gt_trajectory": drift * t,
            "dist_traveled_m": 1.7 * t,
            "speed": rng.uniform(0, 15),
            "plan_deviation": rng.uniform(0, 1),
            "min_distance_to_obstacle_m": rng.uniform(0.5, 40),
            "time_to_collision_s": rng.choice([math.inf, math.inf, rng.uniform(0.1, 3.0)]),
            "progress_rel_to_total": t / steps,
        }
        for name, agg in METRICS:
            v = vals[name]
            if name == "speed" and rng.random() < 0.05:
                v = None  # null values
            if name == "plan_deviation" and rng.random() < 0.02:
                v = float("nan")
            if name == "progress_rel_to_total" and clip.endswith("3"):
                continue  # metric absent for a whole scene
            rows.append(dict(name=name, timestamps_us=t * 100_000, values=v, valid=True,
                             time_aggregation=agg, clipgt_id=clip, rollout_id=rid,
                             run_uuid=RUN_UUID, run_name=RUN_NAME))
    return rows


schema = dict(name=pl.String, timestamps_us=pl.Int64, values=pl.Float64, valid=pl.Boolean,
              time_aggregation=pl.String, clipgt_id=pl.String, rollout_id=pl.String,
              run_uuid=pl.String, run_name=pl.String)
for s in range(8):
    clip = f"scene-{s}"
    for b in range(2):
        batch = f"b{s}{b}"
        rows = []
        for i in range(3):
            rows += rollout_rows(clip, f"{batch}-{i}", rng.randrange(8, 30))
        d = os.path.join(work, "rollouts", clip, batch)
        os.makedirs(d)
        pl.DataFrame(rows, schema=schema).write_parquet(os.path.join(d, "metrics.parquet"))
        open(os.path.join(d, "_complete"), "w").close()

subprocess.run([exe, work, "--quiet"], check=True)
got = pl.read_parquet(os.path.join(work, "aggregate", "metrics_results.parquet"))

# ---- AlpaSim's pipeline, stated in polars -------------------------------------------------
df = pl.concat([pl.read_parquet(f) for f in sorted(glob.glob(os.path.join(work, "rollouts/*/*/metrics.parquet")))])
combined = hashlib.sha256("\x1f".join(sorted(df["run_uuid"].unique().to_list())).encode()).hexdigest()
df = df.with_columns(pl.lit(combined).alias("run_uuid"))
df = df.with_columns(
    pl.concat_str(["run_uuid", "rollout_id"], separator="_").alias("rollout_uid"),
    pl.concat_str(["run_uuid", "clipgt_id", "rollout_id"], separator="_").alias("trajectory_uid"),
).with_columns(pl.col("rollout_uid").rank("dense").over("clipgt_id"))
uids = df.select("trajectory_uid", "rollout_uid", "run_uuid").unique()
aggs = dict(df.group_by("name").agg(pl.col("time_aggregation").first()).iter_rows())
wide = df.pivot(on="name", index=["trajectory_uid", "timestamps_us"], values="values").sort(
    ["trajectory_uid", "timestamps_us"])


def cut(w, event, keep_from):
    w = w.sort(["trajectory_uid", "timestamps_us"]).with_columns(
        pl.col("timestamps_us").filter(event).first().over("trajectory_uid").alias("_first"))
    keep = (pl.col("timestamps_us") >= pl.col("_first")) if keep_from else (pl.col("timestamps_us") <= pl.col("_first"))
    return w.filter(keep | pl.col("_first").is_null()).drop("_first")


wide = cut(wide, pl.col("eval_relevant") > 0.0, True)
derived = [
    ("offroad_or_collision", (pl.col("collision_any") > 0.0) | (pl.col("offroad") > 0.0), "max"),
    ("collision_at_fault", (pl.col("collision_front") > 0.0) | (pl.col("collision_lateral") > 0), "max"),
    ("offroad_or_collision_at_fault", (pl.col("collision_at_fault") > 0.0) | (pl.col("offroad") > 0.0), "max"),
    ("duration_frac_20s", (pl.col("timestamps_us") - pl.col("timestamps_us").min().over("trajectory_uid")) / 20e6, "last"),
]
for name, expr, agg in derived:
    wide = wide.with_columns(expr.cast(pl.Float64).alias(name))
    aggs[name] = agg
wide = wide.filter(~pl.coalesce(pl.col("img_is_black") > 0.0, pl.lit(False)).max().over("trajectory_uid"))
wide = cut(wide, pl.col("offroad_or_collision") > 0.0, False)
wide = cut(wide, pl.col("dist_to_gt_trajectory") >= 4.0, False)
# drivekit adds progress_clipped_rel := progress_rel_to_total (DESIGN §4.4); so does the reference.
wide = wide.with_columns(pl.col("progress_rel_to_total").alias("progress_clipped_rel"))
aggs["progress_clipped_rel"] = "last"

over_t = wide.group_by("trajectory_uid").agg([getattr(pl.col(n), a)().alias(n) for n, a in aggs.items()])
over_t = over_t.join(uids, on="trajectory_uid", how="left").drop("trajectory_uid")
clips = over_t.group_by("run_uuid", "rollout_uid").agg(pl.all().mean(), pl.len().alias("n_clips"))
km = over_t.group_by("run_uuid", "rollout_uid").agg(
    (pl.col("dist_traveled_m").sum() / pl.col("offroad_or_collision").sum() / 1000).alias("avg_dist_between_incidents"),
    (pl.col("dist_traveled_m").sum() / pl.col("offroad_or_collision_at_fault").sum() / 1000).alias("avg_dist_between_incidents_at_fault"),
)
clips = clips.join(km, on=["run_uuid", "rollout_uid"], how="left").drop("rollout_uid")
ref = clips.group_by("run_uuid").agg(pl.all().mean(), pl.all().std().name.suffix("_std"), pl.len().alias("n_rollouts"))


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


checked = 0
for col in ref.columns:
    if col == "run_uuid":
        continue
    want, have = ref[col][0], got[col][0]
    assert same(float(want) if want is not None else None, float(have) if have is not None else None), (col, want, have)
    checked += 1
# quantiles over rollouts, polars' linear interpolation
for name in ["speed", "dist_to_gt_trajectory", "duration_frac_20s"]:
    for q, suffix in [(0.05, "p05"), (0.25, "p25"), (0.5, "p50"), (0.75, "p75"), (0.95, "p95")]:
        want = clips[name].quantile(q, "linear")
        assert same(want, got[f"{name}_{suffix}"][0]), (name, suffix, want, got[f"{name}_{suffix}"][0])
        checked += 1
assert got["run_uuid"][0] == combined
print(f"drivekit matches AlpaSim's polars semantics on {checked} values")
