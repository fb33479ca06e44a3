//! Prometheus text exposition format: writing a worker's [`Telemetry`], a strict line parser,
//! and merging worker files into one with a `worker_id` label on every sample. Families stay
//! contiguous with one HELP and TYPE each, as `promtool check metrics` requires.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Histogram, Telemetry};

/// A .prom file that cannot be used; names the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// Unreadable file.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// A line that is not Prometheus text.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// the file
        file: PathBuf,
        /// 1-based line number
        line: usize,
        /// what is wrong
        message: String,
    },
    /// Valid Prometheus text, but not a worker file of `simulate` (empty, or another tool's).
    #[error("{file}: {message}")]
    NotWorker {
        /// the file
        file: PathBuf,
        /// what it is instead
        message: String,
    },
}

/// HELP texts of the families drivekit writes.
pub fn help(family: &str) -> &'static str {
    match family {
        "rpc_duration_seconds" => "Duration of a service call (s).",
        "rpc_blocking_seconds" => "Time a ready call waited before it ran (s).",
        "rpc_queue_depth_at_start" => "Calls waiting for the service when a call started.",
        "rollout_duration_seconds" => "Wall time of one rollout (s).",
        "step_duration_seconds" => "Wall time of one simulation step of a chunk of rollouts (s).",
        "simulation_total_seconds" => "Wall time of the shard (s).",
        "simulation_rollout_count" => "Rollouts simulated by the shard.",
        "simulation_seconds_per_rollout" => "Wall time per rollout (s).",
        "event_loop_idle_seconds_total" => "Worker time spent idle (s).",
        "event_loop_work_seconds_total" => "Worker time spent stepping (s).",
        "process_cpu_utilization" => "CPU use of the process, percent of one core, sampled.",
        "gpu_utilization" => "GPU utilisation (percent), sampled.",
        "gpu_memory_used_bytes" => "GPU memory in use (bytes), sampled.",
        "gpu_memory_total_bytes" => "GPU memory capacity (bytes).",
        _ => "drivekit metric.",
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A float as Prometheus writes it.
pub fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The TYPE of a label-less scalar: `*_total` are counters; AlpaSim's `simulation_rollout_count`
/// keeps its name as `untyped` (promtool's lint rejects a `_count` suffix on gauges and counters);
/// the rest are gauges.
pub fn scalar_type(name: &str) -> &'static str {
    if name.ends_with("_total") {
        "counter"
    } else if name.ends_with("_count") {
        "untyped"
    } else {
        "gauge"
    }
}

fn header(out: &mut String, family: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {family} {}", help(family));
    let _ = writeln!(out, "# TYPE {family} {kind}");
}

fn histogram(out: &mut String, family: &str, lab: &[(&str, &str)], h: &Histogram) {
    let mut cum = 0;
    for (b, c) in h.bounds.iter().zip(&h.counts) {
        cum += c;
        let le = value(*b);
        let mut l = lab.to_vec();
        l.push(("le", &le));
        let _ = writeln!(out, "{family}_bucket{} {cum}", labels(&l));
    }
    let mut l = lab.to_vec();
    l.push(("le", "+Inf"));
    let _ = writeln!(out, "{family}_bucket{} {}", labels(&l), h.count);
    let _ = writeln!(out, "{family}_sum{} {}", labels(lab), value(h.sum));
    let _ = writeln!(out, "{family}_count{} {}", labels(lab), h.count);
}

/// One worker's telemetry as Prometheus text.
pub fn render(t: &Telemetry) -> String {
    let mut out = String::new();
    for (family, map) in [
        ("rpc_duration_seconds", &t.rpc_duration),
        ("rpc_blocking_seconds", &t.rpc_blocking),
    ] {
        if map.is_empty() {
            continue;
        }
        header(&mut out, family, "histogram");
        for ((s, m, tag), h) in map {
            histogram(
                &mut out,
                family,
                &[("service", s), ("method", m), ("tag", tag)],
                h,
            );
        }
    }
    if !t.queue_depth.is_empty() {
        header(&mut out, "rpc_queue_depth_at_start", "histogram");
        for ((s, tag), h) in &t.queue_depth {
            histogram(
                &mut out,
                "rpc_queue_depth_at_start",
                &[("service", s), ("tag", tag)],
                h,
            );
        }
    }
    header(&mut out, "rollout_duration_seconds", "histogram");
    histogram(
        &mut out,
        "rollout_duration_seconds",
        &[],
        &t.rollout_duration,
    );
    header(&mut out, "step_duration_seconds", "histogram");
    histogram(&mut out, "step_duration_seconds", &[], &t.step_duration);
    for (name, v) in &t.gauges {
        header(&mut out, name, scalar_type(name));
        let _ = writeln!(out, "{name} {}", value(*v));
    }
    for (family, map, label) in [
        ("process_cpu_utilization", &t.cpu, "name"),
        ("gpu_utilization", &t.gpu_util, "gpu"),
        ("gpu_memory_used_bytes", &t.gpu_mem, "gpu"),
    ] {
        if map.is_empty() {
            continue;
        }
        header(&mut out, family, "gauge");
        for (who, stats) in map {
            for (stat, v) in stats {
                let _ = writeln!(
                    out,
                    "{family}{} {}",
                    labels(&[(label, who), ("stat", stat)]),
                    value(*v)
                );
            }
        }
    }
    if !t.gpu_mem_total.is_empty() {
        header(&mut out, "gpu_memory_total_bytes", "gauge");
        for (gpu, v) in &t.gpu_mem_total {
            let _ = writeln!(
                out,
                "gpu_memory_total_bytes{} {}",
                labels(&[("gpu", gpu)]),
                value(*v)
            );
        }
    }
    out
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`/`_sum`/`_count` for histograms).
    pub name: String,
    /// Labels in file order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of label `k`.
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A metric family: HELP, TYPE and its samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Family {
    /// HELP text.
    pub help: String,
    /// TYPE (counter, gauge, histogram, …).
    pub kind: String,
    /// Samples.
    pub samples: Vec<Sample>,
}

fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("label without '='")?;
        let k = rest[..eq].trim().to_string();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {k:?}"));
        }
        rest = rest[eq + 1..].trim_start();
        if !rest.starts_with('"') {
            return Err(format!("label {k} value is not quoted"));
        }
        let mut v = String::new();
        let mut chars = rest[1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => v.push('\n'),
                    Some((_, e)) => v.push(e),
                    None => return Err("unterminated escape".into()),
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                _ => v.push(c),
            }
        }
        let end = end.ok_or(format!("label {k} value is not closed"))?;
        out.push((k, v));
        rest = rest[1 + end..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse()
            .map_err(|_| format!("value {s:?} is not a number")),
    }
}

/// The family a sample name belongs to, given the declared families.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, Family>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families.get(base).is_some_and(|f| f.kind == "histogram") {
                return base;
            }
        }
    }
    name
}

/// A histogram read back from samples, merged over every series with the same key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergedHistogram {
    /// (upper bound, cumulative count), ascending.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of observations.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl MergedHistogram {
    /// Mean observation (NaN when empty).
    pub fn mean(&self) -> f64 {
        self.sum / self.count
    }

    /// The q-quantile as the upper bound of the bucket holding it (0 when every observation was 0).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count <= 0.0 {
            return f64::NAN;
        }
        if self.sum == 0.0 {
            return 0.0;
        }
        let target = (q * self.count).ceil().max(1.0);
        self.buckets
            .iter()
            .find(|(_, c)| *c >= target)
            .map_or(f64::INFINITY, |(le, _)| *le)
    }

    /// (upper bound, count in that bucket alone).
    pub fn per_bucket(&self) -> Vec<(f64, f64)> {
        let mut prev = 0.0;
        self.buckets
            .iter()
            .map(|(le, c)| {
                let d = c - prev;
                prev = *c;
                (*le, d)
            })
            .collect()
    }
}

/// The histogram series of `f` merged by `key` (e.g. the service label; workers, methods and tags
/// add up).
pub fn histograms_by(
    f: &Family,
    key: impl Fn(&Sample) -> String,
) -> BTreeMap<String, MergedHistogram> {
    // Cumulative counts keyed by the bound's bits (series with the same bounds add up).
    type Bounds = BTreeMap<u64, (f64, f64)>;
    let mut raw: BTreeMap<String, (Bounds, MergedHistogram)> = BTreeMap::new();
    for x in &f.samples {
        let (b, h) = raw.entry(key(x)).or_default();
        if x.name.ends_with("_bucket") {
            let le = super::prom_value(x.label("le").unwrap_or("+Inf"));
            b.entry(le.to_bits()).or_insert((le, 0.0)).1 += x.value;
        } else if x.name.ends_with("_sum") {
            h.sum += x.value;
        } else if x.name.ends_with("_count") {
            h.count += x.value;
        }
    }
    raw.into_iter()
        .map(|(k, (b, mut h))| {
            h.buckets = b.into_values().collect();
            h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            (k, h)
        })
        .collect()
}

/// Parses Prometheus text strictly: every line a comment, a HELP/TYPE, or a sample of a family
/// declared with TYPE; a file that does not end with a newline is truncated.
pub fn parse(text: &str, file: &Path) -> Result<Vec<(String, Family)>, PromError> {
    let err = |line: usize, m: String| PromError::Syntax {
        file: file.to_path_buf(),
        line,
        message: m,
    };
    if !text.is_empty() && !text.ends_with('\n') {
        let n = text.lines().count();
        return Err(err(n, "the file ends inside a line (truncated)".into()));
    }
    let mut order: Vec<String> = Vec::new();
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            let mut parts = rest.splitn(3, ' ');
            match parts.next() {
                Some("HELP") => {
                    let name = parts
                        .next()
                        .ok_or_else(|| err(ln, "HELP without a name".into()))?;
                    let f = families.entry(name.to_string()).or_default();
                    if !order.iter().any(|o| o == name) {
                        order.push(name.to_string());
                    }
                    f.help = parts.next().unwrap_or("").to_string();
                }
                Some("TYPE") => {
                    let name = parts
                        .next()
                        .ok_or_else(|| err(ln, "TYPE without a name".into()))?;
                    let kind = parts.next().unwrap_or("").trim();
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(err(ln, format!("unknown TYPE {kind:?}")));
                    }
                    let f = families.entry(name.to_string()).or_default();
                    if !order.iter().any(|o| o == name) {
                        order.push(name.to_string());
                    }
                    f.kind = kind.to_string();
                }
                _ => {}
            }
            continue;
        }
        let (head, val) = match line.rfind('}') {
            Some(close) => (&line[..=close], line[close + 1..].trim()),
            None => {
                let mut it = line.split_whitespace();
                let h = it.next().unwrap_or("");
                (h, it.next().unwrap_or(""))
            }
        };
        let val = val.split_whitespace().next().unwrap_or("");
        let (name, labs) = match head.find('{') {
            Some(open) => {
                if !head.ends_with('}') {
                    return Err(err(ln, "labels are not closed".into()));
                }
                (
                    &head[..open],
                    parse_labels(&head[open + 1..head.len() - 1]).map_err(|m| err(ln, m))?,
                )
            }
            None => (head, Vec::new()),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(err(ln, format!("{name:?} is not a metric name")));
        }
        let value = parse_value(val).map_err(|m| err(ln, m))?;
        if name.ends_with("_bucket") {
            // promtool rejects a bucket whose `le` is not a number (or +Inf).
            match labs.iter().find(|(k, _)| k == "le") {
                Some((_, le)) if parse_value(le).is_ok() => {}
                Some((_, le)) => {
                    return Err(err(ln, format!("bucket label le={le:?} is not a number")))
                }
                None => return Err(err(ln, format!("{name} without an le label"))),
            }
        }
        let fam = family_of(name, &families).to_string();
        let f = families
            .get_mut(&fam)
            .filter(|f| !f.kind.is_empty())
            .ok_or_else(|| err(ln, format!("sample of {name} before its # TYPE line")))?;
        f.samples.push(Sample {
            name: name.to_string(),
            labels: labs,
            value,
        });
    }
    Ok(order
        .into_iter()
        .map(|n| {
            let f = families.remove(&n).unwrap_or_default();
            (n, f)
        })
        .collect())
}

/// Merges worker files `(worker_id, text)` into one Prometheus text with `worker_id="N"` on
/// every sample; files that do not parse are returned as errors and left out.
pub fn merge(files: &[(String, PathBuf)]) -> (String, Vec<PromError>) {
    let mut order: Vec<String> = Vec::new();
    let mut merged: BTreeMap<String, Family> = BTreeMap::new();
    let mut errors = Vec::new();
    for (worker, path) in files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(PromError::Io {
                    file: path.clone(),
                    source: e,
                });
                continue;
            }
        };
        match parse(&text, path) {
            Ok(fams) if !fams.iter().any(|(n, _)| n == "simulation_rollout_count") => {
                // Empty, or written by something else: not one of simulate's worker files.
                errors.push(PromError::NotWorker {
                    file: path.clone(),
                    message: if fams.is_empty() {
                        "no metrics (an empty worker file); left out of the merge".into()
                    } else {
                        "not a drivekit worker file (no simulation_rollout_count); left out of the merge".into()
                    },
                });
            }
            Ok(fams) => {
                for (name, f) in fams {
                    let m = merged.entry(name.clone()).or_insert_with(|| Family {
                        help: f.help.clone(),
                        kind: f.kind.clone(),
                        samples: Vec::new(),
                    });
                    if !order.contains(&name) {
                        order.push(name);
                    }
                    for mut s in f.samples {
                        s.labels.retain(|(k, _)| k != "worker_id");
                        s.labels.insert(0, ("worker_id".into(), worker.clone()));
                        m.samples.push(s);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    let mut out = String::new();
    for name in order {
        let f = &merged[&name];
        let _ = writeln!(out, "# HELP {name} {}", f.help);
        let _ = writeln!(out, "# TYPE {name} {}", f.kind);
        for s in &f.samples {
            let l: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if l.is_empty() {
                let _ = writeln!(out, "{} {}", s.name, value(s.value));
            } else {
                let _ = writeln!(out, "{}{} {}", s.name, labels(&l), value(s.value));
            }
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parse_and_merge_round_trip() {
        let mut t = Telemetry::default();
        t.rpc("driver", "drive", "grpc", 0.004, 0.0002, 3);
        t.rpc("driver", "drive", "grpc", 0.02, 0.0, 0);
        t.step_duration.observe(0.003);
        t.gauges.insert("simulation_total_seconds".into(), 1.5);
        t.gauges.insert("simulation_rollout_count".into(), 2.0);
        t.cpu
            .entry("simulate".into())
            .or_default()
            .insert("mean".into(), 180.0);
        let text = render(&t);
        let fams = parse(&text, Path::new("w0.prom")).unwrap();
        let d = &fams
            .iter()
            .find(|(n, _)| n == "rpc_duration_seconds")
            .unwrap()
            .1;
        assert_eq!(d.kind, "histogram");
        let count = d
            .samples
            .iter()
            .find(|s| s.name == "rpc_duration_seconds_count")
            .unwrap();
        assert_eq!((count.value, count.label("method")), (2.0, Some("drive")));
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.prom"), dir.path().join("b.prom"));
        std::fs::write(&a, &text).unwrap();
        std::fs::write(&b, &text[..text.len() - 10]).unwrap();
        let (merged, errors) = merge(&[("0".into(), a.clone()), ("1".into(), b)]);
        assert_eq!(errors.len(), 1, "the truncated file is named");
        assert!(errors[0].to_string().contains("b.prom:"), "{}", errors[0]);
        assert!(merged.contains("rpc_duration_seconds_count{worker_id=\"0\",service=\"driver\""));
        assert_eq!(
            merged
                .matches("# TYPE rpc_duration_seconds histogram")
                .count(),
            1
        );
        let foreign = dir.path().join("c.prom");
        std::fs::write(&foreign, "hello world\n").unwrap();
        let e = parse(&std::fs::read_to_string(&foreign).unwrap(), &foreign).unwrap_err();
        assert!(e.to_string().contains("c.prom:1"), "{e}");
    }
}
