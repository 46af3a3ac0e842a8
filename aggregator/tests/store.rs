//! The DynamoDB store against moto: redelivery, merges across
//! invocations, concurrent writers and claims, the indexes, TTL.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};

use glasswatch_aggregator::store::{
    Evidence, GSI_BY_ACCOUNT, GSI_BY_PRINCIPAL, GSI_BY_SEVERITY, GSI_BY_TIME, Store, create_table,
};
use glasswatch_core::correlate::{Ingest, Ledger};
use glasswatch_core::session::{SessionEvent, session_id};
use glasswatch_core::verify::Verdict;
use glasswatch_core::{DetectionKind, Mfa, Severity};
use test_support::usage::CountRequests;
use test_support::{sdk_config, unique};

const QUIET: i64 = 3600;
const T0: i64 = 1_795_000_000;

fn ev(id: &str, time: i64, account: &str, keys: &[&str]) -> SessionEvent {
    SessionEvent {
        event_id: id.to_owned(),
        time,
        event_time: time.to_string(),
        event_source: "sts.amazonaws.com".to_owned(),
        event_name: "AssumeRole".to_owned(),
        account: account.to_owned(),
        region: "eu-west-1".to_owned(),
        principal: "arn:aws:iam::111122223333:user/break-glass-1".to_owned(),
        severity: if id.ends_with('c') {
            Severity::Critical
        } else {
            Severity::High
        },
        kinds: BTreeSet::from([DetectionKind::BreakGlassRoleAssumed]),
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        summary: format!("event {id}"),
        source_ip: Some("203.0.113.7".to_owned()),
        user_agent: Some("aws-cli/2".to_owned()),
        mfa: Mfa::Yes,
        error_code: None,
        recovered: None,
    }
}

const EVIDENCE: Evidence<'static> = Evidence {
    verdict: &Verdict::Unverified,
    sender: None,
    signal_json: "{}",
};

/// A store whose client counts what it does.
async fn counted_store() -> (Store, CountRequests) {
    let aws = sdk_config("eu-west-1").await;
    let table = unique("gw-store");
    create_table(&aws_sdk_dynamodb::Client::new(&aws), &table)
        .await
        .unwrap();
    let counter = CountRequests::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(counter.clone())
            .build(),
    );
    (Store::new(client, table, QUIET, 30), counter)
}

async fn new_store() -> (Store, aws_sdk_dynamodb::Client) {
    let aws = sdk_config("eu-west-1").await;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let table = unique("gw-store");
    create_table(&client, &table).await.unwrap();
    (Store::new(client.clone(), table, QUIET, 30), client)
}

/// A chain over two accounts whose linking event is `link`.
fn chain(prefix: &str) -> Vec<SessionEvent> {
    let k = |s: &str| format!("{prefix}{s}");
    vec![
        ev(&k("login"), T0, "111122223333", &[&k("console:c")]),
        ev(
            &k("link"),
            T0 + 60,
            "111122223333",
            &[&k("console:c"), &k("key:ASIANEW")],
        ),
        ev(&k("act-c"), T0 + 120, "444455556666", &[&k("key:ASIANEW")]),
        ev(&k("act2"), T0 + 180, "444455556666", &[&k("key:ASIANEW")]),
    ]
}

async fn stored_sessions(store: &Store, time: i64) -> BTreeMap<String, (u64, BTreeSet<String>)> {
    store
        .sessions_in(GSI_BY_TIME, &Store::month_partition(time))
        .await
        .unwrap()
        .into_iter()
        .map(|i| {
            (
                i.session.session_id.clone(),
                (i.session.event_count, i.session.accounts),
            )
        })
        .collect()
}

fn ledger_sessions(events: &[SessionEvent]) -> BTreeMap<String, (u64, BTreeSet<String>)> {
    let mut ledger = Ledger::new(QUIET);
    for e in events {
        ledger.ingest(e);
    }
    ledger
        .sessions()
        .into_iter()
        .map(|r| {
            (
                r.session.session_id.clone(),
                (r.session.event_count, r.session.accounts),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_redelivered_event_is_a_no_op() {
    let (store, _) = new_store().await;
    let e = ev("only", T0, "111122223333", &["key:ASIA1"]);
    let first = store.ingest(&e, &EVIDENCE).await.unwrap().ingest;
    assert_eq!(
        first,
        Ingest::Stored {
            session_id: session_id("only"),
            absorbed: vec![]
        }
    );
    let again = store.ingest(&e, &EVIDENCE).await.unwrap().ingest;
    assert_eq!(
        again,
        Ingest::Duplicate {
            session_id: session_id("only")
        }
    );
    let item = store.session(&session_id("only")).await.unwrap().unwrap();
    assert_eq!(item.session.event_count, 1);
    assert_eq!(item.version, 1);
}

#[tokio::test]
async fn sessions_merge_across_invocations_whatever_the_order() {
    let (store, _) = new_store().await;
    // The link arrives last: two sessions first, then one.
    let events = chain("m-");
    let order = [3, 0, 2, 1];
    for i in order {
        store.ingest(&events[i], &EVIDENCE).await.unwrap();
    }
    let expected = ledger_sessions(&events);
    assert_eq!(expected.len(), 1);
    assert_eq!(stored_sessions(&store, T0).await, expected);

    let survivor = session_id("m-login");
    // Absorbed ids resolve to the survivor; nothing is orphaned.
    for e in &events {
        assert_eq!(
            store
                .session_of_event(&e.event_id)
                .await
                .unwrap()
                .as_deref(),
            Some(survivor.as_str())
        );
    }
    let item = store.session(&session_id("m-act2")).await.unwrap().unwrap();
    assert_eq!(item.session.session_id, survivor);
    assert_eq!(item.session.severity, Severity::Critical);
    assert!(item.absorbed.contains(&session_id("m-act2")));

    // Every index finds the survivor once, and only it.
    for account in ["111122223333", "444455556666"] {
        let found = store
            .sessions_in(GSI_BY_ACCOUNT, &format!("ACCOUNT#{account}"))
            .await
            .unwrap();
        let ids: Vec<_> = found.iter().map(|i| i.session.session_id.clone()).collect();
        assert_eq!(ids, vec![survivor.clone()], "{account}");
    }
    let by_principal = store
        .sessions_in(
            GSI_BY_PRINCIPAL,
            "PRINCIPAL#arn:aws:iam::111122223333:user/break-glass-1",
        )
        .await
        .unwrap();
    assert_eq!(by_principal.len(), 1);
    let by_severity = store
        .sessions_in(GSI_BY_SEVERITY, "SEVERITY#critical")
        .await
        .unwrap();
    assert_eq!(by_severity.len(), 1);
}

#[tokio::test]
async fn writers_racing_on_shared_keys_agree_with_the_reference() {
    // moto restores a whole-table snapshot when a transaction fails, which
    // erases other requests' writes, so true concurrency is exercised with
    // injected cancellations in tests/store_faults.rs. Here the events of
    // two interleaved chains arrive newest first.
    let (store, _) = new_store().await;
    let mut events = chain("c-");
    events.extend(chain("d-"));
    for e in events.iter().rev() {
        store.ingest(e, &EVIDENCE).await.unwrap();
    }
    assert_eq!(stored_sessions(&store, T0).await, ledger_sessions(&events));
}

#[tokio::test]
async fn exactly_one_concurrent_claim_of_the_root_message_wins() {
    let (store, _) = new_store().await;
    let e = ev("claimed", T0, "111122223333", &["key:ASIA9"]);
    store.ingest(&e, &EVIDENCE).await.unwrap();
    let id = session_id("claimed");
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move { store.claim_root(&id, &format!("c{n}"), T0, T0 - 60).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    // A stale claim can be taken over; a posted root cannot be claimed.
    assert!(
        store
            .claim_root(&id, "late", T0 + 600, T0 + 1)
            .await
            .unwrap()
    );
    store
        .record_notified(&id, "1700000000.000100", 1, None)
        .await
        .unwrap();
    assert!(
        !store
            .claim_root(&id, "later", T0 + 9999, T0 + 9999)
            .await
            .unwrap()
    );
    let item = store.session(&id).await.unwrap().unwrap();
    assert_eq!(item.root_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(item.notified_count, 1);
}

#[tokio::test]
async fn items_carry_the_ttl_attribute_and_the_table_has_ttl_and_recovery() {
    let (store, client) = new_store().await;
    let e = ev("ttl", T0, "111122223333", &["key:ASIA7"]);
    store.ingest(&e, &EVIDENCE).await.unwrap();
    let items = client
        .scan()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert!(items.len() >= 4, "event, session event, key use, session");
    for item in &items {
        let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
        assert_eq!(expires, T0 + 30 * 86_400, "{item:?}");
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().unwrap().attribute_name(),
        Some("expires_at")
    );
    let backups = client
        .describe_continuous_backups()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let pitr = backups
        .continuous_backups_description()
        .unwrap()
        .point_in_time_recovery_description()
        .unwrap();
    assert_eq!(
        pitr.point_in_time_recovery_status().map(|s| s.as_str()),
        Some("ENABLED")
    );
}

/// A busy principal (an automation role, or an attacker calling
/// `GetCallerIdentity` 17 times a second) makes one key hot. What one more
/// event costs must not grow with the key's history: the store reads the
/// nearest use on each side, not every use within the quiet period.
#[tokio::test]
async fn reads_per_ingest_stay_bounded_however_hot_a_key_is() {
    let (store, counter) = counted_store().await;
    let keys = [
        "key:ASIAHOTHOTHOT0001",
        "role-session:arn:aws:sts::111122223333:assumed-role/BreakGlassRole/hot",
    ];
    let hot = |i: i64| ev(&format!("hot-{i:05}"), T0 + i * 5, "111122223333", &keys);
    let mut costs = Vec::new();
    for i in 0..150 {
        let before = counter.snapshot();
        store.ingest(&hot(i), &EVIDENCE).await.unwrap();
        costs.push(counter.snapshot().since(&before));
    }
    let first = &costs[0];
    let last = &costs[149];
    assert!(
        last.items_read <= 20 && last.reads() <= 20,
        "the 150th event read {} items in {} requests (the first: {} in {})",
        last.items_read,
        last.reads(),
        first.items_read,
        first.reads()
    );
    let sessions = stored_sessions(&store, T0).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions.values().next().unwrap().0, 150);
}

/// A merge of two wide sessions must fit DynamoDB's limit of 100 actions
/// per transaction, and leave every account's index finding the survivor.
#[tokio::test]
async fn merging_two_sessions_of_sixty_accounts_each_stays_within_transaction_limits() {
    let (store, counter) = counted_store().await;
    let account = |side: u64, i: u64| format!("{:012}", 100_000_000_000 + side * 1000 + i);
    let mut events = Vec::new();
    for (side, key) in [(1, "key:ASIAWIDEAAAAAAAA01"), (2, "key:ASIAWIDEBBBBBBBB02")] {
        for i in 0..60 {
            let id = format!("wide-{side}-{i:02}");
            events.push(ev(
                &id,
                T0 + (side as i64) * 600 + i as i64,
                &account(side, i),
                &[key],
            ));
        }
    }
    for e in &events {
        store.ingest(e, &EVIDENCE).await.unwrap();
    }
    assert_eq!(stored_sessions(&store, T0).await.len(), 2);
    let link = ev(
        "wide-link",
        T0 + 1000,
        &account(3, 0),
        &["key:ASIAWIDEAAAAAAAA01", "key:ASIAWIDEBBBBBBBB02"],
    );
    events.push(link.clone());
    store.ingest(&link, &EVIDENCE).await.unwrap();
    assert!(
        counter.snapshot().largest_write <= 100,
        "{:?}",
        counter.snapshot()
    );
    let stored = stored_sessions(&store, T0).await;
    assert_eq!(stored, ledger_sessions(&events));
    let (count, accounts) = stored.values().next().unwrap();
    assert_eq!((*count, accounts.len()), (121, 121));
    let survivor = stored.keys().next().unwrap().clone();
    for e in &events {
        let found = store
            .sessions_in(GSI_BY_ACCOUNT, &format!("ACCOUNT#{}", e.account))
            .await
            .unwrap();
        let ids: Vec<_> = found.iter().map(|i| i.session.session_id.clone()).collect();
        assert_eq!(ids, vec![survivor.clone()], "{}", e.account);
    }
}
