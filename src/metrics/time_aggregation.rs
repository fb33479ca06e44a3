//! How a metric reduces over the timesteps of one trajectory (AlpaSim's `AggregationType`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::stats;

/// How a per-timestep metric is reduced to one value per trajectory.
///
/// Semantics follow polars as used by AlpaSim's `processing.py`: `mean`, `median`, `max` and
/// `min` skip nulls (all null → null); `last` takes the value of the last row, even when null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum TimeAggregation {
    /// Arithmetic mean of the non-null values.
    Mean,
    /// Median of the non-null values (mean of the two middle values for an even count).
    Median,
    /// Largest non-null value (NaN only when every value is NaN).
    Max,
    /// Smallest non-null value (NaN only when every value is NaN).
    Min,
    /// Value of the last row.
    Last,
}

impl TimeAggregation {
    /// Every aggregation, in the order of DESIGN §3.
    pub const ALL: [TimeAggregation; 5] = [
        TimeAggregation::Mean,
        TimeAggregation::Median,
        TimeAggregation::Max,
        TimeAggregation::Min,
        TimeAggregation::Last,
    ];

    /// The name written in metrics.parquet's `time_aggregation` column.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeAggregation::Mean => "mean",
            TimeAggregation::Median => "median",
            TimeAggregation::Max => "max",
            TimeAggregation::Min => "min",
            TimeAggregation::Last => "last",
        }
    }

    /// Reduces one trajectory's values (in time order) to a single value.
    pub fn reduce(self, values: &[Option<f64>]) -> Option<f64> {
        match self {
            TimeAggregation::Last => values.last().copied().flatten(),
            TimeAggregation::Mean => stats::mean(values.iter().copied()),
            TimeAggregation::Median => {
                let mut v: Vec<f64> = values.iter().flatten().copied().collect();
                stats::sort_total(&mut v);
                stats::quantile_sorted(&v, 0.5)
            }
            TimeAggregation::Max => extreme(values, |a, b| a > b),
            TimeAggregation::Min => extreme(values, |a, b| a < b),
        }
    }
}

/// Max/min over non-null values ignoring NaN unless every value is NaN.
fn extreme(values: &[Option<f64>], better: impl Fn(f64, f64) -> bool) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut saw_nan = false;
    for v in values.iter().flatten().copied() {
        if v.is_nan() {
            saw_nan = true;
            continue;
        }
        best = Some(match best {
            Some(b) if !better(v, b) => b,
            _ => v,
        });
    }
    best.or(if saw_nan { Some(f64::NAN) } else { None })
}

impl fmt::Display for TimeAggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `mean`, `median`, `max`, `min`, `last`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time aggregation {0:?} (expected one of mean, median, max, min, last)")]
pub struct UnknownTimeAggregation(pub String);

impl FromStr for TimeAggregation {
    type Err = UnknownTimeAggregation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimeAggregation::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownTimeAggregation(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimeAggregation::*;

    const V: [Option<f64>; 5] = [Some(3.0), None, Some(1.0), Some(4.0), None];

    #[test]
    fn each_aggregation_skips_nulls_except_last() {
        assert_eq!(Mean.reduce(&V), Some(8.0 / 3.0));
        assert_eq!(Median.reduce(&V), Some(3.0));
        assert_eq!(Max.reduce(&V), Some(4.0));
        assert_eq!(Min.reduce(&V), Some(1.0));
        assert_eq!(
            Last.reduce(&V),
            None,
            "last takes the last row even when null"
        );
        assert_eq!(Last.reduce(&V[..4]), Some(4.0));
        assert_eq!(
            Median.reduce(&[Some(1.0), Some(2.0), Some(10.0), Some(4.0)]),
            Some(3.0)
        );
    }

    #[test]
    fn all_null_or_empty_is_null() {
        for a in TimeAggregation::ALL {
            assert_eq!(a.reduce(&[None, None]), None, "{a}");
            assert_eq!(a.reduce(&[]), None, "{a}");
        }
    }

    #[test]
    fn infinities_are_values() {
        let v = [Some(f64::INFINITY), Some(2.0)];
        assert_eq!(Min.reduce(&v), Some(2.0));
        assert_eq!(Max.reduce(&v), Some(f64::INFINITY));
        assert_eq!(Mean.reduce(&v), Some(f64::INFINITY));
    }

    #[test]
    fn parse_round_trips_and_rejects_unknown() {
        for a in TimeAggregation::ALL {
            assert_eq!(a.as_str().parse::<TimeAggregation>(), Ok(a));
        }
        assert!("sum".parse::<TimeAggregation>().is_err());
    }
}
