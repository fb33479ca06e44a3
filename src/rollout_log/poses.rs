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
    let (s, c) = (p.yaw / 2.0).sin_cos();
    (
        [p.x as f32, p.y as f32, 0.0],
        [c as f32, 0.0, 0.0, s as f32],
    )
}

/// Bytes of a message of float fields 1.. (proto3 omits zeros).
fn floats_len(v: &[f32]) -> usize {
    v.iter().filter(|f| **f != 0.0).count() * 5
}

fn put_floats(out: &mut Vec<u8>, v: &[f32]) {
    for (i, f) in v.iter().enumerate() {
        if *f != 0.0 {
            out.push((((i + 1) << 3) | 5) as u8);
            out.extend_from_slice(&f.to_le_bytes());
        }
    }
}

fn pose_len(vec: &[f32; 3], quat: &[f32; 4]) -> usize {
    let (a, b) = (floats_len(vec), floats_len(quat));
    1 + varint_len(a) + a + 1 + varint_len(b) + b
}

fn actor_pose_len(p: &PoseRow<'_>) -> usize {
    let (v, q) = floats(p);
    let pl = pose_len(&v, &q);
    let id = if p.id.is_empty() {
        0
    } else {
        1 + varint_len(p.id.len()) + p.id.len()
    };
    id + 1 + varint_len(pl) + pl
}

/// Appends one complete rollout.asl record (`[u32 BE length][LogEntry{actor_poses}]`) for the
/// poses at `timestamp_us`.
pub fn encode_actor_poses<'a>(
    out: &mut Vec<u8>,
    timestamp_us: u64,
    poses: impl Iterator<Item = PoseRow<'a>> + Clone,
) {
    let mut body = if timestamp_us != 0 { 9 } else { 0 };
    for p in poses.clone() {
        let l = actor_pose_len(&p);
        body += 1 + varint_len(l) + l;
    }
    let entry = 1 + varint_len(body) + body;
    out.reserve(4 + entry);
    out.extend_from_slice(&(entry as u32).to_be_bytes());
    out.push(0x12); // LogEntry.actor_poses = 2
    put_varint(out, body);
    if timestamp_us != 0 {
        out.push(0x09); // ActorPoses.timestamp_us = 1, fixed64
        out.extend_from_slice(&timestamp_us.to_le_bytes());
    }
    for p in poses {
        let (v, q) = floats(&p);
        out.push(0x12); // ActorPoses.actor_poses = 2
        put_varint(out, actor_pose_len(&p));
        if !p.id.is_empty() {
            out.push(0x0A); // ActorPose.actor_id = 1
            put_varint(out, p.id.len());
            out.extend_from_slice(p.id);
        }
        out.push(0x12); // ActorPose.actor_pose = 2
        put_varint(out, pose_len(&v, &q));
        out.push(0x0A); // Pose.vec = 1
        put_varint(out, floats_len(&v));
        put_floats(out, &v);
        out.push(0x12); // Pose.quat = 2
        put_varint(out, floats_len(&q));
        put_floats(out, &q);
    }
}

/// The prost message of the same pose (for metadata and tests).
pub fn pose_message(x: f64, y: f64, yaw: f64) -> super::proto::Pose {
    let (v, q) = floats(&PoseRow { id: b"", x, y, yaw });
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
            },
            PoseRow {
                id: b"",
                x: 0.0,
                y: -1.0,
                yaw: 0.0,
            },
            PoseRow {
                id: &[b'a'; 200],
                x: 1.5,
                y: 0.0,
                yaw: 3.1,
            },
        ];
        for ts in [0u64, 1_000_000, u64::MAX] {
            let mut ours = Vec::new();
            encode_actor_poses(&mut ours, ts, rows.iter().copied());
            let entry = LogEntry {
                entry: Some(proto::Entry::ActorPoses(proto::ActorPoses {
                    timestamp_us: ts,
                    actor_poses: rows
                        .iter()
                        .map(|r| proto::ActorPose {
                            actor_id: String::from_utf8(r.id.to_vec()).unwrap(),
                            actor_pose: Some(pose_message(r.x, r.y, r.yaw)),
                        })
                        .collect(),
                })),
            };
            let theirs = entry.encode_to_vec();
            assert_eq!(&ours[4..], &theirs[..], "timestamp {ts}");
            assert_eq!(
                u32::from_be_bytes(ours[..4].try_into().unwrap()) as usize,
                theirs.len()
            );
        }
    }
}
