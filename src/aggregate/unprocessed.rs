//! `aggregate/metrics_unprocessed.parquet`: every metrics row of the run, with the combined
//! run_uuid, one row group per batch in sorted batch order.
//!
//! The output has drivekit's columns and types, each column nullable as it is in the run's first
//! batch ([`output_schema`]): drivekit writes its key columns required, polars and pyarrow (and so
//! AlpaSim) write every column optional. A batch whose columns then match the output's exactly
//! (name, type, nullability, whichever writer made it) has its encoded column chunks copied as
//! they are; any other file is re-encoded on the worker that read it (so encoding runs in
//! parallel). One writer appends the row groups in order. The `run_uuid` column is encoded at append time, because the
//! combined id is only final once every batch is read. A rerun copies the encoded bytes of
//! unchanged batches from the previous file instead of reading their metrics again; which batch
//! each row group holds is recorded in the file's key-value metadata.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory;
use parquet::arrow::ArrowSchemaConverter;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, KeyValue, ParquetMetaData};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::{SchemaDescPtr, SchemaDescriptor};
use serde::{Deserialize, Serialize};

use crate::dict_chunk;
use crate::fsutil;
use crate::metrics_file::{self, col};

const KV_ROW_GROUPS: &str = "drivekit.row_groups";
const KV_RUN_UUID: &str = "drivekit.run_uuid";

/// [`metrics_file::arrow_schema`] with each column as nullable as in the metrics file `like`
/// (the run's first batch; a column it lacks, or the whole file when unreadable, keeps drivekit's
/// nullability). Every batch written by the same writer then matches the output column for
/// column, so its chunks are copied, not re-encoded.
pub fn output_schema(like: Option<&Path>) -> SchemaRef {
    let base = metrics_file::arrow_schema();
    let Some(descr) = like
        .and_then(|p| File::open(p).ok())
        .and_then(|f| SerializedFileReader::new(f).ok())
        .map(|r| r.metadata().file_metadata().schema_descr_ptr())
    else {
        return base;
    };
    let fields: Vec<Field> = base
        .fields()
        .iter()
        .map(|f| {
            let leaf = (0..descr.num_columns())
                .map(|i| descr.column(i))
                .find(|c| c.path().parts() == [f.name().as_str()]);
            match leaf {
                Some(c) => f
                    .as_ref()
                    .clone()
                    .with_nullable(c.self_type().is_optional()),
                None => f.as_ref().clone(),
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Parquet schema the output has for the Arrow `schema`.
fn parquet_schema(schema: &SchemaRef) -> Result<SchemaDescriptor, ParquetError> {
    ArrowSchemaConverter::new()
        .with_coerce_types(metrics_file::writer_properties().coerce_types())
        .convert(schema)
}

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
    chunks: Vec<metrics_file::ColumnChunk>,
    rows: usize,
}

/// A previous `metrics_unprocessed.parquet` whose row groups can be copied.
pub struct PreviousFile {
    path: PathBuf,
    file: File,
    meta: ParquetMetaData,
    by_key: HashMap<BatchKey, Vec<usize>>,
    /// Batches in file order (each once).
    order: Vec<BatchKey>,
    /// The run_uuid it was written with.
    run_uuid: Option<String>,
}

impl PreviousFile {
    /// Opens `path` if it exists, was written by drivekit and has the columns of `schema`
    /// (an [`output_schema`]); `None` otherwise.
    pub fn open(path: &Path, schema: &SchemaRef) -> Option<PreviousFile> {
        let file = File::open(path).ok()?;
        let reader = SerializedFileReader::new(file.try_clone().ok()?).ok()?;
        let meta = reader.metadata().clone();
        let want = parquet_schema(schema).ok()?;
        let have = meta.file_metadata().schema_descr();
        if have.num_columns() != want.num_columns()
            || (0..want.num_columns()).any(|i| have.column(i).as_ref() != want.column(i).as_ref())
        {
            return None;
        }
        let kv = meta.file_metadata().key_value_metadata()?;
        let groups = kv.iter().find(|k| k.key == KV_ROW_GROUPS)?.value.as_ref()?;
        let keys: Vec<BatchKey> = serde_json::from_str(groups).ok()?;
        if keys.len() != meta.num_row_groups() {
            return None;
        }
        let mut by_key: HashMap<BatchKey, Vec<usize>> = HashMap::new();
        let mut order: Vec<BatchKey> = Vec::new();
        for (i, k) in keys.into_iter().enumerate() {
            if order.last() != Some(&k) {
                order.push(k.clone());
            }
            by_key.entry(k).or_default().push(i);
        }
        let run_uuid = kv
            .iter()
            .find(|k| k.key == KV_RUN_UUID)
            .and_then(|k| k.value.clone());
        Some(PreviousFile {
            path: path.to_path_buf(),
            file,
            meta,
            by_key,
            order,
            run_uuid,
        })
    }

    /// True when this file holds exactly the batches `keys`, in that order, written with
    /// `run_uuid`: then it can stand as it is.
    pub fn holds_exactly(&self, keys: &[BatchKey], run_uuid: &str) -> bool {
        self.run_uuid.as_deref() == Some(run_uuid) && self.order == keys
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The batches it holds, in file order.
    pub fn keys(&self) -> &[BatchKey] {
        &self.order
    }

    /// The row groups holding `key`, if the previous file has it.
    pub fn row_groups(&self, key: &BatchKey) -> Option<&[usize]> {
        self.by_key.get(key).map(Vec::as_slice)
    }
}

/// The row groups of each batch (by its dir relative to the run root) in a file written by
/// [`UnprocessedWriter`]; empty when `meta` does not say.
pub fn batch_row_groups(meta: &ParquetMetaData) -> HashMap<String, Vec<usize>> {
    let keys: Option<Vec<BatchKey>> = meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == KV_ROW_GROUPS))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| serde_json::from_str(v).ok())
        .filter(|keys: &Vec<BatchKey>| keys.len() == meta.num_row_groups());
    let mut out: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, k) in keys.into_iter().flatten().enumerate() {
        out.entry(k.batch).or_default().push(i);
    }
    out
}

/// Where a row group's bytes come from.
pub enum Source<'a> {
    /// Freshly encoded.
    Fresh(EncodedBatch),
    /// Copied from these row groups of a previous file.
    Copy(&'a PreviousFile, Vec<usize>),
    /// Copied from the batch's own metrics.parquet.
    Input(InputFile),
}

/// A batch's metrics.parquet whose schema is exactly drivekit's, so its encoded column chunks
/// can be copied into the output without decoding.
pub struct InputFile {
    file: File,
    meta: Arc<ParquetMetaData>,
    /// Input leaf index of each output column.
    columns: [usize; 9],
}

impl InputFile {
    /// Opens `path` when every output column has an identical column (name, types, nullability)
    /// in it; `None` otherwise.
    pub fn open_if_compatible(path: &Path, output: &SchemaDescriptor) -> Option<InputFile> {
        let file = File::open(path).ok()?;
        let reader = SerializedFileReader::new(file.try_clone().ok()?).ok()?;
        let meta = Arc::new(reader.metadata().clone());
        let input = meta.file_metadata().schema_descr();
        let mut columns = [0usize; 9];
        for (c, slot) in columns.iter_mut().enumerate() {
            let want = output.column(c);
            *slot =
                (0..input.num_columns()).find(|&i| input.column(i).as_ref() == want.as_ref())?;
        }
        Some(InputFile {
            file,
            meta,
            columns,
        })
    }
}

fn close_result(meta: &ColumnChunkMetaData, rows: i64) -> ColumnCloseResult {
    ColumnCloseResult {
        bytes_written: meta.compressed_size() as u64,
        rows_written: rows as u64,
        metadata: meta.clone(),
        bloom_filter: None,
        column_index: None,
        offset_index: None,
    }
}

/// Streams row groups into a temporary file and renames it into place on [`finish`](Self::finish).
pub struct UnprocessedWriter {
    writer: SerializedFileWriter<BufWriter<File>>,
    /// Encodes this writer's columns (fresh batches, the run_uuid chunks).
    encoder: Encoder,
    keys: Vec<BatchKey>,
    tmp: fsutil::TempFile,
    path: PathBuf,
    run_uuid: String,
    /// Encoded constant run_uuid chunks by row count (most batches share a row count; each is
    /// one RLE run, [`dict_chunk`]).
    uuid_chunks: HashMap<usize, (Bytes, ColumnCloseResult)>,
}

fn other(e: impl std::fmt::Display) -> ParquetError {
    ParquetError::General(e.to_string())
}

impl UnprocessedWriter {
    /// Starts writing `path` (through a temporary sibling) with the columns of `schema` (an
    /// [`output_schema`]), with `run_uuid` in every row.
    pub fn create(
        path: &Path,
        run_uuid: &str,
        schema: SchemaRef,
    ) -> Result<UnprocessedWriter, ParquetError> {
        let tmp = fsutil::TempFile::for_target(path);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).map_err(other)?;
        }
        let file = File::create(tmp.path()).map_err(other)?;
        let encoder = Encoder::new(schema)?;
        let writer = SerializedFileWriter::new(
            BufWriter::with_capacity(1 << 22, file),
            encoder.descr.root_schema_ptr(),
            Arc::new(metrics_file::writer_properties()),
        )?;
        Ok(UnprocessedWriter {
            writer,
            encoder,
            keys: Vec::new(),
            tmp,
            path: path.to_path_buf(),
            run_uuid: run_uuid.to_string(),
            uuid_chunks: HashMap::new(),
        })
    }

    /// A handle workers use to encode batches in parallel.
    pub fn encoder(&self) -> Encoder {
        self.encoder.clone()
    }

    /// Appends one batch's rows (one or more row groups).
    pub fn append(&mut self, key: BatchKey, source: Source<'_>) -> Result<(), ParquetError> {
        match source {
            Source::Fresh(e) => {
                let mut chunks = e.chunks.into_iter();
                self.row_group(&key, e.rows, |rg, _| {
                    chunks
                        .next()
                        .expect("one chunk per column")
                        .append_to_row_group(rg)
                })
            }
            Source::Copy(prev, groups) => {
                for n in groups {
                    let group = prev.meta.row_group(n);
                    self.row_group(&key, group.num_rows() as usize, |rg, c| {
                        rg.append_column(
                            &prev.file,
                            close_result(group.column(c), group.num_rows()),
                        )
                    })?;
                }
                Ok(())
            }
            Source::Input(input) => {
                for group in input.meta.row_groups() {
                    self.row_group(&key, group.num_rows() as usize, |rg, c| {
                        let meta = group.column(input.columns[c]);
                        rg.append_column(&input.file, close_result(meta, group.num_rows()))
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Appends one row group: `column(rg, c)` appends column `c` (never run_uuid, which this
    /// fills with the constant chunk).
    fn row_group(
        &mut self,
        key: &BatchKey,
        rows: usize,
        mut column: impl FnMut(
            &mut SerializedRowGroupWriter<'_, BufWriter<File>>,
            usize,
        ) -> Result<(), ParquetError>,
    ) -> Result<(), ParquetError> {
        if rows == 0 {
            // An empty batch (a metrics.parquet with the schema and no rows) adds nothing.
            return Ok(());
        }
        if !self.uuid_chunks.contains_key(&rows) {
            let chunk = dict_chunk::encode_chunk(
                &self.encoder.descr.column(col::RUN_UUID),
                &dict_chunk::KeyedColumn::constant(&self.run_uuid, rows),
            )?;
            self.uuid_chunks.insert(rows, chunk);
        }
        let (uuid_bytes, uuid_close) = &self.uuid_chunks[&rows];
        let mut rg = self.writer.next_row_group()?;
        for c in 0..metrics_file::COLUMNS.len() {
            if c == col::RUN_UUID {
                rg.append_column(uuid_bytes, uuid_close.clone())?;
            } else {
                column(&mut rg, c)?;
            }
        }
        rg.close()?;
        self.keys.push(key.clone());
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
        // Derived output: renamed into place without fsync (see fsutil::Durability).
        drop(file);
        self.tmp.persist(&self.path).map_err(other)?;
        Ok(self.path)
    }
}

/// Where aggregate's read loop sends each batch's rows, in batch order: one file
/// ([`UnprocessedWriter`], a partial aggregation's) or the run's part files
/// ([`super::parts::PartsWriter`]).
pub trait RowSink: Send {
    /// A handle workers use to encode batches for this sink.
    fn encoder(&self) -> Encoder;
    /// Appends the rows of the batch at position `ordinal` of the run's complete batches.
    fn append(
        &mut self,
        ordinal: usize,
        key: BatchKey,
        source: Source<'_>,
    ) -> Result<(), ParquetError>;
}

impl RowSink for UnprocessedWriter {
    fn encoder(&self) -> Encoder {
        UnprocessedWriter::encoder(self)
    }

    fn append(&mut self, _: usize, key: BatchKey, source: Source<'_>) -> Result<(), ParquetError> {
        UnprocessedWriter::append(self, key, source)
    }
}

/// Encodes batches for an [`UnprocessedWriter`]; cheap to clone into workers.
#[derive(Clone)]
pub struct Encoder {
    factory: Arc<ArrowRowGroupWriterFactory>,
    descr: SchemaDescPtr,
    schema: SchemaRef,
}

impl Encoder {
    /// An encoder for outputs with the columns of `schema` (an [`output_schema`]): what it
    /// encodes goes into any [`UnprocessedWriter`] of that schema.
    pub fn new(schema: SchemaRef) -> Result<Encoder, ParquetError> {
        let props = Arc::new(metrics_file::writer_properties());
        let descr = parquet_schema(&schema)?;
        // The factory only takes the schema and properties of the writer it is made from.
        let writer = SerializedFileWriter::new(Vec::new(), descr.root_schema_ptr(), props)?;
        let factory = Arc::new(ArrowRowGroupWriterFactory::new(
            &writer,
            Arc::clone(&schema),
        ));
        Ok(Encoder {
            factory,
            descr: Arc::new(descr),
            schema,
        })
    }

    /// The batch's own file, when its column chunks can be copied as they are.
    pub fn compatible_input(&self, path: &Path) -> Option<InputFile> {
        InputFile::open_if_compatible(path, &self.descr)
    }

    /// Encodes all columns but run_uuid of `batches` (columns of [`metrics_file::arrow_schema`]).
    pub fn encode(&self, batches: &[RecordBatch]) -> Result<EncodedBatch, ParquetError> {
        let schema = &self.schema;
        let writers = self.factory.create_column_writers(0)?;
        let mut chunks = Vec::with_capacity(writers.len() - 1);
        let mut rows = 0;
        for b in batches {
            rows += b.num_rows();
        }
        let pieces: Vec<_> = batches.iter().map(|b| (b, 0, b.num_rows())).collect();
        for (c, w) in writers.into_iter().enumerate() {
            if c == col::RUN_UUID {
                continue;
            }
            let descr = self.descr.column(c);
            chunks.push(metrics_file::encode_column(
                &pieces,
                c,
                &descr,
                schema.field(c),
                w,
            )?);
        }
        Ok(EncodedBatch { chunks, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics_file::{MetricRow, MetricsBuilder};
    use arrow_array::cast::AsArray;
    use arrow_array::{ArrayRef, DictionaryArray, StringArray};
    use parquet::arrow::ArrowWriter;

    fn rows() -> RecordBatch {
        let mut b = MetricsBuilder::new();
        for t in 0..3 {
            b.push(&MetricRow {
                name: "offroad",
                timestamps_us: t * 100_000,
                value: Some(0.0),
                valid: true,
                time_aggregation: "max",
                clipgt_id: "clip",
                rollout_id: "b-0",
                run_uuid: "u",
                run_name: "n",
            });
        }
        b.finish()
    }

    /// Writes `batch` as polars and pyarrow do: every column optional, plain strings.
    fn write_all_optional(path: &Path, batch: &RecordBatch) {
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(
                |c| match c.as_dictionary_opt::<arrow_array::types::Int32Type>() {
                    Some(d) => {
                        let values: &StringArray = d.values().as_string();
                        let plain: StringArray = d
                            .keys()
                            .values()
                            .iter()
                            .map(|&k| Some(values.value(k as usize)))
                            .collect();
                        Arc::new(plain) as ArrayRef
                    }
                    None => Arc::clone(c),
                },
            )
            .collect();
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn files_with_optional_columns_are_copied_into_an_output_as_optional_as_they_are() {
        let d = tempfile::tempdir().unwrap();
        let optional = d.path().join("optional.parquet");
        write_all_optional(&optional, &rows());
        let drivekit = d.path().join("drivekit.parquet");
        metrics_file::write_metrics_file(&drivekit, &[rows()]).unwrap();

        // Each writer's files are copied into an output shaped like them, and only into that.
        let like_optional = output_schema(Some(&optional));
        assert!(like_optional.fields().iter().all(|f| f.is_nullable()));
        let like_drivekit = output_schema(Some(&drivekit));
        assert_eq!(like_drivekit, metrics_file::arrow_schema());
        assert_eq!(output_schema(None), metrics_file::arrow_schema());
        for (schema, copied, encoded) in [
            (&like_optional, &optional, &drivekit),
            (&like_drivekit, &drivekit, &optional),
        ] {
            let descr = parquet_schema(schema).unwrap();
            assert!(InputFile::open_if_compatible(copied, &descr).is_some());
            assert!(InputFile::open_if_compatible(encoded, &descr).is_none());
        }

        // Both kinds of input go into one output, copied or re-encoded, and read back the same.
        let out = d.path().join("out.parquet");
        let mut w =
            UnprocessedWriter::create(&out, "combined", Arc::clone(&like_optional)).unwrap();
        let enc = w.encoder();
        for (i, path) in [&optional, &drivekit].into_iter().enumerate() {
            let key = BatchKey::of(&format!("b{i}"), path).unwrap();
            let source = match enc.compatible_input(path) {
                Some(input) => Source::Input(input),
                None => {
                    let batches: Vec<RecordBatch> = metrics_file::open_metrics_file(path)
                        .unwrap()
                        .map(|b| b.unwrap())
                        .collect();
                    Source::Fresh(enc.encode(&batches).unwrap())
                }
            };
            assert_eq!(matches!(source, Source::Input(_)), i == 0);
            w.append(key, source).unwrap();
        }
        w.finish().unwrap();
        let read: Vec<RecordBatch> = metrics_file::open_metrics_file(&out)
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let total: usize = read.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(total, 6);
        let uuid: &DictionaryArray<arrow_array::types::Int32Type> =
            read[0].column(col::RUN_UUID).as_dictionary();
        let values: &StringArray = uuid.values().as_string();
        assert_eq!(values.value(uuid.keys().value(0) as usize), "combined");
        // A previous file is reused only by an output of its own shape.
        assert!(PreviousFile::open(&out, &like_optional).is_some());
        assert!(PreviousFile::open(&out, &like_drivekit).is_none());
    }
}
