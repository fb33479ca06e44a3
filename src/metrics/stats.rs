//! Null-aware statistics with polars' conventions: mean, sample standard deviation (n − 1) and
//! linearly interpolated quantiles. `None` stands for a null and is skipped.

/// Mean of the values; `None` when there are none.
pub fn mean(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values.into_iter().flatten() {
        sum += v;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// Sample standard deviation (divisor n − 1); `None` with fewer than two values.
pub fn std_sample(values: impl IntoIterator<Item = Option<f64>> + Clone) -> Option<f64> {
    let m = mean(values.clone())?;
    let (mut ss, mut n) = (0.0, 0usize);
    for v in values.into_iter().flatten() {
        let d = v - m;
        ss += d * d;
        n += 1;
    }
    (n > 1).then(|| (ss / (n - 1) as f64).sqrt())
}

/// Sorts with NaN last (polars' order for floats).
pub fn sort_total(v: &mut [f64]) {
    v.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (false, false) => a.partial_cmp(b).expect("neither is NaN"),
        (a_nan, b_nan) => a_nan.cmp(&b_nan),
    });
}

/// Quantile `q` ∈ [0, 1] of already sorted values with linear interpolation between the two
/// nearest ranks (polars' `quantile(q, "linear")`, numpy's default); `None` when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (sorted[lo], sorted[hi]);
    if lo == hi || a == b {
        return Some(a);
    }
    Some(a + (b - a) * (pos - lo as f64))
}

/// The quantiles drivekit reports, with their column suffixes.
pub const QUANTILES: [(f64, &str); 5] = [
    (0.05, "p05"),
    (0.25, "p25"),
    (0.50, "p50"),
    (0.75, "p75"),
    (0.95, "p95"),
];

/// Summary of one column over rollouts: mean, sample std and the [`QUANTILES`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Mean of the non-null values.
    pub mean: Option<f64>,
    /// Sample standard deviation (null with fewer than two values).
    pub std: Option<f64>,
    /// p05, p25, p50, p75, p95.
    pub quantiles: [Option<f64>; 5],
    /// Number of non-null values.
    pub count: usize,
}

impl Summary {
    /// Summarises the values (nulls skipped).
    pub fn of(values: &[Option<f64>]) -> Summary {
        let mut sorted: Vec<f64> = values.iter().flatten().copied().collect();
        sort_total(&mut sorted);
        let mut quantiles = [None; 5];
        for (slot, (q, _)) in quantiles.iter_mut().zip(QUANTILES) {
            *slot = quantile_sorted(&sorted, q);
        }
        Summary {
            mean: mean(values.iter().copied()),
            std: std_sample(values.iter().copied()),
            quantiles,
            count: sorted.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_needs_two_values() {
        assert_eq!(std_sample([Some(1.0)]), None);
        assert_eq!(std_sample([Some(1.0), None]), None);
        assert_eq!(std_sample([Some(1.0), Some(3.0)]), Some(2f64.sqrt()));
    }

    #[test]
    fn quantiles_match_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4, 10], [.05, .25, .5, .75, .95]) = 1.2, 2, 3, 4, 8.8
        let s = Summary::of(&[Some(4.0), Some(1.0), None, Some(10.0), Some(2.0), Some(3.0)]);
        let q: Vec<f64> = s.quantiles.iter().map(|v| v.unwrap()).collect();
        let want = [1.2, 2.0, 3.0, 4.0, 8.8];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        assert_eq!(s.mean, Some(4.0));
        assert_eq!(s.count, 5);
    }

    #[test]
    fn summary_invariants_hold_on_pseudo_random_data() {
        // Property: min ≤ mean ≤ max, quantiles non-decreasing, order does not matter.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for case in 0..200 {
            let n = 1 + case % 17;
            let mut v: Vec<Option<f64>> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (!x.is_multiple_of(5)).then(|| (x % 10_000) as f64 / 37.0 - 100.0)
                })
                .collect();
            let s = Summary::of(&v);
            let present: Vec<f64> = v.iter().flatten().copied().collect();
            if present.is_empty() {
                assert_eq!(s.mean, None);
                continue;
            }
            let (lo, hi) = present
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
            let m = s.mean.unwrap();
            assert!(lo - 1e-9 <= m && m <= hi + 1e-9);
            for w in s.quantiles.windows(2) {
                assert!(w[0].unwrap() <= w[1].unwrap());
            }
            v.reverse();
            let r = Summary::of(&v);
            assert_eq!(r.quantiles, s.quantiles);
            assert!((r.mean.unwrap() - m).abs() < 1e-9);
        }
    }
}
