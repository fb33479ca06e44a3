//! The scenes of a shard packed into flat tables for the kernels (uploaded once per shard), and
//! a chunk's [`BatchState`] with its metric memory on the device.

use super::device::{CudaError, DevBuf, Device};
use super::source::{DkArgs, DkScene};
use crate::geometry::Polyline;
use crate::sim::evaluation::N_METRICS;
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
                let id = p.as_ref().map_or(-1, |(line, _)| t.push_polyline(line));
                t.agent_path.push(id);
            }
            let gt_path = ctx.gt_path.as_ref().map_or(-1, |p| t.push_polyline(p));
            let route = ctx.route.as_ref().map_or(-1, |p| t.push_polyline(p));
            let drv_off = t.drivable.len() as i32;
            for poly in &ctx.drivable {
                let id = t.push_points(poly, None);
                t.drivable.push(id);
            }
            let lane_off = t.lane_center.len() as i32;
            if let Some(lanes) = ctx.lanes.as_ref() {
                for (center, polygon, bbox) in lanes.lanes() {
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
            });
        }
        t
    }

    /// Uploads the tables.
    pub fn upload(&self, dev: &Device) -> Result<DeviceTables, CudaError> {
        Ok(DeviceTables {
            bufs: vec![
                dev.upload_new(&self.scenes)?,
                dev.upload_new(&self.ts)?,
                dev.upload_new(&self.tk[0])?,
                dev.upload_new(&self.tk[1])?,
                dev.upload_new(&self.tk[2])?,
                dev.upload_new(&self.tk[3])?,
                dev.upload_new(&self.tk[4])?,
                dev.upload_new(&self.tk_valid)?,
                dev.upload_new(&self.pt[0])?,
                dev.upload_new(&self.pt[1])?,
                dev.upload_new(&self.pt[2])?,
                dev.upload_new(&self.poly_start)?,
                dev.upload_new(&self.agent_path)?,
                dev.upload_new(&self.drivable)?,
                dev.upload_new(&self.lane_center)?,
                dev.upload_new(&self.lane_poly)?,
                dev.upload_new(&self.lane_bbox)?,
            ],
        })
    }
}

/// The scene tables on a device.
pub struct DeviceTables {
    bufs: Vec<DevBuf>,
}

impl DeviceTables {
    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        self.bufs.iter().map(|b| b.bytes).sum()
    }

    /// Sets the table addresses of `a`.
    pub fn fill(&self, a: &mut DkArgs) {
        let b: Vec<u64> = self.bufs.iter().map(|b| b.addr).collect();
        a.scenes = b[0];
        a.ts = b[1];
        a.tk_x = b[2];
        a.tk_y = b[3];
        a.tk_yaw = b[4];
        a.tk_vx = b[5];
        a.tk_vy = b[6];
        a.tk_valid = b[7];
        a.pt_x = b[8];
        a.pt_y = b[9];
        a.pt_cum = b[10];
        a.poly_start = b[11];
        a.agent_path = b[12];
        a.drivable = b[13];
        a.lane_center = b[14];
        a.lane_poly = b[15];
        a.lane_bbox = b[16];
    }
}

fn bytes_u8(v: &[bool]) -> Vec<u8> {
    v.iter().map(|b| u8::from(*b)).collect()
}

/// The mutable state of a chunk, on the device.
pub struct DeviceState {
    /// Rollouts.
    pub n: usize,
    /// Agents.
    pub n_agents: usize,
    pub(crate) alive: DevBuf,
    pub(crate) present: DevBuf,
    pub(crate) metrics: DevBuf,
    pub(crate) ego: [DevBuf; 6],
    pub(crate) ego_controlled: DevBuf,
    pub(crate) agents: [DevBuf; 4],
    pub(crate) a_valid: DevBuf,
    pub(crate) plan_active: DevBuf,
    pub(crate) plans: [DevBuf; 3],
    other: Vec<DevBuf>,
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
        let ds = DeviceState {
            n,
            n_agents: na,
            alive: dev.upload_new(&bytes_u8(&st.alive))?,
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
            other: vec![
                dev.upload_new(&st.scene)?,                              // 0 scene_of
                dev.upload_new(&st.step)?,                               // 1 step
                dev.upload_new(&st.t_us)?,                               // 2 t_us
                dev.upload_new(&pert)?,                                  // 3 pert
                dev.upload_new(&agent_start)?,                           // 4 agent_start
                dev.upload_new(&a_rollout)?,                             // 5 a_rollout
                dev.upload_new(&st.a_track)?,                            // 6 a_track
                dev.upload_new(&st.a_len)?,                              // 7
                dev.upload_new(&st.a_wid)?,                              // 8
                dev.upload_new(&bytes_u8(&st.a_static))?,                // 9
                dev.upload_new(&bytes_u8(&st.a_idm))?,                   // 10
                dev.upload_new(&st.a_s)?,                                // 11
                dev.upload_new(&st.a_v0)?,                               // 12
                dev.upload_new(&st.a_headway)?,                          // 13
                dev.alloc(8 * na)?,                                      // 14 a_accel
                dev.upload_new(&vec![-1i32; na])?,                       // 15 a_contact
                dev.alloc(na)?,                                          // 16 a_collided
                dev.alloc(na)?,                                          // 17 a_ttc
                dev.alloc(8 * 5 * crate::metrics::comfort::WINDOW * n)?, // 18 comfort
                dev.alloc(4 * 5 * n)?,                                   // 19 comfort_n
                dev.alloc(8 * dir_n * n)?,                               // 20 dir_buf
                dev.alloc(8 * 3 * n)?,                                   // 21 dir_last
                dev.alloc(4 * 4 * n)?,                                   // 22 dir_state
                dev.alloc(8 * n)?,                                       // 23 traveled
                dev.alloc(8 * 2 * n)?,                                   // 24 prev
                dev.alloc(n)?,                                           // 25 has_prev
                dev.alloc(8 * na)?,                                      // 26 a_cos
                dev.alloc(8 * na)?,                                      // 27 a_sin
            ],
        };
        let o: Vec<u64> = ds.other.iter().map(|b| b.addr).collect();
        a.n = n as u32;
        a.n_agents = na as u32;
        a.dir_n = dir_n as u32;
        a.alive = ds.alive.addr;
        a.present = ds.present.addr;
        a.metrics = ds.metrics.addr;
        [a.ego_x, a.ego_y, a.ego_yaw, a.ego_speed, a.plan_x, a.plan_y] =
            std::array::from_fn(|i| ds.ego[i].addr);
        a.ego_controlled = ds.ego_controlled.addr;
        [a.a_x, a.a_y, a.a_yaw, a.a_speed] = std::array::from_fn(|i| ds.agents[i].addr);
        a.a_valid = ds.a_valid.addr;
        a.plan_active = ds.plan_active.addr;
        [a.plans_x, a.plans_y, a.plans_v] = std::array::from_fn(|i| ds.plans[i].addr);
        a.scene_of = o[0];
        a.step = o[1];
        a.t_us = o[2];
        a.pert = o[3];
        a.agent_start = o[4];
        a.a_rollout = o[5];
        a.a_track = o[6];
        a.a_len = o[7];
        a.a_wid = o[8];
        a.a_static = o[9];
        a.a_idm = o[10];
        a.a_s = o[11];
        a.a_v0 = o[12];
        a.a_headway = o[13];
        a.a_accel = o[14];
        a.a_contact = o[15];
        a.a_collided = o[16];
        a.a_ttc = o[17];
        a.comfort = o[18];
        a.comfort_n = o[19];
        a.dir_buf = o[20];
        a.dir_last = o[21];
        a.dir_state = o[22];
        a.traveled = o[23];
        a.prev = o[24];
        a.has_prev = o[25];
        a.a_cos = o[26];
        a.a_sin = o[27];
        Ok(ds)
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        let fixed = [
            &self.alive,
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
                .chain(&self.other)
                .map(|b| b.bytes)
                .sum::<usize>()
    }
}
