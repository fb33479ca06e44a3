//! CARLA leaderboard result files (`_checkpoint` with `records`, `global_record`, `progress`) and
//! Bench2Drive's: the global numbers recomputed exactly as each version of the leaderboard's
//! `statistics_manager.py` computes them (carla-simulator/leaderboard; rules in
//! docs/peer-results.md), so a file can be checked against its own stored global record.

use std::collections::BTreeMap;

use serde_json::Value;

/// One route's record.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRecord {
    /// `route_id`.
    pub route_id: String,
    /// `index`.
    pub index: i64,
    /// `status` (`Completed`, `Perfect`, `Failed - …`).
    pub status: String,
    /// Infraction messages by kind, in the file's key order.
    pub infractions: Vec<(String, Vec<String>)>,
    /// `scores.score_route` (%).
    pub score_route: f64,
    /// `scores.score_penalty`.
    pub score_penalty: f64,
    /// `scores.score_composed` (%).
    pub score_composed: f64,
    /// `meta.route_length` (m), when recorded.
    pub route_length: Option<f64>,
}

/// Why a record cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("record {index}: {what}")]
pub struct RecordError {
    /// Position in `records`.
    pub index: usize,
    /// What is wrong.
    pub what: String,
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl RouteRecord {
    /// Reads record `i` of a checkpoint.
    pub fn parse(i: usize, v: &Value) -> Result<RouteRecord, RecordError> {
        let err = |what: &str| RecordError {
            index: i,
            what: what.to_string(),
        };
        let scores = &v["scores"];
        let score = |k: &str| num(&scores[k]).ok_or_else(|| err(&format!("no scores.{k}")));
        let infractions = v["infractions"]
            .as_object()
            .ok_or_else(|| err("no infractions"))?
            .iter()
            .map(|(k, list)| {
                let msgs = list
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|m| m.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                (k.clone(), msgs)
            })
            .collect();
        Ok(RouteRecord {
            route_id: match &v["route_id"] {
                Value::String(s) => s.clone(),
                Value::Null => return Err(err("no route_id")),
                other => other.to_string(),
            },
            index: v["index"].as_i64().unwrap_or(i as i64),
            status: v["status"].as_str().unwrap_or_default().to_string(),
            infractions,
            score_route: score("score_route")?,
            score_penalty: score("score_penalty")?,
            score_composed: score("score_composed")?,
            route_length: num(&v["meta"]["route_length"]),
        })
    }

    /// Messages of infraction kind `k`.
    pub fn messages(&self, k: &str) -> &[String] {
        self.infractions
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, m)| m.as_slice())
            .unwrap_or(&[])
    }

    /// A failed route (status `Failed…`).
    pub fn failed(&self) -> bool {
        self.status.starts_with("Failed")
    }
}

/// The versions of the leaderboard's global statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// LB 2.x, 2024 on: means rounded to 6 digits, std to 3, std 0 for one route, meta totals.
    Lb2,
    /// LB 2.0, 2022-10 … 2023-06: as [`Rule::Lb2`] but std `"NaN"` for one route.
    Lb2Early,
    /// LB 1.0, 2020 (also vendored by TCP and InterFuser): per-route infraction rates with
    /// km = max(score_route · length / 1000, 0.001) — the missing /100 of that code.
    Lb1a,
    /// LB 1.0, 2021-01 (8956c4e): km = max(score_route / 100 · length / 1000, 0.001).
    Lb1b,
    /// LB 1.0, 2023-06: routes with score_route 0 skipped, no floor.
    Lb1c,
}

impl Rule {
    /// Every rule, most recent first.
    pub const ALL: [Rule; 5] = [
        Rule::Lb2,
        Rule::Lb2Early,
        Rule::Lb1b,
        Rule::Lb1c,
        Rule::Lb1a,
    ];

    /// The rule in words, with the code it follows.
    pub fn describe(self) -> &'static str {
        match self {
            Rule::Lb2 => "CARLA leaderboard 2.x (statistics_manager.py, 2024 on)",
            Rule::Lb2Early => "CARLA leaderboard 2.0 (statistics_manager.py, 2022-10 … 2023-06)",
            Rule::Lb1a => "CARLA leaderboard 1.0 (statistics_manager.py, 2020; km without /100)",
            Rule::Lb1b => "CARLA leaderboard 1.0 (statistics_manager.py, 2021-01 8956c4e)",
            Rule::Lb1c => "CARLA leaderboard 1.0 (statistics_manager.py, 2023-06)",
        }
    }

    fn is_lb2(self) -> bool {
        matches!(self, Rule::Lb2 | Rule::Lb2Early)
    }
}

/// A global number: a value, or the string `"NaN"` the leaderboard writes for an undefined std.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// A number.
    Num(f64),
    /// The string "NaN".
    NaN,
}

impl Stat {
    fn of(v: &Value) -> Option<Stat> {
        match v {
            Value::String(s) if s == "NaN" => Some(Stat::NaN),
            _ => num(v).map(Stat::Num),
        }
    }

    /// As a number (NaN for the string).
    pub fn value(self) -> f64 {
        match self {
            Stat::Num(v) => v,
            Stat::NaN => f64::NAN,
        }
    }
}

/// The global record as a version of the leaderboard computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Mean driving score, route completion, infraction penalty (in that order).
    pub scores: [f64; 3],
    /// Their standard deviations (`None`: that version writes none).
    pub std: Option<[Stat; 3]>,
    /// Infractions per km (outside route lanes: km driven outside, in LB 2.x).
    pub infractions: Vec<(String, f64)>,
    /// Global status.
    pub status: String,
    /// `[route_id, index, status]` of the failed routes.
    pub exceptions: Vec<(String, i64, String)>,
}

/// Python's `round(x, digits)` (round half to even on the exact binary value, as Rust's
/// formatting rounds).
pub fn py_round(x: f64, digits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.digits$}").parse().unwrap_or(x)
}

/// Metres outside the route lanes from LB 2.x's message ("Agent went outside its route lanes for
/// about 1.136 meters (0.13% of the completed route)": the ninth word).
pub fn outside_lanes_m(msg: &str) -> Option<f64> {
    msg.split(' ').nth(8).and_then(|t| t.parse().ok())
}

const SCORE_KEYS: [&str; 3] = ["score_composed", "score_route", "score_penalty"];

fn scores(r: &RouteRecord) -> [f64; 3] {
    [r.score_composed, r.score_route, r.score_penalty]
}

/// The global record of `records` (in file order) with `total` routes planned
/// (`progress[1]`) under `rule`; `keys` are the infraction kinds in the global record's order.
pub fn global(records: &[RouteRecord], total: usize, rule: Rule, keys: &[String]) -> Global {
    let t = total.max(1) as f64;
    let mut mean = [0.0; 3];
    if rule.is_lb2() {
        // score_x += record.score_x / total, then rounded.
        for r in records {
            for (m, s) in mean.iter_mut().zip(scores(r)) {
                *m += s / t;
            }
        }
        mean = mean.map(|m| py_round(m, 6));
    } else {
        for r in records {
            for (m, s) in mean.iter_mut().zip(scores(r)) {
                *m += s;
            }
        }
        mean = mean.map(|m| m / t);
    }
    let std = match rule {
        Rule::Lb2 | Rule::Lb2Early => Some(if total == 1 {
            if rule == Rule::Lb2 {
                [Stat::Num(0.0); 3]
            } else {
                [Stat::NaN; 3]
            }
        } else {
            let mut sq = [0.0; 3];
            for r in records {
                for ((q, s), m) in sq.iter_mut().zip(scores(r)).zip(mean) {
                    *q += (s - m).powi(2);
                }
            }
            sq.map(|q| Stat::Num(py_round((q / (t - 1.0)).sqrt(), 3)))
        }),
        Rule::Lb1a => None,
        Rule::Lb1b | Rule::Lb1c => Some(if total == 1 {
            [Stat::NaN; 3]
        } else {
            let mut sq = [0.0; 3];
            for r in records {
                for ((q, s), m) in sq.iter_mut().zip(scores(r)).zip(mean) {
                    *q += (s - m).powi(2);
                }
            }
            sq.map(|q| Stat::Num((q / (t - 1.0)).sqrt()))
        }),
    };
    let infractions = keys
        .iter()
        .map(|k| {
            let v = if rule.is_lb2() {
                if k == "outside_route_lanes" {
                    // Python's sum() starts at +0.0 (Rust's f64 sum at −0.0).
                    let m = records
                        .iter()
                        .flat_map(|r| r.messages(k).first())
                        .filter_map(|m| outside_lanes_m(m))
                        .fold(0.0, |acc, m| acc + m / 1000.0);
                    py_round(m, 3)
                } else {
                    let km = records.iter().fold(0.0, |acc, r| {
                        acc + r.route_length.unwrap_or(0.0) / 1000.0 * r.score_route / 100.0
                    });
                    let n: usize = records.iter().map(|r| r.messages(k).len()).sum();
                    py_round(n as f64 / km.max(0.001), 3)
                }
            } else {
                let mut rate = 0.0;
                for r in records {
                    let len = r.route_length.unwrap_or(0.0);
                    let km = match rule {
                        Rule::Lb1a => (r.score_route * len / 1000.0).max(0.001),
                        Rule::Lb1b => (r.score_route / 100.0 * len / 1000.0).max(0.001),
                        _ => {
                            if r.score_route == 0.0 {
                                continue;
                            }
                            r.score_route / 100.0 * len / 1000.0
                        }
                    };
                    rate += r.messages(k).len() as f64 / km;
                }
                rate
            };
            (k.clone(), v)
        })
        .collect();
    let status = if rule.is_lb2() {
        let mut s = "Perfect";
        for r in records {
            if r.failed() {
                s = "Failed";
            } else if r.status == "Completed" && s == "Perfect" {
                s = "Completed";
            }
        }
        s
    } else if records.iter().all(|r| r.status == "Completed") {
        "Completed"
    } else {
        "Failed"
    };
    let exceptions = records
        .iter()
        .filter(|r| r.failed())
        .map(|r| (r.route_id.clone(), r.index, r.status.clone()))
        .collect();
    Global {
        scores: mean,
        std,
        infractions,
        status: status.to_string(),
        exceptions,
    }
}

/// A stored number of the file next to drivekit's recomputation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    /// Name (e.g. `scores_mean.score_composed`).
    pub name: String,
    /// As recomputed.
    pub computed: String,
    /// As stored.
    pub stored: String,
    /// Equal.
    pub equal: bool,
}

fn show(s: Stat) -> String {
    match s {
        Stat::Num(v) => format!("{v}"),
        Stat::NaN => "NaN".into(),
    }
}

fn same(a: Stat, b: Stat) -> bool {
    match (a, b) {
        (Stat::NaN, Stat::NaN) => true,
        (Stat::Num(x), Stat::Num(y)) => x == y,
        _ => false,
    }
}

/// Compares `g` with the file's stored global record `stored`: every number the record holds.
pub fn checks(g: &Global, stored: &Value, rule: Rule) -> Vec<Check> {
    let mut out = Vec::new();
    let mean_key = if rule.is_lb2() {
        "scores_mean"
    } else {
        "scores"
    };
    for (k, v) in SCORE_KEYS.iter().zip(g.scores) {
        if let Some(s) = Stat::of(&stored[mean_key][k]) {
            out.push(Check {
                name: format!("{mean_key}.{k}"),
                computed: show(Stat::Num(v)),
                stored: show(s),
                equal: same(Stat::Num(v), s),
            });
        }
    }
    if let Some(std) = g.std {
        for (k, v) in SCORE_KEYS.iter().zip(std) {
            if let Some(s) = Stat::of(&stored["scores_std_dev"][k]) {
                out.push(Check {
                    name: format!("scores_std_dev.{k}"),
                    computed: show(v),
                    stored: show(s),
                    equal: same(v, s),
                });
            }
        }
    }
    for (k, v) in &g.infractions {
        if let Some(s) = Stat::of(&stored["infractions"][k]) {
            out.push(Check {
                name: format!("infractions.{k}"),
                computed: show(Stat::Num(*v)),
                stored: show(s),
                equal: same(Stat::Num(*v), s),
            });
        }
    }
    if let Some(s) = stored["status"].as_str() {
        out.push(Check {
            name: "status".into(),
            computed: g.status.clone(),
            stored: s.into(),
            equal: g.status == s,
        });
    }
    if let Some(ex) = stored["meta"]["exceptions"].as_array() {
        let stored_ex: Vec<(String, i64, String)> = ex
            .iter()
            .map(|e| {
                (
                    e[0].as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e[0].to_string()),
                    e[1].as_i64().unwrap_or(-1),
                    e[2].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        out.push(Check {
            name: "meta.exceptions".into(),
            computed: format!("{} failed routes", g.exceptions.len()),
            stored: format!("{} failed routes", stored_ex.len()),
            equal: stored_ex == g.exceptions,
        });
    }
    out
}

/// The rule that reproduces `stored` (every check equal), else the one with the fewest
/// mismatches, with its checks. LB 2.x records are told apart from 1.0 by `scores_mean`.
pub fn best_rule(
    records: &[RouteRecord],
    total: usize,
    keys: &[String],
    stored: &Value,
) -> (Rule, Global, Vec<Check>) {
    let lb2 = stored.get("scores_mean").is_some();
    let mut best: Option<(Rule, Global, Vec<Check>)> = None;
    for rule in Rule::ALL.into_iter().filter(|r| r.is_lb2() == lb2) {
        let g = global(records, total, rule, keys);
        let c = checks(&g, stored, rule);
        let bad = c.iter().filter(|c| !c.equal).count();
        if best
            .as_ref()
            .is_none_or(|(_, _, bc)| bad < bc.iter().filter(|c| !c.equal).count())
        {
            best = Some((rule, g, c));
        }
        if bad == 0 {
            break;
        }
    }
    best.expect("at least one rule per family")
}

/// Bench2Drive's merged numbers (Thinklab-SJTU/Bench2Drive `tools/merge_route_json.py`): driving
/// score = Σ score_composed / 220 (missing routes count 0) and success rate = routes Completed or
/// Perfect whose only infractions are min-speed ones, over 220.
pub fn bench2drive(records: &[RouteRecord], planned: usize) -> (f64, f64) {
    let ds = records.iter().fold(0.0, |acc, r| acc + r.score_composed) / planned as f64;
    let success = records
        .iter()
        .filter(|r| {
            (r.status == "Completed" || r.status == "Perfect")
                && r.infractions
                    .iter()
                    .all(|(k, m)| m.is_empty() || k == "min_speed_infractions")
        })
        .count();
    (ds, success as f64 / planned as f64)
}

/// Bench2Drive's route count.
pub const BENCH2DRIVE_ROUTES: usize = 220;

/// Infraction counts by kind over `records`, in first-seen key order.
pub fn infraction_counts(records: &[RouteRecord]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for r in records {
        for (k, m) in &r.infractions {
            *c.entry(k.clone()).or_insert(0) += m.len();
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding_and_messages() {
        assert_eq!(py_round(0.125, 2), 0.12);
        assert_eq!(py_round(33.3333335, 6), 33.333334);
        assert_eq!(
            outside_lanes_m("Agent went outside its route lanes for about 1.136 meters (0.13% of the completed route)"),
            Some(1.136)
        );
    }

    fn rec(id: &str, route: f64, penalty: f64, status: &str, collisions: usize) -> RouteRecord {
        RouteRecord {
            route_id: id.into(),
            index: 0,
            status: status.into(),
            infractions: vec![
                ("collisions_vehicle".into(), vec!["x".into(); collisions]),
                ("min_speed_infractions".into(), vec!["y".into()]),
            ],
            score_route: route,
            score_penalty: penalty,
            score_composed: route * penalty,
            route_length: Some(1000.0),
        }
    }

    #[test]
    fn lb2_global_of_two_routes() {
        let r = [
            rec("a", 100.0, 0.6, "Completed", 1),
            rec("b", 50.0, 1.0, "Failed - x", 0),
        ];
        let keys = vec!["collisions_vehicle".to_string()];
        let g = global(&r, 2, Rule::Lb2, &keys);
        assert_eq!(g.scores, [55.0, 75.0, 0.8]);
        assert_eq!(g.status, "Failed");
        // km driven 1 + 0.5: 1 collision / 1.5 km.
        assert_eq!(g.infractions[0].1, 0.667);
        assert_eq!(g.exceptions.len(), 1);
        // Missing routes count 0 in the mean (4 planned).
        assert_eq!(global(&r, 4, Rule::Lb2, &keys).scores[0], 27.5);
        // Bench2Drive: a collision or a failure is no success; only min-speed infractions are
        // allowed.
        assert_eq!(bench2drive(&r, 4), (27.5, 0.0));
        assert_eq!(
            bench2drive(&[rec("c", 100.0, 1.0, "Perfect", 0)], 4),
            (25.0, 0.25)
        );
    }
}
