//! NAVSIM's score CSVs (autonomousvision/navsim `run_pdm_score.py`): one row per token and an
//! average row; the version told from the columns (v1.0: DDC multiplicative; v1.1: DDC weight 0
//! and pandas' index column; v2: TLC, LK, HC, EC), every row's score recomputed by that version's
//! formula and the average row as pandas computes it (`mean(skipna=True)`: numpy's pairwise sum
//! of the values with NaN as 0, over the count of the others).

use crate::metrics::profiles::{navsim_epdms, navsim_pdms};

/// NAVSIM's score-file versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// v1.0: `score = NC · DAC · DDC · (5 EP + 5 TTC + 2 C) / 12`.
    V1_0,
    /// v1.1: `score = NC · DAC · ((5 EP + 5 TTC + 2 C + 0 DDC) / 12)`.
    V1_1,
    /// v2: `score = NC · DAC · DDC · TLC · (5 EP + 5 TTC + 2 LK + 2 HC + 2 EC) / 16` (EC absent: / 14).
    V2,
}

impl Version {
    /// In words, with the code it follows.
    pub fn describe(self) -> &'static str {
        match self {
            Version::V1_0 => "NAVSIM v1.0 (pdm_scorer.py @51cecd5: DDC multiplicative)",
            Version::V1_1 => "NAVSIM v1.1 (pdm_scorer.py @0811876: DDC weight 0)",
            Version::V2 => "NAVSIM v2 (pdm_scorer.py / run_pdm_score.py @4de93c5: EPDMS)",
        }
    }
}

/// numpy's pairwise summation of float64 (`pairwise_sum_DOUBLE`, blocks of 128 unrolled by 8).
pub fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        let mut i = 8;
        while i < full {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[full..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// pandas' `Series.mean(skipna=True)` on float64: NaN filled with 0, numpy's sum, over the count
/// of non-NaN values.
pub fn pandas_mean(v: &[f64]) -> f64 {
    let filled: Vec<f64> = v
        .iter()
        .map(|x| if x.is_nan() { 0.0 } else { *x })
        .collect();
    let count = v.iter().filter(|x| !x.is_nan()).count();
    if count == 0 {
        return f64::NAN;
    }
    pairwise_sum(&filled) / count as f64
}

/// `math.fsum(v) / len(v)` over the non-NaN values (some tools write their average this way).
pub fn fsum_mean(v: &[f64]) -> f64 {
    let vals: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if vals.is_empty() {
        return f64::NAN;
    }
    // Shewchuk's exact partial sums, as CPython's math.fsum.
    let mut partials: Vec<f64> = Vec::new();
    for mut x in vals.iter().copied() {
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        partials.push(x);
    }
    // Round the partials' sum correctly (CPython's final step).
    let mut n = partials.len();
    let mut hi = 0.0;
    if n > 0 {
        n -= 1;
        hi = partials[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = partials[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            let yr = x - hi;
            if y == yr {
                hi = x;
            }
        }
    }
    hi / vals.len() as f64
}

/// Metric columns of a version, in score-formula order.
pub fn columns(v: Version) -> &'static [&'static str] {
    match v {
        Version::V1_0 | Version::V1_1 => &[
            "no_at_fault_collisions",
            "drivable_area_compliance",
            "driving_direction_compliance",
            "ego_progress",
            "time_to_collision_within_bound",
            "comfort",
        ],
        Version::V2 => &[
            "no_at_fault_collisions",
            "drivable_area_compliance",
            "driving_direction_compliance",
            "traffic_light_compliance",
            "ego_progress",
            "time_to_collision_within_bound",
            "lane_keeping",
            "history_comfort",
        ],
    }
}

/// The version whose columns `header` has (v1.0 vs v1.1 by pandas' leading index column, as
/// v1.1 writes it; by column order otherwise).
pub fn detect(header: &[String]) -> Option<Version> {
    let has = |c: &str| header.iter().any(|h| h == c);
    if !has("token") || !has("score") {
        return None;
    }
    if has("traffic_light_compliance") && has("lane_keeping") && has("history_comfort") {
        return Some(Version::V2);
    }
    if !columns(Version::V1_1).iter().all(|c| has(c)) {
        return None;
    }
    let pos = |c: &str| header.iter().position(|h| h == c);
    // v1.0 writes DDC before EP; v1.1 after comfort, with the index column first.
    if header.first().is_some_and(|h| h.is_empty())
        || pos("driving_direction_compliance") > pos("comfort")
    {
        Some(Version::V1_1)
    } else {
        Some(Version::V1_0)
    }
}

/// A row's score by `v` from its metric values (in [`columns`] order; `ec` v2's extended
/// comfort when the file has it).
pub fn score(v: Version, m: &[f64], ec: Option<f64>) -> f64 {
    match v {
        Version::V1_0 => {
            let multiplicative = m[0] * m[1] * m[2];
            multiplicative * ((5.0 * m[3] + 5.0 * m[4] + 2.0 * m[5]) / 12.0)
        }
        Version::V1_1 => navsim_pdms(m[0], m[1], m[3], m[4], m[5], m[2]),
        Version::V2 => navsim_epdms(
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            m[6],
            m[7],
            ec.filter(|x| !x.is_nan()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_is_numpys() {
        // a_i = 1/(i+1) + 0.1·i; numpy 2's np.array(a).sum(): 4491.2826638803 (n = 300) and
        // 49957.485470860556 (n = 1000), where Python's left-to-right sum() gives
        // 4491.282663880303 and 49957.485470860585.
        let a = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|i| 1.0 / (i + 1) as f64 + 0.1 * i as f64)
                .collect()
        };
        assert_eq!(pairwise_sum(&a(300)), 4491.2826638803);
        assert_eq!(pairwise_sum(&a(1000)), 49957.485470860556);
        assert_ne!(a(300).iter().sum::<f64>(), 4491.2826638803);
        assert_eq!(pairwise_sum(&[1.0, 2.0]), 3.0);
        let b = [1e16, 1.0, -1e16];
        assert_eq!(fsum_mean(&b), 1.0 / 3.0);
    }
}
