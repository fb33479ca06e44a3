//! A direct encoder for the one record written every step, `LogEntry{actor_poses}`: it writes
//! the protobuf bytes without building messages (no per-actor `String` or `Vec`), and produces
//! exactly the bytes prost would (tested), so logging stays a small share of the step time.

/// One actor's pose for [`encode_actor_poses`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseRow<'a> {
    /// actor_id bytes ("EGO" for the ego).
    pub id: &'a [u8],
    /// Centre x (m).
    pub x: f64,
    /// Centre y (m).
    pub y: f64,
    /// Heading (rad).
    pub yaw: f64,
    /// Full-precision state for the drivekit extension field (empty: not written).
    pub state: &'a [f64],
}

fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The four floats of the pose quaternion and the three of its position, as AlpaSim stores
/// them (f32; z = 0; rotation about z only).
fn floats(p: &PoseRow<'_>) -> ([f32; 3], [f32; 4]) {
    floats_with(p, half_yaw_sin_cos(p.yaw))
}

/// `floats` with the quaternion's `(sin, cos)` of the half yaw given.
#[inline(always)]
fn floats_with(p: &PoseRow<'_>, (s, c): (f32, f32)) -> ([f32; 3], [f32; 4]) {
    ([p.x as f32, p.y as f32, 0.0], [c, 0.0, 0.0, s])
}

/// `sin` and `cos` of `yaw / 2` at single precision, as the quaternion stores them.
#[inline(always)]
fn half_yaw_sin_cos(yaw: f64) -> (f32, f32) {
    let (s, c) = (yaw / 2.0).sin_cos();
    (s as f32, c as f32)
}

/// The quaternion trigonometry of the poses encoded last, one entry per position in a step's
/// rows (the ego, then the actors in order): an actor whose yaw has not changed since (bit for
/// bit: a parked or straight-driving one) reuses its `sin_cos`, the same function of the same
/// bits, so the bytes are the same. Also holds the scratch buffer of the trajectory records
/// written through one. Keep one per rollout log.
#[derive(Debug, Default, Clone)]
pub struct PoseMemo {
    /// Per position: the yaw's bits and its half-yaw `(sin, cos)`.
    trig: Vec<(u64, (f32, f32))>,
    /// A trajectory record's body, assembled before its length is known.
    scratch: Vec<u8>,
}

impl PoseMemo {
    /// The half-yaw `(sin, cos)` of `yaw` for position `slot`, computed again only when its
    /// yaw's bits changed.
    #[inline(always)]
    fn sin_cos(&mut self, slot: usize, yaw: f64) -> (f32, f32) {
        let bits = yaw.to_bits();
        if let Some(&(b, sc)) = self.trig.get(slot) {
            if b == bits {
                return sc;
            }
        }
        let sc = half_yaw_sin_cos(yaw);
        if slot >= self.trig.len() {
            // Filled with a true entry (yaw 0), so a position never holds a wrong one.
            self.trig
                .resize(slot + 1, (0.0f64.to_bits(), half_yaw_sin_cos(0.0)));
        }
        self.trig[slot] = (bits, sc);
        sc
    }
}

/// Appends `[u32 BE length][LogEntry{field: body}]` with the field's `tag` byte.
fn frame_entry(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    let entry = 1 + varint_len(body.len()) + body.len();
    out.reserve(4 + entry);
    out.extend_from_slice(&(entry as u32).to_be_bytes());
    out.push(tag);
    put_varint(out, body.len());
    out.extend_from_slice(body);
}

/// The byte count of `Pose{vec, quat}` with these floats (zeros are not written).
#[inline(always)]
fn pose_len(v: &[f32; 3], q: &[f32; 4]) -> usize {
    4 + 5 * (v.iter().chain(q).filter(|f| **f != 0.0).count())
}

/// Writes the bytes of `Pose{vec, quat}` with these floats at `buf[at..]` (at most 2 + 15 + 2
/// + 20 bytes) and returns the position after them.
#[inline(always)]
fn put_pose(buf: &mut [u8], at: usize, (v, q): ([f32; 3], [f32; 4])) -> usize {
    let mut n = at;
    for (tag, fields) in [(0x0Au8, &v[..]), (0x12u8, &q[..])] {
        buf[n] = tag; // Pose.vec = 1, Pose.quat = 2
        let len_at = n + 1;
        n += 2;
        for (i, f) in fields.iter().enumerate() {
            if *f != 0.0 {
                buf[n] = (((i + 1) << 3) | 5) as u8;
                buf[n + 1..n + 5].copy_from_slice(&f.to_le_bytes());
                n += 5;
            }
        }
        buf[len_at] = (n - len_at - 1) as u8;
    }
    n
}

/// Writes `v` as a varint at `buf[at..]`; returns the position after it.
#[inline(always)]
fn put_varint_at(buf: &mut [u8], mut at: usize, mut v: usize) -> usize {
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

/// Zeroed room added to the output at a time (or what one record needs, when more) for the
/// records [`encode_actor_poses`] writes in place.
const ROOM: usize = 5 << 10;

/// Appends one complete `LogEntry{driver_ego_trajectory}` record (entry 12): a trajectory of
/// poses (`id` and `state` of the rows unused) with their timestamps. A point whose yaw is the
/// previous point's reuses its trigonometry (`memo`).
pub fn encode_trajectory<'a>(
    out: &mut Vec<u8>,
    memo: &mut PoseMemo,
    poses: impl Iterator<Item = (PoseRow<'a>, u64)>,
) {
    let mut scratch = std::mem::take(&mut memo.scratch);
    scratch.clear();
    let mut last: Option<(u64, (f32, f32))> = None;
    for (p, t) in poses {
        let sc = match last {
            Some((b, sc)) if b == p.yaw.to_bits() => sc,
            _ => {
                let sc = half_yaw_sin_cos(p.yaw);
                last = Some((p.yaw.to_bits(), sc));
                sc
            }
        };
        let mut pose = [0u8; 40];
        let n = put_pose(&mut pose, 0, floats_with(&p, sc));
        let ts = if t != 0 { 9 } else { 0 };
        scratch.push(0x0A); // Trajectory.poses = 1
        put_varint(&mut scratch, 2 + n + ts);
        scratch.push(0x0A); // PoseAtTime.pose = 1
        scratch.push(n as u8);
        scratch.extend_from_slice(&pose[..n]);
        if t != 0 {
            scratch.push(0x11); // PoseAtTime.timestamp_us = 2, fixed64
            scratch.extend_from_slice(&t.to_le_bytes());
        }
    }
    frame_entry(out, 0x62, &scratch); // LogEntry.driver_ego_trajectory = 12
    memo.scratch = scratch;
}

/// Appends one complete rollout.asl record (`[u32 BE length][LogEntry{actor_poses}]`) for the
/// poses at `timestamp_us`. One pass: each pose's record is written in place into `out`
/// (zeroed room added [`ROOM`] bytes at a time, the unused rest cut at the end) behind a
/// header that is filled in (and moved, when the body's length needs other than two varint
/// bytes) at the end; the quaternion's trigonometry is computed again only for a pose whose
/// yaw changed since the previous call with the same `memo` (its position in the rows: the
/// ego, then the actors).
pub fn encode_actor_poses<'a>(
    out: &mut Vec<u8>,
    memo: &mut PoseMemo,
    timestamp_us: u64,
    poses: impl Iterator<Item = PoseRow<'a>>,
) {
    const ASSUMED: usize = 2; // varint bytes of the body length reserved in the header
    let start = out.len();
    out.extend_from_slice(&[0; 5 + ASSUMED]);
    let body = out.len();
    if timestamp_us != 0 {
        out.push(0x09); // ActorPoses.timestamp_us = 1, fixed64
        out.extend_from_slice(&timestamp_us.to_le_bytes());
    }
    // Written up to `at`; `out[at..]` is zeroed room.
    let mut at = out.len();
    for (slot, p) in poses.enumerate() {
        let (v, q) = floats_with(&p, memo.sin_cos(slot, p.yaw));
        let pose = pose_len(&v, &q);
        let id = if p.id.is_empty() {
            0
        } else {
            1 + varint_len(p.id.len()) + p.id.len()
        };
        let state_bytes = 8 * p.state.len();
        let state = if p.state.is_empty() {
            0
        } else {
            2 + varint_len(state_bytes) + state_bytes
        };
        let len = id + 2 + pose + state;
        let need = 1 + varint_len(len) + len;
        if out.len() - at < need {
            out.resize(at + need.max(ROOM), 0);
        }
        let buf = &mut out[..];
        buf[at] = 0x12; // ActorPoses.actor_poses = 2
        let mut n = put_varint_at(buf, at + 1, len);
        if !p.id.is_empty() {
            buf[n] = 0x0A; // ActorPose.actor_id = 1
            n = put_varint_at(buf, n + 1, p.id.len());
            buf[n..n + p.id.len()].copy_from_slice(p.id);
            n += p.id.len();
        }
        buf[n] = 0x12; // ActorPose.actor_pose = 2
        buf[n + 1] = pose as u8;
        n = put_pose(buf, n + 2, (v, q));
        if !p.state.is_empty() {
            // drivekit_state = 1001, packed doubles: tag varint (1001 << 3 | 2) = CA 3E.
            buf[n] = 0xCA;
            buf[n + 1] = 0x3E;
            n = put_varint_at(buf, n + 2, state_bytes);
            for v in p.state {
                buf[n..n + 8].copy_from_slice(&v.to_le_bytes());
                n += 8;
            }
        }
        at = n;
    }
    out.truncate(at);
    let len = out.len() - body;
    let width = varint_len(len);
    if width != ASSUMED {
        // Move the body so the header's varint is minimal, as prost writes it.
        let at = start + 5 + width;
        if width < ASSUMED {
            out.copy_within(body.., at);
            out.truncate(at + len);
        } else {
            out.resize(at + len, 0);
            out.copy_within(body..body + len, at);
        }
    }
    let entry = 1 + width + len;
    out[start..start + 4].copy_from_slice(&(entry as u32).to_be_bytes());
    out[start + 4] = 0x12; // LogEntry.actor_poses = 2
    put_varint_at(out, start + 5, len);
}

/// The prost message of the same pose (for metadata and tests).
pub fn pose_message(x: f64, y: f64, yaw: f64) -> super::proto::Pose {
    let (v, q) = floats(&PoseRow {
        id: b"",
        x,
        y,
        yaw,
        state: &[],
    });
    super::proto::Pose {
        vec: Some(super::proto::Vec3 {
            x: v[0],
            y: v[1],
            z: v[2],
        }),
        quat: Some(super::proto::Quat {
            w: q[0],
            x: q[1],
            y: q[2],
            z: q[3],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::{self, LogEntry};
    use super::*;
    use prost::Message;

    #[test]
    fn bytes_equal_prosts() {
        let rows = [
            PoseRow {
                id: b"EGO",
                x: 664751.66,
                y: 3999461.98,
                yaw: -2.0,
                state: &[664751.66, 3999461.98, -2.0, 5.0, f64::NAN, f64::NAN],
            },
            PoseRow {
                id: b"",
                x: 0.0,
                y: -1.0,
                yaw: 0.0,
                state: &[],
            },
            PoseRow {
                id: &[b'a'; 200],
                x: 1.5,
                y: 0.0,
                yaw: 3.1,
                state: &[1.5, 0.0, 3.1, 0.0],
            },
        ];
        check_against_prost(&rows);
        // Bodies under 128 bytes (one varint byte) and over 16 KiB (three), ids of 48 and 49
        // bytes and states of 8 and 9 values (the sizes where an earlier fast path ended).
        check_against_prost(&rows[1..2]);
        const FAST_ID: usize = 48;
        const FAST_STATE: usize = 8;
        let long_id = [b'x'; FAST_ID + 1];
        let state9 = [0.25; FAST_STATE + 1];
        let many: Vec<PoseRow<'_>> = (0..400)
            .map(|i| PoseRow {
                id: &long_id[..FAST_ID + i % 2],
                x: i as f64,
                y: -(i as f64) * 0.5,
                yaw: i as f64 * 0.01,
                state: &state9[..FAST_STATE + (i / 2) % 2],
            })
            .collect();
        check_against_prost(&many);
    }

    /// A memo kept across steps (as a rollout's log keeps one) gives each step the bytes a
    /// fresh one gives (those `bytes_equal_prosts` checks): yaws unchanged, changed, NaN, ±0,
    /// and rows that come and go, shifting the positions.
    #[test]
    fn memo_across_steps_changes_no_byte() {
        let mut rng = crate::rng::SplitMix64::new(3);
        let yaws = [0.0, -0.0, 1.25, -3.0, f64::NAN, f64::INFINITY, 1e-300];
        let ids: Vec<Vec<u8>> = (0..12).map(|i| format!("actor-{i}").into_bytes()).collect();
        let long_id = [b'z'; 51];
        let states: Vec<[f64; 6]> = (0..12)
            .map(|i| [i as f64, 2.0, 0.5, 1.0, 0.0, 0.0])
            .collect();
        let mut memo = PoseMemo::default();
        let mut yaw: Vec<f64> = (0..12).map(|i| yaws[i % yaws.len()]).collect();
        let (mut kept, mut fresh) = (Vec::new(), Vec::new());
        for step in 0..200u64 {
            for y in yaw.iter_mut() {
                // Most yaws stay, some change to another value (sometimes a special one).
                match rng.next_u64() % 6 {
                    0 => *y = yaws[(rng.next_u64() % yaws.len() as u64) as usize],
                    1 => *y = (rng.f64() - 0.5) * 7.0,
                    _ => {}
                }
            }
            let rows: Vec<PoseRow<'_>> = (0..12)
                .filter(|&i| !(step + i as u64).is_multiple_of(7)) // rows come and go
                .map(|i| PoseRow {
                    id: if i == 5 { &long_id[..] } else { &ids[i] },
                    x: i as f64 + step as f64 * 0.1,
                    y: -(i as f64),
                    yaw: yaw[i],
                    state: if i % 3 == 0 { &[] } else { &states[i][..] },
                })
                .collect();
            kept.clear();
            fresh.clear();
            encode_actor_poses(&mut kept, &mut memo, step, rows.iter().copied());
            encode_actor_poses(
                &mut fresh,
                &mut PoseMemo::default(),
                step,
                rows.iter().copied(),
            );
            assert_eq!(kept, fresh, "step {step}");
            let plan = rows.iter().map(|r| (*r, step));
            kept.clear();
            fresh.clear();
            encode_trajectory(&mut kept, &mut memo, plan.clone());
            encode_trajectory(&mut fresh, &mut PoseMemo::default(), plan);
            assert_eq!(kept, fresh, "trajectory, step {step}");
        }
    }

    fn check_against_prost(rows: &[PoseRow<'_>]) {
        for ts in [0u64, 1_000_000, u64::MAX] {
            let mut ours = vec![7u8; 3]; // bytes already in the buffer stay
            encode_actor_poses(
                &mut ours,
                &mut PoseMemo::default(),
                ts,
                rows.iter().copied(),
            );
            assert_eq!(&ours[..3], &[7, 7, 7]);
            let ours = ours[3..].to_vec();
            let entry = LogEntry {
                entry: Some(proto::Entry::ActorPoses(proto::ActorPoses {
                    timestamp_us: ts,
                    actor_poses: rows
                        .iter()
                        .map(|r| proto::ActorPose {
                            actor_id: String::from_utf8(r.id.to_vec()).unwrap(),
                            actor_pose: Some(pose_message(r.x, r.y, r.yaw)),
                            drivekit_state: r.state.to_vec(),
                        })
                        .collect(),
                })),
            };
            let theirs = entry.encode_to_vec();
            assert_eq!(&ours[4..], &theirs[..], "timestamp {ts}");
            // The same poses as a driver_ego_trajectory record.
            let mut traj = Vec::new();
            encode_trajectory(
                &mut traj,
                &mut PoseMemo::default(),
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| (*r, ts.wrapping_add(i as u64))),
            );
            let expected = LogEntry {
                entry: Some(proto::Entry::DriverEgoTrajectory(proto::Trajectory {
                    poses: rows
                        .iter()
                        .enumerate()
                        .map(|(i, r)| proto::PoseAtTime {
                            pose: Some(pose_message(r.x, r.y, r.yaw)),
                            timestamp_us: ts.wrapping_add(i as u64),
                        })
                        .collect(),
                })),
            }
            .encode_to_vec();
            assert_eq!(&traj[4..], &expected[..], "trajectory, timestamp {ts}");
            assert_eq!(
                u32::from_be_bytes(ours[..4].try_into().unwrap()) as usize,
                theirs.len()
            );
        }
    }
}
