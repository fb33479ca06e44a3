//! The services of one simulation step (DESIGN §7), each behind a trait with batched calls over
//! a whole [`BatchState`] chunk: sensor → driver → controller + vehicle model → traffic, and
//! evaluation. The CPU backend implements them here; the stepper ([`super::stepper`]) calls them
//! in order and times each one (the CUDA backend, `crate::cuda::stepper`, runs the same order with
//! the controller, traffic and evaluation in kernels).

use crate::state::{BatchState, SceneCtx};

/// Points in a driver's planned trajectory (one per control step ahead).
pub const PLAN_POINTS: usize = 10;

/// Names of the services in step order (the deploy keys of wizard-config.yaml).
pub use crate::config::SERVICES;

/// Why a chunk cannot step on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// assert_zero_decision_delay: the driver would decide on stale inputs.
    #[error("scene {scene}: decision at {t_us} µs sees camera {camera}'s last frame of {frame_us} µs and the ego pose of {pose_us} µs; with assert_zero_decision_delay both must complete at the decision (make control_timestep_us a multiple of every camera's frame_interval_us and the egopose interval the control step)")]
    DecisionDelay {
        /// scene id
        scene: String,
        /// decision time
        t_us: i64,
        /// the camera whose frame is stale ("" when only the pose is)
        camera: String,
        /// that camera's last frame
        frame_us: i64,
        /// last ego pose
        pose_us: i64,
    },
    /// The CUDA backend failed (a driver call, or memory).
    #[error("{0}")]
    Device(String),
}

/// What the sensor hands the driver per rollout: which camera frame and ego pose the driver
/// sees now, and the camera image when the sensor renders one. The built-in drivers read poses,
/// boxes and lanes from the state and the scene; an external driver also submits the image.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Time of the last camera frame the driver sees (µs).
    pub frame_us: Vec<i64>,
    /// Time of the last ego pose update (µs).
    pub pose_us: Vec<i64>,
    /// Camera frames produced so far in the chunk.
    pub frames_rendered: u64,
    /// The camera image (PNG) each rollout's driver sees at this decision, when the sensor
    /// renders a camera (for drivers that take images); `None` otherwise.
    pub images: Vec<Option<Vec<u8>>>,
}

/// The drivers' planned trajectories: per rollout [`PLAN_POINTS`] points at t + k·dt.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    /// The driver controls the ego of this rollout now.
    pub active: Vec<bool>,
    /// x of point k of rollout r at `r * PLAN_POINTS + k`.
    pub x: Vec<f64>,
    /// y, same layout.
    pub y: Vec<f64>,
    /// Planned speed, same layout.
    pub v: Vec<f64>,
    /// The driver could not serve this rollout (an external driver's error, timeout or
    /// disconnection): the rollout ends and its batch is recorded as failed with this text.
    pub failed: Vec<Option<String>>,
    /// The driver ended the session (AlpaSim's `terminate_session`): the rollout stops here.
    pub terminate: Vec<bool>,
    /// The driver's memory per rollout, kept from step to step of a chunk (the IDM driver: the
    /// rules of its route whose stop signs it has stopped at).
    pub cleared: Vec<u32>,
}

impl Plans {
    /// Room for `n` rollouts, all inactive.
    pub fn new(n: usize) -> Plans {
        Plans {
            active: vec![false; n],
            x: vec![0.0; n * PLAN_POINTS],
            y: vec![0.0; n * PLAN_POINTS],
            v: vec![0.0; n * PLAN_POINTS],
            failed: vec![None; n],
            terminate: vec![false; n],
            cleared: vec![0; n],
        }
    }
}

/// The built-in drivers the CUDA kernels implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDriver {
    /// Log replay: never plans.
    Replay,
    /// Constant velocity.
    ConstantVelocity,
    /// IDM along the route.
    Idm,
}

/// Runs the sensor clocks: which camera frame and ego pose each decision sees.
pub trait SensorService: Send + Sync {
    /// Fills `obs` for the alive rollouts at their current time.
    fn observe(
        &self,
        st: &BatchState,
        scenes: &[SceneCtx],
        obs: &mut Observations,
    ) -> Result<(), StepError>;
}

/// The policy under test.
pub trait DriverService: Send + Sync {
    /// Name in logs and on the command line.
    fn name(&self) -> &'static str;
    /// Whether this driver moves the ego after the takeover (log replay does not).
    fn drives(&self) -> bool;
    /// The kernel implementing this driver on the CUDA backend (`None`: the driver runs on the
    /// host and its plans are uploaded each step).
    fn on_device(&self) -> Option<DeviceDriver> {
        None
    }
    /// Whether this driver takes camera images (the sensor then renders them).
    fn wants_images(&self) -> bool {
        false
    }
    /// How many rollouts should step together, when the driver knows better than the deploy
    /// capacity (an external driver: all the requests its servers accept at once).
    fn chunk_hint(&self) -> Option<usize> {
        None
    }
    /// Prepares every rollout of a chunk before its first step (an external driver opens its
    /// sessions); rollouts that cannot start are marked in `plans.failed`.
    fn begin(&self, _st: &BatchState, _scenes: &[SceneCtx], _plans: &mut Plans) {}
    /// Releases what `begin` opened, after the chunk's last step.
    fn end(&self, _st: &BatchState, _scenes: &[SceneCtx]) {}
    /// For a driver whose answers come back at each rollout's own pace (an external driver's
    /// calls): a pipeline for one chunk, through which the step loop sends each rollout's step as
    /// soon as that rollout is ready and steps on with the rollouts answered, so that a rollout
    /// waiting on its driver holds only itself. `None` (the default): every step of the chunk
    /// waits for [`DriverService::drive`] over all its rollouts (lockstep).
    fn pipeline(&self) -> Option<Box<dyn DriverPipeline + '_>> {
        None
    }
    /// Called every step for the alive rollouts: takes the observations due (an external driver
    /// submits them) and plans for the driver-controlled ones.
    fn drive(
        &self,
        st: &BatchState,
        scenes: &[SceneCtx],
        obs: &Observations,
        plans: &mut Plans,
        dt_s: f64,
    );
}

/// One chunk's driver calls in flight ([`DriverService::pipeline`]). What a rollout is sent and
/// what it gets back are exactly what [`DriverService::drive`] would send and return at the
/// same step, so a pipelined chunk's results are the lockstep chunk's, byte for byte; only the
/// order in which rollouts advance differs.
pub trait DriverPipeline {
    /// Sends the step of each of `rollouts` (alive, at their current time, observed in `obs`):
    /// the observations due and, once the driver controls the ego, the decision request.
    fn submit(
        &mut self,
        st: &BatchState,
        scenes: &[SceneCtx],
        obs: &Observations,
        rollouts: &[usize],
        dt_s: f64,
    );
    /// How many rollouts have been sent and not yet collected.
    fn in_flight(&self) -> usize;
    /// Waits for answers (at least one while any is in flight, then those arriving close behind
    /// it) and returns the rollouts answered in ascending order, with their plans filled in as
    /// `drive` fills them: `active` and the points, `failed`, `terminate`.
    fn collect(
        &mut self,
        st: &BatchState,
        scenes: &[SceneCtx],
        plans: &mut Plans,
        dt_s: f64,
    ) -> Vec<usize>;
}

/// Tracks the plans with the vehicle model (and moves uncontrolled egos along their recording).
pub trait ControllerService: Send + Sync {
    /// Advances every alive ego by one control step of `dt_us`.
    fn control(&self, st: &mut BatchState, scenes: &[SceneCtx], plans: &Plans, dt_us: i64);
}

/// Moves the other agents.
pub trait TrafficService: Send + Sync {
    /// Name in logs and on the command line.
    fn name(&self) -> &'static str;
    /// Whether vehicles are driven by IDM (else everything replays).
    fn reactive(&self) -> bool;
    /// Advances every alive rollout's agents to `t + dt_us` (the ego has already moved).
    fn advance(&self, st: &mut BatchState, scenes: &[SceneCtx], dt_us: i64);
}

/// Computes the per-step metrics (DESIGN §3) of every alive rollout.
pub trait EvaluationService: Send + Sync {
    /// Writes rollout r's values at `out[r * n + m]` for metric m of
    /// [`crate::metrics::table::METRICS`] (n of them); NaN where a metric does not apply this step.
    fn evaluate(
        &self,
        st: &BatchState,
        scenes: &[SceneCtx],
        memory: &mut [super::evaluation::EvalMemory],
        out: &mut [f64],
    );
}
