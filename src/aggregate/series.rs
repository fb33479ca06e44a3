//! One rollout's per-step series as the run report plots them (`DK.series(key, …)` in
//! aggregate/report/series-*.js): seconds since its first row, every metric of its batch at
//! single precision, and the rows the modifier chain kept.
//!
//! A series is built from a rollout's wide trajectory either while its batch is reduced (a small
//! run keeps them, so the report need not read its rows again) or when the report reads the
//! batch's rows again; both give the same bytes.

use std::collections::HashMap;
use std::sync::Arc;

use super::trajectory::{self, ChainColumns, ChainParams, WideTrajectory};

/// One rollout's plotted series.
#[derive(Debug, Clone)]
pub struct PlotSeries {
    /// The batch's metric names (file order), shared by its rollouts.
    names: Arc<Vec<String>>,
    /// Seconds since the rollout's first row.
    t: Vec<f64>,
    /// Per metric, its values as plotted ([`plotted`]; NaN where there is none, written as
    /// `null` like a missing value), `None` where the rollout lacks the metric.
    values: Vec<Option<Vec<f32>>>,
    cut: trajectory::Cut,
}

/// The series of one batch's rollouts, by rollout id.
pub type BatchSeries = HashMap<String, PlotSeries>;

impl PlotSeries {
    /// The series of `wide` (a trajectory over the metrics `names`, its batch's file order) with
    /// the rows the chain of `params` keeps.
    pub fn of(names: Arc<Vec<String>>, wide: &WideTrajectory, params: &ChainParams) -> PlotSeries {
        let cut = trajectory::cut(wide, &ChainColumns::resolve(&names), params);
        let t0 = wide.timestamps_us.first().copied().unwrap_or(0);
        PlotSeries {
            t: wide
                .timestamps_us
                .iter()
                .map(|&u| (u - t0) as f64 / 1e6)
                .collect(),
            values: wide
                .columns
                .iter()
                .map(|c| c.as_ref().map(|c| c.iter().map(|v| plotted(*v)).collect()))
                .collect(),
            names,
            cut,
        }
    }

    /// The JSON object the page plots (`DK.series` in assets/report.js reads its fields),
    /// appended to `out` (written in place: a batch's series go into one file's buffer).
    /// Fields `t`, `names`, `values` (`null` for a missing metric or a NaN value), `start`,
    /// `event_end`, `end`, `dropped`: the page's format. Written by hand, the bytes serde_json
    /// writes for such a struct (the unit tests compare them), each number formatted straight
    /// into `out` by serde_json's own formatter instead of through serde's `io::Write` calls.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        // About 9 bytes a value; reserved up front so the buffer grows once per series.
        let n: usize = self.values.iter().flatten().map(Vec::len).sum();
        out.reserve(9 * (n + self.t.len()) + 256);
        let mut buffer = zmij::Buffer::new();
        out.extend_from_slice(b"{\"t\":[");
        for (i, &t) in self.t.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_number(out, &mut buffer, t);
        }
        out.extend_from_slice(b"],\"names\":");
        serde_json::to_writer(&mut *out, &*self.names)?;
        out.extend_from_slice(b",\"values\":[");
        for (j, column) in self.values.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let Some(column) = column else {
                out.extend_from_slice(b"null");
                continue;
            };
            out.push(b'[');
            for (i, &v) in column.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_number(out, &mut buffer, v);
            }
            out.push(b']');
        }
        let c = &self.cut;
        let tail = format!(
            "],\"start\":{},\"event_end\":{},\"end\":{},\"dropped\":{}}}",
            c.start, c.event_end, c.end, c.dropped
        );
        out.extend_from_slice(tail.as_bytes());
        Ok(())
    }
}

/// A number as serde_json writes it: shortest round-trip digits, `null` when not finite.
fn push_number<F: zmij::Float + Into<f64> + Copy>(
    out: &mut Vec<u8>,
    buffer: &mut zmij::Buffer,
    v: F,
) {
    if v.into().is_finite() {
        out.extend_from_slice(buffer.format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A series value as plotted: finite, at single precision (7 significant digits, beyond what a
/// 420-pixel plot or its 2-decimal axis labels show; it halves the text to write and load); NaN
/// (written as `null`, as serde_json writes every non-finite number) where there is none.
fn plotted(v: Option<f64>) -> f32 {
    match v {
        Some(v) if v.is_finite() => v as f32,
        _ => f32::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the page read before series were kept, as serde_json wrote it (an `Option<f32>`
    /// per value).
    #[derive(serde::Serialize)]
    struct Reference<'a> {
        t: &'a [f64],
        names: &'a [String],
        values: Vec<Option<Vec<Option<f32>>>>,
        start: usize,
        event_end: usize,
        end: usize,
        dropped: bool,
    }

    fn json(s: &PlotSeries) -> String {
        let mut out = b"prefix".to_vec();
        s.write_json(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        text.strip_prefix("prefix").unwrap().to_string()
    }

    /// Non-finite values and values beyond f32's range are `null`; a missing metric is `null`.
    #[test]
    fn values_as_the_page_reads_them() {
        let wide = WideTrajectory {
            timestamps_us: vec![1_000_000, 1_100_000, 1_200_000],
            columns: vec![
                Some(vec![Some(0.25), None, Some(f64::NAN)]),
                None,
                Some(vec![Some(1e300), Some(f64::INFINITY), Some(-3.5)]),
            ],
        };
        let names = Arc::new(vec!["a".to_string(), "b".into(), "c\"q".into()]);
        let s = PlotSeries::of(names, &wide, &ChainParams::default());
        assert_eq!(
            json(&s),
            r#"{"t":[0.0,0.1,0.2],"names":["a","b","c\"q"],"values":[[0.25,null,null],null,[null,null,-3.5]],"start":0,"event_end":3,"end":3,"dropped":false}"#
        );
    }

    /// The JSON is the one an `Option<f32>` per value gives, byte for byte, over many values
    /// (special ones among them) and a cut.
    #[test]
    fn same_bytes_as_an_option_per_value() {
        let mut rng = crate::rng::SplitMix64::new(7);
        let n = 500;
        let timestamps_us: Vec<i64> = (0..n)
            .map(|i| 3_000_000 + 100_000 * i as i64 + (i % 3) as i64)
            .collect();
        let special = [
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
            1e39,
            -1e39,
            1e-46,
            0.0,
            -0.0,
        ];
        let column = |rng: &mut crate::rng::SplitMix64, scale: f64| -> Vec<Option<f64>> {
            (0..n)
                .map(|i| match i % 17 {
                    0 => None,
                    1 => Some(special[i % special.len()]),
                    _ => Some((rng.f64() - 0.5) * scale),
                })
                .collect()
        };
        let names: Vec<String> = [
            "eval_relevant",
            "collision_any",
            "offroad",
            "speed",
            "dist_to_gt_trajectory",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut columns: Vec<Option<Vec<Option<f64>>>> = vec![
            Some(
                (0..n)
                    .map(|i| Some(if i >= 20 { 1.0 } else { 0.0 }))
                    .collect(),
            ),
            Some(
                (0..n)
                    .map(|i| Some(if i == 300 { 1.0 } else { 0.0 }))
                    .collect(),
            ),
            None,
        ];
        columns.push(Some(column(&mut rng, 1e6)));
        columns.push(Some(column(&mut rng, 1e-3)));
        let wide = WideTrajectory {
            timestamps_us,
            columns,
        };
        let names = Arc::new(names);
        let s = PlotSeries::of(names.clone(), &wide, &ChainParams::default());
        assert!(
            s.cut.start > 0 && s.cut.end < n,
            "the cut is exercised: {:?}",
            s.cut
        );
        let reference = Reference {
            t: &s.t,
            names: &names,
            values: wide
                .columns
                .iter()
                .map(|c| {
                    c.as_ref().map(|c| {
                        c.iter()
                            .map(|v| {
                                v.filter(|v| v.is_finite())
                                    .map(|v| v as f32)
                                    .filter(|v| v.is_finite())
                            })
                            .collect()
                    })
                })
                .collect(),
            start: s.cut.start,
            event_end: s.cut.event_end,
            end: s.cut.end,
            dropped: s.cut.dropped,
        };
        assert_eq!(json(&s), serde_json::to_string(&reference).unwrap());
    }
}
