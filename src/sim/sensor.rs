//! The sensor service's clocks (DESIGN §6): camera frames every `frame_interval_us` from the
//! start, the driver seeing every `Cframes_subsample`-th, ego poses every `egopose_interval_us`.
//! With `assert_zero_decision_delay` every decision checks that the last frame the driver sees and
//! the last pose both complete exactly at the decision time.

use super::services::{Observations, SensorService, StepError};
use crate::sim_config::SimConfig;
use crate::state::{BatchState, SceneCtx};

/// Structured-observation sensor with the configured clocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockedSensor {
    frame_interval_us: i64,
    subsample: i64,
    egopose_interval_us: i64,
    assert_zero_delay: bool,
}

impl ClockedSensor {
    /// From the configuration's clocks.
    pub fn new(cfg: &SimConfig) -> ClockedSensor {
        ClockedSensor {
            frame_interval_us: cfg.frame_interval_us as i64,
            subsample: i64::from(cfg.driver.inference.cframes_subsample.max(1)),
            egopose_interval_us: cfg.egopose_interval_us as i64,
            assert_zero_delay: cfg.assert_zero_decision_delay,
        }
    }
}

impl SensorService for ClockedSensor {
    fn observe(
        &self,
        st: &BatchState,
        scenes: &[SceneCtx],
        obs: &mut Observations,
    ) -> Result<(), StepError> {
        obs.frame_us.resize(st.len(), 0);
        obs.pose_us.resize(st.len(), 0);
        for r in (0..st.len()).filter(|&r| st.alive[r]) {
            let ctx = &scenes[st.scene[r] as usize];
            let since = st.t_us[r] - ctx.start_us;
            let frames = since / self.frame_interval_us;
            let seen = frames / self.subsample * self.subsample;
            let frame_us = ctx.start_us + seen * self.frame_interval_us;
            let pose_us =
                ctx.start_us + since / self.egopose_interval_us * self.egopose_interval_us;
            let prev = obs.frame_us[r];
            obs.frames_rendered += if prev == 0 {
                1
            } else {
                ((frame_us - prev) / self.frame_interval_us).max(0) as u64
            };
            obs.frame_us[r] = frame_us;
            obs.pose_us[r] = pose_us;
            if self.assert_zero_delay && (frame_us != st.t_us[r] || pose_us != st.t_us[r]) {
                return Err(StepError::DecisionDelay {
                    scene: ctx.scene.scene_id.clone(),
                    t_us: st.t_us[r],
                    frame_us,
                    pose_us,
                });
            }
        }
        Ok(())
    }
}
