//! Bottleneck advice from a run's telemetry, with the rules of AlpaSim's performance-tuning guide
//! (DESIGN §8): a service whose calls queue needs more replicas or concurrency; a GPU under 50 %
//! wants more concurrent rollouts, over 90 % is saturated; workers idle under 20 % of the time are
//! the bottleneck themselves, over 80 % are waiting on a service (named); and a service whose
//! capacity (gpus × replicas × concurrent rollouts) is far below the others' limits them all. Every line names the service, the
//! setting to change and the numbers behind it.

use std::collections::BTreeMap;

use super::prom::{histograms_by, Family};

/// What the rules look at, summed over workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Run name.
    pub run_name: String,
    /// Per service: total call time (s), calls.
    pub service_time: BTreeMap<String, (f64, f64)>,
    /// Per service: (mean, p95, max) queue depth at call start.
    pub queue: BTreeMap<String, (f64, f64, f64)>,
    /// Per service: p95 blocking (s).
    pub blocking_p95: BTreeMap<String, f64>,
    /// Worker idle and work seconds.
    pub idle_s: f64,
    /// See `idle_s`.
    pub work_s: f64,
    /// Wall time (longest worker, s) and rollouts.
    pub wall_s: f64,
    /// Rollouts simulated.
    pub rollouts: f64,
    /// Per GPU: mean utilisation (%).
    pub gpu_util_mean: BTreeMap<String, f64>,
    /// Per service: capacity (gpus × replicas × concurrent rollouts, from wizard-config.yaml).
    pub capacity: BTreeMap<String, u64>,
    /// Mean CPU use of the workers (percent of one core).
    pub cpu_mean_pct: Option<f64>,
}

impl Summary {
    /// Idle share of worker time (NaN without data).
    pub fn idle_fraction(&self) -> f64 {
        self.idle_s / (self.idle_s + self.work_s)
    }

    /// Wall seconds per rollout.
    pub fn seconds_per_rollout(&self) -> f64 {
        self.wall_s / self.rollouts
    }
}

/// Builds the summary from merged families and the run's service capacities.
pub fn summarize(
    families: &[(String, Family)],
    capacity: BTreeMap<String, u64>,
    run_name: &str,
) -> Summary {
    let mut s = Summary {
        run_name: run_name.to_string(),
        capacity,
        ..Summary::default()
    };
    let fam = |n: &str| families.iter().find(|(k, _)| k == n).map(|(_, f)| f);
    if let Some(f) = fam("rpc_duration_seconds") {
        for x in f
            .samples
            .iter()
            .filter(|x| x.name.ends_with("_sum") || x.name.ends_with("_count"))
        {
            let svc = x.label("service").unwrap_or("?").to_string();
            let e = s.service_time.entry(svc).or_insert((0.0, 0.0));
            if x.name.ends_with("_sum") {
                e.0 += x.value;
            } else {
                e.1 += x.value;
            }
        }
    }
    // Histograms merged per service over methods, tags and workers.
    let service = |x: &super::prom::Sample| x.label("service").unwrap_or("?").to_string();
    if let Some(f) = fam("rpc_queue_depth_at_start") {
        for (svc, h) in histograms_by(f, service) {
            let max = h
                .buckets
                .iter()
                .find(|(_, c)| *c >= h.count)
                .map_or(f64::INFINITY, |x| x.0);
            s.queue.insert(svc, (h.mean(), h.quantile(0.95), max));
        }
    }
    if let Some(f) = fam("rpc_blocking_seconds") {
        for (svc, h) in histograms_by(f, service) {
            s.blocking_p95.insert(svc, h.quantile(0.95));
        }
    }
    let gauge_sum = |n: &str| fam(n).map(|f| f.samples.iter().map(|x| x.value).sum::<f64>());
    let gauge_max =
        |n: &str| fam(n).map(|f| f.samples.iter().map(|x| x.value).fold(f64::NAN, f64::max));
    s.idle_s = gauge_sum("event_loop_idle_seconds_total").unwrap_or(0.0);
    s.work_s = gauge_sum("event_loop_work_seconds_total").unwrap_or(0.0);
    s.wall_s = gauge_max("simulation_total_seconds").unwrap_or(f64::NAN);
    s.rollouts = gauge_sum("simulation_rollout_count").unwrap_or(0.0);
    if let Some(f) = fam("gpu_utilization") {
        for x in f.samples.iter().filter(|x| x.label("stat") == Some("mean")) {
            s.gpu_util_mean
                .insert(x.label("gpu").unwrap_or("0").to_string(), x.value);
        }
    }
    if let Some(f) = fam("process_cpu_utilization") {
        let means: Vec<f64> = f
            .samples
            .iter()
            .filter(|x| x.label("stat") == Some("mean"))
            .map(|x| x.value)
            .collect();
        if !means.is_empty() {
            s.cpu_mean_pct = Some(means.iter().sum::<f64>() / means.len() as f64);
        }
    }
    s
}

/// Mean queue depth from which a service counts as queueing.
pub const QUEUE_MEAN: f64 = 1.0;
/// p95 queue depth from which a service counts as queueing.
pub const QUEUE_P95: f64 = 3.0;
/// Share of all call time from which one service is named as dominant.
pub const DOMINANT_SHARE: f64 = 0.6;
/// Capacity ratio from which service capacities count as unbalanced.
pub const UNBALANCED_RATIO: f64 = 4.0;

/// The advice, one line per finding (a single "no bottleneck" line when nothing fires).
pub fn advise(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    let busiest = s
        .service_time
        .iter()
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
        .map(|(k, v)| (k.clone(), v.0));
    let total_call: f64 = s.service_time.values().map(|v| v.0).sum();
    for (svc, (mean, p95, _)) in &s.queue {
        if *mean >= QUEUE_MEAN || *p95 >= QUEUE_P95 {
            let cap = s
                .capacity
                .get(svc)
                .map(|c| format!(" (capacity now {c})"))
                .unwrap_or_default();
            out.push(format!(
                "{svc}: calls queue (mean depth {mean:.1}, p95 {p95:.0}, p95 wait {:.1} ms) — raise services.{svc}.replicas_per_container or runtime.endpoints.{svc}.n_concurrent_rollouts{cap}",
                s.blocking_p95.get(svc).copied().unwrap_or(f64::NAN) * 1e3
            ));
        }
    }
    for (gpu, u) in &s.gpu_util_mean {
        if *u < 50.0 {
            out.push(format!(
                "GPU {gpu}: mean utilisation {u:.0} % < 50 % — raise n_concurrent_rollouts so more rollouts share the GPU"
            ));
        } else if *u > 90.0 {
            out.push(format!(
                "GPU {gpu}: mean utilisation {u:.0} % > 90 % — saturated; more concurrency will not help, add GPUs (services.<service>.gpus) or shards"
            ));
        }
    }
    let idle = s.idle_fraction();
    if idle.is_finite() {
        if idle < 0.2 {
            out.push(format!(
                "workers: idle {:.0} % of the time (< 20 %) — the simulation itself is the bottleneck: more cores (RAYON_NUM_THREADS), more shards, or the CUDA backend",
                100.0 * idle
            ));
        } else if idle > 0.8 {
            let who = busiest
                .as_ref()
                .map(|(k, t)| {
                    let share = 100.0 * t / total_call.max(1e-12);
                    if k == "writer" {
                        format!(
                            "the writer (logs, metrics.parquet and videos), whose calls take {share:.0} % of all call time — render fewer videos (--video violations or none), keep logs uncompressed, or run more shards"
                        )
                    } else {
                        format!(
                            "{k}, whose calls take {share:.0} % of all call time — raise services.{k}.replicas_per_container or runtime.endpoints.{k}.n_concurrent_rollouts, or run more replicas of its server"
                        )
                    }
                })
                .unwrap_or_else(|| "a service".into());
            out.push(format!(
                "workers: idle {:.0} % of the time (> 80 %) — they wait on {who}",
                100.0 * idle
            ));
        }
    }
    // One service doing most of the work is where tuning pays, whatever the idle share.
    if let Some((k, t)) = busiest
        .as_ref()
        .filter(|_| idle.is_finite() && (0.2..=0.8).contains(&idle))
    {
        let share = t / total_call.max(1e-12);
        if share >= DOMINANT_SHARE {
            out.push(if k == "writer" {
                format!(
                    "writer: {:.0} % of all call time goes to writing logs, metrics.parquet and videos — render fewer videos (--video violations or none) or keep logs uncompressed",
                    100.0 * share
                )
            } else {
                format!(
                    "{k}: {:.0} % of all call time — the service to speed up or give more replicas (services.{k}.replicas_per_container)",
                    100.0 * share
                )
            });
        }
    }
    if let (Some((lo_s, lo)), Some((_, hi))) = (
        s.capacity.iter().min_by_key(|(_, c)| **c),
        s.capacity.iter().max_by_key(|(_, c)| **c),
    ) {
        if *lo > 0 && *hi as f64 / *lo as f64 >= UNBALANCED_RATIO {
            out.push(format!(
                "{lo_s}: capacity {lo} (gpus × replicas × concurrent) is {:.0}× below the largest ({hi}) — it limits every service; raise services.{lo_s}.replicas_per_container or runtime.endpoints.{lo_s}.n_concurrent_rollouts",
                *hi as f64 / *lo as f64
            ));
        }
    }
    if out.is_empty() {
        out.push(format!(
            "no bottleneck found: workers idle {:.0} %, no service queues{}",
            100.0 * idle,
            if s.capacity.is_empty() {
                String::new()
            } else {
                ", service capacities balanced".into()
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Summary {
        Summary {
            idle_s: 5.0,
            work_s: 5.0,
            wall_s: 10.0,
            rollouts: 10.0,
            ..Summary::default()
        }
    }

    #[test]
    fn each_rule_names_its_service() {
        assert!(advise(&base())[0].starts_with("no bottleneck"));
        let mut s = base();
        s.service_time.insert("writer".into(), (8.0, 10.0));
        s.service_time.insert("evaluation".into(), (1.0, 10.0));
        assert!(
            advise(&s)[0].starts_with("writer: 89 %"),
            "{:?}",
            advise(&s)
        );
        let mut s = base();
        s.queue.insert("driver".into(), (4.0, 7.0, 10.0));
        s.blocking_p95.insert("driver".into(), 0.05);
        let a = advise(&s);
        assert!(
            a[0].starts_with("driver: calls queue")
                && a[0].contains("services.driver.replicas_per_container"),
            "{a:?}"
        );
        let mut s = base();
        s.gpu_util_mean.insert("0".into(), 30.0);
        s.gpu_util_mean.insert("1".into(), 95.0);
        let a = advise(&s).join("\n");
        assert!(
            a.contains("GPU 0: mean utilisation 30 %")
                && a.contains("GPU 1")
                && a.contains("saturated"),
            "{a}"
        );
        let mut s = base();
        s.idle_s = 9.0;
        s.work_s = 1.0;
        s.service_time.insert("driver".into(), (8.0, 100.0));
        s.service_time.insert("evaluation".into(), (0.5, 100.0));
        let a = advise(&s);
        assert!(
            a[0].contains("idle 90 %") && a[0].contains("wait on driver"),
            "{a:?}"
        );
        let mut s = base();
        s.idle_s = 0.5;
        s.work_s = 9.5;
        assert!(advise(&s)[0].contains("simulation itself is the bottleneck"));
        let mut s = base();
        s.capacity = [("driver".to_string(), 64), ("trafficsim".to_string(), 4)].into();
        let a = advise(&s);
        assert!(
            a[0].starts_with("trafficsim: capacity 4 (gpus × replicas × concurrent) is 16×"),
            "{a:?}"
        );
    }
}
