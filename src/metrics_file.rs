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
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::{WriterProperties, WriterVersion};

use crate::fsutil;

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

fn is_string_column(i: usize) -> bool {
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
        .set_max_row_group_row_count(Some(1 << 20))
        .set_created_by(format!("drivekit {}", env!("CARGO_PKG_VERSION")))
}

/// Builds the columns of a metrics file row by row.
pub struct MetricsBuilder {
    name: StringDictionaryBuilder<Int32Type>,
    ts: Int64Builder,
    values: Float64Builder,
    valid: BooleanBuilder,
    agg: StringDictionaryBuilder<Int32Type>,
    clip: StringDictionaryBuilder<Int32Type>,
    rollout: StringDictionaryBuilder<Int32Type>,
    run_uuid: StringDictionaryBuilder<Int32Type>,
    run_name: StringDictionaryBuilder<Int32Type>,
    rows: usize,
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
            name: d(),
            ts: Int64Builder::new(),
            values: Float64Builder::new(),
            valid: BooleanBuilder::new(),
            agg: d(),
            clip: d(),
            rollout: d(),
            run_uuid: d(),
            run_name: d(),
            rows: 0,
        }
    }

    /// Appends one row.
    pub fn push(&mut self, r: &MetricRow<'_>) {
        self.name.append_value(r.name);
        self.ts.append_value(r.timestamps_us);
        self.values.append_option(r.value);
        self.valid.append_value(r.valid);
        self.agg.append_value(r.time_aggregation);
        self.clip.append_value(r.clipgt_id);
        self.rollout.append_value(r.rollout_id);
        self.run_uuid.append_value(r.run_uuid);
        self.run_name.append_value(r.run_name);
        self.rows += 1;
    }

    /// Appends the rows of one rollout — `(name, time aggregation, timestamps_us, value)`, all
    /// valid — whose scene, rollout and run columns are the same: those four are appended once
    /// per rollout instead of once per row.
    pub fn push_rollout<'a>(
        &mut self,
        clipgt_id: &str,
        rollout_id: &str,
        run_uuid: &str,
        run_name: &str,
        rows: impl Iterator<Item = (&'a str, &'a str, i64, f64)>,
    ) {
        let mut n = 0;
        for (name, agg, t, v) in rows {
            self.name.append_value(name);
            self.agg.append_value(agg);
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
            Arc::new(self.name.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.values.finish()),
            Arc::new(self.valid.finish()),
            Arc::new(self.agg.finish()),
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
    let props = props.build();
    fsutil::write_atomic_with(path, |w| {
        let opts = parquet::arrow::arrow_writer::ArrowWriterOptions::new()
            .with_properties(props)
            .with_skip_arrow_metadata(true);
        let mut writer = ArrowWriter::try_new_with_options(w, arrow_schema(), opts)
            .map_err(std::io::Error::other)?;
        for b in batches {
            writer.write(b).map_err(std::io::Error::other)?;
        }
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })
    .map_err(io)
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
    let pq = |e| MetricsFileError::Parquet {
        file: path.to_path_buf(),
        source: e,
    };
    let plain = ArrowReaderMetadata::load(
        &file,
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
            supplied[idx] = Field::new(*name, dict_utf8(), file_schema.field(idx).is_nullable());
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
    let mask = ProjectionMask::roots(meta.parquet_schema(), roots.iter().copied());
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
        .with_projection(mask)
        .with_batch_size(1 << 16);
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
        tags,
    })
}

/// Record batches of a metrics file with the columns in [`COLUMNS`] order.
pub struct MetricsFileReader {
    reader: ParquetRecordBatchReader,
    order: [usize; 9],
    path: PathBuf,
    tags: Vec<String>,
}

impl MetricsFileReader {
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
