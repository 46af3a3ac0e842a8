//! Correlation properties: the sessions depend only on the set of events.
//!
//! The reference is the definition itself, computed the slow way: events
//! are linked when they share a key within the quiet period, and a session
//! is a connected component. The incremental [`Ledger`] must agree with it
//! for any arrival order, with redeliveries, and in any batching.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};

use glasswatch_core::correlate::{Ingest, Ledger};
use glasswatch_core::session::{Session, SessionEvent, session_id};
use glasswatch_core::{DetectionKind, Mfa, Severity};
use proptest::prelude::*;

const QUIET: i64 = 3600;
const T0: i64 = 1_795_000_000;

fn ev(id: &str, time: i64, account: &str, principal: &str, keys: &[&str]) -> SessionEvent {
    SessionEvent {
        event_id: id.to_owned(),
        time,
        event_time: time.to_string(),
        event_source: "sts.amazonaws.com".to_owned(),
        event_name: "Call".to_owned(),
        account: account.to_owned(),
        region: if time % 2 == 0 {
            "eu-west-1"
        } else {
            "us-east-1"
        }
        .to_owned(),
        principal: principal.to_owned(),
        severity: if time % 3 == 0 {
            Severity::Critical
        } else {
            Severity::High
        },
        kinds: BTreeSet::from([DetectionKind::SessionActivity]),
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        summary: format!("{id} by {principal}"),
        source_ip: Some(format!("203.0.113.{}", time % 200)),
        user_agent: Some(format!("agent/{}", time % 7)),
        mfa: if time % 5 == 0 { Mfa::No } else { Mfa::Yes },
        error_code: None,
        recovered: None,
    }
}

/// The definition: connected components of "shares a key within QUIET".
fn reference(events: &[SessionEvent]) -> BTreeMap<String, (Session, BTreeSet<String>)> {
    let unique: BTreeMap<&str, &SessionEvent> =
        events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let list: Vec<&SessionEvent> = unique.into_values().collect();
    let mut parent: Vec<usize> = (0..list.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            i = parent[i];
        }
        i
    }
    for i in 0..list.len() {
        for j in i + 1..list.len() {
            let (a, b) = (list[i], list[j]);
            if (a.time - b.time).abs() <= QUIET && !a.keys.is_disjoint(&b.keys) {
                let (ra, rb) = (find(&mut parent, i), find(&mut parent, j));
                parent[ra] = rb;
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<&SessionEvent>> = BTreeMap::new();
    for (i, e) in list.iter().enumerate() {
        groups.entry(find(&mut parent, i)).or_default().push(e);
    }
    groups
        .into_values()
        .map(|group| {
            let session = group
                .iter()
                .skip(1)
                .fold(Session::of(group[0]), |s, e| s.with_event(e));
            let ids = group.iter().map(|e| e.event_id.clone()).collect();
            (session.session_id.clone(), (session, ids))
        })
        .collect()
}

fn ledger_result(ledger: &Ledger) -> BTreeMap<String, (Session, BTreeSet<String>)> {
    ledger
        .sessions()
        .into_iter()
        .map(|r| (r.session.session_id.clone(), (r.session, r.event_ids)))
        .collect()
}

fn ingest_all(events: &[SessionEvent]) -> Ledger {
    let mut ledger = Ledger::new(QUIET);
    for e in events {
        ledger.ingest(e);
    }
    ledger
}

/// Generated multi-account sessions: each event shares a key of its own
/// session with an earlier one, within the quiet period. Keys never
/// cross sessions, but accounts, regions and times do.
fn sessions_strategy() -> impl Strategy<Value = Vec<Vec<SessionEvent>>> {
    let session = (
        0..40_000i64,
        prop::collection::vec(
            (any::<prop::sample::Index>(), 0..4u8, -1800..3600i64),
            1..10,
        ),
    );
    prop::collection::vec(session, 1..5).prop_map(|sessions| {
        let accounts = ["111122223333", "444455556666", "777788889999"];
        sessions
            .into_iter()
            .enumerate()
            .map(|(s, (base, steps))| {
                let principal =
                    format!("arn:aws:sts::111122223333:assumed-role/BreakGlassRole/s{s}");
                let mut events = vec![ev(
                    &format!("s{s}-e0"),
                    T0 + base,
                    accounts[s % 3],
                    &principal,
                    &[&format!("console:s{s}"), &format!("key:ASIA{s}K0")],
                )];
                for (j, (parent, fresh, delta)) in steps.into_iter().enumerate() {
                    let j = j + 1;
                    let p = &events[parent.index(events.len())];
                    let shared = p.keys.iter().next().unwrap().clone();
                    let mut keys = vec![shared];
                    // A hop: a new key (AssumeRole), an SSO or source
                    // identity key, or the same key again.
                    match fresh {
                        0 => keys.push(format!("key:ASIA{s}K{j}")),
                        1 => keys.push(format!("sso:{}|breakglassadmin|user{s}", accounts[j % 3])),
                        2 => keys.push(format!("source-identity:bg-{s}")),
                        _ => {}
                    }
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    let e = ev(
                        &format!("s{s}-e{j}"),
                        p.time + delta,
                        accounts[(s + j) % 3],
                        &principal,
                        &keys,
                    );
                    events.push(e);
                }
                events
            })
            .collect()
    })
}

/// Events over a small shared pool of keys at random times: sessions of
/// every shape, including ones joined late by a bridging event.
fn tangled_strategy() -> impl Strategy<Value = Vec<SessionEvent>> {
    prop::collection::vec(
        (0..20_000i64, prop::collection::btree_set(0..8u8, 1..3)),
        1..30,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (t, keys))| {
                let keys: Vec<String> = keys.iter().map(|k| format!("key:K{k}")).collect();
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                ev(&format!("e{i:02}"), T0 + t, "111122223333", "p", &keys)
            })
            .collect()
    })
}

fn shuffled(mut events: Vec<SessionEvent>, seed: u64) -> Vec<SessionEvent> {
    let mut rng = seed;
    for i in (1..events.len()).rev() {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from((rng >> 33) % (i as u64 + 1)).unwrap();
        events.swap(i, j);
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_permutation_gives_the_reference_sessions(events in tangled_strategy(), seed in any::<u64>()) {
        let expected = reference(&events);
        let got = ledger_result(&ingest_all(&shuffled(events, seed)));
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn replaying_events_changes_nothing(events in tangled_strategy(), seed in any::<u64>(), again in prop::collection::vec(any::<prop::sample::Index>(), 1..10)) {
        let mut ledger = ingest_all(&events);
        let before = ledger_result(&ledger);
        let replays: Vec<SessionEvent> = again.iter().map(|i| events[i.index(events.len())].clone()).collect();
        for e in shuffled(replays, seed) {
            let outcome = ledger.ingest(&e);
            prop_assert!(matches!(outcome, Ingest::Duplicate { .. }), "{:?}", outcome);
        }
        prop_assert_eq!(ledger_result(&ledger), before);
    }

    #[test]
    fn batches_with_redelivered_tails_give_the_same_result(events in tangled_strategy(), seed in any::<u64>(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        // Each batch is redelivered from its start after a partial failure:
        // the events before the cut are seen twice.
        let events = shuffled(events, seed);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(events.len() + 1)).collect();
        points.push(events.len());
        points.sort_unstable();
        let mut ledger = Ledger::new(QUIET);
        let mut start = 0;
        for end in points {
            for e in &events[start..end] { ledger.ingest(e); }
            for e in &events[start..end] { ledger.ingest(e); }
            start = end;
        }
        prop_assert_eq!(ledger_result(&ledger), reference(&events));
    }

    #[test]
    fn unrelated_sessions_never_merge(sessions in sessions_strategy(), seed in any::<u64>()) {
        let all: Vec<SessionEvent> = sessions.iter().flatten().cloned().collect();
        let got = ledger_result(&ingest_all(&shuffled(all, seed)));
        prop_assert_eq!(got.len(), sessions.len());
        for generated in &sessions {
            let ids: BTreeSet<String> = generated.iter().map(|e| e.event_id.clone()).collect();
            let anchor = generated.iter().min_by_key(|e| (e.time, e.event_id.clone())).unwrap();
            let (session, event_ids) = &got[&session_id(&anchor.event_id)];
            prop_assert_eq!(event_ids, &ids);
            prop_assert_eq!(session.event_count, ids.len() as u64);
            prop_assert_eq!(&session.principal, &anchor.principal);
        }
    }
}

#[test]
fn an_assume_role_chain_across_accounts_is_one_session_even_when_the_link_comes_last() {
    let caller = "arn:aws:iam::111122223333:user/break-glass-1";
    let role = "arn:aws:sts::444455556666:assumed-role/BreakGlassRole/bg";
    let login = ev(
        "login",
        T0,
        "111122223333",
        caller,
        &["console:111122223333|u|c"],
    );
    let assume = ev(
        "assume",
        T0 + 60,
        "111122223333",
        caller,
        &["console:111122223333|u|c", "key:ASIACALLER", "key:ASIANEW"],
    );
    let act = ev(
        "act",
        T0 + 120,
        "444455556666",
        role,
        &["key:ASIANEW", &format!("role-session:{role}")],
    );
    let mut ledger = Ledger::new(QUIET);
    ledger.ingest(&act);
    ledger.ingest(&login);
    assert_eq!(
        ledger.sessions().len(),
        2,
        "not linked until the AssumeRole arrives"
    );
    let outcome = ledger.ingest(&assume);
    let Ingest::Stored {
        session_id: id,
        absorbed,
    } = outcome
    else {
        panic!()
    };
    assert_eq!(id, session_id("login"));
    assert_eq!(absorbed, vec![session_id("act")]);
    let sessions = ledger.sessions();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0].session;
    assert_eq!(s.principal, caller);
    assert_eq!(s.accounts.len(), 2);
    assert_eq!(s.event_count, 3);
    assert_eq!(ledger.resolve(&session_id("act")), session_id("login"));
}

#[test]
fn identity_center_credentials_link_to_the_reserved_role_session() {
    let key = "sso:444455556666|breakglassadmin|emergency.admin";
    let get = ev("get", T0, "210987654321", "emergency.admin", &[key]);
    let act = ev(
        "act",
        T0 + 300,
        "444455556666",
        "arn:aws:sts::444455556666:assumed-role/AWSReservedSSO_BreakGlassAdmin_0123/emergency.admin",
        &[key, "role-session:x"],
    );
    let ledger = ingest_all(&[act, get]);
    assert_eq!(ledger.sessions().len(), 1);
}

#[test]
fn a_recurring_key_outside_the_quiet_period_starts_a_new_session() {
    let key = "sso:444455556666|breakglassadmin|emergency.admin";
    let monday = ev("mon", T0, "444455556666", "u", &[key]);
    let monday_later = ev("mon2", T0 + QUIET, "444455556666", "u", &[key]);
    let next_week = ev("next", T0 + 7 * 86_400, "444455556666", "u", &[key]);
    let ledger = ingest_all(&[next_week, monday_later, monday]);
    let sessions = ledger.sessions();
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        sessions[0].event_ids.len(),
        2,
        "exactly QUIET apart still links"
    );
    assert!(sessions[0].session.closed_at(T0 + 2 * QUIET, QUIET));
    assert!(!sessions[1].session.closed_at(T0 + 7 * 86_400 + 10, QUIET));
}

#[test]
fn source_identity_links_role_hops() {
    let a = ev(
        "a",
        T0,
        "111122223333",
        "p",
        &["key:ASIA1", "source-identity:alice"],
    );
    let b = ev(
        "b",
        T0 + 10,
        "444455556666",
        "q",
        &["key:ASIA2", "source-identity:alice"],
    );
    let c = ev(
        "c",
        T0 + 10,
        "444455556666",
        "r",
        &["key:ASIA3", "source-identity:bob"],
    );
    let ledger = ingest_all(&[c, b, a]);
    assert_eq!(ledger.sessions().len(), 2);
}
