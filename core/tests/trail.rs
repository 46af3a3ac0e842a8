//! The durable path's pure part: `[trail]` errors, trail object keys,
//! notifications, a log file scanned with its trust check, and digests
//! against what was processed.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use glasswatch_core::prefilter::Prefilter;
use glasswatch_core::trail::{
    Digest, ObjectKey, ObjectKind, digest_gaps, notification_objects, scan_log_file, unprocessed,
};
use glasswatch_core::{Config, DetectionKind, WatchList};
use serde_json::{Value, json};

const REPO: &str = include_str!("../../glasswatch.toml");
const KEY: &str = "AWSLogs/o-exampleorg1/111122223333/CloudTrail/eu-west-1/2026/11/20/111122223333_CloudTrail_eu-west-1_20261120T1305Z_a1B2c3D4e5F6g7H8.json.gz";

fn fixture(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn watch() -> WatchList {
    Config::parse(REPO, "glasswatch.toml")
        .unwrap()
        .watch_list()
        .unwrap()
}

fn with_trail(table: &str) -> Result<Config, String> {
    Config::parse(&format!("{REPO}\n[trail]\n{table}"), "glasswatch.toml")
        .map_err(|e| e.to_string())
}

#[test]
fn a_trail_table_parses_and_its_mistakes_are_named_with_their_line() {
    let config = with_trail(
        "bucket = \"org-trail-logs\"\nbucket_account = \"999900001111\"\nbucket_region = \"us-east-1\"\nnotification = \"sns\"\ntopic_arn = \"arn:aws:sns:us-east-1:999900001111:org-trail-deliveries\"\nkms_key_arn = \"arn:aws:kms:us-east-1:999900001111:key/1234abcd-12ab-34cd-56ef-1234567890ab\"\n",
    )
    .unwrap();
    let trail = config.trail.unwrap();
    assert!(trail.digests);
    assert_eq!(trail.logs_prefix(), "AWSLogs/");
    assert_eq!(trail.bucket_region("eu-west-1"), "us-east-1");

    let cases = [
        (
            "bucket = \"s3://Org_Trail\"",
            "trail.bucket",
            "is not an S3 bucket name",
        ),
        (
            "bucket_account = \"9999\"",
            "trail.bucket_account",
            "is not an AWS account id",
        ),
        (
            "prefix = \"/logs/\"",
            "trail.prefix",
            "without leading or trailing",
        ),
        (
            "prefix = \"logs/AWSLogs\"",
            "trail.prefix",
            "which CloudTrail adds itself",
        ),
        (
            "topic_arn = \"org-trail\"",
            "trail.topic_arn",
            "is not an SNS topic ARN",
        ),
        (
            "kms_key_arn = \"arn:aws:kms:us-east-1:999900001111:alias/trail\"",
            "trail.kms_key_arn",
            "the key itself, not an alias",
        ),
    ];
    for (line, key, message) in cases {
        let field = line.split(' ').next().unwrap();
        let mut table = vec![
            "bucket = \"org-trail-logs\"",
            "bucket_account = \"999900001111\"",
            "notification = \"sns\"",
            "topic_arn = \"arn:aws:sns:us-east-1:999900001111:org-trail-deliveries\"",
        ];
        table.retain(|l| !l.starts_with(&format!("{field} ")));
        table.push(line);
        let error = with_trail(&table.join("\n")).unwrap_err();
        assert!(error.contains(&format!("`{key}`")), "{line}: {error}");
        assert!(error.contains(message), "{line}: {error}");
        assert!(
            error.contains("glasswatch.toml:"),
            "no line for {line}: {error}"
        );
    }
    let error = with_trail(
        "bucket = \"org-trail-logs\"\nbucket_account = \"999900001111\"\nnotification = \"sns\"",
    )
    .unwrap_err();
    assert!(error.contains("needs the trail's topic"), "{error}");
    let error = with_trail(
        "bucket = \"org-trail-logs\"\nbucket_account = \"999900001111\"\nnotification = \"email\"",
    )
    .unwrap_err();
    assert!(
        error.contains("trail.notification") || error.contains("unknown variant"),
        "{error}"
    );
}

#[test]
fn object_keys_name_account_region_day_and_time() {
    let key = ObjectKey::parse(KEY).unwrap();
    assert_eq!(key.kind, ObjectKind::LogFile);
    assert_eq!(key.organization.as_deref(), Some("o-exampleorg1"));
    assert_eq!(
        (key.account.as_str(), key.region.as_str(), key.day.as_str()),
        ("111122223333", "eu-west-1", "2026-11-20")
    );
    // 2026-11-20T13:05:00Z.
    assert_eq!(key.time, 1_795_179_900);

    let digest = ObjectKey::parse("logs/AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/20/111122223333_CloudTrail-Digest_us-east-1_org-trail_us-east-1_20261120T140000Z.json.gz").unwrap();
    assert_eq!(digest.kind, ObjectKind::Digest);
    assert_eq!(digest.organization, None);
    assert_eq!(digest.time, 1_795_183_200);

    for (bad, why) in [
        ("CloudTrail/eu-west-1/x.json.gz", "no `AWSLogs/`"),
        (
            "xAWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/20/111122223333_CloudTrail_eu-west-1_20261120T1305Z_a.json.gz",
            "no `AWSLogs/`",
        ),
        (
            "AWSLogs/1111/CloudTrail/eu-west-1/2026/11/20/1111_CloudTrail_eu-west-1_20261120T1305Z_a.json.gz",
            "12 digits",
        ),
        (
            "AWSLogs/111122223333/Config/eu-west-1/2026/11/20/111122223333_Config_eu-west-1_20261120T1305Z_a.json.gz",
            "neither",
        ),
        (
            "AWSLogs/111122223333/CloudTrail/mars-1/2026/11/20/111122223333_CloudTrail_mars-1_20261120T1305Z_a.json.gz",
            "region",
        ),
        // A file of another account in this account's folder.
        (
            "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/20/444455556666_CloudTrail_eu-west-1_20261120T1305Z_a.json.gz",
            "does not start with",
        ),
        (
            "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/20/111122223333_CloudTrail_eu-west-1_soon_a.json.gz",
            "time",
        ),
        (
            "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/111122223333_CloudTrail_eu-west-1_20261120T1305Z_a.json.gz",
            "expected",
        ),
    ] {
        let error = ObjectKey::parse(bad).unwrap_err().to_string();
        assert!(error.contains(why), "{bad}: {error}");
    }
}

#[test]
fn notifications_from_sns_raw_and_s3_through_eventbridge() {
    let want = vec![KEY.to_owned()];
    let keys = |body: &str| -> Vec<String> {
        notification_objects(body)
            .unwrap()
            .into_iter()
            .map(|o| {
                assert_eq!(o.bucket, "org-trail-logs");
                o.key
            })
            .collect()
    };
    let sns = fixture("trail/sns-notification.json");
    assert_eq!(keys(&sns), want);
    let raw: Value = serde_json::from_str(&sns).unwrap();
    assert_eq!(keys(raw["Message"].as_str().unwrap()), want);
    assert_eq!(keys(&fixture("trail/s3-object-created.json")), want);

    for (body, why) in [
        ("not json", "not JSON"),
        ("{\"Type\":\"Notification\"}", "without `Message`"),
        (
            "{\"source\":\"aws.s3\",\"detail-type\":\"Object Deleted\",\"detail\":{}}",
            "`Object Deleted`",
        ),
        (
            "{\"source\":\"aws.s3\",\"detail-type\":\"Object Created\",\"detail\":{\"bucket\":{\"name\":\"b\"}}}",
            "detail.object.key",
        ),
        ("{\"s3Bucket\":\"b\"}", "without `s3ObjectKey`"),
        ("{\"s3Bucket\":\"b\",\"s3ObjectKey\":[7]}", "not a string"),
        ("{\"hello\":1}", "no `s3Bucket`"),
    ] {
        let error = notification_objects(body).unwrap_err().to_string();
        assert!(error.contains(why), "{body}: {error}");
    }
}

/// A log file as CloudTrail writes it (gzipped), of these records.
fn log_file(records: &[Value]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&serde_json::to_vec(&json!({ "Records": records })).unwrap())
        .unwrap();
    gz.finish().unwrap()
}

fn record(name: &str) -> Value {
    let mut doc: Value = serde_json::from_str(&fixture(name)).unwrap();
    doc.as_object_mut().unwrap().remove("_fixture");
    doc
}

#[test]
fn a_log_file_yields_its_detections_and_refuses_records_of_another_account_or_region() {
    let watch = watch();
    let prefilter = Prefilter::new(&watch);
    let key = ObjectKey::parse(KEY).unwrap();
    let mut assumed = record("11-assume-break-glass-role-by-break-glass-1.json");
    assumed["recipientAccountId"] = "111122223333".into();
    assumed["awsRegion"] = "eu-west-1".into();
    let mut elsewhere = assumed.clone();
    elsewhere["eventID"] = "00000000-0000-4000-8000-000000000001".into();
    elsewhere["recipientAccountId"] = "444455556666".into();
    let mut other_region = assumed.clone();
    other_region["eventID"] = "00000000-0000-4000-8000-000000000002".into();
    other_region["awsRegion"] = "us-west-2".into();
    let mut noise = record("08-negative-alice-console-login.json");
    noise["recipientAccountId"] = "444455556666".into();
    let broken = json!({ "eventID": "broken", "userIdentity": { "userName": "break-glass-1" } });
    let bytes = log_file(&[noise, assumed.clone(), elsewhere, broken, other_region]);
    let scan = scan_log_file(bytes.as_slice(), &key, &watch, &prefilter).unwrap();
    assert_eq!(scan.records, 5);
    assert_eq!(
        scan.flagged
            .iter()
            .flat_map(|f| f.detections.iter().map(|d| d.kind))
            .collect::<Vec<_>>(),
        [DetectionKind::BreakGlassRoleAssumed]
    );
    assert_eq!(
        (
            scan.flagged[0].index,
            scan.flagged[0].record.event_id.as_str()
        ),
        (1, assumed["eventID"].as_str().unwrap())
    );
    let mismatched: Vec<(&str, &str, &str)> = scan
        .mismatches
        .iter()
        .map(|m| {
            (
                m.record.event_id.as_str(),
                m.record.account.as_str(),
                m.record.region.as_str(),
            )
        })
        .collect();
    assert_eq!(
        mismatched,
        [
            (
                "00000000-0000-4000-8000-000000000001",
                "444455556666",
                "eu-west-1"
            ),
            (
                "00000000-0000-4000-8000-000000000002",
                "111122223333",
                "us-west-2"
            ),
        ]
    );
    // The broken record names a watched user, so it is parsed, and
    // reported; the others still count.
    assert_eq!(scan.bad.len(), 1);
    assert_eq!(scan.bad[0].0, 3);
    // The noise record (another account, but nothing to flag) is skipped
    // unparsed.
    assert!(scan.parsed < scan.records);
}

#[test]
fn a_log_file_broken_past_reading_is_an_error() {
    let watch = watch();
    let prefilter = Prefilter::new(&watch);
    let key = ObjectKey::parse(KEY).unwrap();
    let error = scan_log_file(
        &b"{\"Records\":[{\"eventID\":\"a\"}"[..],
        &key,
        &watch,
        &prefilter,
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("ends inside the `Records` array"),
        "{error}"
    );
}

#[test]
fn a_digest_lists_what_was_delivered_and_gaps_are_hours_without_one() {
    let digest = Digest::parse(fixture("trail/digest.json").as_bytes()).unwrap();
    assert_eq!(digest.aws_account_id, "111122223333");
    assert_eq!(digest.log_files.len(), 2);
    let processed: BTreeSet<&str> = [KEY].into();
    assert_eq!(
        unprocessed(&digest, |k| processed.contains(k)),
        [
            "AWSLogs/o-exampleorg1/111122223333/CloudTrail/eu-west-1/2026/11/20/111122223333_CloudTrail_eu-west-1_20261120T1340Z_z9Y8x7W6v5U4t3S2.json.gz"
        ]
    );
    assert!(
        Digest::parse(b"{\"logFiles\":[]}")
            .unwrap_err()
            .contains("not a CloudTrail digest")
    );

    let hour = 3600;
    let t0 = 1_795_176_000; // 2026-11-20T12:00:00Z
    // Windows as CloudTrail writes them, not on the hour: 12:01:31-13:01:31,
    // 13:01:31-14:01:40, then nothing until 15:02:10-16:02:10.
    let windows = [
        (t0 + 91, t0 + hour + 91),
        (t0 + hour + 91, t0 + 2 * hour + 100),
        (t0 + 3 * hour + 130, t0 + 4 * hour + 130),
    ];
    let tolerance = 300;
    assert_eq!(
        digest_gaps(&windows, t0 + 91, t0 + 4 * hour, tolerance),
        [(t0 + 2 * hour + 100, t0 + 3 * hour + 130)]
    );
    // A digest overdue at the end is a gap too; a few seconds are not.
    assert_eq!(
        digest_gaps(&windows, t0 + 91, t0 + 5 * hour + 130, tolerance),
        [
            (t0 + 2 * hour + 100, t0 + 3 * hour + 130),
            (t0 + 4 * hour + 130, t0 + 5 * hour + 130)
        ]
    );
    assert!(digest_gaps(&windows[..2], t0 + 91, t0 + 2 * hour + 200, tolerance).is_empty());
    assert_eq!(
        digest_gaps(&[], t0, t0 + hour, tolerance),
        [(t0, t0 + hour)]
    );
}

#[test]
fn digests_name_the_files_not_read_the_files_no_digest_lists_and_the_gaps() {
    use glasswatch_core::trail::check_digests;
    let digest = Digest::parse(fixture("trail/digest.json").as_bytes()).unwrap();
    let digest_key = ObjectKey::parse(digest.digest_s3_object.as_deref().unwrap()).unwrap();
    let listed = |i: usize| ObjectKey::parse(&digest.log_files[i].s3_object).unwrap();
    let forged = ObjectKey::parse("AWSLogs/o-exampleorg1/111122223333/CloudTrail/eu-west-1/2026/11/20/111122223333_CloudTrail_eu-west-1_20261120T1320Z_forgedFORGED0000.json.gz").unwrap();
    let other_region = ObjectKey::parse("AWSLogs/o-exampleorg1/111122223333/CloudTrail/us-east-1/2026/11/20/111122223333_CloudTrail_us-east-1_20261120T1320Z_noDigestAnywhere.json.gz").unwrap();
    let since = 1_795_179_600; // 13:00
    let until = 1_795_183_200; // 14:00
    let read = vec![listed(0), forged.clone(), other_region];
    let report = check_digests(&[(digest_key, digest.clone())], &read, since, until, 300);
    assert_eq!(
        report.not_read,
        [(
            digest.log_files[1].s3_object.clone(),
            digest.digest_s3_object.clone().unwrap()
        )]
    );
    assert_eq!(report.in_no_digest, [forged.key]);
    // us-east-1 has a file but no digest at all: the whole window.
    assert_eq!(
        report.gaps,
        [(
            "111122223333".to_owned(),
            "us-east-1".to_owned(),
            since,
            until
        )]
    );
    assert!(!report.is_clean());
    let all = vec![listed(0), listed(1)];
    let key = ObjectKey::parse(digest.digest_s3_object.as_deref().unwrap()).unwrap();
    assert!(check_digests(&[(key, digest)], &all, since, until, 300).is_clean());
}

#[test]
fn a_digest_is_read_gzipped_as_cloudtrail_writes_it_and_bounded() {
    let text = fixture("trail/digest.json");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    assert_eq!(
        Digest::read(gz.finish().unwrap().as_slice()).unwrap(),
        Digest::parse(text.as_bytes()).unwrap()
    );
    let huge = vec![b' '; glasswatch_core::input::MAX_DOCUMENT_BYTES + 1];
    assert!(
        Digest::read(huge.as_slice())
            .unwrap_err()
            .contains("is over")
    );
}
