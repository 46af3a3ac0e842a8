//! Decoding recorded events from a byte stream: a single JSON record or
//! envelope, JSON Lines, or a CloudTrail log file (`{"Records":[...]}`),
//! any of them gzipped. Works on any `Read`; opening files is the caller's
//! job. Streams: a 1 GB log file is never held in memory.

use std::fmt;
use std::io::{BufRead, BufReader, Read};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::record::{MAX_RECORD_BYTES, Record, RecordError};

/// A single JSON document (not JSON Lines, not a log file) larger than this
/// is refused.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Where a record sits in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based line (single documents and JSON Lines).
    Line(usize),
    /// 0-based index in a log file's `Records` array.
    Index(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) | Self::Index(n) => write!(f, "{n}"),
        }
    }
}

/// A failure of the whole stream (I/O, or a broken log file that cannot be
/// read past). Bad single records are reported per record instead.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("at {position}: CloudTrail log file is broken here, cannot read further: {message}")]
    Broken { position: Position, message: String },
    #[error("document is over {MAX_DOCUMENT_BYTES} bytes; split it, or use JSON Lines")]
    TooLarge,
}

/// What one element of the input turned out to be.
pub type Item = (Position, Result<Record, RecordError>);

/// Decode every record in `reader`, calling `each` for good and bad ones
/// alike, in input order.
pub fn for_each_record<R: Read>(reader: R, mut each: impl FnMut(Item)) -> Result<(), InputError> {
    for_each_document(reader, |position, bytes| {
        each((position, bytes.and_then(Record::from_slice)));
    })
}

/// Like [`for_each_record`], but hands over each document's raw JSON text
/// (for callers that keep or forward the original).
pub fn for_each_document<R: Read>(
    reader: R,
    mut each: impl FnMut(Position, Result<&[u8], RecordError>),
) -> Result<(), InputError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
        return decode_plain(BufReader::with_capacity(256 * 1024, decoder), &mut each);
    }
    decode_plain(buffered, &mut each)
}

type Sink<'a> = dyn FnMut(Position, Result<&[u8], RecordError>) + 'a;

fn decode_plain<R: BufRead>(mut reader: R, each: &mut Sink<'_>) -> Result<(), InputError> {
    // Sniff: skip leading whitespace, look at the first bytes.
    let mut leading_newlines = 0usize;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        leading_newlines += buf[..ws].iter().filter(|&&b| b == b'\n').count();
        let done = ws < buf.len();
        reader.consume(ws);
        if done {
            break;
        }
    }
    if looks_like_log_file(reader.fill_buf()?) {
        return decode_log_file(reader, each);
    }
    // Read the first line. A complete JSON value means JSON Lines; anything
    // else is one (pretty-printed) document.
    let mut first = Vec::new();
    read_line_bounded(&mut reader, &mut first)?;
    let first_line = leading_newlines + 1;
    if serde_json::from_slice::<IgnoredAny>(&first).is_ok() {
        each(Position::Line(first_line), bounded(trim(&first)));
        return decode_lines(reader, first_line + 1, each);
    }
    let mut doc = first;
    (&mut reader)
        .take((MAX_DOCUMENT_BYTES + 1 - doc.len().min(MAX_DOCUMENT_BYTES)) as u64)
        .read_to_end(&mut doc)?;
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(InputError::TooLarge);
    }
    // A log file whose keys come in another order than `Records` first.
    if let Ok(records) = serde_json::from_slice::<RecordsOnly>(&doc) {
        for (i, raw) in records.records.iter().enumerate() {
            each(Position::Index(i), bounded(raw.get().as_bytes()));
        }
        return Ok(());
    }
    each(Position::Line(first_line), bounded(&doc));
    Ok(())
}

#[derive(serde::Deserialize)]
struct RecordsOnly<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<&'a RawValue>,
}

fn bounded(bytes: &[u8]) -> Result<&[u8], RecordError> {
    if bytes.len() > MAX_RECORD_BYTES {
        Err(RecordError::TooLarge(bytes.len()))
    } else {
        Ok(bytes)
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Read one line (without the newline) into `out`, at most
/// `MAX_RECORD_BYTES + 1` bytes of it; the rest of an over-long line is
/// skipped, so one huge line costs no memory.
fn read_line_bounded<R: BufRead>(reader: &mut R, out: &mut Vec<u8>) -> Result<bool, InputError> {
    out.clear();
    let mut any = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(any);
        }
        any = true;
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i)),
            None => (buf, None),
        };
        let room = (MAX_RECORD_BYTES + 1).saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = found.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if found.is_some() {
            return Ok(true);
        }
    }
}

fn decode_lines<R: BufRead>(
    mut reader: R,
    mut line: usize,
    each: &mut Sink<'_>,
) -> Result<(), InputError> {
    let mut buf = Vec::new();
    while read_line_bounded(&mut reader, &mut buf)? {
        let text = trim(&buf);
        if !text.is_empty() {
            each(Position::Line(line), bounded(text));
        }
        line += 1;
    }
    Ok(())
}

fn looks_like_log_file(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(b"{") else {
        return false;
    };
    let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
    rest.starts_with(b"\"Records\"")
}

/// Stream a `{"Records":[...]}` file one element at a time.
fn decode_log_file<R: BufRead>(reader: R, each: &mut Sink<'_>) -> Result<(), InputError> {
    let mut index = 0usize;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = LogFile {
        each: &mut *each,
        index: &mut index,
    }
    .deserialize(&mut de);
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.is_io() => Err(InputError::Io(e.into())),
        Err(e) => Err(InputError::Broken {
            position: Position::Index(index),
            message: e.to_string(),
        }),
    }
}

struct LogFile<'a, 'b> {
    each: &'a mut Sink<'b>,
    index: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for LogFile<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LogFile<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudTrail log file object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "Records" {
                map.next_value_seed(RecordsSeq {
                    each: &mut *self.each,
                    index: &mut *self.index,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct RecordsSeq<'a, 'b> {
    each: &'a mut Sink<'b>,
    index: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for RecordsSeq<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeq<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a `Records` array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            (self.each)(Position::Index(*self.index), bounded(raw.get().as_bytes()));
            *self.index += 1;
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn rec(id: &str) -> String {
        format!(
            r#"{{"eventID":"{id}","eventTime":"2026-11-02T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-west-1","recipientAccountId":"111122223333"}}"#
        )
    }

    fn collect(bytes: &[u8]) -> Vec<(Position, Result<String, RecordError>)> {
        let mut out = Vec::new();
        for_each_record(bytes, |(pos, r)| out.push((pos, r.map(|r| r.event_id)))).unwrap();
        out
    }

    #[test]
    fn single_pretty_document() {
        let doc = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&rec("a")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            collect(doc.as_bytes()),
            [(Position::Line(1), Ok("a".into()))]
        );
    }

    #[test]
    fn json_lines_with_a_bad_line() {
        let text = format!("{}\n\nnot json\n{}\n", rec("a"), rec("b"));
        let got = collect(text.as_bytes());
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (Position::Line(1), Ok("a".into())));
        assert_eq!(got[1].0, Position::Line(3));
        assert!(matches!(got[1].1, Err(RecordError::Json(_))));
        assert_eq!(got[2], (Position::Line(4), Ok("b".into())));
    }

    #[test]
    fn gzipped_log_file_with_bad_record() {
        let text = format!(
            r#"{{"Records":[{},{{"eventID":"x"}},{}]}}"#,
            rec("a"),
            rec("c")
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let got = collect(&gz.finish().unwrap());
        assert_eq!(got[0], (Position::Index(0), Ok("a".into())));
        assert_eq!(
            got[1],
            (Position::Index(1), Err(RecordError::Missing("eventSource")))
        );
        assert_eq!(got[2], (Position::Index(2), Ok("c".into())));
    }

    #[test]
    fn log_file_with_other_key_order() {
        let text = format!("{{\n \"other\": 1,\n \"Records\": [{}]\n}}", rec("z"));
        assert_eq!(
            collect(text.as_bytes()),
            [(Position::Index(0), Ok("z".into()))]
        );
    }

    #[test]
    fn broken_log_file_reports_where() {
        let text = format!(r#"{{"Records":[{},{{"#, rec("a"));
        let mut seen = 0;
        let err = for_each_record(text.as_bytes(), |_| seen += 1).unwrap_err();
        assert_eq!(seen, 1);
        assert!(
            matches!(
                err,
                InputError::Broken {
                    position: Position::Index(1),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn huge_line_is_bounded() {
        let text = format!(
            "{}\n{{\"x\":\"{}\"}}\n{}\n",
            rec("a"),
            "y".repeat(3 * MAX_RECORD_BYTES),
            rec("b")
        );
        let got = collect(text.as_bytes());
        assert_eq!(got.len(), 3);
        assert!(matches!(got[1].1, Err(RecordError::TooLarge(_))));
        assert_eq!(got[2].1, Ok("b".into()));
    }

    #[test]
    fn empty_input_has_no_records() {
        assert!(collect(b"  \n ").is_empty());
    }
}
