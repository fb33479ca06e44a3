//! Sampling a recorded [`Track`] at any simulation time: linear interpolation of position and
//! velocity, shortest-arc interpolation of heading, invalid outside the observed span or across a
//! gap in the observations.

use crate::scene::Track;

/// A recorded pose at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Box centre x (m).
    pub x: f64,
    /// Box centre y (m).
    pub y: f64,
    /// Heading (rad).
    pub yaw: f64,
    /// Velocity x (m/s).
    pub vx: f64,
    /// Velocity y (m/s).
    pub vy: f64,
}

impl Sample {
    /// Speed (m/s).
    pub fn speed(&self) -> f64 {
        crate::geometry::norm(self.vx, self.vy)
    }
}

pub use crate::geometry::wrap_angle;

/// The track at `t_us` on the scene clock `timestamps_us`; `None` where it was not observed.
pub fn sample(track: &Track, timestamps_us: &[i64], t_us: i64) -> Option<Sample> {
    let i = timestamps_us.partition_point(|&t| t < t_us);
    let at = |k: usize| Sample {
        x: track.x[k],
        y: track.y[k],
        yaw: track.yaw[k],
        vx: track.vx[k],
        vy: track.vy[k],
    };
    if i < timestamps_us.len() && timestamps_us[i] == t_us {
        return track.valid[i].then(|| at(i));
    }
    if i == 0 || i == timestamps_us.len() || !track.valid[i - 1] || !track.valid[i] {
        return None;
    }
    let (t0, t1) = (timestamps_us[i - 1], timestamps_us[i]);
    let f = (t_us - t0) as f64 / (t1 - t0) as f64;
    let (a, b) = (at(i - 1), at(i));
    let lerp = |p: f64, q: f64| p + (q - p) * f;
    Some(Sample {
        x: lerp(a.x, b.x),
        y: lerp(a.y, b.y),
        yaw: wrap_angle(a.yaw + wrap_angle(b.yaw - a.yaw) * f),
        vx: lerp(a.vx, b.vx),
        vy: lerp(a.vy, b.vy),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::AgentClass;

    #[test]
    fn interpolates_inside_the_observed_span_only() {
        let mut t = Track::empty("a".into(), AgentClass::Vehicle, (4.0, 2.0, 1.5), 4);
        t.valid = vec![true, true, false, true];
        t.x = vec![0.0, 10.0, 0.0, 30.0];
        t.yaw = vec![3.0, -3.0, 0.0, 0.0];
        let ts = [0, 100, 200, 300];
        let s = sample(&t, &ts, 50).unwrap();
        assert_eq!(s.x, 5.0);
        // 3.0 → −3.0 rad the short way round, through ±π.
        assert!(
            (wrap_angle(s.yaw) - std::f64::consts::PI).abs() < 0.01,
            "{}",
            s.yaw
        );
        assert_eq!(sample(&t, &ts, 100).unwrap().x, 10.0);
        assert!(sample(&t, &ts, 150).is_none(), "gap");
        assert!(sample(&t, &ts, 200).is_none());
        assert!(sample(&t, &ts, -1).is_none() && sample(&t, &ts, 301).is_none());
    }
}
