//! `metrics.parquet` in AlpaSim's long format (DESIGN §3): the schema, a column builder and
//! writer (used by the simulator and the fixture generator), and a validating reader that hands
//! string columns out dictionary-encoded so per-row work stays on integer keys.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::{ArrowSchemaConverter, ProjectionMask};
use parquet::basic::Compression;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::ColumnDescPtr;

use crate::{dict_chunk, fsutil};

/// Column names, in file order.
pub const COLUMNS: [&str; 9] = [
    "name",
    "timestamps_us",
    "values",
    "valid",
    "time_aggregation",
    "clipgt_id",
    "rollout_id",
    "run_uuid",
    "run_name",
];

/// Index of each column in [`COLUMNS`].
pub mod col {
    /// metric name
    pub const NAME: usize = 0;
    /// simulation time (µs)
    pub const TIMESTAMPS_US: usize = 1;
    /// value (booleans as 0/1)
    pub const VALUES: usize = 2;
    /// written, not used by the aggregation
    pub const VALID: usize = 3;
    /// mean, median, max, min, last
    pub const TIME_AGGREGATION: usize = 4;
    /// scene id
    pub const CLIPGT_ID: usize = 5;
    /// rollout id, unique within the run
    pub const ROLLOUT_ID: usize = 6;
    /// run uuid
    pub const RUN_UUID: usize = 7;
    /// run name
    pub const RUN_NAME: usize = 8;
}

/// True for the string columns (all but timestamps_us, values and valid).
pub fn is_string_column(i: usize) -> bool {
    !matches!(i, col::TIMESTAMPS_US | col::VALUES | col::VALID)
}

fn dict_utf8() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The in-memory schema drivekit reads and writes: strings dictionary-encoded. Files are written
/// without the embedded Arrow schema, so pandas/pyarrow/polars see plain string columns.
pub fn arrow_schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let dt = match i {
                col::TIMESTAMPS_US => DataType::Int64,
                col::VALUES => DataType::Float64,
                col::VALID => DataType::Boolean,
                _ => dict_utf8(),
            };
            Field::new(*name, dt, i == col::VALUES || i == col::VALID)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Compression of metrics files written by drivekit.
pub fn compression() -> Compression {
    Compression::ZSTD(parquet::basic::ZstdLevel::try_new(1).expect("1 is a valid zstd level"))
}

/// Writer settings for metrics files: dictionary encoding on (every string column is highly
/// repetitive), Snappy compression (fast to write and read), large row groups.
pub fn writer_properties() -> WriterProperties {
    properties_builder().build()
}

fn properties_builder() -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(compression())
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_created_by(format!("drivekit {}", env!("CARGO_PKG_VERSION")))
}

/// Builds the columns of a metrics file row by row.
pub struct MetricsBuilder {
    name: KeyedStrings,
    ts: Int64Builder,
    values: Float64Builder,
    valid: BooleanBuilder,
    agg: KeyedStrings,
    clip: StringDictionaryBuilder<Int32Type>,
    rollout: StringDictionaryBuilder<Int32Type>,
    run_uuid: StringDictionaryBuilder<Int32Type>,
    run_name: StringDictionaryBuilder<Int32Type>,
    rows: usize,
}

/// A string column built as dictionary keys. Strings are hashed into the dictionary, except
/// `&'static str`s seen before: their address and length identify their bytes, so a small
/// direct-mapped cache by address answers them without hashing (the metric names and time
/// aggregations of [`MetricsBuilder::push_rollout`], two keys per row).
#[derive(Default)]
struct KeyedStrings {
    keys: Vec<i32>,
    values: Vec<String>,
    index: std::collections::HashMap<String, i32>,
    recent: StaticKeys,
}

/// The cache of [`KeyedStrings`]: (address, length, key) per slot.
struct StaticKeys([(usize, usize, i32); 64]);

impl Default for StaticKeys {
    fn default() -> Self {
        StaticKeys([(0, 0, -1); 64])
    }
}

impl KeyedStrings {
    fn key(&mut self, s: &str) -> i32 {
        if let Some(&k) = self.index.get(s) {
            return k;
        }
        let k = i32::try_from(self.values.len()).expect("fewer than 2³¹ distinct strings");
        self.values.push(s.to_string());
        self.index.insert(s.to_string(), k);
        k
    }

    fn push(&mut self, s: &str) {
        let k = self.key(s);
        self.keys.push(k);
    }

    fn push_static(&mut self, s: &'static str) {
        let addr = s.as_ptr() as usize;
        let slot = (addr ^ (addr >> 7) ^ s.len()) % self.recent.0.len();
        let (a, n, k) = self.recent.0[slot];
        let k = if a == addr && n == s.len() && k >= 0 {
            k
        } else {
            let k = self.key(s);
            self.recent.0[slot] = (addr, s.len(), k);
            k
        };
        self.keys.push(k);
    }

    fn finish(self) -> ArrayRef {
        let keys = arrow_array::Int32Array::from(self.keys);
        let values: ArrayRef = Arc::new(arrow_array::StringArray::from(self.values));
        Arc::new(
            arrow_array::DictionaryArray::<Int32Type>::try_new(keys, values)
                .expect("every key indexes the dictionary"),
        )
    }
}

/// One row of a metrics file.
#[derive(Debug, Clone, Copy)]
pub struct MetricRow<'a> {
    /// metric name
    pub name: &'a str,
    /// simulation time (µs)
    pub timestamps_us: i64,
    /// value; `None` writes a null
    pub value: Option<f64>,
    /// validity flag
    pub valid: bool,
    /// time aggregation name
    pub time_aggregation: &'a str,
    /// scene id
    pub clipgt_id: &'a str,
    /// rollout id
    pub rollout_id: &'a str,
    /// run uuid
    pub run_uuid: &'a str,
    /// run name
    pub run_name: &'a str,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        let d = StringDictionaryBuilder::<Int32Type>::new;
        MetricsBuilder {
            name: KeyedStrings::default(),
            ts: Int64Builder::new(),
            values: Float64Builder::new(),
            valid: BooleanBuilder::new(),
            agg: KeyedStrings::default(),
            clip: d(),
            rollout: d(),
            run_uuid: d(),
            run_name: d(),
            rows: 0,
        }
    }

    /// Appends one row.
    pub fn push(&mut self, r: &MetricRow<'_>) {
        self.name.push(r.name);
        self.ts.append_value(r.timestamps_us);
        self.values.append_option(r.value);
        self.valid.append_value(r.valid);
        self.agg.push(r.time_aggregation);
        self.clip.append_value(r.clipgt_id);
        self.rollout.append_value(r.rollout_id);
        self.run_uuid.append_value(r.run_uuid);
        self.run_name.append_value(r.run_name);
        self.rows += 1;
    }

    /// Appends the rows of one rollout — `(name, time aggregation, timestamps_us, value)`, all
    /// valid — whose scene, rollout and run columns are the same: those four are appended once
    /// per rollout instead of once per row. Names and aggregations are static strings (the
    /// metric tables'), which the builder keys by address without hashing.
    pub fn push_rollout(
        &mut self,
        clipgt_id: &str,
        rollout_id: &str,
        run_uuid: &str,
        run_name: &str,
        rows: impl Iterator<Item = (&'static str, &'static str, i64, f64)>,
    ) {
        let mut n = 0;
        for (name, agg, t, v) in rows {
            self.name.push_static(name);
            self.agg.push_static(agg);
            self.ts.append_value(t);
            self.values.append_value(v);
            n += 1;
        }
        self.valid.append_n(n, true);
        self.clip.append_values(clipgt_id, n);
        self.rollout.append_values(rollout_id, n);
        self.run_uuid.append_values(run_uuid, n);
        self.run_name.append_values(run_name, n);
        self.rows += n;
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True before the first row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Finishes the columns into a record batch of [`arrow_schema`].
    pub fn finish(mut self) -> RecordBatch {
        let cols: Vec<ArrayRef> = vec![
            self.name.finish(),
            Arc::new(self.ts.finish()),
            Arc::new(self.values.finish()),
            Arc::new(self.valid.finish()),
            self.agg.finish(),
            Arc::new(self.clip.finish()),
            Arc::new(self.rollout.finish()),
            Arc::new(self.run_uuid.finish()),
            Arc::new(self.run_name.finish()),
        ];
        RecordBatch::try_new(arrow_schema(), cols).expect("builder columns match the schema")
    }
}

/// Writes record batches of [`arrow_schema`] to `path` atomically.
pub fn write_metrics_file(path: &Path, batches: &[RecordBatch]) -> Result<(), MetricsFileError> {
    write_metrics_file_tagged(path, batches, &[])
}

/// Key of the footer metadata holding the scene's tags (a JSON array of strings): AlpaSim's
/// readers ignore it; `aggregate` groups the scores by it.
pub const SCENE_TAGS_KEY: &str = "drivekit:scene_tags";

/// [`write_metrics_file`] with the scene's tags in the footer ([`SCENE_TAGS_KEY`]; none: no key).
pub fn write_metrics_file_tagged(
    path: &Path,
    batches: &[RecordBatch],
    tags: &[String],
) -> Result<(), MetricsFileError> {
    let io = |e: std::io::Error| MetricsFileError::Io {
        file: path.to_path_buf(),
        source: e,
    };
    let mut props = properties_builder();
    if !tags.is_empty() {
        let value = serde_json::to_string(tags).expect("strings serialise");
        props = props.set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            SCENE_TAGS_KEY.to_string(),
            value,
        )]));
    }
    let props = Arc::new(props.build());
    fsutil::write_atomic_with(path, |w| {
        write_parquet(w, batches, props, MAX_ROW_GROUP_ROWS).map_err(std::io::Error::other)
    })
    .map_err(io)
}

/// The bytes of the metrics file [`write_metrics_file`] would write for `batches` (in memory; for
/// benchmarks and tests).
pub fn encode_metrics_file(batches: &[RecordBatch]) -> Result<Vec<u8>, ParquetError> {
    let mut out = Vec::new();
    write_parquet(
        &mut out,
        batches,
        Arc::new(writer_properties()),
        MAX_ROW_GROUP_ROWS,
    )?;
    Ok(out)
}

/// The bytes the arrow-rs `ArrowWriter` writes for `batches` with the same settings: the encoder
/// drivekit used before [`dict_chunk`] (it re-interns every string row). The benchmark's baseline
/// and the tests' reference; nothing in the tools writes with it.
pub fn encode_with_arrow_writer(batches: &[RecordBatch]) -> Result<Vec<u8>, ParquetError> {
    let opts = parquet::arrow::arrow_writer::ArrowWriterOptions::new()
        .with_properties(writer_properties())
        .with_skip_arrow_metadata(true);
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new_with_options(&mut out, arrow_schema(), opts)?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(out)
}

/// Most rows per row group (larger inputs are split, as the arrow writer splits them).
const MAX_ROW_GROUP_ROWS: usize = 1 << 20;

/// Writes `batches` as one Parquet file: the numeric columns through the arrow writer's column
/// writers, the string columns from their dictionary keys ([`dict_chunk`]), at most `max_rows`
/// rows per row group.
fn write_parquet<W: std::io::Write + Send>(
    w: W,
    batches: &[RecordBatch],
    props: Arc<WriterProperties>,
    max_rows: usize,
) -> Result<(), ParquetError> {
    let schema = arrow_schema();
    for b in batches {
        let same = b.num_columns() == schema.fields().len()
            && b.schema()
                .fields()
                .iter()
                .zip(schema.fields())
                .all(|(f, want)| f.data_type() == want.data_type());
        if !same {
            return Err(ParquetError::General(format!(
                "record batch columns {:?} do not match the metrics schema ({})",
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>(),
                COLUMNS.join(", ")
            )));
        }
    }
    let descr = ArrowSchemaConverter::new()
        .with_coerce_types(props.coerce_types())
        .convert(&schema)?;
    let mut writer = SerializedFileWriter::new(w, descr.root_schema_ptr(), props)?;
    let factory = ArrowRowGroupWriterFactory::new(&writer, Arc::clone(&schema));
    for (g, pieces) in row_groups(batches, max_rows).iter().enumerate() {
        let writers = factory.create_column_writers(g)?;
        let mut rg = writer.next_row_group()?;
        for (c, column) in writers.into_iter().enumerate() {
            encode_column(pieces, c, &descr.column(c), schema.field(c), column)?
                .append_to_row_group(&mut rg)?;
        }
        rg.close()?;
    }
    writer.close()?;
    Ok(())
}

/// One encoded column chunk of a row group, ready to append.
pub enum ColumnChunk {
    /// Encoded by the arrow writer's column writer.
    Arrow(ArrowColumnChunk),
    /// A string column written from its dictionary keys ([`dict_chunk::encode_chunk`]).
    Keyed(bytes::Bytes, ColumnCloseResult),
}

impl ColumnChunk {
    /// Appends the chunk as the row group's next column.
    pub fn append_to_row_group<W: std::io::Write + Send>(
        self,
        rg: &mut SerializedRowGroupWriter<'_, W>,
    ) -> Result<(), ParquetError> {
        match self {
            ColumnChunk::Arrow(chunk) => chunk.append_to_row_group(rg),
            ColumnChunk::Keyed(bytes, close) => rg.append_column(&bytes, close),
        }
    }
}

/// Encodes column `c` (a column of [`arrow_schema`], `field` in the output schema, leaf `descr`)
/// of the row ranges `pieces`: a string column without nulls from its dictionary keys
/// ([`dict_chunk`]), any other column (nulls are allowed in optional string columns) through
/// `writer`.
pub fn encode_column(
    pieces: &[(&RecordBatch, usize, usize)],
    c: usize,
    descr: &ColumnDescPtr,
    field: &Field,
    mut writer: ArrowColumnWriter,
) -> Result<ColumnChunk, ParquetError> {
    if is_string_column(c) {
        if let Ok(keyed) = dict_chunk::KeyedColumn::gather(pieces, c) {
            let (bytes, close) = dict_chunk::encode_chunk(descr, &keyed)?;
            return Ok(ColumnChunk::Keyed(bytes, close));
        }
    }
    for &(b, offset, len) in pieces {
        let part = b.column(c).slice(offset, len);
        for leaf in compute_leaves(field, &part)? {
            writer.write(&leaf)?;
        }
    }
    Ok(ColumnChunk::Arrow(writer.close()?))
}

/// Row ranges `(batch, offset, len)` of each row group: the batches in order, cut every `max`
/// rows.
fn row_groups(batches: &[RecordBatch], max: usize) -> Vec<Vec<(&RecordBatch, usize, usize)>> {
    let (mut groups, mut current, mut n) = (Vec::new(), Vec::new(), 0);
    for b in batches {
        let mut offset = 0;
        while offset < b.num_rows() {
            let take = (max - n).min(b.num_rows() - offset);
            current.push((b, offset, take));
            (n, offset) = (n + take, offset + take);
            if n == max {
                groups.push(std::mem::take(&mut current));
                n = 0;
            }
        }
    }
    if n > 0 {
        groups.push(current);
    }
    groups
}

/// Problems with a metrics file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum MetricsFileError {
    /// The file could not be opened or read.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// Not a Parquet file, truncated, or corrupt.
    #[error("{file}: not a readable Parquet file ({source})")]
    Parquet {
        /// the file
        file: PathBuf,
        /// the cause
        source: parquet::errors::ParquetError,
    },
    /// A required column is absent.
    #[error("{file}: missing column `{column}` (metrics.parquet needs {expected})")]
    MissingColumn {
        /// the file
        file: PathBuf,
        /// the column
        column: &'static str,
        /// all required columns
        expected: String,
    },
    /// A column has an unexpected type.
    #[error("{file}: column `{column}` has type {found}, expected {expected}")]
    WrongType {
        /// the file
        file: PathBuf,
        /// the column
        column: &'static str,
        /// type found
        found: String,
        /// type expected
        expected: &'static str,
    },
}

/// Opens a metrics file for reading, checking its columns and types, and returns a reader that
/// yields record batches with the columns of [`COLUMNS`] in that order, strings as dictionaries.
pub fn open_metrics_file(path: &Path) -> Result<MetricsFileReader, MetricsFileError> {
    let file = File::open(path).map_err(|e| MetricsFileError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    MetricsFileMeta::from_file(&file, path)?.reader_of(file, None)
}

/// A metrics file's footer, read and checked once, for reading some of its row groups at a time
/// (aggregate reads one batch's rows out of metrics_unprocessed.parquet).
pub struct MetricsFileMeta {
    meta: ArrowReaderMetadata,
    roots: [usize; 9],
    path: PathBuf,
    tags: Vec<String>,
}

impl MetricsFileMeta {
    /// Reads and checks the footer of `path` (its columns and their types).
    pub fn open(path: &Path) -> Result<MetricsFileMeta, MetricsFileError> {
        let file = File::open(path).map_err(|e| MetricsFileError::Io {
            file: path.to_path_buf(),
            source: e,
        })?;
        Self::from_file(&file, path)
    }

    fn from_file(file: &File, path: &Path) -> Result<MetricsFileMeta, MetricsFileError> {
        let pq = |e| MetricsFileError::Parquet {
            file: path.to_path_buf(),
            source: e,
        };
        let plain = ArrowReaderMetadata::load(
            file,
            ArrowReaderOptions::new().with_skip_arrow_metadata(true),
        )
        .map_err(pq)?;
        let file_schema = plain.schema().clone();
        let mut supplied: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut roots = [0usize; 9];
        for (i, name) in COLUMNS.iter().enumerate() {
            let Some(idx) = file_schema.fields().iter().position(|f| f.name() == name) else {
                return Err(MetricsFileError::MissingColumn {
                    file: path.to_path_buf(),
                    column: name,
                    expected: COLUMNS.join(", "),
                });
            };
            let found = file_schema.field(idx).data_type();
            let (ok, expected) = match i {
                col::TIMESTAMPS_US => (found == &DataType::Int64, "Int64"),
                col::VALUES => (found == &DataType::Float64, "Float64"),
                col::VALID => (found == &DataType::Boolean, "Boolean"),
                _ => (
                    matches!(
                        found,
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    ),
                    "Utf8 (string)",
                ),
            };
            if !ok {
                return Err(MetricsFileError::WrongType {
                    file: path.to_path_buf(),
                    column: name,
                    found: found.to_string(),
                    expected,
                });
            }
            if is_string_column(i) {
                supplied[idx] =
                    Field::new(*name, dict_utf8(), file_schema.field(idx).is_nullable());
            }
            roots[i] = idx;
        }
        let tags: Vec<String> = plain
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == SCENE_TAGS_KEY))
            .and_then(|k| k.value.as_deref())
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        let opts = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(supplied)));
        let meta = ArrowReaderMetadata::try_new(plain.metadata().clone(), opts).map_err(pq)?;
        Ok(MetricsFileMeta {
            meta,
            roots,
            path: path.to_path_buf(),
            tags,
        })
    }

    /// The file's Parquet footer.
    pub fn parquet_metadata(&self) -> &parquet::file::metadata::ParquetMetaData {
        self.meta.metadata()
    }

    /// A reader of the row groups `row_groups` (all of them when `None`).
    pub fn reader(
        &self,
        row_groups: Option<Vec<usize>>,
    ) -> Result<MetricsFileReader, MetricsFileError> {
        let file = File::open(&self.path).map_err(|e| MetricsFileError::Io {
            file: self.path.clone(),
            source: e,
        })?;
        self.reader_of(file, row_groups)
    }

    fn reader_of(
        &self,
        file: File,
        row_groups: Option<Vec<usize>>,
    ) -> Result<MetricsFileReader, MetricsFileError> {
        let path = &self.path;
        let pq = |e| MetricsFileError::Parquet {
            file: path.to_path_buf(),
            source: e,
        };
        let roots = self.roots;
        let mask = ProjectionMask::roots(self.meta.parquet_schema(), roots.iter().copied());
        let mut builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
                .with_projection(mask)
                .with_batch_size(1 << 16);
        if let Some(groups) = row_groups {
            builder = builder.with_row_groups(groups);
        }
        // The projection keeps the file's column order; callers index by COLUMNS order.
        let mut projected = roots;
        projected.sort_unstable();
        let order = roots.map(|r| {
            projected
                .iter()
                .position(|&p| p == r)
                .expect("projected above")
        });
        let reader = builder.build().map_err(pq)?;
        Ok(MetricsFileReader {
            reader,
            order,
            path: path.to_path_buf(),
            tags: self.tags.clone(),
        })
    }
}

/// Record batches of a metrics file with the columns in [`COLUMNS`] order.
pub struct MetricsFileReader {
    reader: ParquetRecordBatchReader,
    order: [usize; 9],
    path: PathBuf,
    tags: Vec<String>,
}

impl MetricsFileReader {
    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The scene's tags from the footer ([`SCENE_TAGS_KEY`]; empty when absent or unreadable).
    pub fn scene_tags(&self) -> &[String] {
        &self.tags
    }
}

impl Iterator for MetricsFileReader {
    type Item = Result<RecordBatch, MetricsFileError>;
    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.reader.next()?;
        Some(
            batch
                .and_then(|b| b.project(&self.order))
                .map_err(|e| MetricsFileError::Parquet {
                    file: self.path.clone(),
                    source: parquet::errors::ParquetError::External(Box::new(e)),
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;

    use crate::fixtures::varied_metrics as batch;

    fn plain(batches: &[RecordBatch]) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                let mut row = Vec::new();
                for c in 0..b.num_columns() {
                    let col = b.column(c);
                    let col = match col.data_type() {
                        DataType::Dictionary(_, _) => {
                            arrow_cast_dictionary(col.as_dictionary::<Int32Type>(), r)
                        }
                        _ => format!("{:?}", col.slice(r, 1)),
                    };
                    row.push(col);
                }
                rows.push(row);
            }
        }
        rows
    }

    fn arrow_cast_dictionary(d: &arrow_array::DictionaryArray<Int32Type>, r: usize) -> String {
        let k = d.keys().value(r) as usize;
        d.values().as_string::<i32>().value(k).to_string()
    }

    #[test]
    fn string_columns_written_from_their_keys_read_back_as_the_arrow_writer_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let batches = [
            batch(45_000, 0),
            batch(10, 1),
            batch(0, 0),
            batch(30_001, 2),
        ];
        // drivekit's writer, with row groups cut at 50 000 rows (so a row group spans batches).
        let ours = dir.path().join("ours.parquet");
        let file = File::create(&ours).unwrap();
        write_parquet(file, &batches, Arc::new(writer_properties()), 50_000).unwrap();
        // The arrow writer, re-interning every row.
        let theirs = dir.path().join("theirs.parquet");
        std::fs::write(&theirs, encode_with_arrow_writer(&batches).unwrap()).unwrap();
        let read = |p: &Path| -> Vec<RecordBatch> {
            open_metrics_file(p).unwrap().map(|b| b.unwrap()).collect()
        };
        let (a, b) = (read(&ours), read(&theirs));
        assert_eq!(plain(&a).len(), 75_011);
        assert_eq!(plain(&a), plain(&b));
        // Footer: two row groups, string chunks dictionary-encoded with exact statistics.
        let meta =
            parquet::file::reader::SerializedFileReader::new(File::open(&ours).unwrap()).unwrap();
        use parquet::file::reader::FileReader;
        let m = meta.metadata();
        assert_eq!(m.num_row_groups(), 2);
        assert_eq!(m.row_group(0).num_rows(), 50_000);
        let name = m.row_group(0).column(col::NAME);
        assert!(name.dictionary_page_offset().is_some());
        match name.statistics() {
            Some(parquet::file::statistics::Statistics::ByteArray(s)) => {
                assert_eq!(s.min_opt().map(|v| v.data()), Some(&b"metric_0"[..]));
                assert_eq!(s.max_opt().map(|v| v.data()), Some(&b"metric_99"[..]));
            }
            other => panic!("name statistics {other:?}"),
        }
    }

    #[test]
    fn static_names_keyed_by_address_read_back_as_pushed() {
        const NAMES: [&str; 3] = ["speed", "offroad", "speed_limit"];
        let mut b = MetricsBuilder::new();
        // Row by row first (hashed), then by rollout (keyed by address), then row by row again.
        b.push(&MetricRow {
            name: &String::from("offroad"),
            timestamps_us: 0,
            value: Some(1.0),
            valid: true,
            time_aggregation: "max",
            clipgt_id: "c",
            rollout_id: "r0",
            run_uuid: "u",
            run_name: "n",
        });
        let rows = (0..300).map(|i| (NAMES[i % 3], ["mean", "max"][i % 2], i as i64, 0.0));
        b.push_rollout("c", "r1", "u", "n", rows);
        b.push(&MetricRow {
            name: "speed_limit",
            timestamps_us: 0,
            value: None,
            valid: true,
            time_aggregation: "mean",
            clipgt_id: "c",
            rollout_id: "r2",
            run_uuid: "u",
            run_name: "n",
        });
        let batch = b.finish();
        let got = plain(std::slice::from_ref(&batch));
        assert_eq!(got.len(), 302);
        assert_eq!((got[0][0].as_str(), got[0][4].as_str()), ("offroad", "max"));
        for (i, row) in got[1..301].iter().enumerate() {
            assert_eq!(row[0], NAMES[i % 3], "row {i}");
            assert_eq!(row[4], ["mean", "max"][i % 2]);
            assert_eq!(row[6], "r1");
        }
        assert_eq!(
            (got[301][0].as_str(), got[301][6].as_str()),
            ("speed_limit", "r2")
        );
        // One dictionary entry per distinct name.
        let names = batch.column(col::NAME).as_dictionary::<Int32Type>();
        assert_eq!(names.values().len(), 3);
    }

    #[test]
    fn batches_that_are_not_metrics_rows_are_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow_array::Int64Array::from(vec![1])) as ArrayRef],
        )
        .unwrap();
        let e = write_parquet(Vec::new(), &[b], Arc::new(writer_properties()), 10).unwrap_err();
        assert!(
            e.to_string().contains("do not match the metrics schema"),
            "{e}"
        );
    }

    #[test]
    fn row_groups_cut_across_batches() {
        let bs = [batch(5, 0), batch(0, 0), batch(7, 0)];
        let g = row_groups(&bs, 4);
        let sizes: Vec<Vec<(usize, usize)>> = g
            .iter()
            .map(|p| p.iter().map(|&(_, o, n)| (o, n)).collect())
            .collect();
        assert_eq!(
            sizes,
            vec![vec![(0, 4)], vec![(4, 1), (0, 3)], vec![(3, 4)]]
        );
    }
}
