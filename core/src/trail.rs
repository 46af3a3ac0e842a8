//! The durable path's pure part: the organization trail's log files in S3,
//! read to prove that nothing the fast path (EventBridge, best effort) let
//! slip was missed.
//!
//! - [`TrailConfig`]: the `[trail]` table of `glasswatch.toml`, validated;
//! - [`ObjectKey`]: where CloudTrail writes a log or digest file
//!   (`AWSLogs/[<org>/]<account>/CloudTrail[-Digest]/<region>/YYYY/MM/DD/…`),
//!   which names the account and region every record in it must belong to;
//! - [`notification_objects`]: the objects a queue message announces, from
//!   CloudTrail's SNS notification (wrapped or raw) or S3's `Object
//!   Created` event through EventBridge;
//! - [`scan_log_file`]: one log file through the pre-filter, the detector
//!   and the trust check, streamed;
//! - [`Digest`], [`unprocessed`] and [`digest_gaps`]: CloudTrail's hourly
//!   digest files, which list every log file delivered, against what was
//!   processed, and the hours no digest covers.

use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Problem, is_account_id, is_region};
use crate::detect::{Detection, classify};
use crate::input::{InputError, MAX_DOCUMENT_BYTES, Position, decompressed, for_each_candidate};
use crate::prefilter::Prefilter;
use crate::record::{Record, RecordError};
use crate::watch::WatchList;

/// How the trail's per-file notifications reach the reconciler's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationSource {
    /// The trail's SNS topic: one message per delivered log file.
    Sns,
    /// S3 Event Notifications of the bucket, sent to EventBridge.
    Eventbridge,
}

/// The `[trail]` table: where the organization trail writes, and how its
/// deliveries are announced.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrailConfig {
    /// The trail's bucket (usually in the log archive account).
    pub bucket: String,
    /// The account that owns the bucket (the log archive); every S3 call
    /// names it as the expected owner.
    pub bucket_account: String,
    /// The bucket's region; the audit region when not given.
    #[serde(default)]
    pub bucket_region: Option<String>,
    /// The trail's S3 key prefix (before `AWSLogs/`), if it has one.
    #[serde(default)]
    pub prefix: String,
    pub notification: NotificationSource,
    /// The trail's SNS topic, for `notification = "sns"`.
    #[serde(default)]
    pub topic_arn: Option<String>,
    /// The KMS key the log files are encrypted with (SSE-KMS), if any.
    #[serde(default)]
    pub kms_key_arn: Option<String>,
    /// Log file validation is on: hourly digest files are expected.
    #[serde(default = "yes")]
    pub digests: bool,
}

fn yes() -> bool {
    true
}

impl TrailConfig {
    /// Every problem with the table, with the key it is at.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |key: &str, message: String, hint: &str| {
            out.push(Problem::new(
                &["trail", key],
                message,
                Some(hint.to_owned()),
            ));
        };
        if !is_bucket_name(&self.bucket) {
            problem(
                "bucket",
                format!("`{}` is not an S3 bucket name", self.bucket),
                "3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit; the name only, without s3:// or a path",
            );
        }
        if !is_account_id(&self.bucket_account) {
            problem(
                "bucket_account",
                format!("`{}` is not an AWS account id", self.bucket_account),
                "the log archive account that owns the bucket: 12 digits, as a string",
            );
        }
        if let Some(region) = &self.bucket_region
            && !is_region(region)
        {
            problem(
                "bucket_region",
                format!("`{region}` is not an AWS region"),
                "e.g. \"us-east-1\"; leave it out when the bucket is in the audit region",
            );
        }
        if self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.contains("//")
        {
            problem(
                "prefix",
                format!(
                    "`{}` is not a key prefix as CloudTrail takes it",
                    self.prefix
                ),
                "write it as the trail's S3 key prefix, without leading or trailing `/` (\"\" when it has none)",
            );
        } else if self.prefix.split('/').any(|p| p == "AWSLogs") {
            problem(
                "prefix",
                format!(
                    "`{}` holds `AWSLogs`, which CloudTrail adds itself",
                    self.prefix
                ),
                "give only what comes before `AWSLogs/` (\"\" when nothing does)",
            );
        }
        match (self.notification, &self.topic_arn) {
            (NotificationSource::Sns, None) => problem(
                "topic_arn",
                "`notification = \"sns\"` needs the trail's topic".into(),
                "the trail's SNS topic ARN, e.g. \"arn:aws:sns:us-east-1:111122223333:org-trail\" (aws cloudtrail describe-trails shows it as SnsTopicARN)",
            ),
            (_, Some(arn)) if !is_arn_of(arn, "sns") => problem(
                "topic_arn",
                format!("`{arn}` is not an SNS topic ARN"),
                "arn:aws:sns:REGION:ACCOUNT:NAME",
            ),
            (NotificationSource::Eventbridge, Some(_)) => problem(
                "topic_arn",
                "a topic is given, but `notification = \"eventbridge\"` does not use one".into(),
                "remove `topic_arn`, or set `notification = \"sns\"`",
            ),
            _ => {}
        }
        if let Some(arn) = &self.kms_key_arn
            && !(is_arn_of(arn, "kms")
                && arn.split(':').nth(5).is_some_and(|r| r.starts_with("key/")))
        {
            problem(
                "kms_key_arn",
                format!("`{arn}` is not a KMS key ARN"),
                "arn:aws:kms:REGION:ACCOUNT:key/KEY-ID (the key itself, not an alias: the reconciler's role may decrypt with that key only)",
            );
        }
        out
    }

    /// The bucket's region.
    pub fn bucket_region<'a>(&'a self, audit_region: &'a str) -> &'a str {
        self.bucket_region.as_deref().unwrap_or(audit_region)
    }

    /// Where the trail's files start: `<prefix>/AWSLogs/` or `AWSLogs/`.
    pub fn logs_prefix(&self) -> String {
        if self.prefix.is_empty() {
            "AWSLogs/".to_owned()
        } else {
            format!("{}/AWSLogs/", self.prefix)
        }
    }
}

fn is_bucket_name(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&s.len())
        && s.chars().all(ok_char)
        && edge(s.chars().next())
        && edge(s.chars().last())
        && !s.contains("..")
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE` with this service, a
/// region and an account.
fn is_arn_of(arn: &str, service: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == service
        && is_region(parts[3])
        && is_account_id(parts[4])
        && !parts[5].is_empty()
}

/// What a trail object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    LogFile,
    Digest,
}

/// A trail object's key, taken apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectKey {
    pub key: String,
    pub kind: ObjectKind,
    /// `o-…` for an organization trail.
    pub organization: Option<String>,
    pub account: String,
    pub region: String,
    /// The delivery day, `YYYY-MM-DD`.
    pub day: String,
    /// The time in the file name, Unix seconds: a log file's delivery
    /// (to the minute), a digest's end.
    pub time: i64,
}

/// Why a key is not one CloudTrail writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` is not a CloudTrail log or digest file key: {reason}")]
pub struct KeyError {
    pub key: String,
    pub reason: &'static str,
}

impl ObjectKey {
    /// Parse `[prefix/]AWSLogs/[o-…/]<account>/CloudTrail[-Digest]/<region>/
    /// YYYY/MM/DD/<account>_CloudTrail[-Digest]_<region>_…_<time>….json.gz`.
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        let bad = |reason| KeyError {
            key: key.to_owned(),
            reason,
        };
        let rest = match key.find("AWSLogs/") {
            Some(0) => &key["AWSLogs/".len()..],
            Some(i) if key.as_bytes()[i - 1] == b'/' => &key[i + "AWSLogs/".len()..],
            _ => return Err(bad("no `AWSLogs/` segment")),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (organization, parts) = match parts.first() {
            Some(p) if p.starts_with("o-") => (Some((*p).to_owned()), &parts[1..]),
            _ => (None, &parts[..]),
        };
        let [account, service, region, year, month, day, name] = parts else {
            return Err(bad(
                "expected <account>/CloudTrail/<region>/YYYY/MM/DD/<file> after AWSLogs/",
            ));
        };
        if !is_account_id(account) {
            return Err(bad("the account is not 12 digits"));
        }
        let kind = match *service {
            "CloudTrail" => ObjectKind::LogFile,
            "CloudTrail-Digest" => ObjectKind::Digest,
            _ => return Err(bad("neither CloudTrail/ nor CloudTrail-Digest/")),
        };
        if !is_region(region) {
            return Err(bad("the region is not an AWS region"));
        }
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(year, 4) && digits(month, 2) && digits(day, 2)) {
            return Err(bad("the date is not YYYY/MM/DD"));
        }
        let stem = format!("{account}_{service}_{region}_");
        let Some(tail) = name.strip_prefix(&stem) else {
            return Err(bad(
                "the file name does not start with <account>_<service>_<region>_",
            ));
        };
        if !name.ends_with(".json.gz") {
            return Err(bad("the file name does not end in .json.gz"));
        }
        let time = name_time(tail).ok_or_else(|| bad("no YYYYMMDDTHHMM[SS]Z time in the name"))?;
        Ok(Self {
            key: key.to_owned(),
            kind,
            organization,
            account: (*account).to_owned(),
            region: (*region).to_owned(),
            day: format!("{year}-{month}-{day}"),
            time,
        })
    }
}

/// The `YYYYMMDDTHHMMZ` (log files) or `YYYYMMDDTHHMMSSZ` (digests) in
/// a file name's tail, as Unix seconds.
fn name_time(tail: &str) -> Option<i64> {
    tail.split('_').find_map(|part| {
        let digits = part.strip_suffix('Z').or_else(|| {
            part.strip_suffix(".json.gz")
                .and_then(|p| p.strip_suffix('Z'))
        })?;
        let (date, clock) = digits.split_once('T')?;
        if date.len() != 8 || !(clock.len() == 4 || clock.len() == 6) {
            return None;
        }
        if !date
            .bytes()
            .chain(clock.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let seconds = if clock.len() == 6 { &clock[4..6] } else { "00" };
        crate::record::parse_time(&format!(
            "{}-{}-{}T{}:{}:{seconds}Z",
            &date[0..4],
            &date[4..6],
            &date[6..8],
            &clock[0..2],
            &clock[2..4]
        ))
    })
}

/// One object a notification announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

/// Why a queue message is not a trail notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a trail notification: {0}")]
pub struct NotificationError(pub String);

/// The objects a reconciler queue message announces: CloudTrail's SNS
/// notification (`{"s3Bucket":…,"s3ObjectKey":[…]}`), inside an SNS
/// envelope or raw, or S3's `Object Created` event through EventBridge.
pub fn notification_objects(body: &str) -> Result<Vec<ObjectRef>, NotificationError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| NotificationError(format!("the message is not JSON: {e}")))?;
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    if field(&value, "Type").as_deref() == Some("Notification") {
        let message = field(&value, "Message")
            .ok_or_else(|| NotificationError("an SNS envelope without `Message`".into()))?;
        return notification_objects(&message);
    }
    if field(&value, "source").as_deref() == Some("aws.s3") {
        let detail_type = field(&value, "detail-type").unwrap_or_default();
        if detail_type != "Object Created" {
            return Err(NotificationError(format!(
                "an S3 event of detail-type `{detail_type}`, not `Object Created`"
            )));
        }
        let detail = value.get("detail").cloned().unwrap_or(Value::Null);
        let bucket = detail
            .get("bucket")
            .and_then(|b| field(b, "name"))
            .ok_or_else(|| NotificationError("an S3 event without detail.bucket.name".into()))?;
        let key = detail
            .get("object")
            .and_then(|o| field(o, "key"))
            .ok_or_else(|| NotificationError("an S3 event without detail.object.key".into()))?;
        return Ok(vec![ObjectRef { bucket, key }]);
    }
    let bucket = field(&value, "s3Bucket").ok_or_else(|| {
        NotificationError(
            "neither an SNS envelope, an S3 event nor a CloudTrail notification (no `s3Bucket`)"
                .into(),
        )
    })?;
    let keys = value
        .get("s3ObjectKey")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            NotificationError("a CloudTrail notification without `s3ObjectKey`".into())
        })?;
    keys.iter()
        .map(|k| {
            k.as_str()
                .map(|key| ObjectRef {
                    bucket: bucket.clone(),
                    key: key.to_owned(),
                })
                .ok_or_else(|| {
                    NotificationError("an `s3ObjectKey` entry that is not a string".into())
                })
        })
        .collect()
}

/// A record the detector flags, with where it is in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Flagged {
    pub index: usize,
    pub record: Record,
    pub detections: Vec<Detection>,
}

impl Flagged {
    /// A flagged record whose account or region is not that of the file it
    /// is in was written there by someone other than CloudTrail.
    pub fn belongs_to(&self, key: &ObjectKey) -> bool {
        self.record.account == key.account && self.record.region == key.region
    }
}

/// What one log file held.
#[derive(Debug, Default)]
pub struct LogFileScan {
    pub records: u64,
    /// Records parsed (the pre-filter's candidates).
    pub parsed: u64,
    /// Flagged records that belong to the file's account and region.
    pub flagged: Vec<Flagged>,
    /// Flagged records that do not belong there: to be kept and alerted
    /// like a spoofed signal, never joined to a session.
    pub mismatches: Vec<Flagged>,
    /// Records that could not be read, with where.
    pub bad: Vec<(usize, RecordError)>,
}

/// Stream one log file (gzipped or not) through the pre-filter and the
/// detector. A flagged record must carry the key's account
/// (`recipientAccountId`) and region (`awsRegion`); one that does not is
/// a mismatch. A broken record costs only itself; a file broken past
/// reading is an error (what was read before it is lost with it, so the
/// caller retries the file as a whole).
pub fn scan_log_file<R: Read>(
    reader: R,
    key: &ObjectKey,
    watch: &WatchList,
    prefilter: &Prefilter,
) -> Result<LogFileScan, InputError> {
    let mut scan = LogFileScan::default();
    for_each_candidate(reader, prefilter, |position, parsed| {
        scan.records += 1;
        let index = match position {
            Position::Index(i) | Position::Line(i) => i,
        };
        let Some(parsed) = parsed else { return };
        scan.parsed += 1;
        let record = match parsed {
            Ok(record) => record,
            Err(e) => return scan.bad.push((index, e)),
        };
        let detections = classify(watch, &record);
        if detections.is_empty() {
            return;
        }
        let flagged = Flagged {
            index,
            record,
            detections,
        };
        if flagged.belongs_to(key) {
            scan.flagged.push(flagged);
        } else {
            scan.mismatches.push(flagged);
        }
    })?;
    Ok(scan)
}

/// One log file a digest lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestLogFile {
    pub s3_bucket: String,
    pub s3_object: String,
    #[serde(default)]
    pub hash_value: Option<String>,
}

/// A CloudTrail digest file: the log files delivered for one account and
/// region in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    pub aws_account_id: String,
    pub digest_start_time: String,
    pub digest_end_time: String,
    #[serde(default)]
    pub digest_s3_object: Option<String>,
    #[serde(default)]
    pub previous_digest_s3_object: Option<String>,
    #[serde(default)]
    pub log_files: Vec<DigestLogFile>,
}

impl Digest {
    /// Parse a digest file's JSON (already decompressed).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a CloudTrail digest file: {e}"))
    }

    /// Read a digest file as CloudTrail writes it (gzipped) or plain, at
    /// most [`MAX_DOCUMENT_BYTES`] of it.
    pub fn read<R: Read>(reader: R) -> Result<Self, String> {
        let mut text = Vec::new();
        decompressed(reader)
            .and_then(|r| r.take(MAX_DOCUMENT_BYTES as u64 + 1).read_to_end(&mut text))
            .map_err(|e| format!("cannot read the digest file: {e}"))?;
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "the digest file is over {MAX_DOCUMENT_BYTES} bytes, more than CloudTrail writes"
            ));
        }
        Self::parse(&text)
    }
}

/// The log files `digest` lists that `processed` does not know: each was
/// delivered and never reconciled.
pub fn unprocessed(digest: &Digest, processed: impl Fn(&str) -> bool) -> Vec<&str> {
    digest
        .log_files
        .iter()
        .map(|f| f.s3_object.as_str())
        .filter(|key| !processed(key))
        .collect()
}

/// The spans of time between `from` and `until` that no digest covers,
/// longer than `tolerance` seconds, given each digest's window
/// (`digestStartTime`, `digestEndTime`, Unix seconds). CloudTrail writes a
/// digest for every account and region every hour, even an empty one, and
/// each starts where the previous ended, so an uncovered span is a
/// delivery gap: a digest that did not arrive. `until` is the caller's
/// "now" less the delivery delay it allows.
pub fn digest_gaps(
    windows: &[(i64, i64)],
    from: i64,
    until: i64,
    tolerance: i64,
) -> Vec<(i64, i64)> {
    let mut sorted: Vec<(i64, i64)> = windows.iter().copied().filter(|(s, e)| s < e).collect();
    sorted.sort_unstable();
    let mut gaps = Vec::new();
    let mut covered_to = from;
    for (start, end) in sorted {
        if start > covered_to && start.min(until) - covered_to > tolerance {
            gaps.push((covered_to, start.min(until)));
        }
        covered_to = covered_to.max(end);
        if covered_to >= until {
            return gaps;
        }
    }
    if until - covered_to > tolerance {
        gaps.push((covered_to, until));
    }
    gaps
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LogFile => "log file",
            Self::Digest => "digest",
        })
    }
}

/// What the digests of a window say about the log files read in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DigestReport {
    /// Log files a digest lists that were not read: deleted, or missed.
    pub not_read: Vec<(String, String)>,
    /// Log files read that no digest lists, though a digest of their
    /// account and region covers their delivery: not written by
    /// CloudTrail.
    pub in_no_digest: Vec<String>,
    /// Per account and region, the spans no digest covers.
    pub gaps: Vec<(String, String, i64, i64)>,
}

impl DigestReport {
    pub fn is_clean(&self) -> bool {
        self.not_read.is_empty() && self.in_no_digest.is_empty() && self.gaps.is_empty()
    }
}

/// Hold the log files read (`read`, keys) between `since` and `until`
/// against the digests found for the same window. `until` should stop
/// short of what CloudTrail may still deliver (an hour and more before
/// now). A digest's own key names its account and region.
pub fn check_digests(
    digests: &[(ObjectKey, Digest)],
    read: &[ObjectKey],
    since: i64,
    until: i64,
    tolerance: i64,
) -> DigestReport {
    use std::collections::{BTreeMap, BTreeSet};
    let mut report = DigestReport::default();
    let read_keys: BTreeSet<&str> = read.iter().map(|r| r.key.as_str()).collect();
    let mut listed = BTreeSet::new();
    let mut windows: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
    for (key, digest) in digests {
        let place = (key.account.clone(), key.region.clone());
        let start = crate::record::parse_time(&digest.digest_start_time);
        let end = crate::record::parse_time(&digest.digest_end_time);
        if let (Some(start), Some(end)) = (start, end) {
            windows.entry(place).or_default().push((start, end));
        }
        for file in &digest.log_files {
            listed.insert(file.s3_object.clone());
            let in_window =
                ObjectKey::parse(&file.s3_object).is_ok_and(|k| (since..=until).contains(&k.time));
            if in_window && !read_keys.contains(file.s3_object.as_str()) {
                let digest_key = digest
                    .digest_s3_object
                    .clone()
                    .unwrap_or_else(|| key.key.clone());
                report.not_read.push((file.s3_object.clone(), digest_key));
            }
        }
    }
    for key in read {
        let place = (key.account.clone(), key.region.clone());
        windows.entry(place.clone()).or_default();
        let covered = windows[&place].iter().any(|(_, end)| key.time <= *end);
        if covered && !listed.contains(&key.key) {
            report.in_no_digest.push(key.key.clone());
        }
    }
    for ((account, region), spans) in &windows {
        for (from, to) in digest_gaps(spans, since, until, tolerance) {
            report
                .gaps
                .push((account.clone(), region.clone(), from, to));
        }
    }
    report.not_read.sort();
    report.in_no_digest.sort();
    report
}
