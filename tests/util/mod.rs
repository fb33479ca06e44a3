//! Helpers shared by the integration tests: fresh run dirs and explicit metric rows.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use drivekit::fixtures;
use drivekit::metrics_file::{MetricRow, MetricsBuilder};
use drivekit::run_dir::RunMetadata;

pub const RUN_UUID: &str = "11111111-2222-4333-8444-555555555555";

/// One rollout's metrics: (name, time aggregation, values at t = 0, 1e5, 2e5, …).
pub type Series<'a> = &'a [(&'a str, &'a str, &'a [f64])];

/// Adds the rows of one rollout to a builder.
pub fn push_rollout(b: &mut MetricsBuilder, clip: &str, rollout_id: &str, series: Series<'_>) {
    for (name, agg, values) in series {
        for (i, v) in values.iter().enumerate() {
            b.push(&MetricRow {
                name,
                timestamps_us: i as i64 * 100_000,
                value: if v.is_nan() { None } else { Some(*v) },
                valid: true,
                time_aggregation: agg,
                clipgt_id: clip,
                rollout_id,
                run_uuid: RUN_UUID,
                run_name: "test-run",
            });
        }
    }
}

/// Writes a job dir's wizard-config.yaml and run_metadata.yaml.
pub fn job(dir: &Path, scenes: &[&str]) {
    let scenes: Vec<String> = scenes.iter().map(|s| s.to_string()).collect();
    fixtures::write_job_files(
        dir,
        &RunMetadata {
            run_name: "test-run".into(),
            run_uuid: RUN_UUID.into(),
        },
        &scenes,
        2,
    )
    .unwrap();
}

/// Writes batch `rollouts/{clip}/{batch}` with one rollout per entry of `rollouts` (ids `{batch}-{i}`).
pub fn batch(job_dir: &Path, clip: &str, batch: &str, rollouts: &[Series<'_>]) -> PathBuf {
    let mut b = MetricsBuilder::new();
    for (i, s) in rollouts.iter().enumerate() {
        push_rollout(&mut b, clip, &format!("{batch}-{i}"), s);
    }
    let dir = job_dir.join("rollouts").join(clip).join(batch);
    fixtures::write_batch(&dir, &b.finish(), true).unwrap();
    dir
}

/// Runs a built binary of this crate.
pub fn bin(name: &str, args: &[&str]) -> Output {
    let exe = match name {
        "aggregate" => env!("CARGO_BIN_EXE_aggregate"),
        "drivekit-fixtures" => env!("CARGO_BIN_EXE_drivekit-fixtures"),
        "simulate" => env!("CARGO_BIN_EXE_simulate"),
        other => panic!("unknown binary {other}"),
    };
    Command::new(exe).args(args).output().expect("binary runs")
}

/// The path of binary `name` (for tests that spawn, pipe or kill it).
#[allow(dead_code)]
pub fn exe(name: &str) -> &'static str {
    match name {
        "aggregate" => env!("CARGO_BIN_EXE_aggregate"),
        "simulate" => env!("CARGO_BIN_EXE_simulate"),
        "evaluate" => env!("CARGO_BIN_EXE_evaluate"),
        "telemetry" => env!("CARGO_BIN_EXE_telemetry"),
        "render" => env!("CARGO_BIN_EXE_render"),
        other => panic!("unknown binary {other}"),
    }
}

/// Redistributable real test inputs bundled with the repository (`tests/data`, licences there).
pub fn test_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// True under CI (`CI=true`, exported by `.ci/run`): a test that cannot run must fail there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Records that `test` could not run and why, where `make test`'s summary shows it
/// (`target/tmp/skipped/`); under CI it fails the test instead.
pub fn skip(test: &str, why: &str) {
    assert!(!in_ci(), "{test} cannot run under CI=true: {why}");
    record_skip(test, why);
}

/// Records that `test` could not run and why in `make test`'s summary, without failing under
/// CI (for what a checkout cannot fix, such as a sandbox that forbids mounts).
pub fn record_skip(test: &str, why: &str) {
    // Straight to the process's stderr: libtest captures `eprintln!` of a passing test, so a
    // plain `cargo test` would not show it.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skipped");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join(test.replace(['/', ':'], "_")),
        format!("{test}: {why}\n"),
    );
}

/// A dataset that may not be redistributed (WOMD, GPUDrive scenes, other benchmarks' result
/// files): `$DRIVEKIT_DATASETS/<rel>`, else `../shared/data/<rel>` beside the checkout. `None`
/// (after [`skip`]) when neither exists.
pub fn dataset(rel: &str, test: &str) -> Option<PathBuf> {
    let roots = std::env::var_os("DRIVEKIT_DATASETS")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")]);
    for root in roots {
        let p = root.join(rel);
        if p.exists() {
            return Some(p);
        }
    }
    skip(
        test,
        &format!("dataset {rel} not found (set DRIVEKIT_DATASETS to the folder that holds it)"),
    );
    None
}

/// True when `program` is on PATH; otherwise records a skip of `test` naming how to install it.
pub fn have_tool(program: &str, install: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip(
            test,
            &format!("{program} not found ({install}; scripts/test-deps.sh does)"),
        );
    }
    found
}

/// The headless Chromium on PATH (chromium, chromium-browser or google-chrome); otherwise
/// records a skip of `test`.
pub fn chromium(test: &str) -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        skip(
            test,
            "chromium not found (apt-get install chromium; scripts/test-deps.sh does)",
        );
    }
    found
}

/// True when `python3` imports `modules` (comma-separated); otherwise records a skip of `test`.
pub fn have_python(modules: &str, test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            test,
            &format!("python3 cannot import {modules} (scripts/test-deps.sh installs them)"),
        );
    }
    ok
}

/// Files named `name` under `dir`, sorted.
pub fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_named(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A free TCP port on localhost.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Python server process (policy servers for the external-driver tests), killed on drop.
pub struct Server {
    child: std::process::Child,
    /// Its TCP port.
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `python3 ARGS` and waits until it listens on `port`.
pub fn start_python(args: &[&str], port: u16) -> Server {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, carla_driver_interface"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests need python3 with grpcio and carla-driver-interface: pip install carla-driver-interface (.ci/run installs it)"
    );
    let child = Command::new("python3")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 starts");
    let server = Server { child, port };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "server on port {port} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server
}

/// drivekit's example policy server (`examples/driver_server.py`) on a free port.
pub fn example_server(extra: &[&str]) -> Server {
    let port = free_port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/driver_server.py");
    let port_s = port.to_string();
    let mut args = vec![script.to_str().unwrap(), "--port", &port_s];
    args.extend_from_slice(extra);
    start_python(&args, port)
}

/// Files whose name ends with `suffix` under `dir`, sorted.
pub fn files_named_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_named_with(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A nuPlan metric case's `expected.statistics`: nuPlan's own asserted values, in its order, as
/// (type, value) — e.g. `("MIN", 0.0)`, `("BOOLEAN", false → 0.0)`, `("COUNT", 1.0)`; Python's
/// `Infinity` as `f64::INFINITY`.
pub fn nuplan_expected(case: &Path) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(case).unwrap();
    // The cases are Python's json.dump output: bare Infinity / -Infinity / NaN are allowed there.
    let text = text
        .replace("-Infinity", "\"-inf\"")
        .replace("Infinity", "\"inf\"")
        .replace("NaN", "\"nan\"");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["expected"]["statistics"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no expected.statistics", case.display()))
        .iter()
        .map(|s| {
            let kind = s[0].as_str().unwrap().to_string();
            let value = match &s[1] {
                serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
                serde_json::Value::Number(n) => n.as_f64().unwrap(),
                serde_json::Value::String(x) => x.parse().unwrap(),
                other => panic!("{}: statistic {other}", case.display()),
            };
            (kind, value)
        })
        .collect()
}

/// A nuPlan case's `metric_parameters` value `key` (e.g. `least_min_ttc`).
pub fn nuplan_parameter(case: &Path, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(case).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text.replace("Infinity", "\"inf\"")).ok()?;
    v["metric_parameters"][key].as_f64()
}

/// (clipgt_id, rollout_id, name) → values in time order, from every metrics.parquet of a run.
pub fn metric_values(run: &Path) -> std::collections::BTreeMap<(String, String, String), Vec<f64>> {
    use arrow_array::Float64Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut out = std::collections::BTreeMap::new();
    for f in files_named(&run.join("rollouts"), "metrics.parquet") {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let s = |n: &str| arrow_cast_utf8(b.column_by_name(n).unwrap().as_ref());
            let (names, clips, rollouts) = (s("name"), s("clipgt_id"), s("rollout_id"));
            let values = b
                .column_by_name("values")
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone();
            for i in 0..b.num_rows() {
                out.entry((clips[i].clone(), rollouts[i].clone(), names[i].clone()))
                    .or_insert_with(Vec::new)
                    .push(values.value(i));
            }
        }
    }
    out
}

/// A string column (plain or dictionary-encoded) as owned strings.
fn arrow_cast_utf8(a: &dyn arrow_array::Array) -> Vec<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    if let Some(d) = a.as_dictionary_opt::<Int32Type>() {
        let values = d.values().as_string::<i32>();
        return d
            .keys()
            .iter()
            .map(|k| values.value(k.unwrap() as usize).to_string())
            .collect();
    }
    a.as_string::<i32>()
        .iter()
        .map(|s| s.unwrap().to_string())
        .collect()
}

/// Every file under an aggregate/ dir (but the cache and the partials) with its bytes.
#[allow(dead_code)]
pub fn aggregate_outputs(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if rel == ".cache" || rel == drivekit::aggregate::partial::DIR {
                continue;
            }
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Default::default();
    walk(dir, dir, &mut out);
    out
}

/// Asserts that the outputs in `root`/aggregate/ are byte for byte those of a cold aggregate (no
/// cache, no partials, no previous outputs) of the same run; leaves the cold outputs there.
#[allow(dead_code)]
pub fn assert_outputs_are_cold(root: &Path) {
    let merged = aggregate_outputs(&root.join("aggregate"));
    let aside = root.with_extension("merged");
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::rename(root.join("aggregate"), &aside).unwrap();
    let out = bin("aggregate", &[root.to_str().unwrap(), "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cold = aggregate_outputs(&root.join("aggregate"));
    assert!(
        cold.keys()
            .any(|k| k.starts_with("metrics_unprocessed.parquet/part-"))
            && cold.len() > 10
    );
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        cold.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &cold {
        assert!(
            merged[name] == *bytes,
            "{name} differs from a cold aggregate's"
        );
    }
}
