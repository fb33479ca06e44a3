//! Writing and reading the length-prefixed record stream of rollout.asl.
//!
//! The reader streams (one record in memory at a time), tolerates a truncated last record —
//! reported as [`Record::Truncated`] after the records before it — and rejects a record whose
//! declared length exceeds the whole file, or whose body does not decode, naming file and offset.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use super::proto::LogEntry;

/// A log that cannot be read; each variant names the file and byte offset.
#[derive(Debug, thiserror::Error)]
pub enum AslError {
    /// I/O error.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// A record claims more bytes than the file has.
    #[error("{file}: record at byte {offset} declares {length} bytes but the file has only {file_len}; not a rollout.asl or corrupt")]
    TooLong {
        /// the file
        file: PathBuf,
        /// offset of the length prefix
        offset: u64,
        /// declared body length
        length: u64,
        /// file size
        file_len: u64,
    },
    /// A record body is not a LogEntry.
    #[error("{file}: record at byte {offset} does not decode ({message})")]
    Decode {
        /// the file
        file: PathBuf,
        /// offset of the length prefix
        offset: u64,
        /// decoder message
        message: String,
    },
}

/// Appends one length-prefixed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, entry: &LogEntry) {
    let len = entry.encoded_len();
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    entry.encode(out).expect("a Vec grows as needed");
}

/// Appends length-prefixed LogEntry records to a writer.
pub struct AslWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    records: u64,
}

impl AslWriter<BufWriter<File>> {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(AslWriter::new(BufWriter::with_capacity(
            1 << 20,
            File::create(path)?,
        )))
    }
}

impl<W: Write> AslWriter<W> {
    /// Wraps a writer.
    pub fn new(out: W) -> Self {
        AslWriter {
            out,
            buf: Vec::with_capacity(4096),
            records: 0,
        }
    }

    /// Writes one record.
    pub fn write(&mut self, entry: &LogEntry) -> io::Result<()> {
        self.buf.clear();
        entry.encode(&mut self.buf).map_err(io::Error::other)?;
        let len =
            u32::try_from(self.buf.len()).map_err(|_| io::Error::other("record over 4 GiB"))?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&self.buf)?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// What the reader yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A decoded record and the byte offset of its length prefix.
    Entry(u64, LogEntry),
    /// The file ends inside a record that starts at this offset: the rest of the log is lost.
    Truncated(u64),
}

/// Streams the records of one log.
pub struct AslReader<R: Read> {
    input: R,
    file: PathBuf,
    file_len: u64,
    offset: u64,
    done: bool,
    buf: Vec<u8>,
}

/// Largest record accepted from a compressed log, whose decompressed size is not known up front.
pub const MAX_COMPRESSED_RECORD: u64 = 1 << 30;

impl AslReader<Box<dyn Read + Send>> {
    /// Opens `path`; a name ending in `.xz` is decompressed on the fly (LZMA/xz).
    pub fn open(path: &Path) -> Result<Self, AslError> {
        let io = |e| AslError::Io {
            file: path.to_path_buf(),
            source: e,
        };
        let f = File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let buffered = BufReader::with_capacity(1 << 20, f);
        Ok(if path.extension().is_some_and(|e| e == "xz") {
            AslReader::new(
                Box::new(BufReader::with_capacity(
                    1 << 20,
                    liblzma::read::XzDecoder::new(buffered),
                )),
                path,
                MAX_COMPRESSED_RECORD,
            )
        } else {
            AslReader::new(Box::new(buffered), path, len)
        })
    }
}

/// Opens a batch's log: `rollout.asl`, or `rollout.asl.xz` when only that exists.
pub fn open_in_batch(dir: &Path) -> Result<AslReader<Box<dyn Read + Send>>, AslError> {
    let plain = dir.join(FILE_NAME);
    let xz = dir.join(XZ_FILE_NAME);
    AslReader::open(if !plain.exists() && xz.exists() {
        &xz
    } else {
        &plain
    })
}

/// File name of a batch's log.
pub const FILE_NAME: &str = "rollout.asl";
/// File name of a batch's xz-compressed log.
pub const XZ_FILE_NAME: &str = "rollout.asl.xz";

/// Reads until `buf` is full or EOF; returns the bytes read. A compressed stream that ends
/// early counts as EOF (the record it cut is reported as truncated).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> AslReader<R> {
    /// Reads from `input`, a log of `file_len` bytes named `file` in errors.
    pub fn new(input: R, file: &Path, file_len: u64) -> Self {
        AslReader {
            input,
            file: file.to_path_buf(),
            file_len,
            offset: 0,
            done: false,
            buf: Vec::new(),
        }
    }
}

impl<R: Read> Iterator for AslReader<R> {
    type Item = Result<Record, AslError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.offset;
        let io = |e| AslError::Io {
            file: self.file.clone(),
            source: e,
        };
        let mut len = [0u8; 4];
        match read_full(&mut self.input, &mut len) {
            Err(e) => {
                self.done = true;
                return Some(Err(io(e)));
            }
            Ok(0) => {
                self.done = true;
                return None;
            }
            Ok(n) if n < 4 => {
                self.done = true;
                return Some(Ok(Record::Truncated(start)));
            }
            Ok(_) => {}
        }
        let length = u64::from(u32::from_be_bytes(len));
        if length > self.file_len {
            self.done = true;
            return Some(Err(AslError::TooLong {
                file: self.file.clone(),
                offset: start,
                length,
                file_len: self.file_len,
            }));
        }
        self.buf.resize(length as usize, 0);
        let got = match read_full(&mut self.input, &mut self.buf) {
            Ok(n) => n,
            Err(e) => {
                self.done = true;
                return Some(Err(io(e)));
            }
        };
        if (got as u64) < length {
            self.done = true;
            return Some(Ok(Record::Truncated(start)));
        }
        self.offset += 4 + length;
        Some(
            LogEntry::decode(self.buf.as_slice())
                .map(|e| Record::Entry(start, e))
                .map_err(|e| {
                    self.done = true;
                    AslError::Decode {
                        file: self.file.clone(),
                        offset: start,
                        message: e.to_string(),
                    }
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::proto::*;

    fn sample() -> Vec<LogEntry> {
        let meta = RolloutMetadata {
            session_metadata: Some(SessionMetadata {
                session_uuid: "b-0".into(),
                scene_id: "s".into(),
                batch_size: 1,
                n_sim_steps: 2,
                start_timestamp_us: 300_000,
                control_timestep_us: 100_000,
            }),
            rollout_index: 0,
            ..Default::default()
        };
        let poses = |t: u64| ActorPoses {
            timestamp_us: t,
            actor_poses: vec![ActorPose {
                actor_id: "EGO".into(),
                actor_pose: Some(Pose {
                    vec: Some(Vec3 {
                        x: 1.0,
                        y: 2.0,
                        z: 0.0,
                    }),
                    quat: Some(Quat {
                        w: 1.0,
                        ..Default::default()
                    }),
                }),
                drivekit_state: vec![],
            }],
        };
        vec![
            LogEntry {
                entry: Some(Entry::RolloutMetadata(meta)),
            },
            LogEntry {
                entry: Some(Entry::ActorPoses(poses(300_000))),
            },
            LogEntry {
                entry: Some(Entry::ActorPoses(poses(400_000))),
            },
        ]
    }

    fn bytes(entries: &[LogEntry]) -> Vec<u8> {
        let mut w = AslWriter::new(Vec::new());
        for e in entries {
            w.write(e).unwrap();
        }
        w.finish().unwrap()
    }

    fn read(b: &[u8]) -> Vec<Result<Record, AslError>> {
        AslReader::new(b, Path::new("rollout.asl"), b.len() as u64).collect()
    }

    #[test]
    fn round_trip_with_big_endian_prefixes() {
        let b = bytes(&sample());
        let first_len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
        assert_eq!(first_len, sample()[0].encoded_len());
        let got: Vec<LogEntry> = read(&b)
            .into_iter()
            .map(|r| match r.unwrap() {
                Record::Entry(_, e) => e,
                Record::Truncated(o) => panic!("truncated at {o}"),
            })
            .collect();
        assert_eq!(got, sample());
    }

    #[test]
    fn truncated_last_record_keeps_the_rest() {
        let b = bytes(&sample());
        for cut in [1, 3, 10] {
            let r = read(&b[..b.len() - cut]);
            assert_eq!(r.len(), 3);
            assert!(
                matches!(r[2], Ok(Record::Truncated(_))),
                "cut {cut}: {:?}",
                r[2]
            );
        }
    }

    #[test]
    fn oversized_and_undecodable_records_name_the_offset() {
        let mut b = bytes(&sample()[..1]);
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        let r = read(&b);
        let e = r.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(
            e.contains("rollout.asl")
                && e.contains(&format!("record at byte {}", sample()[0].encoded_len() + 4)),
            "{e}"
        );
        let garbage = [0, 0, 0, 2, 0xff, 0xff];
        let e = read(&garbage)[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("record at byte 0 does not decode"), "{e}");
    }

    #[test]
    fn unknown_entry_kinds_are_skipped() {
        // LogEntry field 99 (length-delimited, 2 bytes): a kind drivekit does not know.
        let body = [0x9a, 0x06, 0x02, 0x08, 0x01];
        let mut b = (body.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(&body);
        let r = read(&b);
        assert_eq!(r.len(), 1);
        assert!(matches!(
            &r[0],
            Ok(Record::Entry(0, LogEntry { entry: None }))
        ));
    }
}
