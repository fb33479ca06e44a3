//! The kernel source: the CUDA C files under `src/cuda/kernels/`, preceded by a prelude generated
//! here — every constant the kernels share with the CPU backend (printed from the Rust constants,
//! so there is one source of truth) and the C declarations of the argument structs (generated from
//! the same macro that defines their Rust twins, so the layouts cannot drift apart).

use crate::metrics::{comfort, direction, ego_step, ttc};
use crate::sim::{controller, evaluation, idm, services, traffic, vehicle};

/// Declares a `#[repr(C)]` struct and its C declaration from one field list. Field kinds: `val T`
/// (a plain value) and `ptr T` (a device address of `T` elements, a `u64` on the Rust side).
macro_rules! c_struct {
    ($(#[$m:meta])* $name:ident, $cname:literal { $($(#[$fm:meta])* $f:ident : $kind:ident $t:tt),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name { $($(#[$fm])* pub $f: c_struct!(@rust $kind $t)),* }
        impl $name {
            /// The C declaration of this struct.
            pub const C_DECL: &'static str = concat!(
                "struct ", $cname, " {\n",
                $("  ", c_struct!(@c $kind $t), " ", stringify!($f), ";\n",)*
                "};\n"
            );
        }
    };
    (@rust val $t:tt) => { $t };
    (@rust ptr $t:tt) => { u64 };
    (@c val f64) => { "double" };
    (@c val i64) => { "i64" };
    (@c val u32) => { "u32" };
    (@c val i32) => { "int" };
    (@c ptr f64) => { "double*" };
    (@c ptr i64) => { "i64*" };
    (@c ptr u32) => { "u32*" };
    (@c ptr i32) => { "int*" };
    (@c ptr u8) => { "u8*" };
    (@c ptr DkScene) => { "const DkScene*" };
}

c_struct! {
    /// What the kernels know of one scene (indices into the shared tables of [`DkArgs`]).
    DkScene, "DkScene" {
        /// First simulated time (µs).
        start_us: val i64,
        /// The driver takes over from this time on (µs).
        driven_from_us: val i64,
        /// Arc length of the recorded ego at the start.
        gt_start_m: val f64,
        /// Recorded path length from the start (path length − gt_start_m; −gt_start_m without).
        gt_len: val f64,
        /// The IDM driver's desired speed.
        ego_top_speed: val f64,
        /// Ego box length.
        ego_len: val f64,
        /// Ego box width.
        ego_wid: val f64,
        /// Vehicle limits.
        wheelbase_m: val f64,
        /// Vehicle limits.
        max_accel_mps2: val f64,
        /// Vehicle limits.
        max_decel_mps2: val f64,
        /// Vehicle limits.
        max_steer_rad: val f64,
        /// Vehicle limits.
        max_speed_mps: val f64,
        /// First timestamp in `ts`.
        ts_off: val i32,
        /// Timestamps of the recording.
        n_ts: val i32,
        /// First sample of the ego track (track j at `sample_off + j · n_ts`).
        sample_off: val i32,
        /// Agent tracks.
        n_agents: val i32,
        /// First entry in `agent_path`.
        path_off: val i32,
        /// Polyline of the recorded ego path (−1: none).
        gt_path: val i32,
        /// Polyline of the IDM driver's route (−1: none).
        route: val i32,
        /// First entry in `drivable`.
        drv_off: val i32,
        /// Drivable polygons.
        n_drv: val i32,
        /// First lane.
        lane_off: val i32,
        /// Lanes (0: no driving-direction metric).
        n_lanes: val i32,
        /// Steps to simulate.
        n_steps: val u32,
        /// First rule of the IDM driver's route in `rule_*`.
        route_rules_off: val i32,
        /// Rules of the route.
        route_rules_n: val i32,
        /// First stop line in `sl`, `sl_idx`.
        sl_off: val i32,
        /// Stop lines.
        n_sl: val i32,
        /// First red flag in `red` (signal k at `red_off + k · n_ts + i`).
        red_off: val i32,
        /// Some stop line belongs to a signal (the red-light metric applies).
        has_signals: val i32,
        /// Some stop line belongs to a stop sign (the stop-sign metric applies).
        has_stop_signs: val i32,
        /// Some lane has a speed limit (the speed-limit metric applies).
        has_limits: val i32,
    }
}

c_struct! {
    /// The one argument of every kernel: sizes, settings and device addresses.
    DkArgs, "DkArgs" {
        /// Control step (s).
        dt_s: val f64,
        /// TTC projection step (s).
        ttc_step_s: val f64,
        /// TTC horizon (s).
        ttc_horizon_s: val f64,
        /// Control step (µs).
        dt_us: val i64,
        /// Scenes.
        scenes: ptr DkScene,
        /// Timestamps of every scene.
        ts: ptr i64,
        /// Recorded samples.
        tk_x: ptr f64,
        /// Recorded samples.
        tk_y: ptr f64,
        /// Recorded samples.
        tk_yaw: ptr f64,
        /// Recorded samples.
        tk_vx: ptr f64,
        /// Recorded samples.
        tk_vy: ptr f64,
        /// Recorded samples.
        tk_valid: ptr u8,
        /// Polyline points.
        pt_x: ptr f64,
        /// Polyline points.
        pt_y: ptr f64,
        /// Cumulative arc length per point.
        pt_cum: ptr f64,
        /// Polyline p: points `poly_start[p]..poly_start[p + 1]`.
        poly_start: ptr i32,
        /// Per scene and agent track: its IDM path polyline (−1: none).
        agent_path: ptr i32,
        /// Drivable polygons (polyline ids).
        drivable: ptr i32,
        /// Lane centre lines (polyline ids).
        lane_center: ptr i32,
        /// Lane polygons (polyline ids, −1: none).
        lane_poly: ptr i32,
        /// Lane bounding boxes (min x, min y, max x, max y).
        lane_bbox: ptr f64,
        /// Lane speed limits (m/s, NaN: none).
        lane_limit: ptr f64,
        /// Route rules: arc length.
        rule_s: ptr f64,
        /// Route rules: speed limit (m/s; a stop line's: unused).
        rule_v: ptr f64,
        /// Route rules: stop line within the scene (−1: a speed limit).
        rule_line: ptr i32,
        /// Per scene and agent track: first rule and rule count of its route (2 each).
        agent_rules: ptr i32,
        /// Stop lines: point x, y, direction x, y, half width (5 each).
        sl: ptr f64,
        /// Stop lines: signal, stop sign (2 each, −1: none).
        sl_idx: ptr i32,
        /// Red flags of every signal at every timestamp.
        red: ptr u8,
        /// State: see [`crate::state::BatchState`].
        scene_of: ptr u32,
        /// State.
        alive: ptr u8,
        /// State.
        t_us: ptr i64,
        /// State.
        ego_x: ptr f64,
        /// State.
        ego_y: ptr f64,
        /// State.
        ego_yaw: ptr f64,
        /// State.
        ego_speed: ptr f64,
        /// State.
        ego_controlled: ptr u8,
        /// State.
        plan_x: ptr f64,
        /// State.
        plan_y: ptr f64,
        /// Perturbation (dx, dy, dyaw, dspeed) per rollout.
        pert: ptr f64,
        /// The rollouts the stepper hands to the driver this step (`dk_takeover`).
        takeover: ptr u8,
        /// State.
        agent_start: ptr u32,
        /// Rollout of each agent.
        a_rollout: ptr u32,
        /// State.
        a_track: ptr u32,
        /// State.
        a_valid: ptr u8,
        /// State.
        a_x: ptr f64,
        /// State.
        a_y: ptr f64,
        /// State.
        a_yaw: ptr f64,
        /// State.
        a_speed: ptr f64,
        /// State.
        a_len: ptr f64,
        /// State.
        a_wid: ptr f64,
        /// State.
        a_static: ptr u8,
        /// State.
        a_idm: ptr u8,
        /// State.
        a_s: ptr f64,
        /// State.
        a_v0: ptr f64,
        /// State.
        a_headway: ptr f64,
        /// IDM acceleration of this step (scratch).
        a_accel: ptr f64,
        /// cos(heading) of each present agent this step (scratch, for the leader searches).
        a_cos: ptr f64,
        /// sin(heading), likewise.
        a_sin: ptr f64,
        /// The driver controls the ego this step.
        plan_active: ptr u8,
        /// Plans, [`services::PLAN_POINTS`] per rollout.
        plans_x: ptr f64,
        /// Plans.
        plans_y: ptr f64,
        /// Plans.
        plans_v: ptr f64,
        /// Ongoing contact class per agent (−1: none).
        a_contact: ptr i32,
        /// Ever collided with (TTC ignores it).
        a_collided: ptr u8,
        /// Relevant for this step's TTC (scratch).
        a_ttc: ptr u8,
        /// Comfort rings, 5 × window per rollout.
        comfort: ptr f64,
        /// Comfort ring fill, 5 per rollout.
        comfort_n: ptr i32,
        /// Driving-direction window, `dir_n` per rollout.
        dir_buf: ptr f64,
        /// Driving-direction last lane s and point, 3 per rollout.
        dir_last: ptr f64,
        /// Driving-direction window length, head, last lane, has-last: 4 per rollout.
        dir_state: ptr i32,
        /// Distance travelled.
        traveled: ptr f64,
        /// Previous ego position, 2 per rollout.
        prev: ptr f64,
        /// A previous position exists.
        has_prev: ptr u8,
        /// Traffic-rule checks' memory: last red light run, stop sign approached, stopped there,
        /// last stop sign run (4 per rollout).
        rule_mem: ptr i32,
        /// Stop signs passed along each agent's route (`BatchState::a_cleared`).
        a_cleared: ptr u32,
        /// Stop signs passed along the ego's route by the IDM driver (1 per rollout).
        ego_cleared: ptr u32,
        /// Metric values, N_METRICS per rollout.
        metrics: ptr f64,
        /// Agent-steps of this step per rollout (0: not alive at the evaluation).
        present: ptr u32,
        /// Rollouts.
        n: val u32,
        /// Agents.
        n_agents: val u32,
        /// Built-in driver on the device: 1 constant velocity, 2 IDM (0: plans from the host).
        driver_kind: val u32,
        /// Driving-direction window length.
        dir_n: val u32,
        /// Vehicles follow IDM.
        idm_traffic: val u32,
    }
}

c_struct! {
    /// The raster kernel's argument: polygons of several frames (see
    /// [`crate::video::raster::PolygonList`]) and the output pixels.
    DkRasterArgs, "DkRasterArgs" {
        /// Vertex x (px).
        vx: ptr f64,
        /// Vertex y (px).
        vy: ptr f64,
        /// Bounding box per polygon.
        bbox: ptr f64,
        /// First vertex per polygon (+ end).
        poly_start: ptr i32,
        /// 0xRRGGBB per polygon.
        colour: ptr u32,
        /// First polygon per frame (+ end).
        frame_poly: ptr i32,
        /// RGB8 pixels, frame after frame.
        out: ptr u8,
        /// Frame width (px).
        width: val u32,
        /// Frame height (px).
        height: val u32,
        /// Frames.
        frames: val u32,
        /// Background, 0xRRGGBB.
        background: val u32,
    }
}

/// The kernels, in the order of [`KERNEL_NAMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Every metric; one thread per rollout.
    Evaluate,
    /// Built-in drivers' plans; per rollout.
    Drive,
    /// Controller + vehicle model; per rollout.
    Control,
    /// IDM accelerations; per agent.
    TrafficAccel,
    /// Agents move; per agent.
    TrafficMove,
    /// Clocks advance; per rollout.
    Clock,
    /// Bird's-eye frames; per pixel (argument [`DkRasterArgs`]).
    Raster,
    /// Each agent's heading cosine and sine, once per step; per agent.
    Bodies,
    /// The takeover of the rollouts the stepper names, with their perturbation; per rollout.
    Takeover,
}

/// Entry points, indexed by [`Kernel`].
pub const KERNEL_NAMES: [&str; 9] = [
    "dk_evaluate",
    "dk_drive",
    "dk_control",
    "dk_traffic_accel",
    "dk_traffic_move",
    "dk_clock",
    "dk_raster",
    "dk_bodies",
    "dk_takeover",
];

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 9] = [
        Kernel::Evaluate,
        Kernel::Drive,
        Kernel::Control,
        Kernel::TrafficAccel,
        Kernel::TrafficMove,
        Kernel::Clock,
        Kernel::Raster,
        Kernel::Bodies,
        Kernel::Takeover,
    ];

    /// The entry point's name.
    pub fn name(self) -> &'static str {
        KERNEL_NAMES[self as usize]
    }

    /// The C type of its argument.
    pub fn args_type(self) -> &'static str {
        match self {
            Kernel::Raster => "DkRasterArgs",
            _ => "DkArgs",
        }
    }
}

const COMMON: &str = include_str!("kernels/common.h");
const GEOMETRY: &str = include_str!("kernels/geometry.h");
const STEP: &str = include_str!("kernels/step.cu");
const RASTER: &str = include_str!("kernels/raster.cu");

/// `#define NAME value` with the value printed to round-trip exactly.
fn define(out: &mut String, name: &str, v: f64) {
    use std::fmt::Write;
    // Debug prints the shortest decimal that parses back to the same f64.
    let _ = writeln!(out, "#define {name} ({v:?})");
}

/// The constants the kernels share with the CPU backend.
fn prelude() -> String {
    let mut s = String::from("// Generated by drivekit (src/cuda/source.rs): do not edit.\n");
    let lim = comfort::ComfortLimits::default();
    let ttc_default = ttc::TtcParams::default();
    for (name, v) in [
        ("DK_OFFROAD_TOL_M", ego_step::OFFROAD_TOLERANCE_M),
        ("DK_EGO_STOPPED_MPS", ego_step::EGO_STOPPED_MPS),
        ("DK_TRACK_STOPPED_MPS", ego_step::TRACK_STOPPED_MPS),
        ("DK_REAR_AXLE_FRAC", ego_step::REAR_AXLE_BEHIND_CENTRE_FRAC),
        ("DK_AHEAD_COS", ttc::AHEAD_TOLERANCE_DEG.to_radians().cos()),
        (
            "DK_BEHIND_COS",
            ttc::BEHIND_TOLERANCE_DEG.to_radians().cos(),
        ),
        ("DK_TTC_STOPPED_MPS", ttc_default.stopped_speed_mps),
        ("DK_COMFORT_MIN_LON_ACCEL", lim.min_lon_accel),
        ("DK_COMFORT_MAX_LON_ACCEL", lim.max_lon_accel),
        ("DK_COMFORT_MAX_ABS_LAT_ACCEL", lim.max_abs_lat_accel),
        ("DK_COMFORT_MAX_ABS_YAW_RATE", lim.max_abs_yaw_rate),
        ("DK_COMFORT_MAX_ABS_YAW_ACCEL", lim.max_abs_yaw_accel),
        ("DK_COMFORT_MAX_ABS_LON_JERK", lim.max_abs_lon_jerk),
        ("DK_COMFORT_MAX_ABS_MAG_JERK", lim.max_abs_mag_jerk),
        ("DK_DIR_HALF_WIDTH_M", direction::DEFAULT_HALF_WIDTH_M),
        ("DK_DIR_COMPLIANCE_M", direction::COMPLIANCE_THRESHOLD_M),
        ("DK_DIR_VIOLATION_M", direction::VIOLATION_THRESHOLD_M),
        (
            "DK_MAKING_PROGRESS_MIN_EXPERT_M",
            evaluation::MAKING_PROGRESS_MIN_EXPERT_M,
        ),
        (
            "DK_MAKING_PROGRESS_RATIO",
            evaluation::MAKING_PROGRESS_RATIO,
        ),
        ("DK_IDM_ACCEL_MPS2", crate::state::idm_defaults::ACCEL_MPS2),
        ("DK_IDM_DECEL_MPS2", crate::state::idm_defaults::DECEL_MPS2),
        ("DK_IDM_MIN_GAP_M", crate::state::idm_defaults::MIN_GAP_M),
        ("DK_IDM_HEADWAY_S", crate::state::idm_defaults::HEADWAY_S),
        ("DK_IDM_MAX_BRAKE_MPS2", idm::MAX_BRAKE_MPS2),
        ("DK_IDM_LOOKAHEAD_M", idm::LOOKAHEAD_M),
        ("DK_IDM_LATERAL_MARGIN_M", idm::LATERAL_MARGIN_M),
        ("DK_HEADING_LOOKAHEAD_M", traffic::HEADING_LOOKAHEAD_M),
        ("DK_MIN_LOOKAHEAD_M", controller::MIN_LOOKAHEAD_M),
        ("DK_LOOKAHEAD_S", controller::LOOKAHEAD_S),
        ("DK_VEHICLE_SUBSTEP_S", vehicle::SUBSTEP_S),
        ("DK_STOP_CLEAR_M", idm::STOP_CLEAR_M),
        ("DK_STOP_PASSED_M", idm::STOP_PASSED_M),
        ("DK_STOP_HOLD_MPS", idm::STOP_HOLD_MPS),
        (
            "DK_STOP_SPEED_MPS",
            crate::metrics::traffic_rules::STOP_SPEED_MPS,
        ),
        (
            "DK_STOP_PROXIMITY_M",
            crate::metrics::traffic_rules::STOP_PROXIMITY_M,
        ),
        ("DK_STOP_PAST_M", crate::metrics::traffic_rules::STOP_PAST_M),
        (
            "DK_RED_LIGHT_DISTANCE_M",
            crate::metrics::traffic_rules::RED_LIGHT_DISTANCE_M,
        ),
    ] {
        define(&mut s, name, v);
    }
    s.push_str(&format!(
        "#define DK_N_METRICS {}\n#define DK_PLAN_POINTS {}\n#define DK_COMFORT_WINDOW {}\n",
        crate::metrics::table::N_METRICS,
        services::PLAN_POINTS,
        comfort::WINDOW
    ));
    // The metric slots, generated from the metric table like the constants above.
    s.push_str(&crate::metrics::table::c_defines());
    s
}

/// The complete source NVRTC compiles (and the emulator compiles as C++).
pub fn kernel_source() -> String {
    let mut s = prelude();
    s.push_str(COMMON);
    s.push_str(DkScene::C_DECL);
    s.push_str(DkArgs::C_DECL);
    s.push_str(DkRasterArgs::C_DECL);
    s.push_str(GEOMETRY);
    s.push_str(STEP);
    s.push_str(RASTER);
    s
}

/// The kernel source plus the emulator's entry point: `dk_emulated_launch(kernel, args,
/// threads, reverse)` runs kernel number `kernel` (see [`Kernel`]) on its argument struct for
/// threads 0..threads in turn — or from the last thread to the first with `reverse`, so a test can
/// tell that no thread reads what another thread of the same launch writes.
pub fn emulator_source() -> String {
    let mut s = kernel_source();
    s.push_str(
        "\nextern \"C\" int dk_emulated_launch(int kernel, const void* args, unsigned int threads, int reverse) {\n  for (unsigned int j = 0; j < threads; j++) {\n    unsigned int i = reverse ? threads - 1 - j : j;\n    dk_emulated_tid = i;\n    switch (kernel) {\n",
    );
    for k in Kernel::ALL {
        s.push_str(&format!(
            "      case {}: {}(*(const {}*)args); break;\n",
            k as usize,
            k.name(),
            k.args_type()
        ));
    }
    s.push_str("      default: return -1;\n    }\n  }\n  return 0;\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_declarations_list_every_field_in_order() {
        assert!(DkArgs::C_DECL.starts_with("struct DkArgs {\n  double dt_s;\n"));
        assert!(DkArgs::C_DECL.contains("  const DkScene* scenes;\n"));
        assert!(DkArgs::C_DECL.ends_with("  u32 idm_traffic;\n};\n"));
        // Every pointer is 8 bytes, like the Rust u64.
        assert_eq!(std::mem::size_of::<DkScene>(), 12 * 8 + 20 * 4);
    }

    #[test]
    fn constants_print_exactly() {
        let p = prelude();
        assert!(p.contains("#define DK_OFFROAD_TOL_M (0.3)\n"), "{p}");
        let cos = ttc::AHEAD_TOLERANCE_DEG.to_radians().cos();
        let line = p
            .lines()
            .find(|l| l.starts_with("#define DK_AHEAD_COS"))
            .unwrap();
        let printed: f64 = line
            .trim_start_matches("#define DK_AHEAD_COS (")
            .trim_end_matches(')')
            .parse()
            .unwrap();
        assert_eq!(printed.to_bits(), cos.to_bits());
    }
}
