//! The file a batch's rollout.asl is written to: plain, or xz-compressed (`rollout.asl.xz`), made
//! durable when finished.

use std::fs;
use std::io::Write as _;
use std::path::Path;

/// How rollout logs are stored (a command-line value: `none`, `xz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogCompression {
    /// `rollout.asl`, as AlpaSim writes it.
    #[default]
    None,
    /// `rollout.asl.xz` (liblzma, preset [`XZ_PRESET`]); drivekit's readers open it transparently.
    Xz,
}

/// xz preset for compressed logs: 1 keeps most of the size gain of the default 6 at several
/// times its speed on these records.
pub const XZ_PRESET: u32 = 1;

/// The file a batch's log is written to, plain or xz-compressed.
pub enum LogSink {
    /// rollout.asl
    Plain(std::io::BufWriter<fs::File>),
    /// rollout.asl.xz
    Xz(liblzma::write::XzEncoder<std::io::BufWriter<fs::File>>),
}

impl LogSink {
    /// Creates `path` (the caller renames it into place once finished).
    pub fn create(path: &Path, compression: LogCompression) -> std::io::Result<LogSink> {
        let file = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
        Ok(match compression {
            LogCompression::None => LogSink::Plain(file),
            LogCompression::Xz => LogSink::Xz(liblzma::write::XzEncoder::new(file, XZ_PRESET)),
        })
    }

    /// Appends encoded records.
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            LogSink::Plain(w) => w.write_all(bytes),
            LogSink::Xz(w) => w.write_all(bytes),
        }
    }

    /// Ends the stream and makes the file durable.
    pub fn finish(self) -> std::io::Result<()> {
        let buffered = match self {
            LogSink::Plain(w) => w,
            LogSink::Xz(w) => w.finish()?,
        };
        let mut file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.flush()?;
        file.sync_all()
    }

    /// The file name of a log stored with `compression`.
    pub fn file_name(compression: LogCompression) -> &'static str {
        match compression {
            LogCompression::None => super::asl::FILE_NAME,
            LogCompression::Xz => super::asl::XZ_FILE_NAME,
        }
    }
}
