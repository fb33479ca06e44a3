//! The scorecard of a run, shared by the run report and metrics_results.png: each safety rate
//! with a 95 % interval — a bootstrap over scenes (rollouts of one scene are not independent),
//! or Wilson's score interval over rollouts when the run has fewer than
//! [`MIN_BOOTSTRAP_SCENES`] scenes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::compare;
use super::trajectory::names;
use super::Outcome;
use crate::rng::SplitMix64;

/// The safety rates of the scorecard: column and label.
pub const RATES: [(&str, &str); 4] = [
    (names::COLLISION_AT_FAULT, "collision at fault"),
    (names::COLLISION_REAR, "rear-ended"),
    (names::OFFROAD, "offroad"),
    (names::OFFROAD_OR_COLLISION, "any incident"),
];

/// Fewer scenes than this: Wilson intervals over rollouts instead of a bootstrap over scenes.
pub const MIN_BOOTSTRAP_SCENES: usize = 5;

/// One safety rate over the kept rollouts.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    /// Column name.
    pub name: &'static str,
    /// Label shown.
    pub label: &'static str,
    /// Rollouts with the event.
    pub k: usize,
    /// Rollouts with a value.
    pub n: usize,
    /// k / n.
    pub rate: f64,
    /// 95 % interval, low end.
    pub lo: f64,
    /// 95 % interval, high end.
    pub hi: f64,
    /// How the interval was computed.
    pub method: &'static str,
    /// Scenes the rollouts came from.
    pub scenes: usize,
}

/// True when every kept rollout's value of metric column `c` is 0, 1 or null (a rate, not a
/// continuous metric).
pub fn is_binary(o: &Outcome, c: usize) -> bool {
    o.results
        .trajectories
        .iter()
        .filter(|t| t.kept)
        .all(|t| t.values[c].is_none_or(|v| v == 0.0 || v == 1.0))
}

/// The continuous metric columns: not [`is_binary`], with a median over the run.
pub fn continuous_columns(o: &Outcome) -> Vec<usize> {
    (0..o.results.metric_columns.len())
        .filter(|&c| {
            !is_binary(o, c)
                && o.results
                    .run
                    .columns
                    .get(c)
                    .is_some_and(|s| s.quantiles[2].is_some())
        })
        .collect()
}

/// The rates of [`RATES`] the run has, computed on the first call (the rates in parallel).
pub fn rates(o: &Outcome) -> Vec<Rate> {
    o.scorecard.get_or_init(|| compute(o)).clone()
}

fn compute(o: &Outcome) -> Vec<Rate> {
    use rayon::prelude::*;
    RATES
        .par_iter()
        .filter_map(|&(name, label)| rate(o, name, label))
        .collect()
}

fn rate(o: &Outcome, name: &'static str, label: &'static str) -> Option<Rate> {
    let r = &o.results;
    let c = r.metric_columns.iter().position(|x| x.name == name)?;
    let mut per_scene: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for t in r.trajectories.iter().filter(|t| t.kept) {
        let Some(v) = t.values[c] else { continue };
        let e = per_scene.entry(t.clipgt_id.as_str()).or_default();
        e.0 += usize::from(v > 0.0);
        e.1 += 1;
    }
    let (k, n) = per_scene
        .values()
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    if n == 0 {
        return None;
    }
    let ps: Vec<(usize, usize)> = per_scene.values().copied().collect();
    let (method, (lo, hi)) = if ps.len() >= MIN_BOOTSTRAP_SCENES {
        (
            "bootstrap over scenes",
            scene_bootstrap(&ps, 0x5eed_0f5c_e7e5),
        )
    } else {
        ("Wilson over rollouts", wilson(k, n))
    };
    Some(Rate {
        name,
        label,
        k,
        n,
        rate: k as f64 / n as f64,
        lo,
        hi,
        method,
        scenes: ps.len(),
    })
}

/// Wilson's score interval (95 %) for k of n.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let z = 1.959_963_984_540_054_f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / d;
    ((c - h).max(0.0), (c + h).min(1.0))
}

/// 95 % percentile interval of the pooled rate Σk/Σn with scenes resampled with replacement
/// ([`compare::RESAMPLES`] times, a fixed seed).
pub fn scene_bootstrap(per_scene: &[(usize, usize)], seed: u64) -> (f64, f64) {
    let s = per_scene.len();
    if s == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SplitMix64::new(seed);
    let mut rates: Vec<f64> = (0..compare::RESAMPLES)
        .map(|_| {
            let (mut k, mut n) = (0usize, 0usize);
            for _ in 0..s {
                let (a, b) = per_scene[(rng.next_u64() % s as u64) as usize];
                k += a;
                n += b;
            }
            if n == 0 {
                0.0
            } else {
                k as f64 / n as f64
            }
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let at = |q: f64| rates[((q * (rates.len() - 1) as f64).round() as usize).min(rates.len() - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_its_formula() {
        // statsmodels proportion_confint(3, 10, method="wilson") = (0.1078, 0.6032).
        let (lo, hi) = wilson(3, 10);
        assert!(
            (lo - 0.10779).abs() < 1e-4 && (hi - 0.60322).abs() < 1e-4,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 10).0, 0.0);
    }

    #[test]
    fn scene_bootstrap_brackets_the_rate() {
        let ps: Vec<(usize, usize)> = (0..20).map(|i| (usize::from(i % 4 == 0), 1)).collect();
        let (lo, hi) = scene_bootstrap(&ps, 1);
        assert!(
            lo < 0.25 && 0.25 < hi && lo >= 0.0 && hi <= 1.0,
            "{lo} {hi}"
        );
        assert_eq!(scene_bootstrap(&[(0, 5), (0, 5)], 1), (0.0, 0.0));
    }
}
