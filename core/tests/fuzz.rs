//! Bad input never panics: arbitrary and mutated JSON through the parser,
//! the stream decoder and the classifier.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use glasswatch_core::input::for_each_record;
use glasswatch_core::{Config, Record, WatchList, classify};
use proptest::prelude::*;
use serde_json::{Value, json};

fn watch() -> WatchList {
    Config::parse(include_str!("../../glasswatch.toml"), "glasswatch.toml")
        .unwrap()
        .watch_list()
        .unwrap()
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Exactly representable, so text and value parsing agree.
        (-4000i32..4000).prop_map(|i| Value::from(f64::from(i) / 4.0)),
        "[a-zA-Z0-9:/_*<>!&.-]{0,24}".prop_map(Value::from),
        prop_oneof![
            Just("Root"),
            Just("IAMUser"),
            Just("AssumedRole"),
            Just("ConsoleLogin"),
            Just("AssumeRole"),
            Just("signin.amazonaws.com"),
            Just("sts.amazonaws.com"),
            Just("BreakGlassRole"),
            Just("break-glass-1"),
            Just("2026-11-02T10:00:00Z"),
            Just("arn:aws:iam::111122223333:role/BreakGlassRole"),
            Just("Failure"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("eventID".to_owned()),
                    Just("eventTime".to_owned()),
                    Just("eventSource".to_owned()),
                    Just("eventName".to_owned()),
                    Just("awsRegion".to_owned()),
                    Just("recipientAccountId".to_owned()),
                    Just("userIdentity".to_owned()),
                    Just("type".to_owned()),
                    Just("arn".to_owned()),
                    Just("userName".to_owned()),
                    Just("sessionContext".to_owned()),
                    Just("sessionIssuer".to_owned()),
                    Just("requestParameters".to_owned()),
                    Just("responseElements".to_owned()),
                    Just("roleArn".to_owned()),
                    Just("detail".to_owned()),
                    Just("detail-type".to_owned()),
                    Just("additionalEventData".to_owned()),
                    Just("SwitchTo".to_owned()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A realistic record with one field replaced by an arbitrary value.
fn mutated_record() -> impl Strategy<Value = Value> {
    let base = json!({
        "eventID": "e1", "eventTime": "2026-11-02T10:00:00Z", "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole", "awsRegion": "us-east-1", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "userName": "break-glass-1", "arn": "arn:aws:iam::111122223333:user/break-glass-1",
            "sessionContext": {"sessionIssuer": {"userName": "BreakGlassRole"}, "attributes": {"mfaAuthenticated": "true"}}},
        "requestParameters": {"roleArn": "arn:aws:iam::111122223333:role/BreakGlassRole", "roleSessionName": "x"},
        "responseElements": {"credentials": {"accessKeyId": "ASIAEXAMPLE"}, "assumedRoleUser": {"arn": "arn:aws:sts::1:assumed-role/BreakGlassRole/x"}},
        "additionalEventData": {"MFAUsed": "Yes"}
    });
    let paths: Vec<Vec<&'static str>> = vec![
        vec!["eventID"],
        vec!["eventTime"],
        vec!["eventSource"],
        vec!["userIdentity"],
        vec!["userIdentity", "type"],
        vec!["userIdentity", "sessionContext"],
        vec!["userIdentity", "sessionContext", "sessionIssuer"],
        vec!["requestParameters"],
        vec!["requestParameters", "roleArn"],
        vec!["responseElements"],
        vec!["responseElements", "credentials"],
        vec!["additionalEventData"],
        vec!["recipientAccountId"],
    ];
    (prop::sample::select(paths), arb_json()).prop_map(move |(path, value)| {
        let mut doc = base.clone();
        let mut node = &mut doc;
        for key in &path[..path.len() - 1] {
            node = &mut node[*key];
        }
        node[path[path.len() - 1]] = value;
        doc
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics(doc in arb_json()) {
        let watch = watch();
        let text = doc.to_string();
        if let Ok(record) = Record::from_slice(text.as_bytes()) {
            let _ = classify(&watch, &record);
        }
        if let Ok(record) = Record::from_value(&doc) {
            let _ = classify(&watch, &record);
        }
        let _ = for_each_record(text.as_bytes(), |(_, r)| { if let Ok(r) = r { let _ = classify(&watch, &r); } });
    }

    #[test]
    fn mutated_records_never_panic_and_parse_alike(doc in mutated_record()) {
        let watch = watch();
        let from_bytes = Record::from_slice(doc.to_string().as_bytes());
        let from_value = Record::from_value(&doc);
        prop_assert_eq!(&from_bytes, &from_value);
        if let Ok(record) = from_value {
            let _ = classify(&watch, &record);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Record::from_slice(&bytes);
        let _ = for_each_record(bytes.as_slice(), |_| {});
    }
}

#[test]
fn deep_and_huge_inputs_fail_fast_with_a_clear_error() {
    let started = std::time::Instant::now();
    let deep = format!("{}{}", "{\"a\":".repeat(200_000), "}".repeat(200_000));
    let err = Record::from_slice(deep.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("over the") || err.to_string().contains("recursion"),
        "{err}"
    );

    let huge = format!(r#"{{"eventID":"{}"}}"#, "x".repeat(10 * 1024 * 1024));
    let err = Record::from_slice(huge.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");

    let mut errors = Vec::new();
    for_each_record(huge.as_bytes(), |(_, r)| errors.push(r.unwrap_err())).unwrap();
    assert_eq!(errors.len(), 1);
    let nested = "[".repeat(5_000_000);
    for_each_record(nested.as_bytes(), |(_, r)| errors.push(r.unwrap_err())).unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    // Generous: this is a bound against hangs, not a timing assertion.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
