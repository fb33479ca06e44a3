//! H.264 in MP4: frames encoded with OpenH264 (the `openh264` crate builds its bundled source, so
//! no system package is needed) and muxed into an ISO-BMFF file by hand — ftyp, mdat, then a moov
//! with one `avc1` track — which ffprobe reads and browsers play.

use std::path::Path;

use openh264::encoder::{Encoder, EncoderConfig, FrameRate};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use openh264::OpenH264API;

use super::raster::Raster;
use crate::fsutil;

/// Why a video could not be written.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The encoder failed.
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    /// Writing the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The CUDA raster failed.
    #[error("CUDA raster: {0}")]
    Device(String),
}

/// Collects encoded frames of one video.
pub struct Mp4Writer {
    encoder: Encoder,
    width: usize,
    height: usize,
    fps: u32,
    sps: Vec<u8>,
    pps: Vec<u8>,
    samples: Vec<Vec<u8>>,
    sync: Vec<bool>,
    annex_b: Vec<u8>,
}

/// Splits an Annex-B stream into NAL units (without start codes).
fn nal_units(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut e = starts.get(k + 1).map_or(stream.len(), |n| n - 3);
            // A four-byte start code leaves one more zero before it.
            while e > s && stream[e - 1] == 0 && k + 1 < starts.len() {
                e -= 1;
            }
            &stream[s..e]
        })
        .collect()
}

impl Mp4Writer {
    /// A writer for `width` × `height` frames (both even) at `fps`.
    pub fn new(width: usize, height: usize, fps: u32) -> Result<Mp4Writer, VideoError> {
        let config = EncoderConfig::new().max_frame_rate(FrameRate::from_hz(fps as f32));
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| VideoError::Encoder(e.to_string()))?;
        Ok(Mp4Writer {
            encoder,
            width,
            height,
            fps: fps.max(1),
            sps: Vec::new(),
            pps: Vec::new(),
            samples: Vec::new(),
            sync: Vec::new(),
            annex_b: Vec::new(),
        })
    }

    /// Encodes one frame.
    pub fn push(&mut self, frame: &Raster) -> Result<(), VideoError> {
        let yuv =
            YUVBuffer::from_rgb8_source(RgbSliceU8::new(&frame.pixels, (self.width, self.height)));
        let bits = self
            .encoder
            .encode(&yuv)
            .map_err(|e| VideoError::Encoder(e.to_string()))?;
        self.annex_b.clear();
        bits.write_vec(&mut self.annex_b);
        let mut sample = Vec::new();
        let mut key = false;
        for nal in nal_units(&self.annex_b) {
            let Some(&h) = nal.first() else { continue };
            match h & 0x1F {
                7 => self.sps = nal.to_vec(),
                8 => self.pps = nal.to_vec(),
                t => {
                    key |= t == 5;
                    sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    sample.extend_from_slice(nal);
                }
            }
        }
        // A skipped frame still takes its time slot: an empty sample would not play, so repeat
        // the previous one.
        if sample.is_empty() {
            if let Some(prev) = self.samples.last().cloned() {
                sample = prev;
            }
        }
        self.samples.push(sample);
        self.sync.push(key);
        Ok(())
    }

    /// Frames pushed so far.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True before the first frame.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Writes the MP4 atomically.
    pub fn finish(self, path: &Path) -> Result<(), VideoError> {
        if self.sps.len() < 4 || self.pps.is_empty() || self.samples.is_empty() {
            return Err(VideoError::Encoder("no frames or no SPS/PPS".into()));
        }
        let bytes = self.mux();
        fsutil::write_atomic(path, &bytes)?;
        Ok(())
    }

    fn mux(&self) -> Vec<u8> {
        let n = self.samples.len() as u32;
        let duration_ms = (u64::from(n) * 1000 / u64::from(self.fps)) as u32;
        let mut out = Vec::new();
        // ftyp
        bx(&mut out, b"ftyp", |b| {
            b.extend_from_slice(b"isom");
            b.extend_from_slice(&0x200u32.to_be_bytes());
            for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
                b.extend_from_slice(brand);
            }
        });
        // mdat
        let data_len: usize = self.samples.iter().map(Vec::len).sum();
        out.extend_from_slice(&((8 + data_len) as u32).to_be_bytes());
        out.extend_from_slice(b"mdat");
        let chunk_offset = out.len() as u32;
        for s in &self.samples {
            out.extend_from_slice(s);
        }
        let matrix: [u32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];
        let (w, h) = (self.width as u32, self.height as u32);
        bx(&mut out, b"moov", |b| {
            full(b, b"mvhd", 0, 0, |b| {
                u32s(b, &[0, 0, 1000, duration_ms, 0x0001_0000]);
                b.extend_from_slice(&0x0100u16.to_be_bytes());
                b.extend_from_slice(&[0; 10]);
                u32s(b, &matrix);
                b.extend_from_slice(&[0; 24]);
                u32s(b, &[2]);
            });
            bx(b, b"trak", |b| {
                full(b, b"tkhd", 0, 3, |b| {
                    u32s(b, &[0, 0, 1, 0, duration_ms, 0, 0]);
                    b.extend_from_slice(&[0; 8]); // layer, alternate group, volume, reserved
                    u32s(b, &matrix);
                    u32s(b, &[w << 16, h << 16]);
                });
                bx(b, b"mdia", |b| {
                    full(b, b"mdhd", 0, 0, |b| {
                        u32s(b, &[0, 0, self.fps, n]);
                        b.extend_from_slice(&0x55C4u16.to_be_bytes()); // "und"
                        b.extend_from_slice(&[0, 0]);
                    });
                    full(b, b"hdlr", 0, 0, |b| {
                        u32s(b, &[0]);
                        b.extend_from_slice(b"vide");
                        b.extend_from_slice(&[0; 12]);
                        b.extend_from_slice(b"drivekit video\0");
                    });
                    bx(b, b"minf", |b| {
                        full(b, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                        bx(b, b"dinf", |b| {
                            full(b, b"dref", 0, 0, |b| {
                                u32s(b, &[1]);
                                full(b, b"url ", 0, 1, |_| {});
                            });
                        });
                        bx(b, b"stbl", |b| self.stbl(b, chunk_offset, w, h));
                    });
                });
            });
        });
        out
    }

    fn stbl(&self, b: &mut Vec<u8>, chunk_offset: u32, w: u32, h: u32) {
        let n = self.samples.len() as u32;
        full(b, b"stsd", 0, 0, |b| {
            u32s(b, &[1]);
            bx(b, b"avc1", |b| {
                b.extend_from_slice(&[0; 6]);
                b.extend_from_slice(&1u16.to_be_bytes()); // data reference index
                b.extend_from_slice(&[0; 16]);
                b.extend_from_slice(&(w as u16).to_be_bytes());
                b.extend_from_slice(&(h as u16).to_be_bytes());
                u32s(b, &[0x0048_0000, 0x0048_0000, 0]);
                b.extend_from_slice(&1u16.to_be_bytes()); // frame count
                b.extend_from_slice(&[0; 32]); // compressor name
                b.extend_from_slice(&0x0018u16.to_be_bytes());
                b.extend_from_slice(&0xFFFFu16.to_be_bytes());
                bx(b, b"avcC", |b| {
                    b.extend_from_slice(&[1, self.sps[1], self.sps[2], self.sps[3], 0xFF, 0xE1]);
                    b.extend_from_slice(&(self.sps.len() as u16).to_be_bytes());
                    b.extend_from_slice(&self.sps);
                    b.push(1);
                    b.extend_from_slice(&(self.pps.len() as u16).to_be_bytes());
                    b.extend_from_slice(&self.pps);
                });
            });
        });
        full(b, b"stts", 0, 0, |b| u32s(b, &[1, n, 1]));
        let keys: Vec<u32> = (1..=n).filter(|i| self.sync[*i as usize - 1]).collect();
        if keys.len() < n as usize {
            full(b, b"stss", 0, 0, |b| {
                u32s(b, &[keys.len() as u32]);
                u32s(b, &keys);
            });
        }
        full(b, b"stsc", 0, 0, |b| u32s(b, &[1, 1, n, 1]));
        full(b, b"stsz", 0, 0, |b| {
            u32s(b, &[0, n]);
            for s in &self.samples {
                u32s(b, &[s.len() as u32]);
            }
        });
        full(b, b"stco", 0, 0, |b| u32s(b, &[1, chunk_offset]));
    }
}

fn u32s(b: &mut Vec<u8>, v: &[u32]) {
    for x in v {
        b.extend_from_slice(&x.to_be_bytes());
    }
}

/// Appends a box: size, type, then what `f` writes.
fn bx(out: &mut Vec<u8>, kind: &[u8; 4], f: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    f(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box (version and flags).
fn full(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32, f: impl FnOnce(&mut Vec<u8>)) {
    bx(out, kind, |b| {
        b.push(version);
        b.extend_from_slice(&flags.to_be_bytes()[1..]);
        f(b);
    });
}

/// Writes frames as an MP4.
pub fn write<'a>(
    path: &Path,
    frames: impl IntoIterator<Item = &'a Raster>,
    fps: u32,
) -> Result<(), VideoError> {
    let mut it = frames.into_iter().peekable();
    let Some(first) = it.peek() else {
        return Err(VideoError::Encoder("no frames".into()));
    };
    let mut w = Mp4Writer::new(first.width, first.height, fps)?;
    for f in it {
        w.push(f)?;
    }
    w.finish(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_split_on_three_and_four_byte_start_codes() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let n = nal_units(&s);
        assert_eq!(
            n,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
    }
}
