//! The fixture corpus under `tests/fixtures/`: every record is classified
//! against the repository's `glasswatch.toml` and must give exactly the
//! detection kinds its `_fixture.expect` names.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use glasswatch_core::input::for_each_document;
use glasswatch_core::{Config, DetectionKind, Record, WatchList, classify};
use serde_json::Value;

fn watch() -> WatchList {
    let text = include_str!("../../glasswatch.toml");
    Config::parse(text, "glasswatch.toml")
        .unwrap()
        .watch_list()
        .unwrap()
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
        .collect();
    files.sort();
    files
}

/// Every document of a fixture file with its expected kinds, read through
/// the same stream decoder `cargo xtask replay` uses.
fn documents(path: &Path) -> Vec<(String, Value, Vec<DetectionKind>)> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for_each_document(std::fs::File::open(path).unwrap(), |position, bytes| {
        let label = format!("{name}:{position}");
        let doc: Value =
            serde_json::from_slice(bytes.unwrap_or_else(|e| panic!("{label}: {e}"))).unwrap();
        let expect = doc["_fixture"]["expect"]
            .as_array()
            .unwrap_or_else(|| panic!("{label} has no _fixture.expect"))
            .iter()
            .map(|k| serde_json::from_value(k.clone()).unwrap())
            .collect();
        out.push((label, doc, expect));
    })
    .unwrap();
    out
}

#[test]
fn every_fixture_gives_its_expected_kinds() {
    let watch = watch();
    let mut failures = Vec::new();
    let mut total = 0;
    let mut negatives = 0;
    let mut covered = BTreeSet::new();
    for file in fixture_files() {
        for (label, doc, expect) in documents(&file) {
            total += 1;
            if expect.is_empty() {
                negatives += 1;
            }
            let record = Record::from_value(&doc).unwrap_or_else(|e| panic!("{label}: {e}"));
            let mut got: Vec<DetectionKind> =
                classify(&watch, &record).iter().map(|d| d.kind).collect();
            got.sort();
            let mut want = expect.clone();
            want.sort();
            covered.extend(want.iter().copied());
            if got != want {
                failures.push(format!("{label}: expected {want:?}, got {got:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 40, "only {total} fixture records");
    assert!(negatives >= 10, "only {negatives} negative fixtures");
    for kind in DetectionKind::ALL {
        assert!(covered.contains(&kind), "no fixture covers {kind}");
    }
}

#[test]
fn detections_carry_context_and_keys() {
    let watch = watch();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let load = |name: &str| {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        classify(&watch, &Record::from_value(&doc).unwrap())
    };
    let root = load("01-root-console-login-mfa.json");
    assert_eq!(root[0].mfa, glasswatch_core::Mfa::Yes);
    assert!(
        root[0].principal.ends_with(":root"),
        "{}",
        root[0].principal
    );
    assert!(root[0].source_ip.is_some());

    let assumed = load("11-assume-break-glass-role-by-break-glass-1.json");
    let keys: Vec<String> = assumed[0].keys.iter().map(ToString::to_string).collect();
    assert!(
        keys.iter().filter(|k| k.starts_with("key:ASIA")).count() >= 1,
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("role-session:arn:aws:sts::")),
        "{keys:?}"
    );
    assert!(
        assumed[0]
            .target
            .as_deref()
            .unwrap()
            .ends_with("BreakGlassRole")
    );

    let sso = load("23-sso-get-role-credentials-break-glass-admin.json");
    assert!(
        sso[0]
            .keys
            .iter()
            .any(|k| k.to_string().starts_with("sso:")),
        "{:?}",
        sso[0].keys
    );
    let sso_activity = load("58-session-sso-break-glass-admin-list-users.json");
    let shared: Vec<_> = sso_activity[0]
        .keys
        .iter()
        .filter(|k| k.to_string().starts_with("sso:"))
        .collect();
    assert_eq!(shared.len(), 1, "{:?}", sso_activity[0].keys);
}

#[test]
fn a_console_sign_in_shares_its_key_with_the_console_session_it_starts() {
    let watch = watch();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let doc = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let keys = |doc: &Value| -> BTreeSet<String> {
        classify(&watch, &Record::from_value(doc).unwrap())
            .iter()
            .flat_map(|d| d.keys.iter().map(ToString::to_string))
            .collect()
    };
    let login = doc("04-break-glass-1-console-login-us-east-2.json");
    let mut call = doc("56-session-break-glass-1-s3-list-buckets.json");
    call["detail"]["userIdentity"]["sessionContext"]["attributes"]["creationDate"] =
        login["detail"]["eventTime"].clone();
    let shared: Vec<String> = keys(&login).intersection(&keys(&call)).cloned().collect();
    assert_eq!(
        shared,
        ["console:111122223333|arn:aws:iam::111122223333:user/break-glass-1|2026-10-08T14:02:31Z"]
    );
    let mut failed = doc("06-break-glass-1-console-login-failure.json");
    failed["detail"]["userIdentity"]["arn"] =
        Value::from("arn:aws:iam::111122223333:user/break-glass-1");
    assert!(
        keys(&failed).is_empty(),
        "a failed sign-in starts no session"
    );
}

fn load_doc(name: &str) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

fn keys_of(watch: &WatchList, doc: &Value) -> BTreeSet<String> {
    classify(watch, &Record::from_value(doc).unwrap())
        .iter()
        .flat_map(|d| d.keys.iter().map(ToString::to_string))
        .collect()
}

/// The credentials a break-glass session takes for another role, and a
/// federated user's, link the calls made with them to the session.
#[test]
fn onward_credentials_link_to_the_session_that_took_them() {
    let watch = watch();
    let hop = keys_of(
        &watch,
        &load_doc("66-sts-break-glass-role-chains-into-organization-access-role.json"),
    );
    assert!(hop.contains("key:ASIAW2LM9CHAINEDHOP2"), "{hop:?}");
    assert!(hop.contains("key:ASIAW2LM9BGCHAIN0001"), "{hop:?}");
    let chained = keys_of(
        &watch,
        &load_doc("67-session-chained-role-with-break-glass-source-identity.json"),
    );
    assert!(chained.contains("key:ASIAW2LM9CHAINEDHOP2"), "{chained:?}");

    let token = keys_of(
        &watch,
        &load_doc("68-sts-get-federation-token-by-break-glass-1.json"),
    );
    let call = keys_of(
        &watch,
        &load_doc("69-session-federated-user-of-break-glass-1-describes-instances.json"),
    );
    let shared: BTreeSet<&String> = token.intersection(&call).collect();
    assert!(
        shared.contains(&"federated:arn:aws:sts::444455556666:federated-user/bg-temp".to_owned())
            && shared.contains(&"key:ASIAW2LM9FEDERATED01".to_owned()),
        "{shared:?}"
    );
}

/// Moving an account out of the OUs deploy targets takes it out of
/// coverage; with the root as the target, no move can.
#[test]
fn moving_an_account_out_of_the_target_ous_is_tampering() {
    let text = include_str!("../../glasswatch.toml")
        .replace("target_ous = []", "target_ous = [\"ou-ab12-34cd56ef\"]");
    let watch = Config::parse(&text, "glasswatch.toml")
        .unwrap()
        .watch_list()
        .unwrap();
    let mut doc = load_doc("85-negative-organizations-move-account-within-the-root.json");
    let record = |doc: &Value| Record::from_value(doc).unwrap();
    let kinds = |doc: &Value| -> Vec<DetectionKind> {
        classify(&watch, &record(doc))
            .iter()
            .map(|d| d.kind)
            .collect()
    };
    assert_eq!(kinds(&doc), [DetectionKind::MonitoringTamper]);
    doc["detail"]["requestParameters"]["destinationParentId"] = "ou-ab12-34cd56ef".into();
    assert!(
        kinds(&doc).is_empty(),
        "a move into a target OU stays covered"
    );
}

/// An event of someone's own, shaped like CloudTrail, is not a CloudTrail
/// record, whatever its detail says.
#[test]
fn events_from_a_source_of_ones_own_are_refused() {
    let mut doc = load_doc("40-cloudtrail-stop-logging.json");
    doc["source"] = "custom.app".into();
    let err = Record::from_value(&doc).unwrap_err();
    assert!(err.to_string().contains("custom.app"), "{err}");
}
