//! Encoding a batch's `rollout_metadata` records: the actor definitions and the recorded ego
//! trajectory are the same for every rollout of a scene, so they are encoded once and spliced
//! into each rollout's record, which comes out byte-identical to prost's encoding (tested).

use prost::Message;

use super::proto::{LogEntry, RolloutMetadata};

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The per-scene part of a rollout_metadata record, pre-encoded.
pub struct MetadataEncoder {
    /// Field 2 (actor_definitions) with its tag and length, or empty.
    definitions: Vec<u8>,
    /// Field 7 (ego_rig_recorded_ground_truth_trajectory) with its tag and length, or empty.
    trajectory: Vec<u8>,
}

impl MetadataEncoder {
    /// Pre-encodes the shared fields of `template` (its other fields are ignored).
    pub fn new(template: &RolloutMetadata) -> MetadataEncoder {
        let only = |m: RolloutMetadata| m.encode_to_vec();
        MetadataEncoder {
            definitions: only(RolloutMetadata {
                actor_definitions: template.actor_definitions.clone(),
                ..RolloutMetadata::default()
            }),
            trajectory: only(RolloutMetadata {
                ego_rig_recorded_ground_truth_trajectory: template
                    .ego_rig_recorded_ground_truth_trajectory
                    .clone(),
                ..RolloutMetadata::default()
            }),
        }
    }

    /// Appends the length-prefixed `LogEntry{rollout_metadata}` record of `rollout`, whose
    /// actor_definitions and recorded trajectory are taken from the template (the ones in
    /// `rollout` are ignored).
    pub fn encode(&self, out: &mut Vec<u8>, rollout: &RolloutMetadata) {
        let head = RolloutMetadata {
            session_metadata: rollout.session_metadata.clone(),
            ..RolloutMetadata::default()
        }
        .encode_to_vec();
        let middle = RolloutMetadata {
            force_gt_duration: rollout.force_gt_duration,
            rollout_index: rollout.rollout_index,
            ..RolloutMetadata::default()
        }
        .encode_to_vec();
        let tail = RolloutMetadata {
            drivekit_seed: rollout.drivekit_seed,
            drivekit_perturbation: rollout.drivekit_perturbation.clone(),
            drivekit_models: rollout.drivekit_models.clone(),
            ..RolloutMetadata::default()
        }
        .encode_to_vec();
        // Field order = tag order, as prost writes it: 1, 2, 3, 5, 7, 1001…
        let parts = [
            &head[..],
            &self.definitions[..],
            &middle[..],
            &self.trajectory[..],
            &tail[..],
        ];
        let body: usize = parts.iter().map(|p| p.len()).sum();
        let mut entry = Vec::with_capacity(body + 6);
        entry.push(0x0A); // LogEntry.rollout_metadata = 1
        put_varint(&mut entry, body);
        for p in parts {
            entry.extend_from_slice(p);
        }
        out.extend_from_slice(&(entry.len() as u32).to_be_bytes());
        out.extend_from_slice(&entry);
    }
}

/// Prost's encoding of the same record, for comparison.
pub fn encode_with_prost(out: &mut Vec<u8>, rollout: &RolloutMetadata) {
    super::asl::encode_record(
        out,
        &LogEntry {
            entry: Some(super::proto::Entry::RolloutMetadata(rollout.clone())),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::super::proto::*;
    use super::*;

    #[test]
    fn spliced_record_equals_prosts() {
        let md = RolloutMetadata {
            session_metadata: Some(SessionMetadata {
                session_uuid: "b-1".into(),
                scene_id: "s".into(),
                batch_size: 2,
                n_sim_steps: 30,
                start_timestamp_us: 300_000,
                control_timestep_us: 100_000,
            }),
            actor_definitions: Some(ActorDefinitions {
                actor_aabb: vec![ActorAabb {
                    actor_id: "EGO".into(),
                    aabb: Some(Aabb {
                        size_x: 5.0,
                        size_y: 2.0,
                        size_z: 1.5,
                    }),
                    actor_label: "vehicle".into(),
                }],
            }),
            force_gt_duration: 1_000_000,
            rollout_index: 1,
            ego_rig_recorded_ground_truth_trajectory: Some(Trajectory {
                poses: vec![
                    PoseAtTime {
                        pose: None,
                        timestamp_us: 7,
                    };
                    300
                ],
            }),
            drivekit_seed: 42,
            drivekit_perturbation: "{\"ego\":{}}".into(),
            drivekit_models: "{}".into(),
        };
        let enc = MetadataEncoder::new(&md);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        enc.encode(&mut a, &md);
        encode_with_prost(&mut b, &md);
        assert_eq!(a, b);
        let bare = RolloutMetadata::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        MetadataEncoder::new(&bare).encode(&mut a, &bare);
        encode_with_prost(&mut b, &bare);
        assert_eq!(a, b);
    }
}
