//! Reading whole typed columns out of Arrow record batches, shared by the importers (Argoverse 2
//! parquet and feather). Strings may be Utf8 or LargeUtf8 (pandas and polars write either).

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

/// A column that is missing or not of the expected type; importers add the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnError {
    /// The column.
    pub column: &'static str,
    /// What it should be.
    pub expected: &'static str,
}

/// The batches of one file.
pub struct Columns<'a> {
    /// Batches in file order.
    pub batches: &'a [RecordBatch],
}

impl Columns<'_> {
    fn arrays(
        &self,
        name: &'static str,
        ok: impl Fn(&DataType) -> bool,
        expected: &'static str,
    ) -> Result<Vec<&dyn Array>, ColumnError> {
        self.batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .filter(|c| ok(c.data_type()))
                    .map(|c| c.as_ref())
                    .ok_or(ColumnError {
                        column: name,
                        expected,
                    })
            })
            .collect()
    }

    /// A Float64 column.
    pub fn f64s(&self, name: &'static str) -> Result<Vec<f64>, ColumnError> {
        Ok(self
            .arrays(name, |t| t == &DataType::Float64, "Float64")?
            .into_iter()
            .flat_map(|a| a.as_primitive::<Float64Type>().values().to_vec())
            .collect())
    }

    /// An Int64 column.
    pub fn i64s(&self, name: &'static str) -> Result<Vec<i64>, ColumnError> {
        Ok(self
            .arrays(name, |t| t == &DataType::Int64, "Int64")?
            .into_iter()
            .flat_map(|a| a.as_primitive::<Int64Type>().values().to_vec())
            .collect())
    }

    /// A string column (nulls read as empty strings).
    pub fn strings(&self, name: &'static str) -> Result<Vec<String>, ColumnError> {
        let is_string = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8);
        let mut out = Vec::new();
        for a in self.arrays(name, is_string, "a string column")? {
            match a.data_type() {
                DataType::Utf8 => out.extend(
                    a.as_string::<i32>()
                        .iter()
                        .map(|s| s.unwrap_or_default().to_string()),
                ),
                _ => out.extend(
                    a.as_string::<i64>()
                        .iter()
                        .map(|s| s.unwrap_or_default().to_string()),
                ),
            }
        }
        Ok(out)
    }
}
