//! TFRecord framing, as TensorFlow writes it (`tensorflow/core/lib/io/record_writer.cc`): per
//! record a u64 little-endian length, the masked CRC-32C of those 8 bytes, the data, and the
//! masked CRC-32C of the data; mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. Both checksums are
//! verified; a bad record is named by file and byte offset.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// A file's records cannot be read on from here.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file cannot be opened or read.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// The file ends inside a record.
    #[error("{file}: truncated record at byte {offset} ({what})")]
    Truncated {
        /// the file
        file: PathBuf,
        /// where the record starts
        offset: u64,
        /// which part is cut short
        what: &'static str,
    },
    /// A checksum does not match.
    #[error("{file}: record at byte {offset}: {what} CRC-32C mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Crc {
        /// the file
        file: PathBuf,
        /// where the record starts
        offset: u64,
        /// "length" or "data"
        what: &'static str,
        /// the stored masked CRC
        stored: u32,
        /// the masked CRC of the bytes read
        computed: u32,
    },
    /// A length no real record has (a corrupt length that its CRC happens to match is caught
    /// here before allocating).
    #[error("{file}: record at byte {offset} claims {length} bytes, more than the {limit} bytes left in the file")]
    TooLong {
        /// the file
        file: PathBuf,
        /// where the record starts
        offset: u64,
        /// the claimed length
        length: u64,
        /// bytes left
        limit: u64,
    },
}

/// TensorFlow's masked CRC-32C.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Frames `data` as one record (for tests and tools that write TFRecords).
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The records of one file, in order: each with its byte offset. After the first error the
/// iterator ends (the framing cannot be trusted beyond it).
pub struct Records {
    file: PathBuf,
    r: BufReader<std::fs::File>,
    offset: u64,
    size: u64,
    done: bool,
}

impl Records {
    /// Opens `file`.
    pub fn open(file: &Path) -> Result<Records, RecordError> {
        let io = |source| RecordError::Io {
            file: file.to_path_buf(),
            source,
        };
        let f = std::fs::File::open(file).map_err(io)?;
        let size = f.metadata().map_err(io)?.len();
        Ok(Records {
            file: file.to_path_buf(),
            r: BufReader::with_capacity(1 << 20, f),
            offset: 0,
            size,
            done: false,
        })
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of file before any byte.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    fn next_record(&mut self) -> Option<Result<(u64, Vec<u8>), RecordError>> {
        let start = self.offset;
        let file = self.file.clone();
        let io = |source| RecordError::Io {
            file: file.clone(),
            source,
        };
        let trunc = |what| RecordError::Truncated {
            file: file.clone(),
            offset: start,
            what,
        };
        let mut head = [0u8; 12];
        match self.fill(&mut head) {
            Err(e) => return Some(Err(io(e))),
            Ok(0) => return None,
            Ok(12) => {}
            Ok(_) => return Some(Err(trunc("length header"))),
        }
        let len_bytes: [u8; 8] = head[..8].try_into().expect("8 bytes");
        let stored = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        let computed = masked_crc(&len_bytes);
        if stored != computed {
            return Some(Err(RecordError::Crc {
                file,
                offset: start,
                what: "length",
                stored,
                computed,
            }));
        }
        let length = u64::from_le_bytes(len_bytes);
        let left = self.size.saturating_sub(start + 12);
        if length > left {
            // A plausible length: the file was cut; an absurd one: a corrupt header.
            return Some(Err(if length < (1 << 34) {
                trunc("data")
            } else {
                RecordError::TooLong {
                    file,
                    offset: start,
                    length,
                    limit: left,
                }
            }));
        }
        let mut data = vec![0u8; length as usize];
        match self.fill(&mut data) {
            Err(e) => return Some(Err(io(e))),
            Ok(n) if n < data.len() => return Some(Err(trunc("data"))),
            Ok(_) => {}
        }
        let mut tail = [0u8; 4];
        match self.fill(&mut tail) {
            Err(e) => return Some(Err(io(e))),
            Ok(4) => {}
            Ok(_) => return Some(Err(trunc("data CRC"))),
        }
        let stored = u32::from_le_bytes(tail);
        let computed = masked_crc(&data);
        if stored != computed {
            return Some(Err(RecordError::Crc {
                file,
                offset: start,
                what: "data",
                stored,
                computed,
            }));
        }
        self.offset = start + 16 + length;
        Some(Ok((start, data)))
    }
}

impl Iterator for Records {
    type Item = Result<(u64, Vec<u8>), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_record();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720 test vector).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn frames_round_trip_and_damage_is_named_with_its_offset() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.tfrecord");
        let mut bytes = frame(b"first");
        bytes.extend(frame(b"second record"));
        std::fs::write(&p, &bytes).unwrap();
        let got: Vec<_> = Records::open(&p).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(
            got,
            vec![(0, b"first".to_vec()), (21, b"second record".to_vec())]
        );
        // A flipped data byte in the second record.
        let mut bad = bytes.clone();
        bad[21 + 12 + 3] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        let r: Vec<_> = Records::open(&p).unwrap().collect();
        assert_eq!(r.len(), 2);
        let e = r[1].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("record at byte 21: data CRC-32C mismatch"),
            "{e}"
        );
        // A flipped length byte.
        let mut bad = bytes.clone();
        bad[0] ^= 4;
        std::fs::write(&p, &bad).unwrap();
        let e = Records::open(&p)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("record at byte 0: length CRC-32C mismatch"),
            "{e}"
        );
        // Truncated inside the second record.
        std::fs::write(&p, &bytes[..bytes.len() - 6]).unwrap();
        let r: Vec<_> = Records::open(&p).unwrap().collect();
        let e = r[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("truncated record at byte 21 (data)"), "{e}");
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        let r: Vec<_> = Records::open(&p).unwrap().collect();
        assert!(r[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("(data CRC)"));
        std::fs::write(&p, &bytes[..5]).unwrap();
        let e = Records::open(&p)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("truncated record at byte 0 (length header)"),
            "{e}"
        );
        std::fs::write(&p, b"").unwrap();
        assert!(Records::open(&p).unwrap().next().is_none());
    }
}
