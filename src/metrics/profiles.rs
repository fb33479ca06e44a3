//! Benchmark score profiles: each peer's per-scenario score from the rollout metrics
//! ([`super::rollout_table`]), in the peer's own order of floating-point operations so that the
//! same inputs give the peer's bits (docs/scores.md cites each formula's source).

use super::rollout_table::rindex;
use super::rollout_table::ROLLOUT_METRICS;

/// A benchmark whose score drivekit reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// nuPlan's closed-loop score (CLS).
    Nuplan,
    /// NAVSIM's PDM score (v1) and extended PDM score (v2).
    Navsim,
    /// The CARLA leaderboard 2.x driving score.
    Carla,
    /// Waymax's metrics (no single score).
    Waymax,
    /// AlpaSim's scene score.
    Alpasim,
}

impl Profile {
    /// Every profile, in report order.
    pub const ALL: [Profile; 5] = [
        Profile::Nuplan,
        Profile::Navsim,
        Profile::Carla,
        Profile::Waymax,
        Profile::Alpasim,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Nuplan => "nuplan",
            Profile::Navsim => "navsim",
            Profile::Carla => "carla",
            Profile::Waymax => "waymax",
            Profile::Alpasim => "alpasim",
        }
    }

    /// The profile named `s`.
    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == s)
    }

    /// A comma-separated list of profile names (`all`: every profile; `none`: no profile).
    pub fn parse_list(s: &str) -> Result<Vec<Profile>, UnknownProfile> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => out.extend(Profile::ALL),
                "none" => {}
                _ => {
                    out.push(Profile::parse(name).ok_or_else(|| UnknownProfile(name.to_string()))?)
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The score columns it produces, in order.
    pub fn scores(self) -> &'static [&'static str] {
        match self {
            Profile::Nuplan => &[NUPLAN_CLS],
            Profile::Navsim => &[NAVSIM_PDMS, NAVSIM_EPDMS],
            Profile::Carla => &[CARLA_DS, CARLA_INFRACTION_PENALTY],
            Profile::Waymax => &[
                ROLLOUT_METRICS[rindex::WAYMAX_LOG_DIVERGENCE].name,
                ROLLOUT_METRICS[rindex::WAYMAX_OVERLAP].name,
                ROLLOUT_METRICS[rindex::WAYMAX_OFFROAD].name,
                ROLLOUT_METRICS[rindex::WAYMAX_KINEMATIC_INFEASIBILITY].name,
                ROLLOUT_METRICS[rindex::WAYMAX_ROUTE_PROGRESS_RATIO].name,
            ],
            Profile::Alpasim => &[ALPASIM_SCORE],
        }
    }

    /// The metrics it cannot do without (a run lacking one leaves the profile out, saying which).
    pub fn required(self) -> Vec<&'static str> {
        let n = |i: usize| ROLLOUT_METRICS[i].name;
        match self {
            Profile::Nuplan => vec![
                n(rindex::NUPLAN_NO_EGO_AT_FAULT_COLLISIONS),
                n(rindex::NUPLAN_DRIVABLE_AREA_COMPLIANCE),
                n(rindex::NUPLAN_EGO_IS_MAKING_PROGRESS),
                n(rindex::NUPLAN_EGO_PROGRESS_ALONG_EXPERT_ROUTE),
                n(rindex::NUPLAN_TIME_TO_COLLISION_WITHIN_BOUND),
                n(rindex::NUPLAN_EGO_IS_COMFORTABLE),
            ],
            Profile::Navsim => vec![
                n(rindex::NAVSIM_NO_AT_FAULT_COLLISIONS),
                n(rindex::NUPLAN_DRIVABLE_AREA_COMPLIANCE),
                n(rindex::EGO_ROUTE_PROGRESS_M),
                n(rindex::EXPERT_ROUTE_PROGRESS_M),
                n(rindex::NAVSIM_TIME_TO_COLLISION_WITHIN_BOUND),
                n(rindex::NUPLAN_EGO_IS_COMFORTABLE),
            ],
            Profile::Carla => vec![
                n(rindex::CARLA_ROUTE_COMPLETION),
                n(rindex::CARLA_COLLISIONS_PEDESTRIAN),
                n(rindex::CARLA_COLLISIONS_VEHICLE),
                n(rindex::CARLA_COLLISIONS_LAYOUT),
                n(rindex::CARLA_RED_LIGHT),
                n(rindex::CARLA_STOP_SIGN),
            ],
            Profile::Waymax => self.scores().to_vec(),
            Profile::Alpasim => vec![
                "gt_dist_traveled_m",
                "progress_clipped_rel",
                "collision_at_fault",
                "offroad",
            ],
        }
    }

    /// How the peer averages over scenarios that failed or could not be scored: nuPlan drops
    /// failed simulations, NAVSIM averages the valid rows, Waymax the valid values;
    /// CARLA/Bench2Drive and AlpaSim count a failed or missing route as 0.
    pub fn counts_failures_as_zero(self) -> bool {
        matches!(self, Profile::Carla | Profile::Alpasim)
    }

    /// The peer's convention in a few words (for the report).
    pub fn convention(self) -> &'static str {
        match self {
            Profile::Nuplan => "nuPlan: failed dropped",
            Profile::Navsim => "NAVSIM: valid rows",
            Profile::Carla => "CARLA: failed = 0",
            Profile::Waymax => "Waymax: valid values",
            Profile::Alpasim => "AlpaSim: failed = 0",
        }
    }

    /// The metrics it uses when present and does without otherwise, with what it does then
    /// (said in the report).
    pub fn optional(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::Nuplan => &[
                ("nuplan_driving_direction_compliance", "nuplan_driving_direction_compliance (no lanes): multiplier left out, as nuPlan skips a metric without score"),
                ("nuplan_speed_limit_compliance", "nuplan_speed_limit_compliance (no speed limits): left out of the weighted mean, as nuPlan's aggregator skips it"),
            ],
            Profile::Navsim => &[
                ("nuplan_driving_direction_compliance", "nuplan_driving_direction_compliance (no lanes): navsim_epdms needs DDC, not computed"),
                ("navsim_lane_keeping", "navsim_lane_keeping (no route): navsim_epdms needs LK, not computed"),
            ],
            Profile::Carla => &[(
                "carla_outside_route_lanes",
                "carla_outside_route_lanes (no lanes): taken as 0 %",
            )],
            Profile::Waymax | Profile::Alpasim => &[],
        }
    }

    /// The profile's scores of one rollout ([`Profile::scores`] order) from its metric values
    /// (`get`: per-trajectory values by name); `None` where an input is missing.
    pub fn score(self, get: &dyn Fn(&str) -> Option<f64>) -> Vec<Option<f64>> {
        let g = |i: usize| get(ROLLOUT_METRICS[i].name).filter(|v| !v.is_nan());
        match self {
            Profile::Nuplan => {
                let (Some(nc), Some(dac), Some(mp), Some(ep), Some(ttc), Some(c)) = (
                    g(rindex::NUPLAN_NO_EGO_AT_FAULT_COLLISIONS),
                    g(rindex::NUPLAN_DRIVABLE_AREA_COMPLIANCE),
                    g(rindex::NUPLAN_EGO_IS_MAKING_PROGRESS),
                    g(rindex::NUPLAN_EGO_PROGRESS_ALONG_EXPERT_ROUTE),
                    g(rindex::NUPLAN_TIME_TO_COLLISION_WITHIN_BOUND),
                    g(rindex::NUPLAN_EGO_IS_COMFORTABLE),
                ) else {
                    return vec![None];
                };
                let mut multipliers = vec![nc, dac, mp];
                multipliers.extend(g(rindex::NUPLAN_DRIVING_DIRECTION_COMPLIANCE));
                let weighted = [
                    (5.0, Some(ep)),
                    (5.0, Some(ttc)),
                    (4.0, g(rindex::NUPLAN_SPEED_LIMIT_COMPLIANCE)),
                    (2.0, Some(c)),
                ];
                vec![Some(nuplan_cls(&multipliers, &weighted))]
            }
            Profile::Navsim => {
                let (Some(nc), Some(dac), Some(ego), Some(expert), Some(ttc), Some(c)) = (
                    g(rindex::NAVSIM_NO_AT_FAULT_COLLISIONS),
                    g(rindex::NUPLAN_DRIVABLE_AREA_COMPLIANCE),
                    g(rindex::EGO_ROUTE_PROGRESS_M),
                    g(rindex::EXPERT_ROUTE_PROGRESS_M),
                    g(rindex::NAVSIM_TIME_TO_COLLISION_WITHIN_BOUND),
                    g(rindex::NUPLAN_EGO_IS_COMFORTABLE),
                ) else {
                    return vec![None, None];
                };
                let ddc = g(rindex::NUPLAN_DRIVING_DIRECTION_COMPLIANCE);
                let ep1 = navsim_ego_progress_v1(ego, expert, nc * dac);
                let pdms = navsim_pdms(nc, dac, ep1, ttc, c, ddc.unwrap_or(1.0));
                let tlc = g(rindex::NAVSIM_TRAFFIC_LIGHT_COMPLIANCE).unwrap_or(1.0);
                let epdms = ddc.zip(g(rindex::NAVSIM_LANE_KEEPING)).map(|(ddc, lk)| {
                    let ep2 = navsim_ego_progress_v2(ego, expert, nc * dac * tlc * ddc);
                    navsim_epdms(nc, dac, ddc, tlc, ep2, ttc, lk, c, None)
                });
                vec![Some(pdms), epdms]
            }
            Profile::Carla => {
                let count = |i: usize| g(i).map(|v| v.max(0.0) as u32);
                let (Some(rc), Some(ped), Some(veh), Some(lay), Some(red), Some(stop)) = (
                    g(rindex::CARLA_ROUTE_COMPLETION),
                    count(rindex::CARLA_COLLISIONS_PEDESTRIAN),
                    count(rindex::CARLA_COLLISIONS_VEHICLE),
                    count(rindex::CARLA_COLLISIONS_LAYOUT),
                    count(rindex::CARLA_RED_LIGHT),
                    count(rindex::CARLA_STOP_SIGN),
                ) else {
                    return vec![None, None];
                };
                let penalty = carla_penalty(&CarlaInfractions {
                    pedestrian: ped,
                    vehicle: veh,
                    layout: lay,
                    red_light: red,
                    stop_sign: stop,
                    outside_route_lanes_pct: g(rindex::CARLA_OUTSIDE_ROUTE_LANES).unwrap_or(0.0),
                    min_speed_pct: Vec::new(),
                });
                vec![Some(carla_ds(rc, penalty)), Some(penalty)]
            }
            Profile::Waymax => self
                .scores()
                .iter()
                .map(|n| get(n).filter(|v| !v.is_nan()))
                .collect(),
            Profile::Alpasim => vec![scene_score(get).ok().map(|s| s.score)],
        }
    }
}

/// NAVSIM v1.1's EP of the evaluated trajectory against one reference (drivekit: the recorded
/// ego, where NAVSIM takes PDM-Closed): raw progress clipped at 0, masked by the trajectory's
/// multiplier product; over 5 m of the larger masked progress, the ratio; else 1 (0 when the
/// multipliers are 0). `pdm_scorer.py` `_aggregate_scores` @ v1.1.
pub fn navsim_ego_progress_v1(ego_m: f64, reference_m: f64, multipliers: f64) -> f64 {
    let ego = ego_m.max(0.0) * multipliers;
    let max = ego.max(reference_m.max(0.0));
    if max > NAVSIM_PROGRESS_THRESHOLD_M {
        ego / max
    } else if multipliers == 0.0 {
        0.0
    } else {
        1.0
    }
}

/// NAVSIM v2's EP: the raw progress over the larger masked progress, clipped to [0, 1]; 1 under
/// 5 m (`_aggregate_pdm_scores` @ v2).
pub fn navsim_ego_progress_v2(ego_m: f64, reference_m: f64, multipliers: f64) -> f64 {
    let raw = ego_m.max(0.0);
    let max = (raw * multipliers).max(reference_m.max(0.0));
    if max > NAVSIM_PROGRESS_THRESHOLD_M {
        (raw / max).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

/// NAVSIM's `progress_distance_threshold` (m, v1.1 and v2).
pub const NAVSIM_PROGRESS_THRESHOLD_M: f64 = 5.0;

/// AlpaSim's scene score of one trajectory (DESIGN §4.9, `scene_score.py`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SceneScore {
    /// 0 on failure, else the progress score.
    pub score: f64,
    /// 1.0 under 5 m of recorded motion, else min(clamp(progress, 0, 1) / 0.8, 1).
    pub progress_score: f64,
    /// `collision_at_fault`, `offroad` or `left_corridor_laterally`; `None` when passed.
    pub failure_reason: Option<&'static str>,
}

/// Recorded ego motion under which a scene always scores full progress (m).
pub const MIN_GT_DISTANCE_FOR_FULL_SCORE_M: f64 = 5.0;
/// Progress at which the progress score saturates.
pub const PROGRESS_SATURATION: f64 = 0.8;

/// Why a trajectory has no scene score.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    /// A metric the score needs is absent.
    #[error("metric `{0}` is missing")]
    Missing(&'static str),
    /// A metric the score needs is NaN or infinite.
    #[error("metric `{0}` is not finite ({1})")]
    NotFinite(&'static str, f64),
}

/// AlpaSim's scene score from a trajectory's values; `Err` names the metric that is missing or
/// not finite.
pub fn scene_score(get: impl Fn(&str) -> Option<f64>) -> Result<SceneScore, ScoreError> {
    let need = |n: &'static str| -> Result<f64, ScoreError> {
        match get(n) {
            Some(v) if v.is_finite() => Ok(v),
            Some(v) => Err(ScoreError::NotFinite(n, v)),
            None => Err(ScoreError::Missing(n)),
        }
    };
    let gt = need("gt_dist_traveled_m")?;
    let progress_score = if gt < MIN_GT_DISTANCE_FOR_FULL_SCORE_M {
        1.0
    } else {
        (need("progress_clipped_rel")?.clamp(0.0, 1.0) / PROGRESS_SATURATION).min(1.0)
    };
    let failure_reason = if need("collision_at_fault")? != 0.0 {
        Some("collision_at_fault")
    } else if need("offroad")? != 0.0 {
        Some("offroad")
    } else if get("left_corridor_laterally").is_some_and(|v| v != 0.0) {
        Some("left_corridor_laterally")
    } else {
        None
    };
    Ok(SceneScore {
        score: if failure_reason.is_some() {
            0.0
        } else {
            progress_score
        },
        progress_score,
        failure_reason,
    })
}

/// A profile name that is not one of [`Profile::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown score profile `{0}` (known: nuplan, navsim, carla, waymax, alpasim, all, none)")]
pub struct UnknownProfile(pub String);

/// nuPlan's closed-loop score per scenario.
pub const NUPLAN_CLS: &str = "nuplan_cls";
/// NAVSIM v1's PDM score.
pub const NAVSIM_PDMS: &str = "navsim_pdms";
/// NAVSIM v2's extended PDM score.
pub const NAVSIM_EPDMS: &str = "navsim_epdms";
/// CARLA's driving score (route completion × infraction penalty), in percent.
pub const CARLA_DS: &str = "carla_ds";
/// CARLA's infraction penalty (product of the per-event factors).
pub const CARLA_INFRACTION_PENALTY: &str = "carla_infraction_penalty";
/// AlpaSim's scene score.
pub const ALPASIM_SCORE: &str = "alpasim_score";

/// nuPlan's CLS from its metric scores: the product of the multiplier metrics times the weighted
/// mean of the others, metrics without a score (`None`) left out of the mean as nuPlan's
/// aggregator does (`weighted_average_metric_aggregator.py`).
pub fn nuplan_cls(multipliers: &[f64], weighted: &[(f64, Option<f64>)]) -> f64 {
    let product: f64 = multipliers.iter().product();
    let (mut num, mut den) = (0.0, 0.0);
    for &(w, s) in weighted {
        if let Some(s) = s {
            num += w * s;
            den += w;
        }
    }
    let mean = if den > 0.0 { num / den } else { 0.0 };
    product * mean
}

/// NAVSIM v1.1's PDM score: `NC · DAC · ((5 EP + 5 TTC + 2 C + 0 DDC) / 12)`, in NAVSIM's order
/// of operations (`pdm_scorer.py` `_aggregate_scores`: product of the multiplicative metrics
/// times the weighted sum over the weight sum).
pub fn navsim_pdms(nc: f64, dac: f64, ep: f64, ttc: f64, c: f64, ddc: f64) -> f64 {
    let multiplicative = nc * dac;
    let weighted = 5.0 * ep + 5.0 * ttc + 2.0 * c + 0.0 * ddc;
    multiplicative * (weighted / 12.0)
}

/// NAVSIM v2's extended PDM score: `NC · DAC · DDC · TLC · (5 EP + 5 TTC + 2 LK + 2 HC + 2 EC) /
/// 16`, the EC term and its weight dropped when EC is absent (`/ 14`), as v2's
/// `compute_final_scores` does for a NaN EC.
#[allow(clippy::too_many_arguments)]
pub fn navsim_epdms(
    nc: f64,
    dac: f64,
    ddc: f64,
    tlc: f64,
    ep: f64,
    ttc: f64,
    lk: f64,
    hc: f64,
    ec: Option<f64>,
) -> f64 {
    let multiplicative = nc * dac * ddc * tlc;
    let (sum, weights) = match ec {
        Some(ec) => (5.0 * ep + 5.0 * ttc + 2.0 * lk + 2.0 * hc + 2.0 * ec, 16.0),
        None => (5.0 * ep + 5.0 * ttc + 2.0 * lk + 2.0 * hc, 14.0),
    };
    multiplicative * (sum / weights)
}

/// CARLA leaderboard 2.x penalty factors per infraction (`statistics_manager.py`, PENALTY_VALUE_DICT).
pub mod carla_penalty {
    /// Collision with a pedestrian.
    pub const PEDESTRIAN: f64 = 0.5;
    /// Collision with a vehicle.
    pub const VEHICLE: f64 = 0.6;
    /// Collision with the layout (static objects).
    pub const LAYOUT: f64 = 0.65;
    /// Red light run.
    pub const RED_LIGHT: f64 = 0.7;
    /// Stop sign run.
    pub const STOP_SIGN: f64 = 0.8;
    /// Minimum-speed infraction: the factor is `1 − MIN_SPEED_WEIGHT · (1 − pct/100)`.
    pub const MIN_SPEED_WEIGHT: f64 = 0.3;
}

/// CARLA's per-route infractions, as its criteria count them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CarlaInfractions {
    /// Collisions with pedestrians.
    pub pedestrian: u32,
    /// Collisions with vehicles.
    pub vehicle: u32,
    /// Collisions with the layout.
    pub layout: u32,
    /// Red lights run.
    pub red_light: u32,
    /// Stop signs run.
    pub stop_sign: u32,
    /// Percent of the route driven outside its lanes (0: none).
    pub outside_route_lanes_pct: f64,
    /// Each minimum-speed infraction's speed percentage.
    pub min_speed_pct: Vec<f64>,
}

/// CARLA's infraction penalty: the product, event by event, of the factors
/// (`statistics_manager.py` `compute_route_statistics`: `score_penalty *= PENALTY_VALUE_DICT[…]`,
/// outside route lanes `*= 1 − pct / 100`, min speed `*= 1 − 0.3 (1 − pct / 100)`), in CARLA's
/// order of events by type.
pub fn carla_penalty(inf: &CarlaInfractions) -> f64 {
    let mut p = 1.0;
    for _ in 0..inf.pedestrian {
        p *= carla_penalty::PEDESTRIAN;
    }
    for _ in 0..inf.vehicle {
        p *= carla_penalty::VEHICLE;
    }
    for _ in 0..inf.layout {
        p *= carla_penalty::LAYOUT;
    }
    for _ in 0..inf.red_light {
        p *= carla_penalty::RED_LIGHT;
    }
    for _ in 0..inf.stop_sign {
        p *= carla_penalty::STOP_SIGN;
    }
    if inf.outside_route_lanes_pct > 0.0 {
        p *= 1.0 - inf.outside_route_lanes_pct / 100.0;
    }
    for pct in &inf.min_speed_pct {
        p *= 1.0 - carla_penalty::MIN_SPEED_WEIGHT * (1.0 - pct / 100.0);
    }
    p
}

/// CARLA's driving score of a route (percent): `max(route_completion · penalty, 0)`.
pub fn carla_ds(route_completion_pct: f64, penalty: f64) -> f64 {
    (route_completion_pct * penalty).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navsim_constant_velocity_row() {
        // NAVSIM's published result row for the constant-velocity agent, token dd1e26943afe52bc:
        // NC 1, DAC 1, DDC 1, EP 0.8906223480884186, TTC 1, C 1 → score 0.9544259783701744.
        let s = navsim_pdms(1.0, 1.0, 0.8906223480884186, 1.0, 1.0, 1.0);
        assert_eq!(s, 0.9544259783701744);
    }

    #[test]
    fn carla_one_zero_era_route() {
        // One pedestrian, two vehicle collisions and a red light: 0.5 · 0.6 · 0.6 · 0.7 = 0.126;
        // route completion 63.08768703721207 % → 7.949048566688721.
        let inf = CarlaInfractions {
            pedestrian: 1,
            vehicle: 2,
            red_light: 1,
            ..Default::default()
        };
        let p = carla_penalty(&inf);
        assert_eq!(p, 0.126);
        assert_eq!(carla_ds(63.08768703721207, p), 7.949048566688721);
    }

    #[test]
    fn nuplan_cls_skips_metrics_without_score() {
        // 1 · 0.5 · (5·0.8 + 5·1 + 2·1) / 12, speed limit absent (no limits in the map).
        let s = nuplan_cls(
            &[1.0, 0.5, 1.0, 1.0],
            &[
                (5.0, Some(0.8)),
                (5.0, Some(1.0)),
                (4.0, None),
                (2.0, Some(1.0)),
            ],
        );
        assert!((s - 0.5 * 11.0 / 12.0).abs() < 1e-15);
        assert_eq!(nuplan_cls(&[0.0], &[(5.0, Some(1.0))]), 0.0);
    }

    #[test]
    fn epdms_drops_the_missing_extended_comfort() {
        let with = navsim_epdms(1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, Some(0.0));
        assert_eq!(with, (2.5 + 5.0 + 2.0 + 2.0) / 16.0);
        let without = navsim_epdms(1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, None);
        assert_eq!(without, (2.5 + 5.0 + 2.0 + 2.0) / 14.0);
        assert!(Profile::ALL
            .iter()
            .all(|p| Profile::parse(p.name()) == Some(*p)));
    }
}
