//! Compiled parts of the recovery toolkit: a Kafka partition reader that lands records in Arrow columns.
//!
//! `Reader` reads offset ranges of one partition with librdkafka (read_committed by default, so aborted
//! transactions and control records never reach it) and hands each batch to Python as an Arrow struct array
//! (partition, offset, timestamp_ms, key, value; binary views, as polars holds them) through the Arrow PyCapsule
//! interface: no Python object is made per record.

mod template;

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{ArrayBuilder, BinaryViewBuilder, Int64Builder};
use arrow_array::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BinaryViewArray, Int32Array, LargeBinaryArray, StructArray,
};
use arrow_data::ffi::FFI_ArrowArray;
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{DataType, Field, Fields};
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use rdkafka::bindings as rdsys;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// The columns of one batch of records of one partition, as an Arrow struct array.
#[pyclass(frozen, module = "recovery_native")]
struct RecordBatch {
    array: StructArray,
}

#[pymethods]
impl RecordBatch {
    fn __len__(&self) -> usize {
        self.array.len()
    }

    /// The Arrow PyCapsule interface: (schema capsule, array capsule) of the struct array.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<PyObject>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let data = self.array.to_data();
        let schema = FFI_ArrowSchema::try_from(data.data_type())
            .map_err(|e| PyRuntimeError::new_err(format!("exporting the Arrow schema: {e}")))?;
        let array = FFI_ArrowArray::new(&data);
        let schema = PyCapsule::new(py, schema, Some(CString::new("arrow_schema").unwrap()))?;
        let array = PyCapsule::new(py, array, Some(CString::new("arrow_array").unwrap()))?;
        Ok((schema, array))
    }
}

/// What one `fetch` brought: the records below the range's end, the offset after the last of them, and the
/// log end seen when the partition's end was reached (control records and aborted data end a log silently).
struct Fetched {
    offsets: Int64Builder,
    stamps: Int64Builder,
    keys: BinaryViewBuilder,
    values: BinaryViewBuilder,
    data_end: Option<i64>,
    log_end: Option<i64>,
}

const VIEW_BLOCK_BYTES: u32 = 1 << 20;

fn record_fields() -> Fields {
    Fields::from(vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("key", DataType::BinaryView, true),
        Field::new("value", DataType::BinaryView, true),
    ])
}

impl Fetched {
    fn new(capacity: usize) -> Self {
        Fetched {
            offsets: Int64Builder::with_capacity(capacity),
            stamps: Int64Builder::with_capacity(capacity),
            // views, as polars holds binary columns: it takes the buffers as they are (no copy); values of
            // more than 12 bytes go to blocks of 1 MB
            keys: BinaryViewBuilder::with_capacity(capacity).with_fixed_block_size(VIEW_BLOCK_BYTES),
            values: BinaryViewBuilder::with_capacity(capacity).with_fixed_block_size(VIEW_BLOCK_BYTES),
            data_end: None,
            log_end: None,
        }
    }

    fn into_batch(mut self, partition: i32) -> RecordBatch {
        let offsets = self.offsets.finish();
        let n = offsets.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![partition; n])),
            Arc::new(offsets),
            Arc::new(self.stamps.finish()),
            Arc::new(self.keys.finish()),
            Arc::new(self.values.finish()),
        ];
        RecordBatch {
            array: StructArray::new(record_fields(), columns, None),
        }
    }
}

/// A librdkafka consumer that reads offset ranges of single partitions of one topic (assigned, never
/// subscribed, never committing).
#[pyclass(module = "recovery_native")]
struct Reader {
    queue: Option<ConsumerQueue>,
    consumer: Option<BaseConsumer>,
    topic: String,
}

impl Reader {
    fn consumer(&self) -> PyResult<&BaseConsumer> {
        self.consumer
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the reader is closed"))
    }
}

fn kafka_error(e: &KafkaError) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// The consumer queue of a librdkafka consumer, read in batches (one lock per batch, not per record).
struct ConsumerQueue(*mut rdsys::rd_kafka_queue_t);

// the queue handle is reference-counted and thread-safe in librdkafka; calls on it are serialised by the GIL
unsafe impl Send for ConsumerQueue {}
unsafe impl Sync for ConsumerQueue {}

impl Drop for ConsumerQueue {
    fn drop(&mut self) {
        unsafe { rdsys::rd_kafka_queue_destroy(self.0) }
    }
}

fn err_text(err: rdsys::rd_kafka_resp_err_t) -> String {
    unsafe { CStr::from_ptr(rdsys::rd_kafka_err2str(err)) }
        .to_string_lossy()
        .into_owned()
}

unsafe fn bytes<'a>(ptr: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts(ptr as *const u8, len))
    }
}

/// Up to `max_records` messages of `partition` below `end` from `queue`, within `timeout_ms`.
fn consume(
    queue: &ConsumerQueue,
    partition: i32,
    end: i64,
    max_records: usize,
    timeout_ms: u64,
) -> Result<Fetched, String> {
    let mut out = Fetched::new(max_records.min(1 << 16));
    let mut messages: Vec<*mut rdsys::rd_kafka_message_t> =
        vec![std::ptr::null_mut(); max_records.max(1)];
    let got = unsafe {
        rdsys::rd_kafka_consume_batch_queue(
            queue.0,
            timeout_ms as i32,
            messages.as_mut_ptr(),
            messages.len(),
        )
    };
    if got < 0 {
        return Err(err_text(unsafe { rdsys::rd_kafka_last_error() }));
    }
    let mut failure = None;
    for &ptr in &messages[..got as usize] {
        let m = unsafe { &*ptr };
        if m.partition == partition && failure.is_none() {
            if m.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
                // the end offset librdkafka fetched up to (the last stable offset when read_committed)
                out.log_end = Some(m.offset);
            } else if m.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                failure = Some(err_text(m.err));
            } else if m.offset >= end {
                out.data_end = Some(
                    out.data_end
                        .map_or(m.offset + 1, |d: i64| d.max(m.offset + 1)),
                );
            } else {
                let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                let stamp = unsafe { rdsys::rd_kafka_message_timestamp(ptr, &mut kind) };
                out.offsets.append_value(m.offset);
                out.stamps.append_value(stamp);
                match unsafe { bytes(m.key, m.key_len) } {
                    Some(k) => out.keys.append_value(k),
                    None => out.keys.append_null(),
                }
                match unsafe { bytes(m.payload, m.len) } {
                    Some(v) => out.values.append_value(v),
                    None => out.values.append_null(),
                }
                out.data_end = Some(m.offset + 1);
            }
        }
        unsafe { rdsys::rd_kafka_message_destroy(ptr) };
    }
    match failure {
        Some(text) => Err(text),
        None => Ok(out),
    }
}

#[pymethods]
impl Reader {
    /// Connect with the librdkafka `config` and check that `topic`'s metadata can be read within
    /// `timeout_ms` (ConnectionError otherwise).
    #[new]
    fn new(
        py: Python<'_>,
        config: HashMap<String, String>,
        topic: String,
        timeout_ms: u64,
    ) -> PyResult<Self> {
        let mut client = ClientConfig::new();
        for (k, v) in &config {
            client.set(k, v);
        }
        let consumer: BaseConsumer = client
            .create()
            .map_err(|e| PyValueError::new_err(format!("invalid consumer settings: {e}")))?;
        let found = py.allow_threads(|| {
            consumer.fetch_metadata(Some(&topic), Duration::from_millis(timeout_ms))
        });
        if let Err(e) = found {
            return Err(PyConnectionError::new_err(e.to_string()));
        }
        let queue = ConsumerQueue(unsafe {
            rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr())
        });
        Ok(Reader {
            queue: Some(queue),
            consumer: Some(consumer),
            topic,
        })
    }

    /// Start reading `partition` at offset `start`.
    fn assign(&self, partition: i32, start: i64) -> PyResult<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(start))
            .map_err(|e| kafka_error(&e))?;
        self.consumer()?.assign(&tpl).map_err(|e| kafka_error(&e))
    }

    /// Stop reading.
    fn unassign(&self) -> PyResult<()> {
        self.consumer()?.unassign().map_err(|e| kafka_error(&e))
    }

    /// Up to `max_records` records of the assigned `partition` below `end`, waiting at most `timeout_ms`.
    ///
    /// Returns (batch or None, offset after the last record or None, log end or None when the end of the
    /// partition was reached). A consumer error raises RuntimeError with librdkafka's message.
    fn fetch(
        &self,
        py: Python<'_>,
        partition: i32,
        end: i64,
        max_records: usize,
        timeout_ms: u64,
    ) -> PyResult<(Option<RecordBatch>, Option<i64>, Option<i64>)> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the reader is closed"))?;
        let fetched = py.allow_threads(|| consume(queue, partition, end, max_records, timeout_ms));
        let fetched = fetched.map_err(PyRuntimeError::new_err)?;
        let (data_end, log_end) = (fetched.data_end, fetched.log_end);
        let batch = if fetched.offsets.len() > 0 {
            Some(fetched.into_batch(partition))
        } else {
            None
        };
        Ok((batch, data_end, log_end))
    }

    /// The first offset of `partition` whose timestamp is >= `ts_ms` (None: no such record).
    fn first_at(
        &self,
        py: Python<'_>,
        partition: i32,
        ts_ms: i64,
        timeout_ms: u64,
    ) -> PyResult<Option<i64>> {
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(ts_ms.max(0)))
            .map_err(|e| kafka_error(&e))?;
        let found = py
            .allow_threads(|| consumer.offsets_for_times(tpl, Duration::from_millis(timeout_ms)))
            .map_err(|e| kafka_error(&e))?;
        let offset = found
            .find_partition(&self.topic, partition)
            .map(|e| e.offset());
        Ok(match offset {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        })
    }

    /// The partition ids of the topic, sorted; None when the broker does not know the topic.
    fn partitions(&self, py: Python<'_>, timeout_ms: u64) -> PyResult<Option<Vec<i32>>> {
        let consumer = self.consumer()?;
        let topic = self.topic.clone();
        let metadata = py
            .allow_threads(|| consumer.fetch_metadata(Some(&topic), Duration::from_millis(timeout_ms)))
            .map_err(|e| kafka_error(&e))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(None);
        };
        if found.error().is_some() || found.partitions().is_empty() {
            return Ok(None);
        }
        let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        Ok(Some(ids))
    }

    /// (log start, log end) of `partition`: the end is the last stable offset when reading committed records.
    fn watermarks(&self, py: Python<'_>, partition: i32, timeout_ms: u64) -> PyResult<(i64, i64)> {
        let consumer = self.consumer()?;
        let topic = self.topic.clone();
        py.allow_threads(|| {
            consumer.fetch_watermarks(&topic, partition, Duration::from_millis(timeout_ms))
        })
        .map_err(|e| kafka_error(&e))
    }

    /// For each of `partitions`, the first offset whose timestamp is >= `ts_ms` (None: no such record), in one
    /// request per broker.
    fn offsets_at(
        &self,
        py: Python<'_>,
        partitions: Vec<i32>,
        ts_ms: i64,
        timeout_ms: u64,
    ) -> PyResult<Vec<Option<i64>>> {
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(ts_ms.max(0)))
                .map_err(|e| kafka_error(&e))?;
        }
        let found = py
            .allow_threads(|| consumer.offsets_for_times(tpl, Duration::from_millis(timeout_ms)))
            .map_err(|e| kafka_error(&e))?;
        let mut out = Vec::with_capacity(partitions.len());
        for p in &partitions {
            let elem = found.find_partition(&self.topic, *p);
            if let Some(e) = &elem {
                if let Err(err) = e.error() {
                    return Err(kafka_error(&err));
                }
            }
            out.push(match elem.map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => Some(o),
                _ => None,
            });
        }
        Ok(out)
    }

    /// Leave and release the consumer (idempotent).
    fn close(&mut self, py: Python<'_>) {
        let queue = self.queue.take();
        if let Some(consumer) = self.consumer.take() {
            py.allow_threads(move || {
                drop(queue);
                drop(consumer)
            });
        }
    }
}

/// The fields of every value of a one-column frame of binary values (any object with `__arrow_c_stream__`)
/// that follows a template (see `template.rs`): struct arrays (one per chunk) of `matched` and the captured
/// columns.
#[pyfunction]
fn decode_template(
    py: Python<'_>,
    frame: &Bound<'_, PyAny>,
    literals: Vec<Vec<u8>>,
    kinds: Vec<String>,
    names: Vec<String>,
) -> PyResult<Vec<RecordBatch>> {
    let kinds = kinds
        .iter()
        .map(|k| {
            template::Kind::parse(k)
                .ok_or_else(|| PyValueError::new_err(format!("unknown field kind {k:?}")))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let template =
        template::Template::new(literals, kinds, names).map_err(PyValueError::new_err)?;
    let capsule = frame.call_method0("__arrow_c_stream__")?;
    let capsule = capsule.downcast::<PyCapsule>()?;
    let stream = capsule.pointer() as *mut FFI_ArrowArrayStream;
    // takes the stream over (the capsule is left with a released one)
    let reader = unsafe { ArrowArrayStreamReader::from_raw(stream) }
        .map_err(|e| PyValueError::new_err(format!("reading the Arrow stream: {e}")))?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(
            batch.map_err(|e| PyValueError::new_err(format!("reading the Arrow stream: {e}")))?,
        );
    }
    let parts = py.allow_threads(|| -> Result<Vec<StructArray>, String> {
        batches
            .iter()
            .map(|batch| {
                let column = batch
                    .columns()
                    .first()
                    .ok_or("a frame with one binary column is needed")?;
                let any = column.as_any();
                let n = column.len();
                if let Some(a) = any.downcast_ref::<BinaryViewArray>() {
                    Ok(template.decode(a.iter(), n))
                } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
                    Ok(template.decode(a.iter(), n))
                } else if let Some(a) = any.downcast_ref::<BinaryArray>() {
                    Ok(template.decode(a.iter(), n))
                } else {
                    Err(format!(
                        "a binary column is needed, not {}",
                        column.data_type()
                    ))
                }
            })
            .collect()
    });
    let mut parts = parts.map_err(PyValueError::new_err)?;
    if parts.is_empty() {
        parts.push(template.decode(std::iter::empty(), 0));
    }
    Ok(parts
        .into_iter()
        .map(|array| RecordBatch { array })
        .collect())
}

/// The version of librdkafka compiled in.
#[pyfunction]
fn librdkafka_version() -> String {
    rdkafka::util::get_rdkafka_version().1
}

#[pymodule]
fn recovery_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Reader>()?;
    m.add_class::<RecordBatch>()?;
    m.add_function(wrap_pyfunction!(librdkafka_version, m)?)?;
    m.add_function(wrap_pyfunction!(decode_template, m)?)?;
    Ok(())
}
