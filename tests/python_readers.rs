//! The Parquet outputs read back with Python's pyarrow, pandas and polars (installed by
//! `scripts/test-deps.sh` into `target/test-venv`).

mod util;

use std::process::Command;

#[test]
fn outputs_are_ordinary_parquet_for_pyarrow_pandas_and_polars() {
    if !util::have_python(
        "pyarrow, pandas, polars",
        "python_readers::outputs_are_ordinary_parquet_for_pyarrow_pandas_and_polars",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    util::job(root, &["A", "B"]);
    let s: &[(&str, &str, &[f64])] = &[
        ("speed", "mean", &[1.0, 2.0, 3.0]),
        ("offroad", "max", &[0.0, 0.0, 1.0]),
    ];
    util::batch(root, "A", "a1", &[s, s]);
    util::batch(root, "B", "b1", &[s]);
    // Run twice: the second run keeps the first run's part files; one part per batch, so the
    // readers take a dataset directory of two files.
    for _ in 0..2 {
        let out = util::bin(
            "aggregate",
            &[root.to_str().unwrap(), "--quiet", "--part-batches", "1"],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        python_script("read_outputs.py", &[root.as_os_str(), "18".as_ref()]);
    }
}

/// Runs `tests/python/<script>` with `args`; fails with its output.
fn python_script(script: &str, args: &[&std::ffi::OsStr]) {
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let py = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        py.status.success(),
        "python check {script} failed (needs `pip install pyarrow pandas polars`):\n{}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
}

/// Runs `tests/python/<script>` with the aggregate binary and a fresh work dir; fails with its
/// output.
fn run_script(script: &str) {
    if !util::have_python(
        "pyarrow, pandas, polars",
        &format!("python_readers: {script}"),
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    python_script(
        script,
        &[
            env!("CARGO_BIN_EXE_aggregate").as_ref(),
            d.path().as_os_str(),
        ],
    );
}

#[test]
fn metrics_written_by_polars_are_aggregated() {
    run_script("polars_written_run.py");
}

/// `aggregate --partial` on a run whose metrics.parquet polars wrote (every column optional, its
/// own column order: the partials' rows are copied from polars' chunks), then the merge: the
/// same bytes as a cold aggregate, without reading a batch.
#[test]
fn partials_of_a_polars_written_run_merge_into_a_cold_aggregates_bytes() {
    if !util::have_python(
        "polars",
        "python_readers::partials_of_a_polars_written_run_merge_into_a_cold_aggregates_bytes",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("run");
    let rs = root.to_str().unwrap();
    let gen = util::bin(
        "drivekit-fixtures",
        &[rs, "--scenes", "5", "--rollouts", "2", "--steps", "30"],
    );
    assert!(gen.status.success());
    let rewrite = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/polars_rewrite.py"
        ))
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        rewrite.status.success(),
        "{}",
        String::from_utf8_lossy(&rewrite.stderr)
    );
    for shard in ["0/2", "1/2"] {
        let out = util::bin("aggregate", &[rs, "--partial", "--shard", shard, "--quiet"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = util::bin("aggregate", &[rs, "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&summary["n_batches_read"], &summary["n_batches_used"]),
        (&0.into(), &5.into()),
        "{summary}"
    );
    util::assert_outputs_are_cold(&root);
}

/// drivekit against AlpaSim's pipeline evaluated by polars on a seeded random run (see the
/// script's docstring).
#[test]
fn means_stds_and_quantiles_match_alpasim_semantics_in_polars() {
    run_script("alpasim_reference.py");
}

/// metrics.parquet's string columns are written from their dictionary keys (src/dict_chunk.rs):
/// pyarrow, pandas and polars read the same table from such a file as from the same rows written
/// by the arrow-rs ArrowWriter (with 300 distinct names, runs and literals, several pages, two
/// row groups).
#[test]
fn string_columns_written_from_their_keys_read_as_the_arrow_writer_writes_them() {
    use drivekit::metrics_file;
    if !util::have_python(
        "pyarrow, pandas, polars",
        "python_readers::string_columns_written_from_their_keys_read_as_the_arrow_writer_writes_them",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let batches: Vec<_> = [(1_100_000usize, 0usize), (25_000, 1)]
        .into_iter()
        .map(|(rows, salt)| drivekit::fixtures::varied_metrics(rows, salt))
        .collect();
    let ours = d.path().join("ours.parquet");
    metrics_file::write_metrics_file(&ours, &batches).unwrap();
    let reference = d.path().join("reference.parquet");
    std::fs::write(
        &reference,
        metrics_file::encode_with_arrow_writer(&batches).unwrap(),
    )
    .unwrap();
    python_script("same_tables.py", &[ours.as_os_str(), reference.as_os_str()]);
}
