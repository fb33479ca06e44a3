//! The scorecard of a run, shared by the run report and metrics_results.png: each safety rate
//! with a 95 % interval — a bootstrap over scenes (rollouts of one scene are not independent),
//! or Wilson's score interval over rollouts when the run has fewer than
//! [`MIN_BOOTSTRAP_SCENES`] scenes.

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
    let r = &o.results;
    // Each rate's (events, rollouts) per scene, in clipgt_id order: the trajectories are sorted
    // by (clipgt_id, rollout_id), so a scene's rollouts are consecutive.
    let found: Vec<(&'static str, &'static str, usize)> = RATES
        .iter()
        .filter_map(|&(name, label)| {
            let c = r.metric_columns.iter().position(|x| x.name == name)?;
            Some((name, label, c))
        })
        .collect();
    let mut scenes: Vec<Vec<(usize, (usize, usize))>> = vec![Vec::new(); found.len()];
    let mut scene = 0usize;
    let mut prev: Option<&str> = None;
    for t in r.trajectories.iter().filter(|t| t.kept) {
        if prev.is_some_and(|p| p != t.clipgt_id) {
            scene += 1;
        }
        prev = Some(t.clipgt_id.as_str());
        for (ps, &(_, _, c)) in scenes.iter_mut().zip(&found) {
            let Some(v) = t.values[c] else { continue };
            match ps.last_mut() {
                Some((s, e)) if *s == scene => {
                    e.0 += usize::from(v > 0.0);
                    e.1 += 1;
                }
                _ => ps.push((scene, (usize::from(v > 0.0), 1))),
            }
        }
    }
    // Rates over the same scenes share one bootstrap: the same resampled scenes (the seed is
    // the same for every rate), each rate's pooled value computed from them.
    let mut intervals: Vec<Option<(&'static str, (f64, f64))>> = vec![None; found.len()];
    for i in 0..found.len() {
        if intervals[i].is_some() || scenes[i].len() < MIN_BOOTSTRAP_SCENES {
            continue;
        }
        let same: Vec<usize> = (i..found.len())
            .filter(|&j| {
                intervals[j].is_none()
                    && scenes[j].len() == scenes[i].len()
                    && scenes[j].iter().zip(&scenes[i]).all(|(a, b)| a.0 == b.0)
            })
            .collect();
        let counts: Vec<Vec<(usize, usize)>> = same
            .iter()
            .map(|&j| scenes[j].iter().map(|&(_, kn)| kn).collect())
            .collect();
        for (&j, iv) in same
            .iter()
            .zip(scene_bootstrap_rates(&counts, BOOTSTRAP_SEED))
        {
            intervals[j] = Some(("bootstrap over scenes", iv));
        }
    }
    found
        .iter()
        .zip(&scenes)
        .zip(intervals)
        .filter_map(|((&(name, label, _), ps), iv)| {
            let (k, n) = ps.iter().fold((0, 0), |(a, b), (_, (x, y))| (a + x, b + y));
            if n == 0 {
                return None;
            }
            let (method, (lo, hi)) = iv.unwrap_or(("Wilson over rollouts", wilson(k, n)));
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
        })
        .collect()
}

/// The seed of the scorecard's bootstraps.
const BOOTSTRAP_SEED: u64 = 0x5eed_0f5c_e7e5;

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
    scene_bootstrap_rates(&[per_scene.to_vec()], seed)[0]
}

/// [`scene_bootstrap`] of several rates over the same scenes (`per_rate[r][scene]`, every row
/// as long), sharing the resampled scenes: each rate's interval is the one [`scene_bootstrap`]
/// gives it alone. The resamples run in parallel, each starting its generator where the
/// sequential draw would be, so the thread count does not change a bit.
pub fn scene_bootstrap_rates(per_rate: &[Vec<(usize, usize)>], seed: u64) -> Vec<(f64, f64)> {
    use rayon::prelude::*;
    let s = per_rate.first().map_or(0, Vec::len);
    if s == 0 {
        return vec![(f64::NAN, f64::NAN); per_rate.len()];
    }
    let nr = per_rate.len();
    // Scene-major (k, n) of every rate, so one draw reads one contiguous row.
    let rows: Vec<(usize, usize)> = (0..s)
        .flat_map(|i| per_rate.iter().map(move |r| r[i]))
        .collect();
    let pooled: Vec<Vec<f64>> = (0..compare::RESAMPLES)
        .into_par_iter()
        .with_min_len(64)
        .map(|b| {
            let mut rng = SplitMix64::new(seed).advanced((b * s) as u64);
            let mut acc = vec![(0usize, 0usize); nr];
            for _ in 0..s {
                let i = (rng.next_u64() % s as u64) as usize;
                for (a, &(k, n)) in acc.iter_mut().zip(&rows[i * nr..(i + 1) * nr]) {
                    a.0 += k;
                    a.1 += n;
                }
            }
            acc.into_iter()
                .map(|(k, n)| if n == 0 { 0.0 } else { k as f64 / n as f64 })
                .collect()
        })
        .collect();
    (0..nr)
        .map(|r| {
            let mut rates: Vec<f64> = pooled.iter().map(|p| p[r]).collect();
            rates.sort_by(f64::total_cmp);
            let at = |q: f64| {
                rates[((q * (rates.len() - 1) as f64).round() as usize).min(rates.len() - 1)]
            };
            (at(0.025), at(0.975))
        })
        .collect()
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

    /// The bootstrap as it was written first: one rate, one sequential generator.
    fn sequential(per_scene: &[(usize, usize)], seed: u64) -> (f64, f64) {
        let s = per_scene.len();
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
        let at =
            |q: f64| rates[((q * (rates.len() - 1) as f64).round() as usize).min(rates.len() - 1)];
        (at(0.025), at(0.975))
    }

    #[test]
    fn rates_bootstrapped_together_get_each_their_own_sequential_interval() {
        let mut g = SplitMix64::new(7);
        let per_rate: Vec<Vec<(usize, usize)>> = (0..3)
            .map(|r| {
                (0..37)
                    .map(|_| {
                        let n = 1 + (g.next_u64() % 10) as usize;
                        (((g.next_u64() % (n as u64 + 1)) as usize) >> r, n)
                    })
                    .collect()
            })
            .collect();
        let together = scene_bootstrap_rates(&per_rate, 0x5eed);
        for (r, ps) in per_rate.iter().enumerate() {
            let alone = sequential(ps, 0x5eed);
            assert_eq!(together[r].0.to_bits(), alone.0.to_bits(), "rate {r}");
            assert_eq!(together[r].1.to_bits(), alone.1.to_bits(), "rate {r}");
        }
        let in_one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map(|p| p.install(|| scene_bootstrap_rates(&per_rate, 0x5eed)));
        assert_eq!(in_one_thread.ok(), Some(together));
    }
}
