//! The scenes of a shard packed into flat tables for the kernels (uploaded once per shard), and
//! a chunk's [`BatchState`] with its metric memory on the device.

use super::device::{CudaError, DevBuf, Device};
use super::source::{DkArgs, DkScene};
use crate::geometry::Polyline;
use crate::metrics::table::N_METRICS;
use crate::sim::services::PLAN_POINTS;
use crate::state::{BatchState, SceneCtx};

/// Host-side tables of every scene.
#[derive(Debug, Default)]
pub struct SceneTables {
    /// Per scene.
    pub scenes: Vec<DkScene>,
    ts: Vec<i64>,
    tk: [Vec<f64>; 5],
    tk_valid: Vec<u8>,
    pt: [Vec<f64>; 3],
    poly_start: Vec<i32>,
    agent_path: Vec<i32>,
    drivable: Vec<i32>,
    lane_center: Vec<i32>,
    lane_poly: Vec<i32>,
    lane_bbox: Vec<f64>,
    lane_limit: Vec<f64>,
    rule_s: Vec<f64>,
    rule_v: Vec<f64>,
    rule_line: Vec<i32>,
    agent_rules: Vec<i32>,
    sl: Vec<f64>,
    sl_idx: Vec<i32>,
    red: Vec<u8>,
}

impl SceneTables {
    fn push_points(&mut self, pts: &[[f64; 2]], cum: Option<&[f64]>) -> i32 {
        let id = self.poly_start.len() as i32 - 1;
        for (i, p) in pts.iter().enumerate() {
            self.pt[0].push(p[0]);
            self.pt[1].push(p[1]);
            self.pt[2].push(cum.map_or(0.0, |c| c[i]));
        }
        self.poly_start.push(self.pt[0].len() as i32);
        id
    }

    fn push_polyline(&mut self, p: &Polyline) -> i32 {
        self.push_points(p.points(), Some(p.cum()))
    }

    /// Appends a route's rules; returns (first, count).
    fn push_rules(&mut self, r: &crate::state::Route) -> (i32, i32) {
        use crate::state::PathRule;
        let off = self.rule_s.len() as i32;
        for rule in &r.rules {
            let (s, v, line) = match *rule {
                PathRule::Limit { s, mps } => (s, mps, -1),
                PathRule::Stop { s, line } => (s, f64::NAN, line as i32),
            };
            self.rule_s.push(s);
            self.rule_v.push(v);
            self.rule_line.push(line);
        }
        (off, r.rules.len() as i32)
    }

    /// Packs `scenes`.
    pub fn build(scenes: &[SceneCtx]) -> SceneTables {
        let mut t = SceneTables {
            poly_start: vec![0],
            ..SceneTables::default()
        };
        for ctx in scenes {
            let sc = &ctx.scene;
            let n_ts = sc.timestamps_us.len();
            let ts_off = t.ts.len() as i32;
            t.ts.extend_from_slice(&sc.timestamps_us);
            let sample_off = t.tk_valid.len() as i32;
            for track in std::iter::once(&sc.ego).chain(sc.agents.iter()) {
                for (dst, src) in
                    t.tk.iter_mut()
                        .zip([&track.x, &track.y, &track.yaw, &track.vx, &track.vy])
                {
                    dst.extend_from_slice(&src[..n_ts]);
                }
                t.tk_valid
                    .extend(track.valid[..n_ts].iter().map(|v| u8::from(*v)));
            }
            let path_off = t.agent_path.len() as i32;
            for p in &ctx.agent_paths {
                let id = p.as_ref().map_or(-1, |r| t.push_polyline(&r.line));
                t.agent_path.push(id);
                let (off, n) = p.as_ref().map_or((0, 0), |r| t.push_rules(r));
                t.agent_rules.extend([off, n]);
            }
            let gt_path = ctx.gt_path.as_ref().map_or(-1, |p| t.push_polyline(p));
            let route = ctx.route.as_ref().map_or(-1, |r| t.push_polyline(&r.line));
            let (route_rules_off, route_rules_n) =
                ctx.route.as_ref().map_or((0, 0), |r| t.push_rules(r));
            let sl_off = t.sl_idx.len() as i32 / 2;
            for l in &ctx.rules.lines {
                t.sl.extend([l.p[0], l.p[1], l.dir[0], l.dir[1], l.half_width]);
                t.sl_idx.extend([l.signal, l.sign]);
            }
            let red_off = t.red.len() as i32;
            t.red.extend_from_slice(&ctx.rules.red);
            let drv_off = t.drivable.len() as i32;
            for poly in &ctx.drivable {
                let id = t.push_points(poly, None);
                t.drivable.push(id);
            }
            let lane_off = t.lane_center.len() as i32;
            if let Some(lanes) = ctx.lanes.as_ref() {
                for (i, (center, polygon, bbox)) in lanes.lanes().enumerate() {
                    t.lane_limit.push(lanes.speed_limit(i).unwrap_or(f64::NAN));
                    let c = t.push_polyline(center);
                    let p = polygon.map_or(-1, |p| t.push_points(p, None));
                    t.lane_center.push(c);
                    t.lane_poly.push(p);
                    t.lane_bbox.extend_from_slice(&bbox);
                }
            }
            let p = &ctx.ego_params;
            t.scenes.push(DkScene {
                start_us: ctx.start_us,
                driven_from_us: ctx.driven_from_us,
                gt_start_m: ctx.gt_start_m,
                gt_len: ctx.gt_path.as_ref().map_or(0.0, |p| p.length()) - ctx.gt_start_m,
                ego_top_speed: ctx.ego_top_speed,
                ego_len: sc.ego.length_m,
                ego_wid: sc.ego.width_m,
                wheelbase_m: p.wheelbase_m,
                max_accel_mps2: p.max_accel_mps2,
                max_decel_mps2: p.max_decel_mps2,
                max_steer_rad: p.max_steer_rad,
                max_speed_mps: p.max_speed_mps,
                ts_off,
                n_ts: n_ts as i32,
                sample_off,
                n_agents: sc.agents.len() as i32,
                path_off,
                gt_path,
                route,
                drv_off,
                n_drv: ctx.drivable.len() as i32,
                lane_off,
                n_lanes: t.lane_center.len() as i32 - lane_off,
                n_steps: ctx.n_steps,
                route_rules_off,
                route_rules_n,
                sl_off,
                n_sl: ctx.rules.lines.len() as i32,
                red_off,
                has_signals: i32::from(ctx.rules.has_signals()),
                has_stop_signs: i32::from(ctx.rules.has_stop_signs()),
                has_limits: i32::from(ctx.lanes.as_ref().is_some_and(|l| l.has_speed_limits())),
            });
        }
        t
    }

    /// Uploads the tables.
    pub fn upload(&self, dev: &Device) -> Result<DeviceTables, CudaError> {
        let mut held = Held::default();
        let args = DkArgs {
            scenes: held.keep(dev.upload_new(&self.scenes)?),
            ts: held.keep(dev.upload_new(&self.ts)?),
            tk_x: held.keep(dev.upload_new(&self.tk[0])?),
            tk_y: held.keep(dev.upload_new(&self.tk[1])?),
            tk_yaw: held.keep(dev.upload_new(&self.tk[2])?),
            tk_vx: held.keep(dev.upload_new(&self.tk[3])?),
            tk_vy: held.keep(dev.upload_new(&self.tk[4])?),
            tk_valid: held.keep(dev.upload_new(&self.tk_valid)?),
            pt_x: held.keep(dev.upload_new(&self.pt[0])?),
            pt_y: held.keep(dev.upload_new(&self.pt[1])?),
            pt_cum: held.keep(dev.upload_new(&self.pt[2])?),
            poly_start: held.keep(dev.upload_new(&self.poly_start)?),
            agent_path: held.keep(dev.upload_new(&self.agent_path)?),
            drivable: held.keep(dev.upload_new(&self.drivable)?),
            lane_center: held.keep(dev.upload_new(&self.lane_center)?),
            lane_poly: held.keep(dev.upload_new(&self.lane_poly)?),
            lane_bbox: held.keep(dev.upload_new(&self.lane_bbox)?),
            lane_limit: held.keep(dev.upload_new(&self.lane_limit)?),
            rule_s: held.keep(dev.upload_new(&self.rule_s)?),
            rule_v: held.keep(dev.upload_new(&self.rule_v)?),
            rule_line: held.keep(dev.upload_new(&self.rule_line)?),
            agent_rules: held.keep(dev.upload_new(&self.agent_rules)?),
            sl: held.keep(dev.upload_new(&self.sl)?),
            sl_idx: held.keep(dev.upload_new(&self.sl_idx)?),
            red: held.keep(dev.upload_new(&self.red)?),
            ..DkArgs::default()
        };
        Ok(DeviceTables { held, args })
    }
}

/// Device buffers kept alive for the kernels, each handed out as its address when kept.
#[derive(Default)]
struct Held(Vec<DevBuf>);

impl Held {
    fn keep(&mut self, b: DevBuf) -> u64 {
        let addr = b.addr;
        self.0.push(b);
        addr
    }

    fn bytes(&self) -> usize {
        self.0.iter().map(|b| b.bytes).sum()
    }
}

/// The scene tables on a device.
pub struct DeviceTables {
    held: Held,
    /// Kernel arguments with the table addresses set (everything else default).
    pub args: DkArgs,
}

impl DeviceTables {
    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        self.held.bytes()
    }
}

/// 0/1 bytes of flags, as the kernels read them.
pub(crate) fn bytes_u8(v: &[bool]) -> Vec<u8> {
    v.iter().map(|b| u8::from(*b)).collect()
}

/// The mutable state of a chunk, on the device.
pub struct DeviceState {
    /// Rollouts.
    pub n: usize,
    /// Agents.
    pub n_agents: usize,
    pub(crate) alive: DevBuf,
    pub(crate) takeover: DevBuf,
    pub(crate) present: DevBuf,
    pub(crate) metrics: DevBuf,
    pub(crate) ego: [DevBuf; 6],
    pub(crate) ego_controlled: DevBuf,
    pub(crate) agents: [DevBuf; 4],
    pub(crate) a_valid: DevBuf,
    pub(crate) plan_active: DevBuf,
    pub(crate) plans: [DevBuf; 3],
    held: Held,
}

impl DeviceState {
    /// Uploads `st` (and fresh metric memory; `dir_n` values of driving-direction window per
    /// rollout) and points `a` at it.
    pub fn upload(
        dev: &Device,
        st: &BatchState,
        dir_n: usize,
        a: &mut DkArgs,
    ) -> Result<DeviceState, CudaError> {
        let n = st.len();
        let na = st.a_track.len();
        let a_rollout: Vec<u32> = (0..n)
            .flat_map(|r| std::iter::repeat_n(r as u32, st.agents(r).len()))
            .collect();
        let agent_start: Vec<u32> = st.agent_start.iter().map(|&s| s as u32).collect();
        let pert: Vec<f64> = st
            .perturbation
            .iter()
            .flat_map(|p| [p.dx_m, p.dy_m, p.dyaw_rad, p.dspeed_frac])
            .collect();
        let mut ds = DeviceState {
            n,
            n_agents: na,
            alive: dev.upload_new(&bytes_u8(&st.alive))?,
            takeover: dev.alloc(n)?,
            present: dev.alloc(4 * n)?,
            metrics: dev.alloc(8 * N_METRICS * n)?,
            ego: [
                dev.upload_new(&st.ego_x)?,
                dev.upload_new(&st.ego_y)?,
                dev.upload_new(&st.ego_yaw)?,
                dev.upload_new(&st.ego_speed)?,
                dev.upload_new(&st.plan_x)?,
                dev.upload_new(&st.plan_y)?,
            ],
            ego_controlled: dev.upload_new(&bytes_u8(&st.ego_controlled))?,
            agents: [
                dev.upload_new(&st.a_x)?,
                dev.upload_new(&st.a_y)?,
                dev.upload_new(&st.a_yaw)?,
                dev.upload_new(&st.a_speed)?,
            ],
            a_valid: dev.upload_new(&bytes_u8(&st.a_valid))?,
            plan_active: dev.alloc(n)?,
            plans: [
                dev.alloc(8 * PLAN_POINTS * n)?,
                dev.alloc(8 * PLAN_POINTS * n)?,
                dev.alloc(8 * PLAN_POINTS * n)?,
            ],
            held: Held::default(),
        };
        a.n = n as u32;
        a.n_agents = na as u32;
        a.dir_n = dir_n as u32;
        a.alive = ds.alive.addr;
        a.takeover = ds.takeover.addr;
        a.present = ds.present.addr;
        a.metrics = ds.metrics.addr;
        [a.ego_x, a.ego_y, a.ego_yaw, a.ego_speed, a.plan_x, a.plan_y] =
            std::array::from_fn(|i| ds.ego[i].addr);
        a.ego_controlled = ds.ego_controlled.addr;
        [a.a_x, a.a_y, a.a_yaw, a.a_speed] = std::array::from_fn(|i| ds.agents[i].addr);
        a.a_valid = ds.a_valid.addr;
        a.plan_active = ds.plan_active.addr;
        [a.plans_x, a.plans_y, a.plans_v] = std::array::from_fn(|i| ds.plans[i].addr);
        let h = &mut ds.held;
        a.scene_of = h.keep(dev.upload_new(&st.scene)?);
        a.t_us = h.keep(dev.upload_new(&st.t_us)?);
        a.pert = h.keep(dev.upload_new(&pert)?);
        a.agent_start = h.keep(dev.upload_new(&agent_start)?);
        a.a_rollout = h.keep(dev.upload_new(&a_rollout)?);
        a.a_track = h.keep(dev.upload_new(&st.a_track)?);
        a.a_len = h.keep(dev.upload_new(&st.a_len)?);
        a.a_wid = h.keep(dev.upload_new(&st.a_wid)?);
        a.a_static = h.keep(dev.upload_new(&bytes_u8(&st.a_static))?);
        a.a_idm = h.keep(dev.upload_new(&bytes_u8(&st.a_idm))?);
        a.a_s = h.keep(dev.upload_new(&st.a_s)?);
        a.a_v0 = h.keep(dev.upload_new(&st.a_v0)?);
        a.a_headway = h.keep(dev.upload_new(&st.a_headway)?);
        a.a_accel = h.keep(dev.alloc(8 * na)?);
        a.a_cos = h.keep(dev.alloc(8 * na)?);
        a.a_sin = h.keep(dev.alloc(8 * na)?);
        a.a_contact = h.keep(dev.upload_new(&vec![-1i32; na])?);
        a.a_collided = h.keep(dev.alloc(na)?);
        a.a_ttc = h.keep(dev.alloc(na)?);
        a.comfort = h.keep(dev.alloc(8 * 5 * crate::metrics::comfort::WINDOW * n)?);
        a.comfort_n = h.keep(dev.alloc(4 * 5 * n)?);
        a.dir_buf = h.keep(dev.alloc(8 * dir_n * n)?);
        a.dir_last = h.keep(dev.alloc(8 * 3 * n)?);
        a.dir_state = h.keep(dev.alloc(4 * 4 * n)?);
        a.traveled = h.keep(dev.alloc(8 * n)?);
        a.prev = h.keep(dev.alloc(8 * 2 * n)?);
        a.has_prev = h.keep(dev.alloc(n)?);
        let rule_mem: Vec<i32> = (0..n).flat_map(|_| [-1, -1, 0, -1]).collect();
        a.rule_mem = h.keep(dev.upload_new(&rule_mem)?);
        a.a_cleared = h.keep(dev.upload_new(&st.a_cleared)?);
        a.ego_cleared = h.keep(dev.upload_new(&vec![0u32; n])?);
        Ok(ds)
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        let fixed = [
            &self.alive,
            &self.takeover,
            &self.present,
            &self.metrics,
            &self.ego_controlled,
            &self.a_valid,
            &self.plan_active,
        ];
        fixed.iter().map(|b| b.bytes).sum::<usize>()
            + self
                .ego
                .iter()
                .chain(&self.agents)
                .chain(&self.plans)
                .map(|b| b.bytes)
                .sum::<usize>()
            + self.held.bytes()
    }
}
