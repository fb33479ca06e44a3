//! Parquet column chunks of dictionary-encoded strings, written from their dictionary keys.
//!
//! The arrow-rs Parquet writer re-interns every row of a dictionary array (a hash, a probe and a
//! `memcmp` per row) and compares every row for the min/max statistics, although the array already
//! holds each distinct string once and the rows as integer keys. For metrics files, whose six
//! string columns repeat a few values over ~10⁵ rows (four of them constant per file or per
//! rollout), that was most of the encoding time. The crate has no way to hand it a dictionary
//! that is already built, so this module writes the chunk itself from the keys: one PLAIN
//! dictionary page of the distinct values in use, then data pages of the keys in Parquet's
//! RLE/bit-packing hybrid (runs of ≥ 8 equal keys as RLE runs, the rest bit-packed), each page
//! zstd-compressed, with the chunk's min/max statistics from the dictionary. The pages and their
//! headers go through the crate's own [`SerializedPageWriter`], and the chunk is appended to a row
//! group with [`parquet::file::writer::SerializedRowGroupWriter::append_column`], so the file
//! layout, footer and metadata stay the crate's. Readers see exactly what the arrow writer would
//! have written for the same rows (tests compare pyarrow's and drivekit's reads of both).

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType, Type as PhysicalType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Rows per data page (the arrow writer's default page row limit).
pub const PAGE_ROWS: usize = 20_000;

/// The zstd level of the pages (drivekit's metrics files use ZSTD(1) throughout).
const ZSTD_LEVEL: i32 = 1;

fn err(e: impl std::fmt::Display) -> ParquetError {
    ParquetError::General(e.to_string())
}

/// A string column's rows as keys into a dictionary of distinct values (each used at least once).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct KeyedColumn {
    /// The distinct values, in the order of first use.
    pub values: Vec<Vec<u8>>,
    /// One key per row, indexing `values`.
    pub keys: Vec<u32>,
}

impl KeyedColumn {
    /// Gathers column `c` of `pieces` (`(batch, offset, len)` row ranges, in order) into one
    /// dictionary of the values the rows use. The column must be `Dictionary(Int32, Utf8)` without
    /// nulls; the work per row is integer lookups (strings are hashed once per dictionary entry).
    pub fn gather(pieces: &[(&RecordBatch, usize, usize)], c: usize) -> Result<Self, ParquetError> {
        let mut out = KeyedColumn::default();
        let mut index: HashMap<&[u8], u32> = HashMap::new();
        let mut values: Vec<&[u8]> = Vec::new();
        let rows: usize = pieces.iter().map(|p| p.2).sum();
        out.keys.reserve(rows);
        for &(batch, offset, len) in pieces {
            let column = batch.column(c);
            let name = batch.schema().field(c).name().clone();
            let dict = column
                .as_dictionary_opt::<Int32Type>()
                .ok_or_else(|| err(format!("column `{name}` is not a string dictionary")))?;
            if column.slice(offset, len).null_count() > 0 {
                return Err(err(format!("column `{name}` has nulls; it must have none")));
            }
            let strings = dict
                .values()
                .as_string_opt::<i32>()
                .ok_or_else(|| err(format!("column `{name}` does not hold strings")))?;
            // This piece's dictionary entry → output key, assigned on first use.
            let mut local: Vec<u32> = vec![u32::MAX; strings.len()];
            for &k in &dict.keys().values()[offset..offset + len] {
                let k = usize::try_from(k)
                    .ok()
                    .filter(|&k| k < local.len())
                    .ok_or_else(|| err(format!("column `{name}`: key {k} out of range")))?;
                if local[k] == u32::MAX {
                    let s = strings.value(k).as_bytes();
                    local[k] = *index.entry(s).or_insert_with(|| {
                        values.push(s);
                        (values.len() - 1) as u32
                    });
                }
                out.keys.push(local[k]);
            }
        }
        out.values = values.into_iter().map(<[u8]>::to_vec).collect();
        Ok(out)
    }

    /// A column of `rows` copies of `value`.
    pub fn constant(value: &str, rows: usize) -> Self {
        KeyedColumn {
            values: vec![value.as_bytes().to_vec()],
            keys: vec![0; rows],
        }
    }
}

/// Appends `v` as an unsigned LEB128 varint (Parquet's ULEB128).
fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bits needed for keys `0..n` (0 for a dictionary of one value).
fn bit_width(n: usize) -> u8 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as u8
}

/// Appends `keys` in Parquet's RLE/bit-packing hybrid at `bw` bits per key: every run of at least
/// eight equal keys as one RLE run, the keys between them bit-packed in groups of eight (the last
/// group zero-padded, which readers skip by the page's value count).
pub fn encode_hybrid(out: &mut Vec<u8>, keys: &[u32], bw: u8) {
    let value_bytes = usize::from(bw).div_ceil(8);
    let flush_literals = |out: &mut Vec<u8>, lit: &[u32]| {
        if lit.is_empty() {
            return;
        }
        let groups = lit.len().div_ceil(8);
        put_uleb(out, ((groups as u64) << 1) | 1);
        let (mut acc, mut bits) = (0u64, 0u32);
        for i in 0..groups * 8 {
            acc |= u64::from(lit.get(i).copied().unwrap_or(0)) << bits;
            bits += u32::from(bw);
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
    };
    let (mut i, mut lit_start) = (0, 0);
    while i < keys.len() {
        let v = keys[i];
        let run = keys[i..].iter().take_while(|&&k| k == v).count();
        if run >= 8 && (i - lit_start) % 8 == 0 {
            flush_literals(out, &keys[lit_start..i]);
            put_uleb(out, (run as u64) << 1);
            out.extend_from_slice(&v.to_le_bytes()[..value_bytes]);
            i += run;
            lit_start = i;
        } else {
            // Keys join the pending bit-packed groups one at a time, so a long run can start
            // an RLE run at the next group boundary.
            i += 1;
        }
    }
    flush_literals(out, &keys[lit_start..]);
}

/// Encodes `column` as one column chunk of `descr` (a BYTE_ARRAY leaf, required or optional;
/// optional columns get all-defined levels) and returns the chunk's bytes with the metadata
/// `append_column` needs.
pub fn encode_chunk(
    descr: &ColumnDescPtr,
    column: &KeyedColumn,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    if descr.physical_type() != PhysicalType::BYTE_ARRAY || descr.max_rep_level() != 0 {
        return Err(err(format!(
            "column `{}` is not a flat byte-array column",
            descr.name()
        )));
    }
    let nullable = descr.max_def_level() > 0;
    let rows = column.keys.len();
    let mut sink = TrackedWrite::new(Vec::with_capacity(1024 + rows / 4));
    let mut pages = SerializedPageWriter::new(&mut sink);
    let compress = |raw: &[u8]| zstd::bulk::compress(raw, ZSTD_LEVEL).map_err(err);

    let mut dict = Vec::with_capacity(column.values.iter().map(|v| v.len() + 4).sum());
    for v in &column.values {
        let len = u32::try_from(v.len()).map_err(|_| err("a string over 4 GiB"))?;
        dict.extend_from_slice(&len.to_le_bytes());
        dict.extend_from_slice(v);
    }
    let spec = pages.write_page(CompressedPage::new(
        Page::DictionaryPage {
            buf: Bytes::from(compress(&dict)?),
            num_values: column.values.len() as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        },
        dict.len(),
    ))?;
    let dictionary_offset = spec.offset as i64;
    let (mut compressed, mut uncompressed) = (spec.compressed_size, spec.uncompressed_size);

    let bw = bit_width(column.values.len());
    let mut data_offset = None;
    let mut n_pages = 0;
    let mut raw = Vec::new();
    for keys in column.keys.chunks(PAGE_ROWS) {
        raw.clear();
        if nullable {
            // Definition levels, all 1: one RLE run at bit width 1, behind its byte length.
            let mut levels = Vec::with_capacity(8);
            put_uleb(&mut levels, (keys.len() as u64) << 1);
            levels.push(1);
            raw.extend_from_slice(&(levels.len() as u32).to_le_bytes());
            raw.extend_from_slice(&levels);
        }
        raw.push(bw);
        encode_hybrid(&mut raw, keys, bw);
        let spec = pages.write_page(CompressedPage::new(
            Page::DataPage {
                buf: Bytes::from(compress(&raw)?),
                num_values: keys.len() as u32,
                encoding: Encoding::RLE_DICTIONARY,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            },
            raw.len(),
        ))?;
        data_offset.get_or_insert(spec.offset as i64);
        compressed += spec.compressed_size;
        uncompressed += spec.uncompressed_size;
        n_pages += 1;
    }
    let bytes = Bytes::from(sink.into_inner()?);

    let min = column.values.iter().min().cloned().map(ByteArray::from);
    let max = column.values.iter().max().cloned().map(ByteArray::from);
    let unencoded: usize = if column.values.len() == 1 {
        column.values[0].len() * rows
    } else {
        let lens: Vec<usize> = column.values.iter().map(Vec::len).collect();
        column.keys.iter().map(|&k| lens[k as usize]).sum()
    };
    let encodings = [Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY];
    let mut stats = vec![PageEncodingStats {
        page_type: PageType::DICTIONARY_PAGE,
        encoding: Encoding::PLAIN,
        count: 1,
    }];
    if n_pages > 0 {
        stats.push(PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding: Encoding::RLE_DICTIONARY,
            count: n_pages,
        });
    }
    let metadata = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(Compression::ZSTD(
            parquet::basic::ZstdLevel::try_new(ZSTD_LEVEL).map_err(err)?,
        ))
        .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
        .set_page_encoding_stats(stats)
        .set_total_compressed_size(compressed as i64)
        .set_total_uncompressed_size(uncompressed as i64)
        .set_num_values(rows as i64)
        .set_data_page_offset(data_offset.unwrap_or(dictionary_offset))
        .set_dictionary_page_offset(Some(dictionary_offset))
        .set_statistics(Statistics::byte_array(min, max, None, Some(0), false))
        .set_unencoded_byte_array_data_bytes(Some(unencoded as i64))
        .build()?;
    let close = ColumnCloseResult {
        bytes_written: compressed as u64,
        rows_written: rows as u64,
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: None,
    };
    Ok((bytes, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the hybrid encoding (the spec's reader, written independently of the encoder).
    fn decode_hybrid(mut data: &[u8], bw: u8, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let uleb = |d: &mut &[u8]| {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = d[0];
                *d = &d[1..];
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    return v;
                }
            }
        };
        while out.len() < n {
            let header = uleb(&mut data);
            if header & 1 == 1 {
                let count = (header >> 1) as usize * 8;
                let bytes = count * usize::from(bw) / 8;
                let (packed, rest) = data.split_at(bytes);
                for i in 0..count {
                    let mut v = 0u32;
                    for b in 0..usize::from(bw) {
                        let bit = i * usize::from(bw) + b;
                        v |= u32::from((packed[bit / 8] >> (bit % 8)) & 1) << b;
                    }
                    out.push(v);
                }
                data = rest;
            } else {
                let count = (header >> 1) as usize;
                let vb = usize::from(bw).div_ceil(8);
                let mut le = [0u8; 4];
                le[..vb].copy_from_slice(&data[..vb]);
                data = &data[vb..];
                out.extend(std::iter::repeat_n(u32::from_le_bytes(le), count));
            }
        }
        assert!(data.is_empty(), "bytes left after {n} values");
        out.truncate(n);
        out
    }

    #[test]
    fn the_hybrid_encoding_round_trips_runs_literals_and_their_mixtures() {
        let mut cases: Vec<(Vec<u32>, u8)> = vec![
            (vec![], 1),
            (vec![0; 5], 0),
            (vec![0; 100_000], 0),
            ((0..19).collect(), 5),
            ((0..1000).map(|i| i % 17).collect(), 5),
            ((0..1000).map(|i| i / 100).collect(), 4),
            (
                (0..64).map(|i| (i * 2654435761u64 % 300) as u32).collect(),
                9,
            ),
            (vec![u32::MAX >> 1; 9], 31),
        ];
        // Runs starting inside a bit-packed group, short runs, long runs.
        let mut mixed = vec![1, 2, 3];
        mixed.extend(std::iter::repeat_n(7, 30));
        mixed.extend([4, 4, 4, 4, 4, 4, 4]);
        mixed.extend(std::iter::repeat_n(2, 8));
        mixed.push(0);
        cases.push((mixed, 3));
        for (keys, bw) in cases {
            let mut out = Vec::new();
            encode_hybrid(&mut out, &keys, bw);
            assert_eq!(decode_hybrid(&out, bw, keys.len()), keys, "bw {bw}");
        }
        // A constant column is one RLE run: a 4-byte header (2²⁰ rows) and the key's byte.
        let mut out = Vec::new();
        encode_hybrid(&mut out, &[3; 1 << 20], 2);
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn bit_widths_cover_the_dictionary() {
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(1), 0);
        assert_eq!(bit_width(2), 1);
        assert_eq!(bit_width(3), 2);
        assert_eq!(bit_width(256), 8);
        assert_eq!(bit_width(257), 9);
    }
}
