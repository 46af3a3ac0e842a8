//! The pre-filter changes no verdict: every record `classify` flags, the
//! pre-filter lets through, whatever its case and however its strings are
//! escaped. Checked on the fixture corpus and on generated and mutated
//! records, against watch lists that exercise every needle.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;

use glasswatch_core::input::{Position, for_each_candidate, for_each_document, for_each_record};
use glasswatch_core::prefilter::Prefilter;
use glasswatch_core::{Config, Record, WatchList, classify};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The repository's watch list, and one with every other kind of entry:
/// Identity Center accounts, source identities (exact and glob), globbed
/// users, ARN-pinned roles, another prefix and target OUs.
fn watch_lists() -> Vec<(&'static str, WatchList)> {
    let repo = include_str!("../../glasswatch.toml");
    let other = repo
        .replace(
            "iam_users = [\"break-glass-1\", \"arn:aws:iam::444455556666:user/emergency/bg-admin\"]",
            "iam_users = [\"bg-*-ops\", \"Firecall\"]\nsso_accounts = [\"999988887777\"]\nsource_identities = [\"incident-*\", \"pager.duty\"]",
        )
        .replace(
            "roles = [\"BreakGlassRole\", \"Emergency*\"]",
            "roles = [\"arn:aws:iam::111122223333:role/ops/Rescue\", \"*Glass*\"]",
        )
        .replace("target_ous = []", "target_ous = [\"ou-abcd-11111111\"]")
        .replace("name_prefix = \"glasswatch\"", "name_prefix = \"gw\"")
        .replace("secret_name = \"glasswatch/slack\"", "secret_name = \"team/slack-token\"");
    assert_ne!(
        repo, other,
        "the variant must differ from the repository's list"
    );
    [("glasswatch.toml", repo), ("variant", other.as_str())]
        .into_iter()
        .map(|(name, text)| {
            let config = Config::parse(text, name).unwrap();
            (name, config.watch_list().unwrap())
        })
        .collect()
}

/// Every fixture document, as the detector would read it.
fn corpus() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for_each_document(std::fs::File::open(&file).unwrap(), |position, bytes| {
            let mut doc: Value = serde_json::from_slice(bytes.unwrap()).unwrap();
            if let Some(map) = doc.as_object_mut() {
                map.remove("_fixture");
            }
            out.push((format!("{name}:{position}"), doc));
        })
        .unwrap();
    }
    out
}

fn flagged(watch: &WatchList, bytes: &[u8]) -> bool {
    Record::from_slice(bytes).is_ok_and(|r| !classify(watch, &r).is_empty())
}

/// The property: flagged implies let through.
fn holds(prefilter: &Prefilter, watch: &WatchList, bytes: &[u8]) -> Result<(), String> {
    if flagged(watch, bytes) && !prefilter.may_flag(bytes) {
        return Err(format!(
            "classify flags a record the pre-filter skips:\n{}",
            String::from_utf8_lossy(bytes)
        ));
    }
    Ok(())
}

#[test]
fn every_flagged_fixture_is_let_through_and_most_noise_is_not() {
    for (name, watch) in watch_lists() {
        let prefilter = Prefilter::new(&watch);
        let (mut flagged_count, mut skipped) = (0, 0);
        for (label, doc) in corpus() {
            let bytes = serde_json::to_vec(&doc).unwrap();
            holds(&prefilter, &watch, &bytes).unwrap_or_else(|e| panic!("{name}, {label}: {e}"));
            flagged_count += usize::from(flagged(&watch, &bytes));
            skipped += usize::from(!prefilter.may_flag(&bytes));
        }
        assert!(flagged_count >= 20, "{name}: only {flagged_count} flagged");
        if name == "glasswatch.toml" {
            // The corpus's negatives name no watched identity: most are
            // skipped (the rest share a needle, e.g. a role called
            // ReadOnlyGlassRole).
            assert!(skipped >= 5, "{name}: only {skipped} skipped");
        }
    }
}

#[test]
fn the_log_file_path_gives_the_same_verdicts_with_and_without_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // Every fixture record in one log file, as CloudTrail writes them.
    let records: Vec<Value> = corpus().into_iter().map(|(_, doc)| doc).collect();
    let log = serde_json::to_vec(&json!({ "Records": records })).unwrap();
    let shipped = std::fs::read(dir.join("90-cloudtrail-log-file.json")).unwrap();
    for (name, watch) in watch_lists() {
        let prefilter = Prefilter::new(&watch);
        for input in [&log, &shipped] {
            let mut full = Vec::new();
            for_each_record(input.as_slice(), |(position, parsed)| {
                if let Ok(record) = parsed {
                    full.push((position, classify(&watch, &record)));
                }
            })
            .unwrap();
            let mut fast = Vec::new();
            let mut skipped = 0;
            for_each_candidate(
                input.as_slice(),
                &prefilter,
                |position, parsed| match parsed {
                    Some(Ok(record)) => fast.push((position, classify(&watch, &record))),
                    Some(Err(_)) => {}
                    None => skipped += 1,
                },
            )
            .unwrap();
            full.retain(|(_, d)| !d.is_empty());
            fast.retain(|(_, d)| !d.is_empty());
            assert_eq!(fast, full, "{name}");
            assert!(!full.is_empty(), "{name}");
            if input == &log {
                assert!(skipped > 0, "{name}: nothing was skipped");
            }
        }
    }
}

#[test]
fn records_outside_log_files_are_all_parsed() {
    let (_, watch) = watch_lists().remove(0);
    let prefilter = Prefilter::new(&watch);
    let input = b"{\"eventID\":\"x\"}\nnot json\n";
    let mut seen = Vec::new();
    for_each_candidate(&input[..], &prefilter, |position, parsed| {
        seen.push((position, parsed.map(|p| p.is_err())));
    })
    .unwrap();
    assert_eq!(
        seen,
        [
            (Position::Line(1), Some(true)),
            (Position::Line(2), Some(true))
        ]
    );
}

// ---------------------------------------------------------------------------
// Generated and mutated records.

/// Values the detector decides on, and near misses.
const POOL: &[&str] = &[
    "Root",
    "root",
    "ROOT",
    "IAMUser",
    "AssumedRole",
    "FederatedUser",
    "IdentityCenterUser",
    "Unknown",
    "AWSService",
    "Role",
    "break-glass-1",
    "BREAK-GLASS-1",
    "break-glass-2",
    "bg-admin",
    "BreakGlassRole",
    "breakglassrole",
    "EmergencyDeploy",
    "emergencyDeploy",
    "ReadOnlyRole",
    "BreakGlassAdmin",
    "emergency.admin",
    "bg-night-ops",
    "Firecall",
    "FIRECALL",
    "Rescue",
    "MyGlassThing",
    "incident-42",
    "pager.duty",
    "Pager.Duty",
    "glasswatch-agent-eu-west-1",
    "glasswatch-aggregator",
    "gw-signals",
    "StackSet-glasswatch-agent-1234",
    "glasswatch/slack",
    "team/slack-token",
    "AWSReservedSSO_BreakGlassAdmin_0123456789abcdef",
    "AWSReservedSSO_ReadOnly_0123456789abcdef",
    "999988887777",
    "111122223333",
    "444455556666",
    "ou-abcd-11111111",
    "ou-zzzz-99999999",
    "arn:aws:iam::111122223333:role/BreakGlassRole",
    "arn:aws:iam::111122223333:role/ops/Rescue",
    "arn:aws:iam::444455556666:user/emergency/bg-admin",
    "arn:aws:iam::111122223333:user/break-glass-1",
    "arn:aws:iam::111122223333:root",
    "arn:aws:sts::111122223333:assumed-role/BreakGlassRole/alice",
    "arn:aws:sts::111122223333:assumed-role/EmergencyDeploy/ci",
    "arn:aws:lambda:eu-west-1:111122223333:function:glasswatch-agent-eu-west-1",
    "arn:aws:secretsmanager:eu-west-1:310987654321:secret:glasswatch/slack-AbCdEf",
    "https://sqs.eu-west-1.amazonaws.com/310987654321/glasswatch-signals",
    "Success",
    "Failure",
    "AccessDenied",
    "ASIAEXAMPLEKEY000001",
];

const SOURCES: &[&str] = &[
    "signin.amazonaws.com",
    "sts.amazonaws.com",
    "sso.amazonaws.com",
    "sso-oauth.amazonaws.com",
    "iam.amazonaws.com",
    "cloudtrail.amazonaws.com",
    "events.amazonaws.com",
    "lambda.amazonaws.com",
    "cloudformation.amazonaws.com",
    "sqs.amazonaws.com",
    "secretsmanager.amazonaws.com",
    "dynamodb.amazonaws.com",
    "organizations.amazonaws.com",
    "account.amazonaws.com",
    "s3.amazonaws.com",
    "ec2.amazonaws.com",
];

const EVENTS: &[&str] = &[
    "ConsoleLogin",
    "SwitchRole",
    "PasswordUpdated",
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoot",
    "GetFederationToken",
    "GetSessionToken",
    "GetRoleCredentials",
    "Federate",
    "CreateToken",
    "CreateAccessKey",
    "ChangePassword",
    "DeactivateMFADevice",
    "UpdateAssumeRolePolicy",
    "PutRolePolicy",
    "CreateUser",
    "StopLogging",
    "DeleteTrail",
    "DisableRule",
    "PutPermission",
    "UpdateFunctionCode20150331v2",
    "DeleteEventSourceMapping20150331",
    "DeleteStack",
    "PurgeQueue",
    "PutSecretValue",
    "UpdateTable",
    "AttachPolicy",
    "MoveAccount",
    "DisableRegion",
    "ListBuckets",
    "DescribeInstances",
];

fn pick(rng: &mut fastrand::Rng, list: &[&str]) -> String {
    list[rng.usize(..list.len())].to_owned()
}

/// A record of any shape the detector has a rule for, filled from the
/// pools.
fn generated(rng: &mut fastrand::Rng) -> Value {
    let mut issuer = Map::new();
    for key in ["type", "arn", "userName", "accountId"] {
        if rng.bool() {
            issuer.insert(key.into(), pick(rng, POOL).into());
        }
    }
    let mut identity = Map::new();
    for key in ["type", "arn", "userName", "accountId", "accessKeyId"] {
        if rng.u8(..4) > 0 {
            identity.insert(key.into(), pick(rng, POOL).into());
        }
    }
    let mut context = Map::new();
    if rng.bool() {
        context.insert("sessionIssuer".into(), issuer.into());
    }
    if rng.u8(..4) == 0 {
        context.insert("sourceIdentity".into(), pick(rng, POOL).into());
    }
    identity.insert("sessionContext".into(), context.into());
    if rng.u8(..4) == 0 {
        identity.insert("onBehalfOf".into(), json!({ "userId": pick(rng, POOL) }));
    }
    let mut request = Map::new();
    for key in [
        "roleArn",
        "roleName",
        "userName",
        "serialNumber",
        "name",
        "rule",
        "functionName",
        "stackName",
        "queueUrl",
        "secretId",
        "tableName",
        "accountId",
        "destinationParentId",
        "targetPrincipal",
    ] {
        if rng.u8(..5) == 0 {
            request.insert(key.into(), pick(rng, POOL).into());
        }
    }
    let mut additional = Map::new();
    for key in ["SwitchTo", "UserName"] {
        if rng.u8(..4) == 0 {
            additional.insert(key.into(), pick(rng, POOL).into());
        }
    }
    let mut response = Map::new();
    if rng.u8(..4) == 0 {
        response.insert("ConsoleLogin".into(), pick(rng, POOL).into());
    }
    if rng.u8(..6) == 0 {
        response.insert("functionArn".into(), pick(rng, POOL).into());
    }
    json!({
        "eventVersion": "1.09",
        "eventID": format!("00000000-0000-4000-8000-{:012}", rng.u64(..1_000_000_000_000)),
        "eventTime": "2026-11-02T10:00:00Z",
        "eventSource": pick(rng, SOURCES),
        "eventName": pick(rng, EVENTS),
        "awsRegion": "eu-west-1",
        "recipientAccountId": pick(rng, &["111122223333", "999988887777", "444455556666"]),
        "userIdentity": identity,
        "requestParameters": request,
        "responseElements": response,
        "additionalEventData": additional,
        "serviceEventDetails": { "account_id": pick(rng, POOL), "role_name": pick(rng, POOL) },
    })
}

/// Change the case of some ASCII letters of some strings.
fn vary_case(rng: &mut fastrand::Rng, value: &mut Value) {
    match value {
        Value::String(s) if rng.u8(..3) == 0 => {
            *s = s
                .chars()
                .map(|c| match rng.u8(..4) {
                    0 => c.to_ascii_uppercase(),
                    1 => c.to_ascii_lowercase(),
                    _ => c,
                })
                .collect();
        }
        Value::Array(items) => items.iter_mut().for_each(|v| vary_case(rng, v)),
        Value::Object(map) => map.values_mut().for_each(|v| vary_case(rng, v)),
        _ => {}
    }
}

/// JSON text of `value` in which string characters are sometimes written
/// as escapes (`\uXXXX`, `\/`): the same value, other bytes.
fn escaped_json(rng: &mut fastrand::Rng, value: &Value, odds: u8, out: &mut String) {
    match value {
        Value::String(s) => escaped_string(rng, s, odds, out),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                escaped_json(rng, v, odds, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                escaped_string(rng, k, odds, out);
                out.push(':');
                escaped_json(rng, v, odds, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn escaped_string(rng: &mut fastrand::Rng, s: &str, odds: u8, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let escape = odds > 0 && rng.u8(..odds) == 0;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if escape => out.push_str("\\/"),
            c if (c as u32) < 0x20 || (escape && c.is_ascii()) => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A record from the corpus or the generator, its case varied and its
/// strings escaped at random.
fn mutated(rng: &mut fastrand::Rng, corpus: &[(String, Value)]) -> Vec<u8> {
    let mut value = if rng.bool() {
        corpus[rng.usize(..corpus.len())].1.clone()
    } else {
        generated(rng)
    };
    if rng.bool() {
        vary_case(rng, &mut value);
    }
    let odds = [0, 0, 3, 40][rng.usize(..4)];
    let mut text = String::new();
    escaped_json(rng, &value, odds, &mut text);
    text.into_bytes()
}

/// The corpus and each watch list with its pre-filter, made once per
/// thread.
type Fixed = (Vec<(String, Value)>, Vec<(WatchList, Prefilter)>);

fn compiled() -> Vec<(WatchList, Prefilter)> {
    watch_lists()
        .into_iter()
        .map(|(_, w)| {
            let p = Prefilter::new(&w);
            (w, p)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn no_record_the_detector_flags_is_skipped(seed in any::<u64>()) {
        thread_local! {
            static FIXED: Fixed = (corpus(), compiled());
        }
        FIXED.with(|(corpus, lists)| {
            let mut rng = fastrand::Rng::with_seed(seed);
            let bytes = mutated(&mut rng, corpus);
            for (watch, prefilter) in lists {
                holds(prefilter, watch, &bytes).map_err(TestCaseError::fail)?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}

/// The generator reaches the rules: a good share of its records are
/// flagged, some only through an escape or a varied case, and some are
/// skipped, so the property above is not vacuous.
#[test]
fn the_generator_exercises_flagged_escaped_and_skipped_records() {
    let corpus = corpus();
    let lists = compiled();
    let (mut flagged_count, mut skipped, mut escaped_flagged) = (0, 0, 0);
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..3000 {
        let bytes = mutated(&mut rng, &corpus);
        for (watch, prefilter) in &lists {
            let yes = flagged(watch, &bytes);
            flagged_count += usize::from(yes);
            skipped += usize::from(!prefilter.may_flag(&bytes));
            escaped_flagged += usize::from(yes && bytes.windows(2).any(|w| w == b"\\u"));
        }
    }
    assert!(flagged_count > 600, "{flagged_count} flagged");
    assert!(skipped > 100, "{skipped} skipped");
    assert!(
        escaped_flagged > 100,
        "{escaped_flagged} flagged with escapes"
    );
}
