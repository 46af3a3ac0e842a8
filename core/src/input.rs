//! Decoding recorded events from a byte stream: a single JSON record or
//! envelope, JSON Lines, or a CloudTrail log file (`{"Records":[...]}`),
//! any of them gzipped. Works on any `Read`; opening files is the caller's
//! job. Streams: a 1 GB log file is never held in memory.

use std::fmt;
use std::io::{BufRead, BufReader, Read};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::prefilter::{Prefilter, risky_escape};
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

/// Like [`for_each_record`], for the log-file path at speed: a CloudTrail
/// log file's record that `prefilter` rules out is not parsed, and `each`
/// gets `None` for it (it cannot be flagged, so no verdict changes; a
/// malformed one goes unreported). Records of other inputs (JSON Lines,
/// single documents, written by people and tools) are all parsed.
pub fn for_each_candidate<R: Read>(
    reader: R,
    prefilter: &Prefilter,
    mut each: impl FnMut(Position, Option<Result<Record, RecordError>>),
) -> Result<(), InputError> {
    let mut filter = Filter {
        prefilter,
        scratch: Vec::new(),
        hits: Vec::new(),
    };
    decode(reader, Some(&mut filter), &mut |position, doc| match doc {
        Doc::Text(bytes) => each(position, Some(Record::from_slice(bytes))),
        Doc::Bad(e) => each(position, Some(Err(e))),
        Doc::Skipped => each(position, None),
    })
}

/// Decompress `reader` as [`for_each_document`] does (the same inflater
/// and buffers) and do nothing else: the floor the decoder is measured
/// against. Returns how many bytes it held.
pub fn inflate_only<R: Read>(reader: R) -> Result<u64, InputError> {
    let mut inner = decompressed(reader)?;
    let mut total = 0u64;
    loop {
        let n = inner.fill_buf()?.len();
        if n == 0 {
            return Ok(total);
        }
        inner.consume(n);
        total += n as u64;
    }
}

/// A reader's bytes, gunzipped (every member of the file) when it starts
/// as gzip does, buffered either way: what every decoder here reads.
pub(crate) enum Decompressed<R: Read> {
    Plain(BufReader<R>),
    /// Boxed: the inflater's state is large beside a plain reader.
    Gzip(Box<BufReader<flate2::bufread::MultiGzDecoder<BufReader<R>>>>),
}

pub(crate) fn decompressed<R: Read>(reader: R) -> std::io::Result<Decompressed<R>> {
    let mut buffered = BufReader::with_capacity(BUFFER, reader);
    if buffered.fill_buf()?.starts_with(&GZIP_MAGIC) {
        let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
        let inflated = BufReader::with_capacity(BUFFER, decoder);
        return Ok(Decompressed::Gzip(Box::new(inflated)));
    }
    Ok(Decompressed::Plain(buffered))
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(r) => r.read(buf),
            Self::Gzip(r) => r.read(buf),
        }
    }
}

impl<R: Read> BufRead for Decompressed<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        match self {
            Self::Plain(r) => r.fill_buf(),
            Self::Gzip(r) => r.fill_buf(),
        }
    }

    fn consume(&mut self, amount: usize) {
        match self {
            Self::Plain(r) => r.consume(amount),
            Self::Gzip(r) => r.consume(amount),
        }
    }
}

const BUFFER: usize = 256 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Like [`for_each_record`], but hands over each document's raw JSON text
/// (for callers that keep or forward the original).
pub fn for_each_document<R: Read>(
    reader: R,
    mut each: impl FnMut(Position, Result<&[u8], RecordError>),
) -> Result<(), InputError> {
    decode(reader, None, &mut |position, doc| match doc {
        Doc::Text(bytes) => each(position, Ok(bytes)),
        Doc::Bad(e) => each(position, Err(e)),
        // Only a filter skips, and there is none.
        Doc::Skipped => {}
    })
}

fn decode<R: Read>(
    reader: R,
    filter: Option<&mut Filter<'_>>,
    each: &mut Sink<'_>,
) -> Result<(), InputError> {
    decode_plain(decompressed(reader)?, filter, each)
}

/// One element as the decoder hands it over.
enum Doc<'a> {
    Text(&'a [u8]),
    Bad(RecordError),
    /// Ruled out by the filter, unparsed.
    Skipped,
}

impl<'a> From<Result<&'a [u8], RecordError>> for Doc<'a> {
    fn from(bytes: Result<&'a [u8], RecordError>) -> Self {
        match bytes {
            Ok(b) => Self::Text(b),
            Err(e) => Self::Bad(e),
        }
    }
}

/// The pre-filter of a log file's records, with its buffers.
struct Filter<'a> {
    prefilter: &'a Prefilter,
    scratch: Vec<u8>,
    /// Where needles start in the scanner's current buffer.
    hits: Vec<usize>,
}

/// A log file's element judged alone (not by the scanner's buffer-wide
/// search), through the filter when there is one.
fn element<'b>(filter: &mut Option<&mut Filter<'_>>, bytes: &'b [u8]) -> Doc<'b> {
    let bytes = bounded(bytes);
    let skip = bytes.as_ref().is_ok_and(|b| {
        filter
            .as_deref_mut()
            .is_some_and(|f| !f.prefilter.may_flag_with(b, &mut f.scratch))
    });
    if skip { Doc::Skipped } else { bytes.into() }
}

type Sink<'a> = dyn FnMut(Position, Doc<'_>) + 'a;

fn decode_plain<R: BufRead>(
    mut reader: R,
    mut filter: Option<&mut Filter<'_>>,
    each: &mut Sink<'_>,
) -> Result<(), InputError> {
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
        return decode_log_file(reader, filter, each);
    }
    // Read the first line. A complete JSON value means JSON Lines; anything
    // else is one (pretty-printed) document.
    let mut first = Vec::new();
    read_line_bounded(&mut reader, &mut first)?;
    let first_line = leading_newlines + 1;
    if serde_json::from_slice::<IgnoredAny>(&first).is_ok() {
        each(Position::Line(first_line), bounded(trim(&first)).into());
        return decode_lines(reader, first_line + 1, each);
    }
    // A broken first line of JSON Lines: the next line is a whole record
    // on its own, which no line of a pretty-printed document is. Report
    // line 1 and go on, so one bad record never loses the good ones.
    let mut second = Vec::new();
    let mut blank = 0usize;
    let mut more = read_line_bounded(&mut reader, &mut second)?;
    while more && trim(&second).is_empty() {
        blank += 1;
        more = read_line_bounded(&mut reader, &mut second)?;
    }
    let next = trim(&second);
    if next.starts_with(b"{") && serde_json::from_slice::<IgnoredAny>(next).is_ok() {
        each(Position::Line(first_line), bounded(trim(&first)).into());
        let second_line = first_line + 1 + blank;
        each(Position::Line(second_line), bounded(next).into());
        return decode_lines(reader, second_line + 1, each);
    }
    let mut doc = first;
    if more {
        doc.push(b'\n');
        doc.extend(std::iter::repeat_n(b'\n', blank));
        doc.extend_from_slice(&second);
        doc.push(b'\n');
    }
    (&mut reader)
        .take((MAX_DOCUMENT_BYTES + 1 - doc.len().min(MAX_DOCUMENT_BYTES)) as u64)
        .read_to_end(&mut doc)?;
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(InputError::TooLarge);
    }
    // A log file whose keys come in another order than `Records` first.
    if let Ok(records) = serde_json::from_slice::<RecordsOnly>(&doc) {
        for (i, raw) in records.records.iter().enumerate() {
            each(
                Position::Index(i),
                element(&mut filter, raw.get().as_bytes()),
            );
        }
        return Ok(());
    }
    each(Position::Line(first_line), bounded(&doc).into());
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
            each(Position::Line(line), bounded(text).into());
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

/// Stream a `{"Records":[...]}` file one element at a time. The usual
/// shape (`{"Records":[` first, as CloudTrail writes it) goes through
/// [`scan_records`]; anything else through serde.
fn decode_log_file<R: BufRead>(
    mut reader: R,
    filter: Option<&mut Filter<'_>>,
    each: &mut Sink<'_>,
) -> Result<(), InputError> {
    if let Some(header) = records_array_header(reader.fill_buf()?) {
        reader.consume(header);
        return scan_records(reader, filter, each);
    }
    decode_log_file_serde(reader, filter, each)
}

/// The length of `{"Records":[` (with any whitespace) at the start of
/// `head`, if that is how it starts.
fn records_array_header(head: &[u8]) -> Option<usize> {
    let skip = |at: usize| {
        at + head[at.min(head.len())..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count()
    };
    let mut at = 0;
    for token in [&b"{"[..], b"\"Records\"", b":", b"["] {
        at = skip(at);
        if !head[at.min(head.len())..].starts_with(token) {
            return None;
        }
        at += token.len();
    }
    Some(at)
}

/// Where the scanner of a `Records` array is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// After `[` or `,`: a value comes (or, first, `]`).
    Before { first: bool },
    /// Inside a value.
    Value {
        depth: usize,
        in_string: bool,
        escape: bool,
    },
    /// After a value: `,` or `]` comes.
    After,
}

/// The elements of a `Records` array whose `[` has been read, each handed
/// over as its own bytes: a scanner finds where each ends (strings,
/// escapes, nesting) without parsing it, so every record is parsed once,
/// by its consumer. A broken element costs only itself; a stream that
/// ends inside the array is [`InputError::Broken`]. What follows the
/// array must close the object (other keys may come first).
fn scan_records<R: BufRead>(
    mut reader: R,
    mut filter: Option<&mut Filter<'_>>,
    each: &mut Sink<'_>,
) -> Result<(), InputError> {
    let mut index = 0usize;
    let mut state = Scan::Before { first: true };
    // The part of an element that began in an earlier buffer.
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_len = 0usize;
    // The element has an escape that could spell a needle.
    let mut risky = false;
    let broken = |index: usize, message: &str| InputError::Broken {
        position: Position::Index(index),
        message: message.to_owned(),
    };
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Err(broken(index, "the file ends inside the `Records` array"));
        }
        // One search for the needles of every element in this buffer; an
        // element that began in an earlier one is judged whole instead.
        if let Some(f) = filter.as_deref_mut() {
            f.prefilter.hits(buf, &mut f.scratch, &mut f.hits);
        }
        let mut next_hit = 0;
        let mut i = 0;
        let mut start = 0;
        while i < buf.len() {
            match state {
                Scan::Before { first } => {
                    let b = buf[i];
                    if b.is_ascii_whitespace() {
                        i += 1;
                    } else if b == b']' && first {
                        reader.consume(i + 1);
                        return finish_records(reader, index);
                    } else if b == b']' || b == b',' {
                        return Err(broken(index, "a value is missing in the `Records` array"));
                    } else {
                        start = i;
                        risky = false;
                        state = Scan::Value {
                            depth: 0,
                            in_string: false,
                            escape: false,
                        };
                    }
                }
                Scan::Value {
                    mut depth,
                    mut in_string,
                    mut escape,
                } => {
                    // Where the value ends: the index just past it.
                    let mut end = None;
                    while i < buf.len() {
                        // Inside an object or array, 64 bytes at a time
                        // while they hold no backslash.
                        if depth > 0
                            && !escape
                            && let Some(block) = buf.get(i..i + BLOCK)
                            && let Some(step) = scan_block(block, depth, in_string)
                        {
                            match step {
                                Block::Ends(at) => {
                                    end = Some(i + at);
                                    i += at;
                                    break;
                                }
                                Block::Continues {
                                    depth: d,
                                    in_string: s,
                                } => {
                                    depth = d;
                                    in_string = s;
                                    i += BLOCK;
                                    continue;
                                }
                            }
                        }
                        let b = buf[i];
                        if in_string {
                            if escape {
                                escape = false;
                                risky |= risky_escape(b);
                                i += 1;
                            } else if let Some(n) = memchr::memchr2(b'"', b'\\', &buf[i..]) {
                                i += n;
                                if buf[i] == b'\\' {
                                    escape = true;
                                } else {
                                    in_string = false;
                                    if depth == 0 {
                                        end = Some(i + 1);
                                    }
                                }
                                i += 1;
                            } else {
                                i = buf.len();
                            }
                        } else {
                            match b {
                                b'"' => in_string = true,
                                b'{' | b'[' => depth += 1,
                                b'}' | b']' if depth > 0 => {
                                    depth -= 1;
                                    if depth == 0 {
                                        end = Some(i + 1);
                                    }
                                }
                                // A scalar ends where a separator starts.
                                b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => {
                                    end = Some(i);
                                    break;
                                }
                                _ => {}
                            }
                            if end.is_none() {
                                i += 1;
                            }
                        }
                        if let Some(e) = end {
                            i = e;
                            break;
                        }
                    }
                    match end {
                        Some(e) => {
                            let part = &buf[start..e];
                            let position = Position::Index(index);
                            if pending_len == 0 {
                                let doc = match filter.as_deref() {
                                    Some(f) if !risky => {
                                        let hits = &f.hits;
                                        while hits.get(next_hit).is_some_and(|&h| h < start) {
                                            next_hit += 1;
                                        }
                                        if hits.get(next_hit).is_some_and(|&h| h < e) {
                                            bounded(part).into()
                                        } else {
                                            Doc::Skipped
                                        }
                                    }
                                    _ => bounded(part).into(),
                                };
                                each(position, doc);
                            } else {
                                pending_len += part.len();
                                if pending_len <= MAX_RECORD_BYTES {
                                    pending.extend_from_slice(part);
                                    let skip = !risky
                                        && filter.as_deref_mut().is_some_and(|f| {
                                            !f.prefilter.needle_in(&pending, &mut f.scratch)
                                        });
                                    let doc = if skip {
                                        Doc::Skipped
                                    } else {
                                        bounded(&pending).into()
                                    };
                                    each(position, doc);
                                } else {
                                    each(position, Doc::Bad(RecordError::TooLarge(pending_len)));
                                }
                                pending.clear();
                                pending_len = 0;
                            }
                            index += 1;
                            state = Scan::After;
                        }
                        None => {
                            state = Scan::Value {
                                depth,
                                in_string,
                                escape,
                            };
                        }
                    }
                }
                Scan::After => {
                    let b = buf[i];
                    i += 1;
                    if b == b',' {
                        state = Scan::Before { first: false };
                    } else if b == b']' {
                        reader.consume(i);
                        return finish_records(reader, index);
                    } else if !b.is_ascii_whitespace() {
                        return Err(broken(
                            index,
                            "expected `,` or `]` after a record in the `Records` array",
                        ));
                    }
                }
            }
        }
        // The buffer ends inside a value: keep its start (up to the
        // record limit; past it only its length counts).
        if matches!(state, Scan::Value { .. }) {
            let part = &buf[start..];
            pending_len += part.len();
            if pending_len <= MAX_RECORD_BYTES {
                pending.extend_from_slice(part);
            }
        }
        let used = buf.len();
        reader.consume(used);
    }
}

const BLOCK: usize = 64;

/// What a block of a value did to the scan.
enum Block {
    /// The value ends just before this offset.
    Ends(usize),
    Continues {
        depth: usize,
        in_string: bool,
    },
}

/// One bit per byte of `block` (bit `j` for byte `j`): where `class`
/// holds. Written so the compiler compares many bytes at once.
fn bits(block: &[u8], class: impl Fn(u8) -> bool) -> u64 {
    let mut flags = [0u8; BLOCK];
    for (flag, &b) in flags.iter_mut().zip(block) {
        *flag = u8::from(class(b));
    }
    let mut out = 0u64;
    for (k, word) in flags.chunks_exact(8).enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        // Gathers the low bit of each byte into the top byte, in order.
        let packed = u64::from_le_bytes(bytes).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        out |= packed << (8 * k);
    }
    out
}

/// Scan a block inside a value at `depth` (> 0) without a branch per
/// byte. `None` when the block holds a backslash (an escape: the
/// byte-wise scan takes it). Most blocks hold no bracket: then only the
/// parity of their quotes matters. Otherwise bit masks of quotes and
/// brackets, and the inside of strings by a prefix XOR of the quotes.
fn scan_block(block: &[u8], mut depth: usize, in_string: bool) -> Option<Block> {
    // `[` and `{`, `]` and `}` differ only in the bit 0x20.
    let bracket = |b: u8| b | 0x20 == b'{' || b | 0x20 == b'}';
    let (mut backslashes, mut brackets, mut quotes) = (0u8, 0u8, 0u8);
    for &b in block {
        backslashes |= u8::from(b == b'\\');
        brackets |= u8::from(bracket(b));
        quotes = quotes.wrapping_add(u8::from(b == b'"'));
    }
    if backslashes != 0 {
        return None;
    }
    if brackets == 0 {
        return Some(Block::Continues {
            depth,
            in_string: in_string ^ (quotes % 2 == 1),
        });
    }
    let quotes = bits(block, |b| b == b'"');
    // Bit j: an odd number of quotes at or before j, i.e. inside a string
    // (an opening quote counts as inside, a closing one as outside).
    let mut inside = quotes;
    for shift in [1, 2, 4, 8, 16, 32] {
        inside ^= inside << shift;
    }
    if in_string {
        inside = !inside;
    }
    let mut structural = bits(block, bracket) & !inside;
    while structural != 0 {
        let j = structural.trailing_zeros() as usize;
        structural &= structural - 1;
        if block[j] | 0x20 == b'{' {
            depth += 1;
        } else {
            depth -= 1;
            if depth == 0 {
                return Some(Block::Ends(j + 1));
            }
        }
    }
    Some(Block::Continues {
        depth,
        in_string: inside >> 63 == 1,
    })
}

/// After the `Records` array: the rest must close the log file object
/// (other keys may follow, and are skipped).
fn finish_records<R: BufRead>(reader: R, index: usize) -> Result<(), InputError> {
    let mut rest = b"{\"Records\":[]".to_vec();
    reader
        .take(MAX_DOCUMENT_BYTES as u64)
        .read_to_end(&mut rest)?;
    serde_json::from_slice::<IgnoredAny>(&rest).map_err(|e| InputError::Broken {
        position: Position::Index(index),
        message: format!("after the `Records` array: {e}"),
    })?;
    Ok(())
}

/// Stream a log file of another shape one element at a time, with serde.
fn decode_log_file_serde<R: BufRead>(
    reader: R,
    filter: Option<&mut Filter<'_>>,
    each: &mut Sink<'_>,
) -> Result<(), InputError> {
    let mut index = 0usize;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = LogFile {
        each: &mut *each,
        filter,
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

struct LogFile<'a, 'b, 'c> {
    each: &'a mut Sink<'b>,
    filter: Option<&'a mut Filter<'c>>,
    index: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for LogFile<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LogFile<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudTrail log file object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "Records" {
                map.next_value_seed(RecordsSeq {
                    each: &mut *self.each,
                    filter: self.filter.as_deref_mut(),
                    index: &mut *self.index,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct RecordsSeq<'a, 'b, 'c> {
    each: &'a mut Sink<'b>,
    filter: Option<&'a mut Filter<'c>>,
    index: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for RecordsSeq<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeq<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a `Records` array")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            let doc = element(&mut self.filter, raw.get().as_bytes());
            (self.each)(Position::Index(*self.index), doc);
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

    /// A JSON Lines file whose first line is broken was read as one
    /// document, losing every good record after it.
    #[test]
    fn json_lines_whose_first_line_is_broken() {
        let text = include_str!("../tests/fixtures/input/broken-first-line.jsonl");
        let got = collect(text.as_bytes());
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0].0, Position::Line(1));
        assert!(matches!(got[0].1, Err(RecordError::Json(_))), "{got:?}");
        assert_eq!(got[1], (Position::Line(2), Ok("e-2".into())));
        assert_eq!(got[2], (Position::Line(4), Ok("e-3".into())));
        assert!(got[3].1.is_err(), "line 5 is broken too");
        // A pretty-printed document is still one document.
        let pretty = "{\n  \"eventID\": \"p\",\n  \"eventTime\": \"2026-11-02T10:00:00Z\",\n  \"eventSource\": \"s3.amazonaws.com\",\n  \"eventName\": \"ListBuckets\",\n  \"awsRegion\": \"eu-west-1\",\n  \"recipientAccountId\": \"111122223333\"\n}\n";
        assert_eq!(
            collect(pretty.as_bytes()),
            [(Position::Line(1), Ok("p".into()))]
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

    /// Every way a stream can be cut into buffers gives the same records.
    #[test]
    fn the_records_scanner_ignores_buffer_boundaries() {
        let tricky = r#"{"eventID":"q","eventTime":"2026-11-02T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"Get]},\"x\\","awsRegion":"eu-west-1","recipientAccountId":"111122223333","requestParameters":{"a":[1,{"b":"]"}],"c":"\\"}}"#;
        let text = format!(
            "{{ \"Records\" : [ {} ,{},\n{}, 7, \"s\", null, [1,[2]] ] , \"more\": {{\"x\": [1]}} }}",
            rec("a"),
            tricky,
            rec("b")
        );
        let want = collect(text.as_bytes());
        assert_eq!(want.len(), 7);
        assert_eq!(want[0], (Position::Index(0), Ok("a".into())));
        assert_eq!(want[1], (Position::Index(1), Ok("q".into())));
        assert_eq!(want[2], (Position::Index(2), Ok("b".into())));
        assert!(want[3..].iter().all(|(_, r)| r.is_err()));
        for size in [1, 2, 3, 5, 7, 64] {
            let reader = BufReader::with_capacity(size, text.as_bytes());
            let mut got = Vec::new();
            scan_records(
                {
                    let mut r = reader;
                    let header = records_array_header(r.fill_buf().unwrap());
                    // Small buffers do not hold the header: consume it by hand.
                    if let Some(h) = header {
                        r.consume(h);
                    } else {
                        let mut skip = Vec::new();
                        r.read_until(b'[', &mut skip).unwrap();
                    }
                    r
                },
                None,
                &mut |pos, doc| {
                    let parsed = match doc {
                        Doc::Text(bytes) => Record::from_slice(bytes),
                        Doc::Bad(e) => Err(e),
                        Doc::Skipped => unreachable!("no filter"),
                    };
                    got.push((pos, parsed.map(|r| r.event_id)));
                },
            )
            .unwrap();
            assert_eq!(got, want, "buffer of {size}");
        }
    }

    #[test]
    fn broken_records_arrays_say_where() {
        for (text, at) in [
            (format!(r#"{{"Records":[{},"#, rec("a")), 1),
            (format!(r#"{{"Records":[{} {}]}}"#, rec("a"), rec("b")), 1),
            (format!(r#"{{"Records":[{},]}}"#, rec("a")), 1),
            (format!(r#"{{"Records":[{}]"#, rec("a")), 1),
            (format!(r#"{{"Records":[{}]}} x"#, rec("a")), 1),
            (r#"{"Records":["#.to_owned(), 0),
        ] {
            let err = for_each_record(text.as_bytes(), |_| {}).unwrap_err();
            assert!(
                matches!(err, InputError::Broken { position: Position::Index(i), .. } if i == at),
                "{text}: {err}"
            );
        }
        // An empty array has no records.
        assert!(collect(br#"{"Records":[]}"#).is_empty());
        assert!(collect(br#" { "Records" : [ ] , "x" : 1 } "#).is_empty());
    }

    #[test]
    fn an_element_over_the_limit_is_refused_and_reading_goes_on() {
        let big = format!(r#"{{"x":"{}"}}"#, "y".repeat(MAX_RECORD_BYTES + 10));
        let text = format!(r#"{{"Records":[{big},{}]}}"#, rec("b"));
        let got = collect(text.as_bytes());
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0].1, Err(RecordError::TooLarge(_))));
        assert_eq!(got[1], (Position::Index(1), Ok("b".into())));
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

    /// The elements of a `Records` array, cut by the scanner (bytes, or
    /// why not), with the buffer holding `size` bytes.
    fn scanned(text: &[u8], size: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut reader = BufReader::with_capacity(size, text);
        let mut skip = Vec::new();
        reader.read_until(b'[', &mut skip).unwrap();
        let mut got = Vec::new();
        scan_records(reader, None, &mut |_, doc| {
            got.push(match doc {
                Doc::Text(bytes) => Ok(bytes.to_vec()),
                Doc::Bad(e) => Err(e.to_string()),
                Doc::Skipped => Err("skipped without a filter".into()),
            });
        })
        .unwrap();
        got
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            // Plain text, as most of a record is.
            "[a-zA-Z0-9 ._:-]{0,150}".prop_map(Value::from),
            // Strings full of what the scanner keys on.
            "[a-z{}\\[\\]\",:\\\\/ ]{0,90}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 80, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\\[{\"]{1,12}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The scanner (its 64-byte blocks and its byte-wise path alike)
        /// cuts a log file where serde does, whatever the buffer size.
        #[test]
        fn the_scanner_cuts_elements_where_serde_does(
            records in proptest::collection::vec(arb_value(), 1..12),
            size in proptest::prop_oneof![1usize..80, 200usize..300, proptest::strategy::Just(256 * 1024)],
        ) {
            let text = serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap();
            let want: Vec<Result<Vec<u8>, String>> = records
                .iter()
                .map(|r| Ok(serde_json::to_vec(r).unwrap()))
                .collect();
            proptest::prop_assert_eq!(scanned(&text, size), want);
        }
    }
}
