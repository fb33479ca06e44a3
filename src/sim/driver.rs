//! Built-in drivers (the policy under test): log replay (the expert: the ego is its recording),
//! constant velocity (after the takeover the ego keeps its heading and speed, nuPlan's simplest
//! baseline) and an IDM lane follower (keeps to its route — the lane-graph route from its start
//! lane to the lane its recording ends on, else the recorded path, extended straight past its
//! end — at the recording's top speed capped by the lanes' speed limits, braking for whatever is
//! ahead in its lane, for red lights and for stop signs until it has stopped, as nuPlan's IDM
//! planner does along its route). Drivers return planned trajectories; the
//! controller tracks them with the vehicle model.

use super::idm::{self, Body};
use super::services::{DeviceDriver, DriverService, Observations, Plans, PLAN_POINTS};
use crate::state::{BatchState, SceneCtx};

/// The policy under test (a command-line value: `log-replay`, `constant-velocity`, `idm`,
/// `external`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Driver {
    /// The ego follows its recording (the expert).
    #[default]
    LogReplay,
    /// After the takeover the ego keeps its heading and speed (nuPlan's simplest baseline).
    ConstantVelocity,
    /// After the takeover the ego follows its route under IDM, braking for what is ahead.
    Idm,
    /// A policy served over AlpaSim's EgodriverService gRPC contract (--driver-address, or
    /// driver.addresses in the config; see `super::external::ExternalDriver`).
    External,
}

impl Driver {
    /// Name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self.builtin() {
            Some(d) => d.name(),
            None => "external",
        }
    }

    /// The service implementing a built-in driver (`None` for [`Driver::External`], which needs
    /// a connection: see [`super::external::ExternalDriver::connect`]).
    pub fn builtin(self) -> Option<&'static dyn DriverService> {
        match self {
            Driver::LogReplay => Some(&LogReplayDriver),
            Driver::ConstantVelocity => Some(&ConstantVelocityDriver),
            Driver::Idm => Some(&IdmDriver),
            Driver::External => None,
        }
    }
}

/// The expert: never plans; the controller keeps the ego on its recording.
#[derive(Debug, Clone, Copy)]
pub struct LogReplayDriver;

impl DriverService for LogReplayDriver {
    fn name(&self) -> &'static str {
        "log-replay"
    }
    fn on_device(&self) -> Option<DeviceDriver> {
        Some(DeviceDriver::Replay)
    }
    fn drives(&self) -> bool {
        false
    }
    fn drive(&self, st: &BatchState, _: &[SceneCtx], _: &Observations, plans: &mut Plans, _: f64) {
        plans.active[..st.len()].fill(false);
    }
}

/// Straight ahead at the current speed.
#[derive(Debug, Clone, Copy)]
pub struct ConstantVelocityDriver;

impl DriverService for ConstantVelocityDriver {
    fn name(&self) -> &'static str {
        "constant-velocity"
    }
    fn on_device(&self) -> Option<DeviceDriver> {
        Some(DeviceDriver::ConstantVelocity)
    }
    fn drives(&self) -> bool {
        true
    }
    fn drive(
        &self,
        st: &BatchState,
        _: &[SceneCtx],
        _: &Observations,
        plans: &mut Plans,
        dt_s: f64,
    ) {
        for r in 0..st.len() {
            plans.active[r] = st.alive[r] && st.ego_controlled[r];
            if plans.active[r] {
                self.drive_one(st, r, plans, dt_s);
            }
        }
    }
}

/// IDM along the route.
#[derive(Debug, Clone, Copy)]
pub struct IdmDriver;

impl DriverService for IdmDriver {
    fn name(&self) -> &'static str {
        "idm"
    }
    fn on_device(&self) -> Option<DeviceDriver> {
        Some(DeviceDriver::Idm)
    }
    fn drives(&self) -> bool {
        true
    }
    fn drive(
        &self,
        st: &BatchState,
        scenes: &[SceneCtx],
        _obs: &Observations,
        plans: &mut Plans,
        dt_s: f64,
    ) {
        for r in 0..st.len() {
            plans.active[r] = st.alive[r] && st.ego_controlled[r];
            if !plans.active[r] {
                continue;
            }
            let ctx = &scenes[st.scene[r] as usize];
            let Some(route) = ctx.route.as_ref() else {
                // No recorded path to follow: hold the lane straight ahead.
                ConstantVelocityDriver.drive_one(st, r, plans, dt_s);
                continue;
            };
            let me = idm::ego_body(st, r, ctx);
            let others: Vec<Body> = st
                .agents(r)
                .filter(|&a| st.a_valid[a])
                .map(|a| idm::agent_body(st, a))
                .collect();
            let mut s = route.line.project([me.x, me.y]).1;
            let ti = crate::metrics::traffic_rules::ts_index(&ctx.scene.timestamps_us, st.t_us[r]);
            let mut cleared = plans.cleared[r];
            let (limit, stop) = idm::route_constraints(
                route,
                &ctx.rules,
                s,
                me.len / 2.0,
                me.speed,
                ti,
                &mut cleared,
            );
            plans.cleared[r] = cleared;
            let lead = idm::nearest_leader(idm::leader(&me, others.iter()), stop);
            let a = idm::acceleration(
                me.speed,
                ctx.ego_top_speed.min(limit),
                crate::state::idm_defaults::HEADWAY_S,
                lead,
            );
            let mut v = me.speed;
            for k in 0..PLAN_POINTS {
                let v_next = (v + a * dt_s).max(0.0);
                s += (v + v_next) / 2.0 * dt_s;
                v = v_next;
                let (p, _) = route.line.at(s);
                plans.x[r * PLAN_POINTS + k] = p[0];
                plans.y[r * PLAN_POINTS + k] = p[1];
                plans.v[r * PLAN_POINTS + k] = v;
            }
        }
    }
}

impl ConstantVelocityDriver {
    /// Plans rollout `r` straight ahead at its speed.
    fn drive_one(&self, st: &BatchState, r: usize, plans: &mut Plans, dt_s: f64) {
        let (s, c) = st.ego_yaw[r].sin_cos();
        let v = st.ego_speed[r];
        for k in 0..PLAN_POINTS {
            let d = v * dt_s * (k + 1) as f64;
            plans.x[r * PLAN_POINTS + k] = st.ego_x[r] + c * d;
            plans.y[r * PLAN_POINTS + k] = st.ego_y[r] + s * d;
            plans.v[r * PLAN_POINTS + k] = v;
        }
    }
}
