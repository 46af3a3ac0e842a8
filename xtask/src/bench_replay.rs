//! `xtask replay`'s throughput for `cargo xtask bench`, end to end (gzip,
//! then parse, then classify) on one core, over a generated CloudTrail log
//! set, and its memory: flat, because it streams.
//!
//! The set ([`generate_internal`], run by the release build of xtask) is
//! 1 GiB of uncompressed JSON (64 MiB with `--quick`) in gzipped log files
//! laid out as S3 delivers them (`AWSLogs/<org>/<account>/CloudTrail/
//! <region>/YYYY/MM/DD/<account>_CloudTrail_<region>_<time>_<id>.json.gz`,
//! each `{"Records":[...]}`), 2–30 MiB each. The records have the shapes
//! of a busy organization's management events: services assuming roles
//! and decrypting with KMS, workloads describing and listing, CI users,
//! console sign-ins, with their request parameters, response elements,
//! resources and TLS details; one in a thousand is break-glass activity
//! (from the correlation workload's generator). It is deterministic, kept
//! in `target/bench/` and made again only when its manifest is missing or
//! of another version.
//!
//! Each run is the release `xtask replay --format json` over every file,
//! pinned to one core with `taskset` where there is one, its output read
//! and checked (every break-glass record detected, nothing else), its peak
//! RSS (`VmHWM`) sampled while it runs. A last run over the largest file
//! alone shows the memory does not grow with the input.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::aggregator::{Spec, generate, rfc3339};
use super::lambda::REGIONS;
use super::{Better, Figure, MIB, Target, median, vm_hwm_bytes};
use crate::python::{target_dir, workspace_root};

/// The full set: 1 GiB of uncompressed JSON.
pub const FULL_BYTES: u64 = 1 << 30;
/// The `--quick` set.
pub const QUICK_BYTES: u64 = 64 << 20;
/// Replay must get through at least this many records per second on one
/// core.
pub const REPLAY_TARGET: f64 = 150_000.0;
/// The replay may take at most this many times as long as decompressing
/// the same files with the same inflater.
pub const INFLATE_RATIO_TARGET: f64 = 1.5;
/// The replay must be at least this many times as fast as Python's
/// `gzip` + `json.loads` over the same files.
pub const PYTHON_RATIO_TARGET: f64 = 3.0;
/// `--jobs 2` on two cores must be at least this many times as fast as
/// `--jobs 1`.
pub const JOBS_SCALING_TARGET: f64 = 1.8;
/// Peak RSS over the whole set may exceed that over its largest file by
/// less than this (MiB): memory is flat.
pub const RSS_GROWTH_TARGET_MB: f64 = 8.0;
/// One record in this many is break-glass activity.
const BREAK_GLASS_EVERY: u64 = 1000;
/// Bumped whenever the generator changes, so a cached set is made again.
const VERSION: u32 = 1;
/// How often the replay's `VmHWM` is sampled.
const SAMPLE: Duration = Duration::from_millis(10);

/// What a generated set holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The size asked for.
    pub target_bytes: u64,
    /// Uncompressed JSON written.
    pub bytes: u64,
    pub compressed_bytes: u64,
    pub records: u64,
    pub break_glass: u64,
    /// Relative to the set's directory.
    pub files: Vec<String>,
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The set's directory for a size.
pub fn set_dir(bytes: u64) -> PathBuf {
    target_dir()
        .join("bench")
        .join(format!("replay-set-{}mib", bytes >> 20))
}

const ACCOUNTS: u64 = 20;
/// 2026-11-20T00:00:00Z.
const DAY_START: i64 = 1_795_132_800;

fn account(n: u64) -> String {
    format!("{:012}", 520_000_000_000 + n * 7_919_311)
}

/// Hex digits from the generator, for ids.
fn hex(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b"0123456789abcdef"[rng.usize(..16)]))
        .collect()
}

fn uuid(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}-{}-4{}-a{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 3),
        hex(rng, 3),
        hex(rng, 12)
    )
}

fn upper(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[rng.usize(..32)]))
        .collect()
}

const APP_ROLES: [&str; 6] = [
    "payments-api-task",
    "orders-worker",
    "eks-node-group-NodeInstanceRole",
    "data-pipeline-glue",
    "ReadOnlyAudit",
    "github-actions-deploy",
];
const SERVICES: [&str; 5] = [
    "lambda.amazonaws.com",
    "ecs-tasks.amazonaws.com",
    "ec2.amazonaws.com",
    "glue.amazonaws.com",
    "states.amazonaws.com",
];
const AGENTS: [&str; 4] = [
    "aws-sdk-go-v2/1.36.3 ua/2.1 os/linux lang/go#1.24.2 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.211.1",
    "aws-cli/2.31.18 md/awscrt#0.27.6 ua/2.1 os/linux#6.8.0 md/arch#x86_64 lang/python#3.13.7 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe command/ec2.describe-instances",
    "Boto3/1.40.55 md/Botocore#1.40.55 ua/2.1 os/linux#5.10.240 md/arch#x86_64 lang/python#3.12.11 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.40.55",
    "aws-sdk-java/2.31.40 Linux/5.10.238-231.953.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/21.0.7+6-LTS Java/21.0.7 vendor/Amazon.com_Inc. md/internal exec-env/AWS_ECS_FARGATE io/sync http/Apache cfg/retry-mode/standard",
];

/// One everyday management event, recorded in `account` and `region` at
/// `time`.
fn noise(rng: &mut fastrand::Rng, account: &str, region: &str, time: i64) -> Value {
    let role = APP_ROLES[rng.usize(..APP_ROLES.len())];
    let session = format!("{role}-{}", hex(rng, 12));
    let key = format!("ASIA{}", upper(rng, 16));
    let ip = format!("10.{}.{}.{}", rng.u8(..), rng.u8(..), rng.u8(1..255));
    let agent = AGENTS[rng.usize(..AGENTS.len())];
    let created = rfc3339(time - rng.i64(60..3600));
    let assumed = json!({
        "type": "AssumedRole",
        "principalId": format!("AROA{}:{session}", upper(rng, 17)),
        "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
        "accountId": account,
        "accessKeyId": key,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": format!("AROA{}", upper(rng, 17)),
                "arn": format!("arn:aws:iam::{account}:role/{role}"),
                "accountId": account,
                "userName": role
            },
            "attributes": {"creationDate": created, "mfaAuthenticated": "false"},
            "ec2RoleDelivery": "2.0"
        }
    });
    let service = SERVICES[rng.usize(..SERVICES.len())];
    let tls = json!({
        "tlsVersion": "TLSv1.3",
        "cipherSuite": "TLS_AES_128_GCM_SHA256",
        "clientProvidedHostHeader": format!("{}.{region}.amazonaws.com", ["ec2", "kms", "ssm", "sts"][rng.usize(..4)])
    });
    let (source, name, identity, read_only, request, response, resources, extra) = match rng
        .u8(..100)
    {
        0..=19 => (
            "sts.amazonaws.com",
            "AssumeRole",
            json!({"type": "AWSService", "invokedBy": service}),
            true,
            json!({
                "roleArn": format!("arn:aws:iam::{account}:role/{role}"),
                "roleSessionName": session,
                "durationSeconds": 3600
            }),
            json!({
                "credentials": {
                    "accessKeyId": key,
                    "sessionToken": format!("IQoJb3JpZ2luX2VjE{}", upper(rng, 380)),
                    "expiration": rfc3339(time + 3600)
                },
                "assumedRoleUser": {
                    "assumedRoleId": format!("AROA{}:{session}", upper(rng, 17)),
                    "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}")
                }
            }),
            json!([{"accountId": account, "type": "AWS::IAM::Role", "ARN": format!("arn:aws:iam::{account}:role/{role}")}]),
            json!({"sharedEventID": uuid(rng)}),
        ),
        20..=39 => (
            "kms.amazonaws.com",
            "Decrypt",
            if rng.bool() {
                json!({"type": "AWSService", "invokedBy": service})
            } else {
                assumed.clone()
            },
            true,
            json!({
                "encryptionContext": {
                    "aws:lambda:FunctionArn": format!("arn:aws:lambda:{region}:{account}:function:{role}")
                },
                "encryptionAlgorithm": "SYMMETRIC_DEFAULT"
            }),
            Value::Null,
            json!([{"accountId": account, "type": "AWS::KMS::Key", "ARN": format!("arn:aws:kms:{region}:{account}:key/{}", uuid(rng))}]),
            json!({"sharedEventID": uuid(rng)}),
        ),
        40..=64 => (
            "ec2.amazonaws.com",
            [
                "DescribeInstances",
                "DescribeSecurityGroups",
                "DescribeVolumes",
                "DescribeNetworkInterfaces",
            ][rng.usize(..4)],
            assumed.clone(),
            true,
            json!({
                "instancesSet": {},
                "filterSet": {"items": [
                    {"name": "tag:aws:autoscaling:groupName", "valueSet": {"items": [{"value": format!("{role}-asg")}]}},
                    {"name": "instance-state-name", "valueSet": {"items": [{"value": "running"}, {"value": "pending"}]}}
                ]},
                "maxResults": 1000
            }),
            Value::Null,
            Value::Null,
            json!({"tlsDetails": tls}),
        ),
        65..=74 => (
            "s3.amazonaws.com",
            ["GetBucketAcl", "GetBucketLocation", "ListBuckets"][rng.usize(..3)],
            assumed.clone(),
            true,
            json!({"bucketName": format!("{role}-artifacts-{account}"), "Host": format!("{role}-artifacts-{account}.s3.{region}.amazonaws.com"), "acl": ""}),
            Value::Null,
            json!([{"accountId": account, "type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{role}-artifacts-{account}")}]),
            json!({"additionalEventData": {
                "SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
                "bytesTransferredIn": 0, "AuthenticationMethod": "AuthHeader",
                "x-amz-id-2": upper(rng, 76), "bytesTransferredOut": rng.u32(200..4000)
            }, "tlsDetails": tls}),
        ),
        75..=82 => (
            "ssm.amazonaws.com",
            "GetParameter",
            assumed.clone(),
            true,
            json!({"name": format!("/{role}/config/database-url"), "withDecryption": true}),
            Value::Null,
            Value::Null,
            json!({"tlsDetails": tls}),
        ),
        83..=88 => (
            "logs.amazonaws.com",
            "CreateLogStream",
            json!({"type": "AWSService", "invokedBy": service}),
            false,
            json!({"logGroupName": format!("/aws/lambda/{role}"), "logStreamName": format!("2026/11/20/[$LATEST]{}", hex(rng, 32))}),
            Value::Null,
            Value::Null,
            json!({}),
        ),
        89..=93 => (
            "sts.amazonaws.com",
            "GetCallerIdentity",
            json!({
                "type": "IAMUser",
                "principalId": format!("AIDA{}", upper(rng, 17)),
                "arn": format!("arn:aws:iam::{account}:user/ci-deployer"),
                "accountId": account,
                "accessKeyId": format!("AKIA{}", upper(rng, 16)),
                "userName": "ci-deployer"
            }),
            true,
            Value::Null,
            Value::Null,
            Value::Null,
            json!({"tlsDetails": tls}),
        ),
        94..=96 => (
            "signin.amazonaws.com",
            "ConsoleLogin",
            json!({
                "type": "AssumedRole",
                "principalId": format!("AROA{}:alice@example.com", upper(rng, 17)),
                "arn": format!("arn:aws:sts::{account}:assumed-role/AWSReservedSSO_Developer_{}/alice@example.com", hex(rng, 16)),
                "accountId": account,
                "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "AWSReservedSSO_Developer"}}
            }),
            false,
            Value::Null,
            json!({"ConsoleLogin": "Success"}),
            Value::Null,
            json!({"additionalEventData": {"MobileVersion": "No", "MFAUsed": "No"}}),
        ),
        _ => (
            "cloudformation.amazonaws.com",
            "DescribeStacks",
            assumed.clone(),
            true,
            json!({"stackName": format!("arn:aws:cloudformation:{region}:{account}:stack/{role}/{}", uuid(rng))}),
            Value::Null,
            Value::Null,
            json!({"tlsDetails": tls}),
        ),
    };
    let mut record = json!({
        "eventVersion": "1.11",
        "userIdentity": identity,
        "eventTime": rfc3339(time),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": if source == "sts.amazonaws.com" && name == "AssumeRole" { Value::from(service) } else { Value::from(ip) },
        "userAgent": agent,
        "requestParameters": request,
        "responseElements": response,
        "requestID": uuid(rng),
        "eventID": uuid(rng),
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
    });
    if !resources.is_null() {
        record["resources"] = resources;
    }
    if let (Some(record), Some(extra)) = (record.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            record.insert(k.clone(), v.clone());
        }
    }
    record
}

/// `xtask bench --internal-replay-set DIR`: make the set of about `bytes`
/// uncompressed JSON in `dir`, unless its manifest says it is there.
pub fn generate_internal(dir: &Path, bytes: u64) -> Result<()> {
    if read_manifest(dir).is_some_and(|m| m.version == VERSION && m.target_bytes == bytes) {
        return Ok(());
    }
    if cfg!(debug_assertions) {
        eprintln!("==> warning: the replay set is being generated by an unoptimized build (slow)");
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    eprintln!(
        "==> generating the replay set: {} MiB of CloudTrail logs into {}",
        bytes >> 20,
        dir.display()
    );
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(0x7265_706c_6179_0001 ^ bytes);
    // Enough break-glass records for the set; each a record of a
    // multi-account session, in its own account.
    let break_glass_needed = (bytes / 1000 / BREAK_GLASS_EVERY + 16) as usize;
    let workload = generate(&Spec::correlation(break_glass_needed))?;
    let mut break_glass = workload.events.iter().map(|e| e.record());
    let mut manifest = Manifest {
        version: VERSION,
        target_bytes: bytes,
        bytes: 0,
        compressed_bytes: 0,
        records: 0,
        break_glass: 0,
        files: Vec::new(),
    };
    let mut time = DAY_START;
    while manifest.bytes < bytes {
        let n = manifest.files.len() as u64;
        let account = account(n % ACCOUNTS);
        let region = REGIONS[rng.usize(..REGIONS.len())];
        let file_bytes = (rng.u64(2..=30) << 20).min(bytes - manifest.bytes).max(1);
        let stamp = time::OffsetDateTime::from_unix_timestamp(time)
            .context("file time")?
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute]Z"
            ))
            .context("file time")?;
        let relative = format!(
            "AWSLogs/o-bench0001/{account}/CloudTrail/{region}/2026/11/20/{account}_CloudTrail_{region}_{stamp}_{}.json.gz",
            upper(&mut rng, 16)
        );
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut gz = CountingWriter::new(GzEncoder::new(BufWriter::new(file), Compression::fast()));
        gz.write_all(br#"{"Records":["#)?;
        let start = gz.written;
        let mut first = true;
        while gz.written - start < file_bytes {
            if !first {
                gz.write_all(b",")?;
            }
            first = false;
            manifest.records += 1;
            let record = if manifest.records.is_multiple_of(BREAK_GLASS_EVERY) {
                manifest.break_glass += 1;
                break_glass
                    .next()
                    .context("the break-glass workload ran out")?
            } else {
                noise(&mut rng, &account, region, time)
            };
            serde_json::to_writer(&mut gz, &record).context("cannot encode a record")?;
            time += i64::from(rng.u8(0..2));
        }
        gz.write_all(b"]}")?;
        manifest.bytes += gz.written;
        let mut file = gz.inner.finish().context("cannot finish a gzip stream")?;
        file.flush()?;
        manifest.compressed_bytes += std::fs::metadata(&path)?.len();
        manifest.files.push(relative);
    }
    let text = serde_json::to_string_pretty(&manifest).context("cannot encode the manifest")?;
    std::fs::write(dir.join("manifest.json"), text).context("cannot write the manifest")?;
    eprintln!(
        "==> {} records ({} break-glass) in {} files, {} MiB ({} MiB gzipped), in {:.1} s",
        manifest.records,
        manifest.break_glass,
        manifest.files.len(),
        manifest.bytes >> 20,
        manifest.compressed_bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A writer that counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W> CountingWriter<W> {
    fn new(inner: W) -> Self {
        Self { inner, written: 0 }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One replay process's measurements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayRun {
    pub seconds: f64,
    pub peak_rss_mb: f64,
    /// Distinct events the replay detected.
    pub detected: u64,
}

/// The same files through other programs, in the same run: what the
/// replay is held against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Floors {
    /// The replay's own inflater (flate2 with zlib-rs, the same buffers),
    /// decompressing and nothing else; median seconds.
    pub inflate_seconds: f64,
    /// GNU `zcat` to /dev/null, where there is one.
    pub zcat_seconds: Option<f64>,
    /// Python's `gzip` and `json.loads` of every file; median seconds.
    pub python_seconds: f64,
    pub python: String,
}

/// What the replay part measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub manifest_bytes: u64,
    pub compressed_bytes: u64,
    pub records: u64,
    pub break_glass: u64,
    pub files: usize,
    pub pinned_to_one_core: bool,
    pub runs: Vec<ReplayRun>,
    /// `--jobs 2` on two cores (none on a one-core machine).
    pub runs_two_jobs: Vec<ReplayRun>,
    /// Over the largest file alone.
    pub largest_file: ReplayRun,
    pub records_per_sec: f64,
    pub floors: Floors,
    /// The side-by-side table, as BENCHMARKS.md shows it.
    pub table: String,
}

/// `taskset -c CORES` where it exists, so the program gets those cores.
fn pinned(program: &Path, cores: &str) -> (Command, bool) {
    if available("taskset") {
        let mut command = Command::new("taskset");
        command.args(["-c", cores]).arg(program);
        (command, true)
    } else {
        (Command::new(program), false)
    }
}

/// One `replay --format json --jobs N` over `files` on `cores`; the
/// output is read and its distinct event ids counted, `VmHWM` sampled
/// until it exits.
fn replay_once(
    binary: &Path,
    files: &[PathBuf],
    jobs: usize,
    cores: &str,
) -> Result<(ReplayRun, bool)> {
    let (mut command, one_core) = pinned(binary, cores);
    let config = workspace_root().join("glasswatch.toml");
    command
        .current_dir(workspace_root())
        .arg("replay")
        .arg("--config")
        .arg(&config)
        .args(["--format", "json", "--jobs", &jobs.to_string()])
        .args(files)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let reader = std::thread::spawn(move || -> Result<HashSet<String>> {
        let mut ids = HashSet::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.context("cannot read the replay's output")?;
            let detection: Value = serde_json::from_str(&line)
                .with_context(|| format!("the replay printed a line that is not JSON: {line}"))?;
            let id = detection
                .get("event_id")
                .and_then(Value::as_str)
                .with_context(|| format!("a detection without event_id: {line}"))?;
            ids.insert(id.to_owned());
        }
        Ok(ids)
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    // The wait ends when the replay does; `VmHWM` (a high-water mark) is
    // sampled beside it until then.
    let status_path = format!("/proc/{}/status", child.id());
    let done = AtomicBool::new(false);
    let (status, seconds, peak) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0u64;
            while !done.load(Ordering::Relaxed) {
                if let Some(bytes) = std::fs::read_to_string(&status_path)
                    .ok()
                    .as_deref()
                    .and_then(vm_hwm_bytes)
                {
                    peak = peak.max(bytes);
                }
                std::thread::sleep(SAMPLE);
            }
            peak
        });
        let status = child.wait();
        let seconds = started.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        (status, seconds, sampler.join().unwrap_or(0))
    });
    let status = status.context("cannot wait for the replay")?;
    let ids = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the output reader panicked"))??;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        bail!("the replay failed ({status}): {}", errors.trim());
    }
    Ok((
        ReplayRun {
            seconds,
            peak_rss_mb: peak as f64 / MIB,
            detected: ids.len() as u64,
        },
        one_core,
    ))
}

/// Run `command` to its end, its standard output captured; the seconds
/// it took and what it printed.
fn timed(mut command: Command, what: &str) -> Result<(f64, String)> {
    command.stdin(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok((
        seconds,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// Python's floor: every file gunzipped and parsed by `json.loads`,
/// nothing else; prints the records it parsed.
const PYTHON_FLOOR: &str = r"import gzip, json, sys
n = 0
for path in sys.argv[1:]:
    with gzip.open(path, 'rb') as f:
        n += len(json.loads(f.read())['Records'])
print(n)
";

/// `bench --internal-inflate`: the replay's inflater over `files` and
/// nothing else; prints the bytes they held.
pub fn inflate_internal(files: &[PathBuf]) -> Result<()> {
    let mut total = 0;
    for file in files {
        let reader = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        total += glasswatch_core::input::inflate_only(reader)
            .with_context(|| format!("cannot decompress {}", file.display()))?;
    }
    println!("{total}");
    Ok(())
}

fn median_of(mut seconds: Vec<f64>) -> Result<f64> {
    seconds.sort_by(f64::total_cmp);
    median(&seconds).context("no run")
}

/// Run `command` (see [`timed`]), which must print `want` (what it
/// counted); its seconds.
fn counted(command: Command, what: &str, want: u64) -> Result<f64> {
    let (seconds, out) = timed(command, what)?;
    ensure!(
        out.trim() == want.to_string(),
        "{what} counted {} where the set holds {want}",
        out.trim()
    );
    Ok(seconds)
}

/// One decompression-only pass over `files` on core 0: its seconds.
fn inflate_once(xtask: &Path, files: &[PathBuf], manifest: &Manifest) -> Result<f64> {
    let (mut command, _) = pinned(xtask, "0");
    command.args(["bench", "--internal-inflate"]).args(files);
    counted(command, "the decompression-only pass", manifest.bytes)
}

/// Does `program --version` run?
fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Python floor and `zcat`, each `runs` times on core 0.
fn floors(
    files: &[PathBuf],
    manifest: &Manifest,
    runs: usize,
    inflate_seconds: f64,
) -> Result<Floors> {
    let python = crate::python::ensure()?.bin("python");
    let zcat = available("zcat");
    let (mut py, mut gnu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (mut command, _) = pinned(&python, "0");
        command.args(["-c", PYTHON_FLOOR]).args(files);
        let seconds = counted(command, "the Python floor", manifest.records)?;
        py.push(seconds);
        if zcat {
            let (mut command, _) = pinned(Path::new("zcat"), "0");
            command.args(files).stdout(Stdio::null());
            gnu.push(timed(command, "zcat")?.0);
        }
    }
    Ok(Floors {
        inflate_seconds,
        zcat_seconds: if zcat { Some(median_of(gnu)?) } else { None },
        python_seconds: median_of(py)?,
        python: python.display().to_string(),
    })
}

/// The side-by-side table of the replay and its floors.
fn side_by_side(manifest: &Manifest, floors: &Floors, one: f64, two: Option<f64>) -> String {
    let records = manifest.records as f64;
    let mut rows = vec![(
        "decompression alone (flate2 + zlib-rs, the replay's inflater)".to_owned(),
        floors.inflate_seconds,
    )];
    if let Some(zcat) = floors.zcat_seconds {
        rows.push(("`zcat` (GNU gzip), decompression only".into(), zcat));
    }
    rows.push((
        "`cargo xtask replay --format json --jobs 1` (release)".into(),
        one,
    ));
    if let Some(two) = two {
        rows.push((
            "`cargo xtask replay --format json --jobs 2`, two cores".into(),
            two,
        ));
    }
    rows.push((
        "Python `gzip` + `json.loads` of every record, nothing else".into(),
        floors.python_seconds,
    ));
    let mut table = String::from("| what | wall | records/s |\n|---|---|---|\n");
    for (what, seconds) in rows {
        table.push_str(&format!(
            "| {what} | {seconds:.2} s | {:.0}k |\n",
            records / seconds / 1000.0
        ));
    }
    table
}

/// Generate (or reuse) the set; replay it `runs` times on one core and,
/// on a machine with two, with `--jobs 2` on two; time the floors; replay
/// the largest file alone; report.
pub fn figures(xtask: &Path, bytes: u64, runs: usize) -> Result<(Vec<Figure>, ReplayReport)> {
    let dir = set_dir(bytes);
    let mut generate = Command::new(xtask);
    generate
        .current_dir(workspace_root())
        .args(["bench", "--internal-replay-set"])
        .arg(&dir)
        .args(["--internal-replay-bytes", &bytes.to_string()]);
    crate::run_command(&mut generate, "generate the replay set")?;
    let manifest = read_manifest(&dir)
        .with_context(|| format!("{} has no readable manifest.json", dir.display()))?;
    ensure!(!manifest.files.is_empty(), "the replay set has no files");
    let files: Vec<PathBuf> = manifest.files.iter().map(|f| dir.join(f)).collect();
    let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    eprintln!(
        "==> replay throughput: {} records ({} break-glass) in {} files, {} MiB ({} MiB gzipped), {runs} runs on one core{}, and the floors",
        manifest.records,
        manifest.break_glass,
        files.len(),
        manifest.bytes >> 20,
        manifest.compressed_bytes >> 20,
        if two_cores { " and on two" } else { "" }
    );
    let check = |run: &ReplayRun| {
        ensure!(
            run.detected == manifest.break_glass,
            "the replay detected {} events in a set with {} break-glass records",
            run.detected,
            manifest.break_glass
        );
        Ok(())
    };
    // Each replay on one core is paired with a decompression-only pass
    // right after it, and the ratio taken pair by pair: drift in the
    // machine's speed over the run cancels out.
    let (mut measured, mut two_jobs, mut inflated, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut one_core = false;
    for _ in 0..runs {
        let (run, pinned) = replay_once(xtask, &files, 1, "0")?;
        check(&run)?;
        one_core = pinned;
        let inflate = inflate_once(xtask, &files, &manifest)?;
        ratios.push(run.seconds / inflate);
        inflated.push(inflate);
        measured.push(run);
        if two_cores {
            let (run, _) = replay_once(xtask, &files, 2, "0,1")?;
            check(&run)?;
            two_jobs.push(run);
        }
    }
    let floors = floors(&files, &manifest, runs, median_of(inflated)?)?;
    let largest = files
        .iter()
        .max_by_key(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .cloned()
        .context("no file")?;
    let (largest_file, _) = replay_once(xtask, &[largest], 1, "0")?;
    let median_seconds = median_of(measured.iter().map(|r| r.seconds).collect())?;
    let two_seconds = if two_jobs.is_empty() {
        None
    } else {
        Some(median_of(two_jobs.iter().map(|r| r.seconds).collect())?)
    };
    let rate = manifest.records as f64 / median_seconds;
    let peak = measured
        .iter()
        .map(|r| r.peak_rss_mb)
        .fold(0.0_f64, f64::max);
    let table = side_by_side(&manifest, &floors, median_seconds, two_seconds);
    eprintln!("\n{table}");
    let size = format!("{} MiB", manifest.bytes >> 20);
    let mut figures = vec![
        Figure::with_target(
            &format!("replay throughput ({size}: gzip, parse, classify; 1 core)"),
            rate,
            "records/s",
            Target::AtLeast(REPLAY_TARGET),
        ),
        Figure::tracked(
            "replay throughput, uncompressed",
            manifest.bytes as f64 / MIB / median_seconds,
            "MB/s",
            Better::Higher,
        ),
        Figure::with_target(
            "replay time ÷ decompression alone (same inflater, 1 core)",
            median_of(ratios)?,
            "×",
            Target::AtMost(INFLATE_RATIO_TARGET),
        ),
        Figure::with_target(
            "replay speed ÷ Python gzip + json.loads (1 core)",
            floors.python_seconds / median_seconds,
            "×",
            Target::AtLeast(PYTHON_RATIO_TARGET),
        ),
    ];
    if let Some(two) = two_seconds {
        figures.push(Figure::with_target(
            "replay --jobs 2 speed-up over --jobs 1 (2 cores)",
            median_seconds / two,
            "×",
            Target::AtLeast(JOBS_SCALING_TARGET),
        ));
    }
    figures.extend([
        Figure::tracked(
            &format!("replay peak RSS ({size})"),
            peak,
            "MB",
            Better::Lower,
        ),
        Figure::with_target(
            "replay peak RSS growth, largest file → whole set",
            peak - largest_file.peak_rss_mb,
            "MB",
            Target::Below(RSS_GROWTH_TARGET_MB),
        ),
    ]);
    let report = ReplayReport {
        manifest_bytes: manifest.bytes,
        compressed_bytes: manifest.compressed_bytes,
        records: manifest.records,
        break_glass: manifest.break_glass,
        files: files.len(),
        pinned_to_one_core: one_core,
        runs: measured,
        runs_two_jobs: two_jobs,
        largest_file,
        records_per_sec: rate,
        floors,
        table,
    };
    Ok((figures, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glasswatch_core::input::for_each_record;
    use glasswatch_core::{Record, classify};

    #[test]
    fn noise_records_are_valid_varied_and_never_flagged() {
        let (_, watch) = super::super::load_watch_list().unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut names = HashSet::new();
        let mut bytes = 0;
        for i in 0..2000 {
            let record = noise(&mut rng, &account(i % 3), "eu-west-1", DAY_START + i as i64);
            bytes += record.to_string().len();
            let parsed = Record::from_value(&record).unwrap();
            assert!(classify(&watch, &parsed).is_empty(), "{record}");
            names.insert(parsed.event_name);
        }
        assert!(names.len() >= 10, "{names:?}");
        let mean = bytes / 2000;
        assert!((700..3000).contains(&mean), "mean record size {mean}");
    }

    #[test]
    fn a_small_set_is_gzipped_log_files_with_one_in_a_thousand_break_glass() {
        let dir =
            std::env::temp_dir().join(format!("glasswatch-replay-set-{}", std::process::id()));
        let bytes = 3 << 20;
        generate_internal(&dir, bytes).unwrap();
        let manifest = read_manifest(&dir).unwrap();
        assert!(manifest.bytes >= bytes && manifest.records > 1000);
        assert_eq!(manifest.break_glass, manifest.records / BREAK_GLASS_EVERY);
        let (_, watch) = super::super::load_watch_list().unwrap();
        let mut records = 0;
        let mut flagged = 0;
        for file in &manifest.files {
            assert!(
                file.starts_with("AWSLogs/") && file.ends_with(".json.gz"),
                "{file}"
            );
            let reader = File::open(dir.join(file)).unwrap();
            for_each_record(reader, |(_, parsed)| {
                records += 1;
                flagged += u64::from(!classify(&watch, &parsed.unwrap()).is_empty());
            })
            .unwrap();
        }
        assert_eq!(records, manifest.records);
        assert_eq!(flagged, manifest.break_glass);
        // A second call finds the set there and leaves it be.
        let modified = std::fs::metadata(dir.join("manifest.json"))
            .unwrap()
            .modified()
            .unwrap();
        generate_internal(&dir, bytes).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("manifest.json"))
                .unwrap()
                .modified()
                .unwrap(),
            modified
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
