//! `aggregate/metrics_unprocessed.parquet`: every metrics row of the run, with the combined
//! run_uuid, one row group per batch in sorted batch order.
//!
//! Row groups are encoded on the worker that read the batch (so encoding runs in parallel) and
//! appended in order by one writer. The `run_uuid` column is encoded at append time, because the
//! combined id is only final once every batch is read. A rerun copies the encoded bytes of
//! unchanged batches from the previous file instead of reading their metrics again; which batch
//! each row group holds is recorded in the file's key-value metadata.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
use arrow_schema::Schema;
use bytes::Bytes;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowSchemaConverter;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::metrics_file::{self, col};

const KV_ROW_GROUPS: &str = "drivekit.row_groups";
const KV_RUN_UUID: &str = "drivekit.run_uuid";

/// Identity of a batch's metrics file: when it matches, its encoded rows can be reused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchKey {
    /// Batch dir relative to the run root.
    pub batch: String,
    /// Size of metrics.parquet in bytes.
    pub size: u64,
    /// Modification time of metrics.parquet (ns since the epoch).
    pub mtime_ns: i128,
}

impl BatchKey {
    /// Reads size and mtime of `metrics` for the batch dir `rel`.
    pub fn of(rel: &str, metrics: &Path) -> std::io::Result<BatchKey> {
        let m = fs::metadata(metrics)?;
        let mtime_ns = m
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Ok(BatchKey {
            batch: rel.to_string(),
            size: m.len(),
            mtime_ns,
        })
    }
}

/// The columns of one batch, encoded (all but run_uuid).
pub struct EncodedBatch {
    chunks: Vec<ArrowColumnChunk>,
    rows: usize,
}

/// A previous `metrics_unprocessed.parquet` whose row groups can be copied.
pub struct PreviousFile {
    file: File,
    meta: ParquetMetaData,
    by_key: HashMap<BatchKey, usize>,
}

impl PreviousFile {
    /// Opens `path` if it exists and was written by drivekit; `None` otherwise.
    pub fn open(path: &Path) -> Option<PreviousFile> {
        let file = File::open(path).ok()?;
        let reader = SerializedFileReader::new(file.try_clone().ok()?).ok()?;
        let meta = reader.metadata().clone();
        let kv = meta.file_metadata().key_value_metadata()?;
        let groups = kv.iter().find(|k| k.key == KV_ROW_GROUPS)?.value.as_ref()?;
        let keys: Vec<BatchKey> = serde_json::from_str(groups).ok()?;
        if keys.len() != meta.num_row_groups() {
            return None;
        }
        let by_key = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
        Some(PreviousFile { file, meta, by_key })
    }

    /// The row group holding `key`, if the previous file has it.
    pub fn row_group(&self, key: &BatchKey) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    /// The combined run_uuid the previous file was written with.
    pub fn run_uuid(&self) -> Option<String> {
        let kv = self.meta.file_metadata().key_value_metadata()?;
        kv.iter().find(|k| k.key == KV_RUN_UUID)?.value.clone()
    }
}

/// Where a row group's bytes come from.
pub enum Source<'a> {
    /// Freshly encoded.
    Fresh(EncodedBatch),
    /// Copied from row group `n` of a previous file.
    Copy(&'a PreviousFile, usize),
}

/// Streams row groups into a temporary file and renames it into place on [`finish`](Self::finish).
pub struct UnprocessedWriter {
    writer: SerializedFileWriter<BufWriter<File>>,
    factory: Arc<ArrowRowGroupWriterFactory>,
    keys: Vec<BatchKey>,
    tmp: PathBuf,
    path: PathBuf,
    run_uuid: String,
    /// Encoded constant run_uuid chunks by row count: most batches share a row count, and
    /// encoding a constant column row by row costs as much as the rest of the row group.
    uuid_chunks: HashMap<usize, (Bytes, ColumnCloseResult)>,
}

fn other(e: impl std::fmt::Display) -> ParquetError {
    ParquetError::General(e.to_string())
}

impl UnprocessedWriter {
    /// Starts writing `path` (through a temporary sibling), with `run_uuid` in every row.
    pub fn create(path: &Path, run_uuid: &str) -> Result<UnprocessedWriter, ParquetError> {
        let tmp = fsutil::temp_path(path);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).map_err(other)?;
        }
        let file = File::create(&tmp).map_err(other)?;
        let schema = metrics_file::arrow_schema();
        let props = Arc::new(metrics_file::writer_properties());
        let descr = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(&schema)?;
        let writer = SerializedFileWriter::new(
            BufWriter::with_capacity(1 << 22, file),
            descr.root_schema_ptr(),
            props,
        )?;
        let factory = Arc::new(ArrowRowGroupWriterFactory::new(&writer, schema));
        Ok(UnprocessedWriter {
            writer,
            factory,
            keys: Vec::new(),
            tmp,
            path: path.to_path_buf(),
            run_uuid: run_uuid.to_string(),
            uuid_chunks: HashMap::new(),
        })
    }

    /// A handle workers use to encode batches in parallel.
    pub fn encoder(&self) -> Encoder {
        Encoder {
            factory: Arc::clone(&self.factory),
        }
    }

    /// Appends one batch's rows as a row group.
    pub fn append(&mut self, key: BatchKey, source: Source<'_>) -> Result<(), ParquetError> {
        let rows = match &source {
            Source::Fresh(e) => e.rows,
            Source::Copy(prev, rg) => prev.meta.row_group(*rg).num_rows() as usize,
        };
        if !self.uuid_chunks.contains_key(&rows) {
            let chunk = constant_run_uuid_chunk(&self.run_uuid, rows)?;
            self.uuid_chunks.insert(rows, chunk);
        }
        let (uuid_bytes, uuid_close) = &self.uuid_chunks[&rows];
        let mut rg = self.writer.next_row_group()?;
        // Columns are appended in schema order; run_uuid goes in its slot.
        match source {
            Source::Fresh(e) => {
                let mut chunks = e.chunks.into_iter();
                for c in 0..metrics_file::COLUMNS.len() {
                    if c == col::RUN_UUID {
                        rg.append_column(uuid_bytes, uuid_close.clone())?;
                    } else {
                        let chunk = chunks.next().expect("one chunk per column");
                        chunk.append_to_row_group(&mut rg)?;
                    }
                }
            }
            Source::Copy(prev, n) => {
                let group = prev.meta.row_group(n);
                for c in 0..metrics_file::COLUMNS.len() {
                    if c == col::RUN_UUID {
                        rg.append_column(uuid_bytes, uuid_close.clone())?;
                        continue;
                    }
                    let meta = group.column(c).clone();
                    let close = ColumnCloseResult {
                        bytes_written: meta.compressed_size() as u64,
                        rows_written: group.num_rows() as u64,
                        metadata: meta,
                        bloom_filter: None,
                        column_index: None,
                        offset_index: None,
                    };
                    rg.append_column(&prev.file, close)?;
                }
            }
        }
        rg.close()?;
        self.keys.push(key);
        Ok(())
    }

    /// Writes the footer and renames the file into place.
    pub fn finish(mut self) -> Result<PathBuf, ParquetError> {
        let keys = serde_json::to_string(&self.keys).map_err(other)?;
        self.writer
            .append_key_value_metadata(KeyValue::new(KV_ROW_GROUPS.to_string(), keys));
        self.writer.append_key_value_metadata(KeyValue::new(
            KV_RUN_UUID.to_string(),
            self.run_uuid.clone(),
        ));
        let inner = self.writer.into_inner()?;
        let file = inner.into_inner().map_err(|e| other(e.error()))?;
        file.sync_all().map_err(other)?;
        fs::rename(&self.tmp, &self.path).map_err(other)?;
        Ok(self.path)
    }

    /// Abandons the file.
    pub fn abort(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Encodes batches for an [`UnprocessedWriter`]; cheap to clone into workers.
#[derive(Clone)]
pub struct Encoder {
    factory: Arc<ArrowRowGroupWriterFactory>,
}

impl Encoder {
    /// Encodes all columns but run_uuid of `batches` (of [`metrics_file::arrow_schema`]).
    pub fn encode(&self, batches: &[RecordBatch]) -> Result<EncodedBatch, ParquetError> {
        let schema = metrics_file::arrow_schema();
        let writers = self.factory.create_column_writers(0)?;
        let mut chunks = Vec::with_capacity(writers.len() - 1);
        let mut rows = 0;
        for b in batches {
            rows += b.num_rows();
        }
        for (c, mut w) in writers.into_iter().enumerate() {
            if c == col::RUN_UUID {
                continue;
            }
            for b in batches {
                for leaf in compute_leaves(schema.field(c), b.column(c))? {
                    w.write(&leaf)?;
                }
            }
            chunks.push(w.close()?);
        }
        Ok(EncodedBatch { chunks, rows })
    }
}

/// Encodes a run_uuid column of `rows` copies of `run_uuid` as a one-column Parquet file in
/// memory and returns its bytes with the chunk's metadata, ready for `append_column`.
fn constant_run_uuid_chunk(run_uuid: &str, rows: usize) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let field = metrics_file::arrow_schema().field(col::RUN_UUID).clone();
    let schema = Arc::new(Schema::new(vec![field]));
    let keys = Int32Array::from(vec![0; rows]);
    let values = Arc::new(StringArray::from(vec![run_uuid]));
    let arr: ArrayRef = Arc::new(DictionaryArray::try_new(keys, values).map_err(other)?);
    let batch = RecordBatch::try_new(schema.clone(), vec![arr]).map_err(other)?;
    let props = WriterProperties::builder()
        .set_compression(metrics_file::COMPRESSION)
        .set_max_row_group_row_count(None)
        .build();
    let opts = ArrowWriterOptions::new().with_properties(props).with_skip_arrow_metadata(true);
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new_with_options(&mut buf, schema, opts)?;
    w.write(&batch)?;
    w.close()?;
    let bytes = Bytes::from(buf);
    let reader = SerializedFileReader::new(bytes.clone())?;
    let group = reader.metadata().row_group(0);
    if reader.metadata().num_row_groups() != 1 || group.num_rows() as usize != rows {
        return Err(other("run_uuid column did not fit one row group"));
    }
    let meta = group.column(0).clone();
    let close = ColumnCloseResult {
        bytes_written: meta.compressed_size() as u64,
        rows_written: rows as u64,
        metadata: meta,
        bloom_filter: None,
        column_index: None,
        offset_index: None,
    };
    Ok((bytes, close))
}

