//! Arrow schemas of the trace files and conversions between [`Event`]s and Arrow record batches.
//!
//! Two shapes exist for events: the *log* shape (plain `Utf8` columns, no `time` column) used by
//! the append-only `events.arrows` while recording, and the *table* shape (dictionary-encoded
//! low-cardinality columns plus a `time` column) stored in `events.parquet`. Readers accept
//! either, and tolerate extra columns and other string encodings written by other tools.
//! Finalization sorts rows in a third, internal shape between the two (`sort_shape`).

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{Int64Builder, StringBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::Event;

/// Key of the Parquet/IPC key-value metadata entry holding the format version.
pub const FORMAT_VERSION_KEY: &str = "chaos_trace.format_version";

/// The low-cardinality string columns of `events.parquet`, dictionary-encoded.
pub const DICT_COLUMNS: [&str; 4] = ["source", "service", "container", "kind"];

fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn versioned(fields: Vec<Field>) -> SchemaRef {
    let meta: std::collections::HashMap<String, String> = [(
        FORMAT_VERSION_KEY.to_string(),
        crate::FORMAT_VERSION.to_string(),
    )]
    .into_iter()
    .collect();
    Arc::new(Schema::new_with_metadata(fields, meta))
}

/// Schema of the append-only event log (`events.arrows`).
pub fn event_log_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        versioned(vec![
            Field::new("ts_ns", DataType::Int64, false),
            Field::new("seq", DataType::UInt64, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("service", DataType::Utf8, true),
            Field::new("container", DataType::Utf8, true),
            Field::new("kind", DataType::Utf8, false),
            Field::new("message", DataType::Utf8, true),
            Field::new("data", DataType::Utf8, true),
        ])
    })
    .clone()
}

/// Schema of `events.parquet` (format v1).
pub fn event_table_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        versioned(vec![
            Field::new("ts_ns", DataType::Int64, false),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("seq", DataType::UInt64, false),
            Field::new("source", dict_type(), false),
            Field::new("service", dict_type(), true),
            Field::new("container", dict_type(), true),
            Field::new("kind", dict_type(), false),
            Field::new("message", DataType::Utf8, true),
            Field::new("data", DataType::Utf8, true),
        ])
    })
    .clone()
}

/// Builds a log-shaped record batch from events (their `seq` must already be assigned).
pub fn events_to_log_batch<'a>(events: impl ExactSizeIterator<Item = &'a Event>) -> RecordBatch {
    let n = events.len();
    let mut ts = Int64Builder::with_capacity(n);
    let mut seq = UInt64Builder::with_capacity(n);
    let mut source = StringBuilder::with_capacity(n, n * 6);
    let mut service = StringBuilder::with_capacity(n, n * 8);
    let mut container = StringBuilder::with_capacity(n, n * 12);
    let mut kind = StringBuilder::with_capacity(n, n * 8);
    let mut message = StringBuilder::with_capacity(n, n * 64);
    let mut data = StringBuilder::with_capacity(n, n * 16);
    for e in events {
        ts.append_value(e.ts_ns);
        seq.append_value(e.seq);
        source.append_value(&e.source);
        service.append_option(e.service.as_deref());
        container.append_option(e.container.as_deref());
        kind.append_value(&e.kind);
        message.append_option(e.message.as_deref());
        data.append_option(e.data.as_deref());
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(seq.finish()),
        Arc::new(source.finish()),
        Arc::new(service.finish()),
        Arc::new(container.finish()),
        Arc::new(kind.finish()),
        Arc::new(message.finish()),
        Arc::new(data.finish()),
    ];
    // The columns match the schema by construction.
    RecordBatch::try_new(event_log_schema(), cols)
        .unwrap_or_else(|e| unreachable!("event log batch: {e}"))
}

/// The `time` column for a `ts_ns` column: the same values as Timestamp(ns) without a time zone.
pub fn time_column(ts: &Int64Array) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::new(
        ts.values().clone(),
        ts.nulls().cloned(),
    ))
}

/// Converts a log-shaped batch (or any batch holding the log columns by name) into the
/// `events.parquet` table shape.
pub fn log_to_table_batch(batch: &RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let schema = event_table_schema();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        if f.name() == "time" {
            let ts = batch
                .column_by_name("ts_ns")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| {
                    arrow_schema::ArrowError::SchemaError("missing ts_ns column".into())
                })?;
            cols.push(time_column(ts));
            continue;
        }
        let c = batch.column_by_name(f.name()).ok_or_else(|| {
            arrow_schema::ArrowError::SchemaError(format!("missing {} column", f.name()))
        })?;
        if c.data_type() == f.data_type() {
            cols.push(c.clone());
        } else if let (Some(s), true) = (
            c.as_any().downcast_ref::<arrow_array::StringArray>(),
            f.data_type() == &dict_type(),
        ) {
            cols.push(Arc::new(to_dictionary(s)?));
        } else {
            cols.push(arrow::compute::cast(c, f.data_type())?);
        }
    }
    RecordBatch::try_new(schema, cols)
}

/// The shape finalization sorts and merges rows in: the log's columns, each plain string
/// column that the table stores as `Dictionary(Int32, Utf8)` already dictionary-encoded (so
/// that the sort moves 4-byte keys, not strings, and the table conversion passes them through).
pub(crate) fn sort_shape(log: &SchemaRef, table: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = log
        .fields()
        .iter()
        .map(|f| match table.field_with_name(f.name()) {
            Ok(t) if f.data_type() == &DataType::Utf8 && t.data_type() == &dict_type() => {
                Field::new(f.name(), dict_type(), f.is_nullable())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, log.metadata().clone()))
}

/// A string column as a dictionary column, what `arrow::compute::cast` to
/// `Dictionary(Int32, Utf8)` gives (values in order of first appearance, nulls as null keys):
/// [`to_dictionaries`] of one array.
fn to_dictionary(
    s: &arrow_array::StringArray,
) -> Result<arrow_array::DictionaryArray<arrow_array::types::Int32Type>, arrow_schema::ArrowError> {
    let (mut keys, values) = to_dictionaries(&[s])?;
    let keys = keys
        .pop()
        .unwrap_or_else(|| arrow_array::Int32Array::from(Vec::<i32>::new()));
    arrow_array::DictionaryArray::try_new(keys, values)
}

/// String arrays as the keys of one dictionary they share: one key array per input (nulls as
/// null keys) and the distinct values in order of first appearance, for the few distinct
/// values of a trace's low-cardinality columns. A value equal to the previous row's takes its
/// key without a lookup (neighbouring rows often share a source, kind or service); others are
/// looked for first in a small direct-mapped cache indexed by a hash of the value's length and
/// bytes at its ends ([`short_hash`], checked with [`same_bytes`]), then by a full hash.
pub(crate) fn to_dictionaries(
    arrays: &[&arrow_array::StringArray],
) -> Result<(Vec<arrow_array::Int32Array>, ArrayRef), arrow_schema::ArrowError> {
    let mut values = StringBuilder::new();
    // every distinct value by key, and by value
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut all: std::collections::HashMap<&[u8], i32> = std::collections::HashMap::new();
    // key + 1 of the value last found in each slot (0: none)
    let mut cache = [0u32; CACHE_SLOTS];
    let mut out = Vec::with_capacity(arrays.len());
    let mut last: Option<(&[u8], i32)> = None;
    for s in arrays {
        let mut keys = arrow_array::builder::Int32Builder::with_capacity(s.len());
        for v in s.iter() {
            let Some(v) = v else {
                keys.append_null();
                continue;
            };
            let b = v.as_bytes();
            let k = match last {
                Some((l, k)) if same_bytes(l, b) => k,
                _ => {
                    let slot = short_hash(b);
                    let cached = cache[slot]
                        .checked_sub(1)
                        .filter(|&k| seen.get(k as usize).is_some_and(|s| same_bytes(s, b)));
                    let k = match cached {
                        Some(k) => k as i32,
                        None => {
                            let k = match all.get(b) {
                                Some(&k) => k,
                                None => {
                                    let k = i32::try_from(seen.len()).map_err(|_| {
                                        arrow_schema::ArrowError::DictionaryKeyOverflowError
                                    })?;
                                    values.append_value(v);
                                    seen.push(b);
                                    all.insert(b, k);
                                    k
                                }
                            };
                            cache[slot] = k as u32 + 1;
                            k
                        }
                    };
                    last = Some((b, k));
                    k
                }
            };
            keys.append_value(k);
        }
        out.push(keys.finish());
    }
    Ok((out, Arc::new(values.finish())))
}

/// Slots of [`to_dictionaries`]'s cache.
const CACHE_SLOTS: usize = 256;

/// A slot of [`to_dictionaries`]'s cache for a value: a hash of its length, its first and last
/// eight bytes and, for values longer than 16 bytes, eight from the middle (equal values, equal
/// slots; a collision only costs a full lookup).
#[inline]
fn short_hash(b: &[u8]) -> usize {
    let n = b.len();
    let word = |c: &[u8; 8]| u64::from_le_bytes(*c);
    let (x, y) = match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(f), Some(l)) => {
            let mid = if n > 16 {
                b.get(n / 2 - 4..)
                    .and_then(|m| m.first_chunk::<8>())
                    .map_or(0, word)
            } else {
                0
            };
            (word(f) ^ mid.rotate_left(17), word(l))
        }
        _ => match (b.first_chunk::<4>(), b.last_chunk::<4>()) {
            (Some(f), Some(l)) => (
                u64::from(u32::from_le_bytes(*f)),
                u64::from(u32::from_le_bytes(*l)),
            ),
            _ => (b.iter().fold(0u64, |a, &c| a << 8 | u64::from(c)), 0),
        },
    };
    let h = (x ^ y.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 56) as usize % CACHE_SLOTS
}

/// `a == b` for the short strings of the low-cardinality columns: up to 16 bytes by two
/// overlapping loads of each, without a call to `memcmp` per row.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        8..=16 => {
            a.first_chunk::<8>() == b.first_chunk::<8>()
                && a.last_chunk::<8>() == b.last_chunk::<8>()
        }
        4..=7 => {
            a.first_chunk::<4>() == b.first_chunk::<4>()
                && a.last_chunk::<4>() == b.last_chunk::<4>()
        }
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// The number of rows of `batch`, for generic code.
pub fn rows(batch: &RecordBatch) -> usize {
    batch.num_rows()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_columns_become_the_dictionaries_arrows_cast_makes() {
        use arrow_array::StringArray;
        let mut rng = crate::gen::Rng(11);
        for n in [0usize, 1, 7, 300, 5000, 20000] {
            let vals: Vec<Option<String>> = (0..n)
                .map(|_| {
                    let x = rng.next();
                    // runs of one value, a few distinct ones, nulls, an empty string, values
                    // of every length up to 40 that differ in their first or last bytes, and
                    // dozens of distinct values
                    match x % 13 {
                        0 => None,
                        1 => Some(String::new()),
                        2 => Some(format!("{}{}", "x".repeat((x >> 8) as usize % 40), x % 3)),
                        3 => Some(format!("{}{}", x % 3, "y".repeat((x >> 8) as usize % 40))),
                        4 => Some(format!("w{}", (x >> 8) % 60)),
                        k => Some(format!("v{}", k % 4)),
                    }
                })
                .collect();
            let s = StringArray::from(vals);
            let ours = to_dictionary(&s).unwrap();
            let theirs = arrow::compute::cast(&s, &dict_type()).unwrap();
            let theirs = theirs
                .as_any()
                .downcast_ref::<arrow_array::DictionaryArray<arrow_array::types::Int32Type>>()
                .unwrap();
            // the same keys and the same values in the same order, not only equal strings
            assert_eq!(ours.keys(), theirs.keys(), "{n} rows");
            assert_eq!(
                ours.values().as_any().downcast_ref::<StringArray>(),
                theirs.values().as_any().downcast_ref::<StringArray>(),
                "{n} rows"
            );
        }
    }

    /// Several arrays share one dictionary: each one's keys point at its own values, values
    /// in order of first appearance across them, each distinct value once; many more distinct
    /// values than the cache has slots, values alike but in their middle bytes.
    #[test]
    fn arrays_encoded_together_share_one_dictionary_of_their_values() {
        use arrow_array::StringArray;
        let mut rng = crate::gen::Rng(3);
        let arrays: Vec<StringArray> = [0usize, 1, 900, 5000, 2]
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| {
                        let x = rng.next();
                        match x % 7 {
                            0 => None,
                            1 => Some(format!("container-{}-node-replica", (x >> 8) % 700)),
                            2 => Some(format!("s{}", (x >> 8) % 3)),
                            3 => Some(String::new()),
                            _ => Some(format!("kind-{}", (x >> 8) % 40)),
                        }
                    })
                    .collect::<StringArray>()
            })
            .collect();
        let refs: Vec<&StringArray> = arrays.iter().collect();
        let (keys, values) = to_dictionaries(&refs).unwrap();
        let values = values.as_any().downcast_ref::<StringArray>().unwrap();
        let mut order: Vec<&str> = Vec::new();
        for (a, k) in arrays.iter().zip(&keys) {
            assert_eq!(a.len(), k.len());
            for (v, k) in a.iter().zip(k.iter()) {
                assert_eq!(v.is_none(), k.is_none());
                if let (Some(v), Some(k)) = (v, k) {
                    assert_eq!(values.value(k as usize), v);
                    if !order.contains(&v) {
                        order.push(v);
                    }
                }
            }
        }
        let listed: Vec<&str> = values.iter().flatten().collect();
        assert!(order.len() > CACHE_SLOTS, "{} distinct", order.len());
        assert_eq!(listed, order);
    }

    #[test]
    fn log_batch_converts_to_table_shape() {
        let mut e = Event::new(5, "log", "stdout").service("a").message("hello");
        e.seq = 7;
        let b = events_to_log_batch([e].iter());
        let t = log_to_table_batch(&b).unwrap();
        assert_eq!(t.schema(), event_table_schema());
        assert_eq!(t.num_rows(), 1);
        assert!(matches!(
            t.column(3).data_type(),
            DataType::Dictionary(_, _)
        ));
        let time = t
            .column(1)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(time.value(0), 5);
    }
}
