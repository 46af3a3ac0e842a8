//! `cargo xtask replay` as a user runs it: the real binary, real files.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn replay(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(root())
        .arg("replay")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn fixture(name: &str) -> String {
    root()
        .join("core/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn json_lines_have_the_documented_fields() {
    let out = replay(
        &[
            "--format",
            "json",
            &fixture("11-assume-break-glass-role-by-break-glass-1.json"),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "event_id",
        "kind",
        "severity",
        "account",
        "region",
        "principal",
        "event_name",
        "event_time",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(lines[0]["kind"], "break_glass_role_assumed");
    assert_eq!(lines[0]["severity"], "critical");
}

#[test]
fn bad_records_are_reported_and_good_ones_still_processed() {
    let good = std::fs::read_to_string(fixture("11-assume-break-glass-role-by-break-glass-1.json"))
        .unwrap();
    let good_line = serde_json::to_string(&serde_json::from_str::<Value>(&good).unwrap()).unwrap();
    let input = format!("{good_line}\n{{\"eventID\":\"x\"}}\nnot json\n{good_line}\n");
    let out = replay(&["--format", "json", "-"], Some(input.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("-:2: missing or empty `eventSource`"),
        "{stderr}"
    );
    assert!(stderr.contains("-:3: not valid JSON"), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
}

/// Errors quote what the record held: an escape sequence in `eventTime`
/// or `detail-type` must not reach the terminal.
#[test]
fn errors_strip_escape_sequences_from_record_text() {
    let time = "{\"eventID\":\"x\",\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"ListBuckets\",\"awsRegion\":\"eu-west-1\",\"recipientAccountId\":\"111122223333\",\"eventTime\":\"\\u001b[2J\\u001b]0;pwned\\u0007\"}";
    let detail_type = "{\"version\":\"0\",\"detail-type\":\"\\u001b[31mred\",\"source\":\"aws.s3\",\"detail\":{}}";
    let input = format!("{time}\n{detail_type}\n");
    let out = replay(&["--format", "json", "-"], Some(input.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !out.stderr.iter().any(|&b| b == 0x1b || b == 0x07),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("-:1:") && stderr.contains("-:2:"),
        "{stderr}"
    );
}

#[test]
fn gzipped_log_files_and_table_output() {
    let log = std::fs::read(fixture("90-cloudtrail-log-file.json")).unwrap();
    let dir = std::env::temp_dir().join(format!("gw-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gz_path = dir.join("log.json.gz");
    std::fs::write(&gz_path, test_support::trail::gzip(&log)).unwrap();
    let out = replay(&[gz_path.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("TIME"), "{text}");
    assert!(
        text.contains("session_activity") && text.contains("break_glass_role_assumed"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("2 detections"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The fixture corpus's files, in name order. The corpus is the files;
/// `input/` holds inputs that are broken on purpose, for the decoder's own
/// tests.
fn corpus_files() -> Vec<String> {
    let mut paths: Vec<String> = std::fs::read_dir(root().join("core/tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    paths.sort();
    paths
}

#[test]
fn whole_corpus_replays_cleanly() {
    let paths = corpus_files();
    let mut args = vec!["--format", "json"];
    args.extend(paths.iter().map(String::as_str));
    let out = replay(&args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout).unwrap().lines().count() >= 50);
}

/// `--jobs` spreads the files over threads; the output is that of one
/// thread, byte for byte, and a file that cannot be opened is reported in
/// its place while the others are read.
#[test]
fn jobs_keep_the_output_in_the_order_of_the_inputs() {
    let mut paths = corpus_files();
    // Reversed, a missing file among them: the threads take the biggest
    // first, out of the arguments' order.
    paths.reverse();
    paths.insert(3, "/nonexistent/log.json.gz".into());
    let run = |jobs: &str| {
        let mut args = vec!["--format", "json", "--jobs", jobs];
        args.extend(paths.iter().map(String::as_str));
        replay(&args, None)
    };
    let one = run("1");
    assert_eq!(one.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&one.stderr);
    assert!(
        stderr.contains("cannot open /nonexistent/log.json.gz"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&one.stdout).lines().count() >= 50);
    for jobs in ["2", "4"] {
        let many = run(jobs);
        assert_eq!(many.status.code(), Some(1));
        assert_eq!(many.stdout, one.stdout, "--jobs {jobs}");
        assert_eq!(many.stderr, one.stderr, "--jobs {jobs}");
    }
}

/// A log file's records that cannot be flagged are not parsed, so a
/// malformed one goes unreported; `--parse-all` parses them all.
#[test]
fn parse_all_reports_the_malformed_records_the_fast_path_passes_over() {
    let dir = std::env::temp_dir().join(format!("gw-parse-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(fixture("11-assume-break-glass-role-by-break-glass-1.json"))
        .unwrap();
    let log = dir.join("log.json");
    std::fs::write(
        &log,
        format!("{{\"Records\":[{good},{{\"eventID\":\"no-source\"}}]}}"),
    )
    .unwrap();
    let path = log.to_str().unwrap();
    let fast = replay(&["--format", "json", path], None);
    assert!(
        fast.status.success(),
        "{}",
        String::from_utf8_lossy(&fast.stderr)
    );
    let all = replay(&["--format", "json", "--parse-all", path], None);
    assert_eq!(all.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&all.stderr).contains(":1: missing or empty `eventSource`"),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert_eq!(fast.stdout, all.stdout);
    assert_eq!(String::from_utf8_lossy(&fast.stdout).lines().count(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn invalid_config_fails_with_location() {
    let dir = std::env::temp_dir().join(format!("gw-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = std::fs::read_to_string(root().join("glasswatch.toml"))
        .unwrap()
        .replace("roles =", "role =");
    let path = dir.join("glasswatch.toml");
    std::fs::write(&path, config).unwrap();
    let out = replay(
        &[
            "--config",
            path.to_str().unwrap(),
            &fixture("01-root-console-login-mfa.json"),
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("glasswatch.toml:13: `watch.role`: unknown field `role`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: did you mean `roles`?"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn scenario() -> String {
    root()
        .join("xtask/tests/fixtures/cross-account-session.jsonl")
        .display()
        .to_string()
}

#[test]
fn sessions_correlate_the_assume_role_with_the_activity_it_explains() {
    let sessions = lines(&replay(&["--sessions", &scenario()], None));
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    let chain = sessions
        .iter()
        .find(|s| s["principal"] == "arn:aws:iam::444455556666:user/break-glass-1")
        .unwrap();
    for field in [
        "session_id",
        "principal",
        "severity",
        "accounts",
        "regions",
        "event_ids",
        "first_seen",
        "last_seen",
    ] {
        assert!(chain.get(field).is_some(), "{field} missing: {chain}");
    }
    assert_eq!(chain["event_ids"].as_array().unwrap().len(), 3);
    assert_eq!(chain["first_seen"], "2026-10-14T15:05:12Z");
    assert_eq!(chain["last_seen"], "2026-10-14T15:12:03Z");
    // Any order of the same events gives the same sessions.
    let text = std::fs::read_to_string(scenario()).unwrap();
    let reversed: Vec<&str> = text.lines().rev().collect();
    let again = lines(&replay(
        &["--sessions", "-"],
        Some(reversed.join("\n").as_bytes()),
    ));
    assert_eq!(again, sessions);
}

#[test]
fn slack_prints_one_root_per_session_then_one_threaded_digest() {
    let requests = lines(&replay(&["--slack", &scenario()], None));
    let roots: Vec<&Value> = requests
        .iter()
        .filter(|r| r["method"] == "chat.postMessage" && r["body"].get("thread_ts").is_none())
        .collect();
    assert_eq!(roots.len(), 2);
    let replies: Vec<&Value> = requests
        .iter()
        .filter(|r| r["body"].get("thread_ts").is_some())
        .collect();
    assert_eq!(replies.len(), 1, "two later events, one digest");
    assert!(requests.iter().all(|r| r["mode"] == "bot"));
    assert!(requests.iter().any(|r| r["method"] == "chat.update"));
}

#[test]
fn slack_output_escapes_hostile_session_names() {
    let requests = lines(&replay(
        &[
            "--slack",
            &fixture("20-hostile-session-name-assume-break-glass-role.json"),
        ],
        None,
    ));
    assert!(!requests.is_empty());
    let text = serde_json::to_string(&requests).unwrap();
    assert!(!text.contains("<!"), "{text}");
    assert!(text.contains("&lt;"), "{text}");
}

/// A gzipped log file of these fixture records.
fn gzipped_log(names: &[&str]) -> Vec<u8> {
    let records: Vec<Value> = names
        .iter()
        .map(|n| serde_json::from_str(&std::fs::read_to_string(fixture(n)).unwrap()).unwrap())
        .collect();
    test_support::trail::gzip_log_file(&records)
}

/// A bucket on moto holding these objects.
fn trail_bucket(bucket: &str, objects: &[(String, Vec<u8>)]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sdk = test_support::sdk_config("us-east-1").await;
        let s3 = glasswatch_stacksets::aws::s3(&sdk);
        test_support::trail::trail_bucket(&s3, bucket, objects)
            .await
            .unwrap();
    });
}

/// xtask with `command`, `args` and `location`, its AWS environment that
/// of moto (test credentials, no profile, no instance metadata).
fn on_moto(command: &[&str], args: &[&str], location: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(root())
        .args(command)
        .args(args)
        .arg(location)
        .env("AWS_ENDPOINT_URL", test_support::moto_endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap()
}

/// `replay s3://…` on moto: the log files of the days asked for, in key
/// order, whatever `--jobs`; digests and other days left out; a broken
/// object reported in its place while the others are read.
#[test]
fn replay_reads_a_trail_bucket_by_the_days_in_its_keys() {
    let bucket = format!("gw-replay-trail-{}", std::process::id());
    let day = |d: &str, time: &str, id: &str| {
        format!(
            "AWSLogs/o-exampleorg1/111122223333/CloudTrail/eu-west-1/2026/11/{d}/111122223333_CloudTrail_eu-west-1_202611{d}T{time}Z_{id}.json.gz"
        )
    };
    let objects: Vec<(String, Vec<u8>)> = vec![
        (day("19", "2340", "early"), gzipped_log(&["01-root-console-login-mfa.json"])),
        (day("20", "1305", "first"), gzipped_log(&["11-assume-break-glass-role-by-break-glass-1.json"])),
        (day("20", "1310", "broken"), b"\x1f\x8b not really gzip".to_vec()),
        (
            day("21", "0905", "second"),
            gzipped_log(&["56-session-break-glass-1-s3-list-buckets.json", "08-negative-alice-console-login.json"]),
        ),
        (
            "AWSLogs/o-exampleorg1/111122223333/CloudTrail-Digest/eu-west-1/2026/11/20/111122223333_CloudTrail-Digest_eu-west-1_org_us-east-1_20261120T140000Z.json.gz".into(),
            b"{}".to_vec(),
        ),
    ];
    trail_bucket(&bucket, &objects);
    let location = format!("s3://{bucket}/AWSLogs/");
    let replay_s3 = |args: &[&str]| on_moto(&["replay", "--format", "json"], args, &location);
    // Both ends given: each account and region's days are listed, nothing
    // else.
    let run = |jobs: &str| {
        replay_s3(&[
            "--jobs",
            jobs,
            "--since",
            "2026-11-20",
            "--until",
            "2026-11-21",
        ])
    };
    let one = run("1");
    let stderr = String::from_utf8_lossy(&one.stderr);
    assert_eq!(one.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(": 3 objects") && !stderr.contains("left out"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("s3://{bucket}/{}", objects[2].0)),
        "the broken object is named: {stderr}"
    );
    let printed: Vec<Value> = String::from_utf8_lossy(&one.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = printed
        .iter()
        .map(|l| l["event_name"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["AssumeRole", "ListBuckets"], "{printed:?}");
    let many = run("3");
    assert_eq!(many.stdout, one.stdout);
    assert_eq!(many.stderr, one.stderr);
    // One end open: the prefix is listed whole, and what is not taken
    // (the 19th, the digest) is counted.
    let open = replay_s3(&["--since", "2026-11-20"]);
    let stderr = String::from_utf8_lossy(&open.stderr);
    assert!(
        stderr.contains(": 3 objects") && stderr.contains("2 others left out"),
        "{stderr}"
    );
    assert_eq!(open.stdout, one.stdout);
}

/// `--digests` on moto: a file a digest lists but the bucket lacks, and a
/// file the bucket holds but no digest lists, are both reported.
#[test]
fn replay_holds_what_it_read_against_the_trails_digests() {
    let bucket = format!("gw-replay-digests-{}", std::process::id());
    let log = |time: &str, id: &str| {
        format!(
            "AWSLogs/o-exampleorg1/111122223333/CloudTrail/eu-west-1/2026/11/20/111122223333_CloudTrail_eu-west-1_20261120T{time}Z_{id}.json.gz"
        )
    };
    let digest_key = "AWSLogs/o-exampleorg1/111122223333/CloudTrail-Digest/eu-west-1/2026/11/20/111122223333_CloudTrail-Digest_eu-west-1_org_us-east-1_20261120T140000Z.json.gz";
    let (read, forged, deleted) = (
        log("1305", "read"),
        log("1320", "forged"),
        log("1340", "deleted"),
    );
    let digest = serde_json::json!({
        "awsAccountId": "111122223333",
        "digestStartTime": "2026-11-20T13:00:00Z",
        "digestEndTime": "2026-11-20T14:00:00Z",
        "digestS3Object": digest_key,
        "logFiles": [
            { "s3Bucket": bucket, "s3Object": read },
            { "s3Bucket": bucket, "s3Object": deleted },
        ],
    });
    let objects = [
        (
            read.clone(),
            gzipped_log(&["11-assume-break-glass-role-by-break-glass-1.json"]),
        ),
        (
            forged.clone(),
            gzipped_log(&["08-negative-alice-console-login.json"]),
        ),
        (
            digest_key.to_owned(),
            test_support::trail::gzip(digest.to_string().as_bytes()),
        ),
    ];
    trail_bucket(&bucket, &objects);
    let out = on_moto(
        &["replay", "--format", "json", "--digests"],
        &[
            "--since",
            "2026-11-20T13:00:00Z",
            "--until",
            "2026-11-20T14:00:00Z",
        ],
        &format!("s3://{bucket}/AWSLogs/"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "not read: {deleted} (listed in the digest {digest_key})"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("in no digest: {forged}")),
        "{stderr}"
    );
    assert!(!stderr.contains("no digest for"), "{stderr}");
    assert!(
        stderr.contains("1 digests checked against 2 log files"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}
