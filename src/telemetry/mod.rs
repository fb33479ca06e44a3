//! Telemetry (DESIGN §8): what `simulate` measures about itself — per service and method the
//! duration of every call, the time a ready call waited before it ran, the queue depth when it
//! started; rollout and step durations; worker idle and work time; the process's CPU use and, on a
//! GPU machine, GPU utilisation and memory — written per shard as Prometheus text
//! (`telemetry/metrics_worker_{N}.prom`) and merged into `telemetry/metrics.prom` with a
//! `worker_id` label. `telemetry runs/X` plots it ([`plot`]) and explains it ([`advice`]).

pub mod advice;
pub mod gpu;
pub mod plot;
pub mod prom;
pub mod sampler;

use std::collections::BTreeMap;

/// rpc_duration_seconds buckets (s).
pub const RPC_DURATION_BUCKETS: &[f64] = &[
    0.00001, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];
/// rpc_blocking_seconds buckets (s).
pub const RPC_BLOCKING_BUCKETS: &[f64] = &[0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];
/// rpc_queue_depth_at_start buckets.
pub const QUEUE_DEPTH_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 50.0,
];
/// step_duration_seconds buckets (s): DESIGN §8's, with drivekit's finer ones under 0.1 s.
pub const STEP_DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// rollout_duration_seconds buckets (s): 1 … 299 in steps of 1 (DESIGN §8), with finer ones
/// under a second for drivekit's fast rollouts.
pub fn rollout_duration_buckets() -> Vec<f64> {
    let mut b = vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5];
    b.extend((1..300).map(f64::from));
    b
}

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds (le), ascending; +Inf is implicit.
    pub bounds: Vec<f64>,
    /// Observations ≤ each bound (not cumulative; cumulated when written).
    pub counts: Vec<u64>,
    /// Observations above the last bound.
    pub over: u64,
    /// Sum of observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            over: 0,
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one value.
    #[inline]
    pub fn observe(&mut self, v: f64) {
        match self.bounds.iter().position(|b| v <= *b) {
            Some(i) => self.counts[i] += 1,
            None => self.over += 1,
        }
        self.sum += v;
        self.count += 1;
    }

    /// Adds another histogram with the same bounds.
    pub fn merge(&mut self, o: &Histogram) {
        debug_assert_eq!(self.bounds, o.bounds);
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.over += o.over;
        self.sum += o.sum;
        self.count += o.count;
    }

    /// Mean of the observations (NaN when empty).
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// The q-quantile estimated from the buckets (upper bound of the bucket holding it).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let target = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            seen += c;
            if seen >= target {
                return *b;
            }
        }
        f64::INFINITY
    }
}

/// Labels of an RPC family: service, method, tag.
pub type RpcKey = (String, String, String);

/// Everything one worker measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// rpc_duration_seconds{service,method,tag}.
    pub rpc_duration: BTreeMap<RpcKey, Histogram>,
    /// rpc_blocking_seconds{service,method,tag}.
    pub rpc_blocking: BTreeMap<RpcKey, Histogram>,
    /// rpc_queue_depth_at_start{service,tag}.
    pub queue_depth: BTreeMap<(String, String), Histogram>,
    /// rollout_duration_seconds.
    pub rollout_duration: Histogram,
    /// step_duration_seconds.
    pub step_duration: Histogram,
    /// Gauges without labels (simulation_total_seconds, …, event_loop_*_seconds_total).
    pub gauges: BTreeMap<String, f64>,
    /// process_cpu_utilization{name,stat} (percent of one core).
    pub cpu: BTreeMap<String, BTreeMap<String, f64>>,
    /// gpu_utilization{gpu,stat} (percent).
    pub gpu_util: BTreeMap<String, BTreeMap<String, f64>>,
    /// gpu_memory_used_bytes{gpu,stat}.
    pub gpu_mem: BTreeMap<String, BTreeMap<String, f64>>,
    /// gpu_memory_total_bytes{gpu}.
    pub gpu_mem_total: BTreeMap<String, f64>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            rpc_duration: BTreeMap::new(),
            rpc_blocking: BTreeMap::new(),
            queue_depth: BTreeMap::new(),
            rollout_duration: Histogram::new(&rollout_duration_buckets()),
            step_duration: Histogram::new(STEP_DURATION_BUCKETS),
            gauges: BTreeMap::new(),
            cpu: BTreeMap::new(),
            gpu_util: BTreeMap::new(),
            gpu_mem: BTreeMap::new(),
            gpu_mem_total: BTreeMap::new(),
        }
    }
}

fn key(service: &str, method: &str, tag: &str) -> RpcKey {
    (service.to_string(), method.to_string(), tag.to_string())
}

impl Telemetry {
    /// Records one call: its duration, how long it waited when ready, and the queue depth when
    /// it started.
    pub fn rpc(
        &mut self,
        service: &str,
        method: &str,
        tag: &str,
        duration_s: f64,
        blocking_s: f64,
        depth: usize,
    ) {
        self.rpc_duration_only(service, method, tag, duration_s);
        self.rpc_wait_only(service, method, tag, blocking_s, depth);
    }

    /// Records a call's duration only.
    pub fn rpc_duration_only(&mut self, service: &str, method: &str, tag: &str, duration_s: f64) {
        self.rpc_duration
            .entry(key(service, method, tag))
            .or_insert_with(|| Histogram::new(RPC_DURATION_BUCKETS))
            .observe(duration_s);
    }

    /// Records how long a call waited for its slot and the queue depth when it started.
    pub fn rpc_wait_only(
        &mut self,
        service: &str,
        method: &str,
        tag: &str,
        blocking_s: f64,
        depth: usize,
    ) {
        self.rpc_blocking
            .entry(key(service, method, tag))
            .or_insert_with(|| Histogram::new(RPC_BLOCKING_BUCKETS))
            .observe(blocking_s);
        self.queue_depth
            .entry((service.to_string(), tag.to_string()))
            .or_insert_with(|| Histogram::new(QUEUE_DEPTH_BUCKETS))
            .observe(depth as f64);
    }

    /// Adds another worker's or chunk's measurements.
    pub fn merge(&mut self, o: &Telemetry) {
        for (k, h) in &o.rpc_duration {
            self.rpc_duration
                .entry(k.clone())
                .or_insert_with(|| Histogram::new(&h.bounds))
                .merge(h);
        }
        for (k, h) in &o.rpc_blocking {
            self.rpc_blocking
                .entry(k.clone())
                .or_insert_with(|| Histogram::new(&h.bounds))
                .merge(h);
        }
        for (k, h) in &o.queue_depth {
            self.queue_depth
                .entry(k.clone())
                .or_insert_with(|| Histogram::new(&h.bounds))
                .merge(h);
        }
        self.rollout_duration.merge(&o.rollout_duration);
        self.step_duration.merge(&o.step_duration);
        for (k, v) in &o.gauges {
            *self.gauges.entry(k.clone()).or_insert(0.0) += v;
        }
    }
}

/// The worker files of a telemetry dir, `(worker_id, path)` sorted by worker id.
pub fn worker_files(dir: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    let mut v: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let id = name
                        .strip_prefix("metrics_worker_")?
                        .strip_suffix(".prom")?;
                    Some((id.to_string(), e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    // By shard, then attempt (`N`, `N.1`, `N.2`, …).
    v.sort_by(|a, b| {
        let n = |s: &str| -> (u64, u64) {
            let (shard, attempt) = s.split_once('.').unwrap_or((s, "0"));
            (
                shard.parse().unwrap_or(u64::MAX),
                attempt.parse().unwrap_or(u64::MAX),
            )
        };
        n(&a.0).cmp(&n(&b.0)).then(a.0.cmp(&b.0))
    });
    v
}

/// A Prometheus value string as a number (`+Inf`, `NaN` included; garbage → NaN).
pub fn prom_value(s: &str) -> f64 {
    match s {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    }
}

/// Summary statistics (min, max, mean, p05 … p99) of samples, as DESIGN §8's `stat` label.
pub fn stats(samples: &[f64]) -> BTreeMap<String, f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    let mut out = BTreeMap::new();
    if v.is_empty() {
        return out;
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| crate::metrics::stats::quantile_sorted(&v, p).unwrap_or(f64::NAN);
    out.insert("min".into(), v[0]);
    out.insert("max".into(), v[v.len() - 1]);
    out.insert("mean".into(), v.iter().sum::<f64>() / v.len() as f64);
    for (name, p) in [
        ("p05", 0.05),
        ("p25", 0.25),
        ("p50", 0.5),
        ("p75", 0.75),
        ("p95", 0.95),
        ("p99", 0.99),
    ] {
        out.insert(name.into(), q(p));
    }
    out
}

/// Writes the shard's worker file and merges every worker file of the run into
/// telemetry/metrics.prom (both atomically). The first attempt of shard N writes
/// `metrics_worker_N.prom`; a rerun that simulated something adds `metrics_worker_N.K.prom`
/// (K = 1, 2, …: worker id `N.K`) rather than replacing the earlier attempts', and one that
/// simulated nothing adds none. A worker file that does not parse is left out of the merge and
/// reported by `telemetry runs/X`.
pub fn write_worker_files(
    run: &std::path::Path,
    shard: usize,
    t: &Telemetry,
    simulated_anything: bool,
) -> std::io::Result<()> {
    let dir = run.join("telemetry");
    std::fs::create_dir_all(&dir)?;
    let first = dir.join(format!("metrics_worker_{shard}.prom"));
    let path = if !first.exists() {
        Some(first)
    } else if simulated_anything {
        (1..)
            .map(|k| dir.join(format!("metrics_worker_{shard}.{k}.prom")))
            .find(|p| !p.exists())
    } else {
        None
    };
    if let Some(path) = path {
        crate::fsutil::write_atomic(&path, prom::render(t).as_bytes())?;
    }
    // Shards of one run merge one at a time, so a merge that read fewer worker files cannot land
    // after one that read more. A merge claim held too long (a stuck shard) is skipped: the next
    // shard, or `telemetry runs/X`, merges again.
    let claim_path = dir.join(".merge.claim");
    let mut claim = None;
    for _ in 0..500 {
        match crate::fsutil::Claim::take(&claim_path) {
            Ok(c) => {
                claim = Some(c);
                break;
            }
            Err(crate::fsutil::ClaimError::Held { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(crate::fsutil::ClaimError::Io { source, .. }) => return Err(source),
        }
    }
    if claim.is_none() {
        return Ok(());
    }
    let (merged, _errors) = prom::merge(&worker_files(&dir));
    crate::fsutil::write_atomic(&dir.join("metrics.prom"), merged.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_quantiles_and_merge() {
        let mut h = Histogram::new(&[1.0, 2.0, 5.0]);
        for v in [0.5, 1.0, 1.5, 3.0, 9.0] {
            h.observe(v);
        }
        assert_eq!((h.counts.clone(), h.over, h.count), (vec![2, 1, 1], 1, 5));
        assert_eq!(h.quantile(0.5), 2.0);
        assert!(h.quantile(1.0).is_infinite());
        let mut g = h.clone();
        g.merge(&h);
        assert_eq!((g.count, g.sum), (10, 30.0));
        let s = stats(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            (s["min"], s["max"], s["mean"], s["p50"]),
            (1.0, 4.0, 2.5, 2.5)
        );
    }
}

/// Why `telemetry runs/X` cannot report.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// No worker files.
    #[error("{0}: no telemetry/metrics_worker_*.prom (run `simulate run` first)")]
    Missing(std::path::PathBuf),
    /// Writing an output failed.
    #[error("{path}: {source}")]
    Io {
        /// the file
        path: std::path::PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

/// What `telemetry runs/X` produced.
pub struct Report {
    /// The advice lines.
    pub advice: Vec<String>,
    /// Worker files merged.
    pub workers: usize,
    /// Worker files left out, each with its error (file and line).
    pub skipped: Vec<String>,
    /// The numbers the advice used.
    pub summary: advice::Summary,
}

/// Merges the run's worker files into telemetry/metrics.prom, renders metrics_plot.png and
/// writes bottlenecks.txt.
pub fn report(run: &std::path::Path) -> Result<Report, TelemetryError> {
    let dir = run.join("telemetry");
    let files = worker_files(&dir);
    if files.is_empty() {
        return Err(TelemetryError::Missing(run.to_path_buf()));
    }
    let io = |path: std::path::PathBuf| move |source| TelemetryError::Io { path, source };
    let (merged, errors) = prom::merge(&files);
    let prom_path = dir.join("metrics.prom");
    crate::fsutil::write_atomic(&prom_path, merged.as_bytes()).map_err(io(prom_path.clone()))?;
    let families = prom::parse(&merged, &prom_path).unwrap_or_default();
    let cfg = crate::config::SimConfig::load(&run.join(crate::run_dir::WIZARD_CONFIG)).ok();
    let mut capacity = BTreeMap::new();
    let mut table = Vec::new();
    if let Some(c) = &cfg {
        table.push((
            "service".to_string(),
            "gpus · replicas · concurrent → capacity".to_string(),
        ));
        for c in c.capacities() {
            if !c.skipped {
                capacity.insert(c.service.clone(), c.capacity);
            }
            table.push((
                c.service.clone(),
                format!(
                    "{} · {} · {} → {}{}",
                    c.gpus,
                    c.replicas,
                    c.concurrent,
                    c.capacity,
                    if c.skipped { " (skip)" } else { "" }
                ),
            ));
        }
    }
    let run_name = std::fs::read_to_string(run.join(crate::run_dir::RUN_METADATA))
        .ok()
        .and_then(|t| serde_norway::from_str::<crate::run_dir::RunMetadata>(&t).ok())
        .map(|m| m.run_name)
        .unwrap_or_else(|| run.display().to_string());
    let summary = advice::summarize(&families, capacity, &run_name);
    let lines = advice::advise(&summary);
    let png = dir.join("metrics_plot.png");
    plot::write(&png, &families, &summary, &table).map_err(io(png.clone()))?;
    let txt = dir.join("bottlenecks.txt");
    crate::fsutil::write_atomic(&txt, (lines.join("\n") + "\n").as_bytes())
        .map_err(io(txt.clone()))?;
    Ok(Report {
        advice: lines,
        workers: files.len() - errors.len(),
        skipped: errors.iter().map(|e| e.to_string()).collect(),
        summary,
    })
}
