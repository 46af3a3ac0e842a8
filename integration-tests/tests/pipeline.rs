//! The whole system on moto: the scripted incident through agents, the
//! central bus, SQS and the aggregator, to DynamoDB and a Slack stand-in.
//! With the real binaries; under injected faults; delivered twice in
//! shuffled order; and with a forged signal.
//!
//! Each test builds its own organization, table and queues, and prints
//! its seed and how long it took (`--nocapture` shows them; a failure
//! always does). `GLASSWATCH_CHAOS_SEED=N` repeats a run.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use test_support::chaos::{Fault, Scripted, seed_from_env};
use test_support::org::Org;
use test_support::pipeline::{Delivery, Options, Pipeline, StoredSession, miscounted};
use test_support::scenario::{CHAIN, INCIDENT_START, Scenario};

/// Drain what is left (no message may fail), send what is pending, and
/// check the end state every run must reach: the exact sessions, nothing
/// counted twice, the evidence verified, noise absent, Slack consistent
/// with the store, nothing pending or dead-lettered.
async fn finish(
    pipeline: &Pipeline,
    scenario: &Scenario,
    other_roots: usize,
) -> Vec<StoredSession> {
    let report = pipeline.drain().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}\n{}", pipeline.fault_report());
    assert_eq!(pipeline.settle(5).await.unwrap(), Vec::<String>::new());
    let stored = pipeline.stored_sessions().await.unwrap();
    if let Err(problems) = scenario.check_sessions(&stored) {
        panic!(
            "sessions differ from the scenario:\n{problems}\n{}",
            pipeline.fault_report()
        );
    }
    assert_eq!(miscounted(&stored), Vec::<String>::new());
    let stored_ids = pipeline.stored_event_ids().await.unwrap();
    let detections: BTreeSet<String> = scenario.detections().map(|e| e.event_id.clone()).collect();
    assert_eq!(
        stored_ids, detections,
        "every detection is stored, and nothing else"
    );
    for event in scenario.detections() {
        let item = pipeline.event_item(&event.event_id).await.unwrap().unwrap();
        assert_eq!(item["verdict"], "verified", "{}: {item:?}", event.label);
        assert_eq!(item["sender"], event.account, "{}", event.label);
    }
    let slack_text: Vec<String> = pipeline.slack.calls().iter().map(|c| c.text()).collect();
    for noise in scenario.noise() {
        assert!(
            slack_text.iter().all(|t| !t.contains(&noise.event_id)),
            "noise {} reached Slack",
            noise.label
        );
    }
    if let Err(problems) = pipeline.check_slack(&stored, other_roots) {
        panic!(
            "Slack does not match the store:\n{problems}\n{}",
            pipeline.fault_report()
        );
    }
    assert_eq!(
        pipeline.store.pending().await.unwrap(),
        Vec::<String>::new()
    );
    let letters = pipeline.take_dead_letters().await.unwrap();
    assert!(letters.is_empty(), "dead letters: {letters:#?}");
    stored
}

/// Hand every event to its agent in the order they happened (draining the
/// queue after each when `drain_each`): the agents relay exactly the
/// detections and drop the noise.
async fn deliver_in_order(pipeline: &Pipeline, scenario: &Scenario, drain_each: bool) {
    for event in &scenario.events {
        let delivery = pipeline.deliver(&event.envelope).await.unwrap();
        let want = if event.session.is_some() {
            Delivery::Relayed
        } else {
            Delivery::Dropped
        };
        assert_eq!(delivery, want, "{}", event.label);
        if drain_each {
            let report = pipeline.drain().await.unwrap();
            assert_eq!(report.failed, 0, "{}: {report:?}", event.label);
        }
    }
}

async fn setup(options: Options) -> (Pipeline, Scenario) {
    let org = Org::create().await.unwrap();
    let scenario = Scenario::incident(&org, INCIDENT_START, "e2e").unwrap();
    let pipeline = Pipeline::start(org, options).await.unwrap();
    (pipeline, scenario)
}

#[tokio::test]
async fn the_incident_makes_four_sessions_with_one_thread_each_and_noise_makes_nothing() {
    let started = Instant::now();
    let (pipeline, scenario) = setup(Options::default()).await;
    // Event by event, as they happen: each session's root goes out with
    // its first event, and later events become follow-ups in its thread.
    deliver_in_order(&pipeline, &scenario, true).await;
    let stored = finish(&pipeline, &scenario, 0).await;

    assert_eq!(
        pipeline.slack.roots().len(),
        4,
        "one root message per session"
    );
    let chain = scenario
        .expected_sessions()
        .into_iter()
        .find(|s| s.name == CHAIN)
        .unwrap();
    let chain = stored
        .iter()
        .find(|s| s.item.session.session_id == chain.session_id)
        .unwrap();
    assert_eq!(
        chain.item.session.accounts.len(),
        3,
        "one session across three accounts"
    );
    let thread = pipeline
        .slack
        .thread(chain.item.root_ts.as_deref().unwrap());
    let listed: usize = scenario
        .events
        .iter()
        .filter(|e| e.session == Some(CHAIN) && e.label != "bg-login-shared")
        .filter(|e| {
            thread.iter().any(|reply| {
                reply
                    .text()
                    .contains(e.record()["eventName"].as_str().unwrap())
            })
        })
        .count();
    assert!(
        listed > 0,
        "the chain's follow-ups are in its thread {:?}: {thread:#?}\n{:#?}",
        chain.item.root_ts,
        pipeline
            .slack
            .calls()
            .iter()
            .map(|c| (
                c.method.clone(),
                c.ts.clone(),
                c.thread_ts().map(str::to_owned),
                c.body["text"].clone()
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        thread
            .iter()
            .all(|reply| reply.text().contains(&chain.item.session.session_id)),
        "{thread:#?}"
    );
    println!(
        "incident in process: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn the_real_binaries_run_the_incident() {
    let started = Instant::now();
    let (pipeline, scenario) = setup(Options {
        binaries: true,
        ..Options::default()
    })
    .await;
    deliver_in_order(&pipeline, &scenario, false).await;
    finish(&pipeline, &scenario, 0).await;
    println!(
        "incident with the binaries: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn chaos_loses_nothing_and_doubles_nothing() {
    let started = Instant::now();
    let seed = seed_from_env();
    println!("chaos seed: {seed} (GLASSWATCH_CHAOS_SEED={seed} repeats the run)");
    let (pipeline, scenario) = setup(Options {
        seed,
        batch_size: None,
        ..Options::default()
    })
    .await;
    let pipeline = Arc::new(pipeline);
    pipeline.set_fault_rate(0.25);
    // Slack sees few requests: make sure a 429 and a dropped connection
    // are among its faults.
    for (after, fault) in [(0, Fault::RateLimited), (2, Fault::DropBefore)] {
        pipeline.slack_proxy.script(Scripted {
            contains: "chat.postMessage".into(),
            after,
            fault,
            count: 1,
        });
    }
    let envelopes: Vec<_> = scenario.events.iter().map(|e| e.envelope.clone()).collect();
    let deliveries = pipeline.deliver_all(&envelopes).await.unwrap();
    let delivered: Vec<_> = scenario.events.iter().zip(deliveries).collect();
    let report = pipeline.drain().await.unwrap();
    let pending = pipeline.settle(10).await.unwrap();
    println!(
        "under faults: {report:?}; still pending: {pending:?}\n{}",
        pipeline.fault_report()
    );
    assert!(pipeline.aws_proxy.faults() > 0 && pipeline.slack_proxy.faults() >= 2);

    // Under faults: every detection is stored or dead-lettered, none
    // counted twice, and Slack is either done or visibly pending.
    let letters = pipeline.take_dead_letters().await.unwrap();
    let stored_ids = pipeline.stored_event_ids().await.unwrap();
    for event in scenario.detections() {
        assert!(
            stored_ids.contains(&event.event_id) || letters.event_ids().contains(&event.event_id),
            "{} is neither stored nor dead-lettered: {delivered:?}\n{}",
            event.label,
            pipeline.fault_report()
        );
    }
    for (event, delivery) in &delivered {
        let fine = match delivery {
            Delivery::Relayed => event.session.is_some(),
            Delivery::Dropped => event.session.is_none(),
            Delivery::DeadLettered { .. } => true,
        };
        assert!(fine, "{}: {delivery:?}", event.label);
    }
    let stored = pipeline.stored_sessions().await.unwrap();
    assert_eq!(
        miscounted(&stored),
        Vec::<String>::new(),
        "{}",
        pipeline.fault_report()
    );
    let pending = pipeline.store.pending().await.unwrap();
    for s in &stored {
        let id = &s.item.session.session_id;
        let sent = s.item.root_ts.is_some() && s.item.notified_count == s.item.session.event_count;
        assert!(
            sent || pending.contains(id),
            "session {id} is neither sent nor pending: {:?}",
            s.item
        );
    }

    // What the faults dead-lettered, they dead-lettered only because of
    // them: redriven without faults, it all goes through, and the end
    // state is exactly the fault-free one.
    println!(
        "dead letters: {} signals, {} agent events",
        letters.central.len(),
        letters.agents.len()
    );
    pipeline.set_fault_rate(0.0);
    for delivery in pipeline.redrive(&letters).await.unwrap() {
        assert!(
            matches!(delivery, Delivery::Relayed | Delivery::Dropped),
            "{delivery:?}"
        );
    }
    finish(&pipeline, &scenario, 0).await;
    println!(
        "chaos (seed {seed}): {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn when_faults_outlast_the_retry_budget_every_lost_event_is_in_a_dead_letter_queue() {
    let started = Instant::now();
    let seed = seed_from_env();
    println!("chaos seed: {seed}");
    let (pipeline, scenario) = setup(Options {
        seed,
        max_receive_count: 1,
        agent_attempts: 1,
        relay_budget_ms: 100,
        batch_size: None,
        ..Options::default()
    })
    .await;
    let pipeline = Arc::new(pipeline);
    pipeline.set_fault_rate(0.5);
    let envelopes: Vec<_> = scenario.events.iter().map(|e| e.envelope.clone()).collect();
    pipeline.deliver_all(&envelopes).await.unwrap();
    pipeline.drain().await.unwrap();
    let letters = pipeline.take_dead_letters().await.unwrap();
    let stored_ids = pipeline.stored_event_ids().await.unwrap();
    println!("{}", pipeline.fault_report());
    println!(
        "dead letters: {} signals (SQS redrive), {} agent events",
        letters.central.len(),
        letters.agents.len()
    );
    assert!(
        !letters.central.is_empty(),
        "with one receive each, 50 % faults make SQS redrive signals to the DLQ"
    );
    let lost: Vec<&str> = scenario
        .detections()
        .filter(|e| !stored_ids.contains(&e.event_id) && !letters.event_ids().contains(&e.event_id))
        .map(|e| e.label)
        .collect();
    assert!(lost.is_empty(), "gone without a trace: {lost:?}");
    println!(
        "budget exhausted (seed {seed}): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        miscounted(&pipeline.stored_sessions().await.unwrap()),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn delivered_twice_shuffled_in_random_batches_the_sessions_and_root_messages_are_the_same() {
    let started = Instant::now();
    let seed = seed_from_env();
    println!("shuffle seed: {seed}");
    let org = Org::create().await.unwrap();
    let scenario = Scenario::incident(&org, INCIDENT_START, "e2e").unwrap();

    let in_order = Pipeline::start(org.clone(), Options::default())
        .await
        .unwrap();
    deliver_in_order(&in_order, &scenario, false).await;
    let expected = finish(&in_order, &scenario, 0).await;

    let shuffled = Pipeline::start(
        org,
        Options {
            seed,
            batch_size: None,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut twice: Vec<_> = scenario.events.iter().chain(&scenario.events).collect();
    rng.shuffle(&mut twice);
    for event in twice {
        shuffled.deliver(&event.envelope).await.unwrap();
        // Drain at random points, so sessions are announced before the
        // events that link them arrive.
        if rng.u8(0..3) == 0 {
            shuffled.drain().await.unwrap();
        }
    }
    let got = finish(&shuffled, &scenario, 0).await;

    let summary = |sessions: &[StoredSession]| -> Vec<_> {
        sessions
            .iter()
            .map(|s| (s.item.session.clone(), s.event_ids.clone()))
            .collect()
    };
    assert_eq!(summary(&got), summary(&expected));
    let shown = |p: &Pipeline, sessions: &[StoredSession]| -> Vec<serde_json::Value> {
        let displayed = p.slack.displayed();
        sessions
            .iter()
            .map(|s| displayed[s.item.root_ts.as_deref().unwrap()].body["blocks"].clone())
            .collect()
    };
    assert_eq!(
        shown(&shuffled, &got),
        shown(&in_order, &expected),
        "the same root messages"
    );
    println!(
        "redelivery (seed {seed}): {} root posts for {} sessions; {:.1} s",
        shuffled.slack.roots().len(),
        got.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn a_signal_from_one_account_claiming_another_is_alerted_and_changes_no_session() {
    let (pipeline, scenario) = setup(Options::default()).await;
    deliver_in_order(&pipeline, &scenario, false).await;
    let before = finish(&pipeline, &scenario, 0).await;
    let calls_before = pipeline.slack.calls().len();

    // dev forges activity of prod's break-glass role session.
    let forged = scenario
        .forged_prod_activity(INCIDENT_START, "e2e")
        .unwrap();
    let org = &scenario.org;
    pipeline
        .put_signal_as(&org.dev, &forged.region, forged.record())
        .await
        .unwrap();
    let report = pipeline.drain().await.unwrap();
    assert_eq!((report.messages, report.failed), (1, 0), "{report:?}");
    pipeline.settle(5).await.unwrap();

    assert!(
        pipeline
            .spoofed_event_ids()
            .await
            .unwrap()
            .contains(&forged.event_id)
    );
    assert!(
        pipeline
            .event_item(&forged.event_id)
            .await
            .unwrap()
            .is_none()
    );
    let after = pipeline.stored_sessions().await.unwrap();
    assert_eq!(after, before, "no session changed");
    let new_calls = &pipeline.slack.calls()[calls_before..];
    assert_eq!(new_calls.len(), 1, "one alert: {new_calls:#?}");
    let alert = &new_calls[0];
    assert!(alert.is_root_post());
    let text = alert.text();
    assert!(text.contains("Spoofed signal"), "{text}");
    assert!(
        text.contains(&org.dev) && text.contains(&org.prod),
        "{text}"
    );
    assert!(text.contains(&forged.event_id), "{text}");
    pipeline.check_slack(&after, 1).unwrap();
}

#[tokio::test]
async fn heartbeats_cover_every_account_and_region_and_a_stopped_trail_alerts_once() {
    use glasswatch_core::signal::TrailStatus;
    use test_support::org::OTHER_REGION;

    let org = Org::create().await.unwrap();
    org.start_trails().await.unwrap();
    let pipeline = Pipeline::start(org.clone(), Options::default())
        .await
        .unwrap();
    let report = pipeline.heartbeats().await.unwrap();
    assert_eq!((report.messages, report.failed), (5 * 2, 0), "{report:?}");
    pipeline.tick().await.unwrap();
    let coverage = pipeline.store.coverage().await.unwrap();
    let places: BTreeSet<(String, String)> = coverage
        .iter()
        .map(|c| (c.account.clone(), c.region.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = org
        .accounts()
        .into_iter()
        .flat_map(|a| org.regions.iter().map(move |r| (a.to_owned(), r.clone())))
        .collect();
    assert_eq!(places, expected, "one coverage item per account×region");
    assert!(
        coverage.iter().all(|c| c.trail == TrailStatus::Logging),
        "{coverage:#?}"
    );
    assert!(pipeline.slack.calls().is_empty(), "all healthy: no alert");

    // The trail really stops in the management account's us-east-1: the
    // next heartbeat from there says so, and the tick alerts once.
    org.stop_trail(&org.management, OTHER_REGION).await.unwrap();
    pipeline.heartbeats().await.unwrap();
    pipeline.tick().await.unwrap();
    pipeline.tick().await.unwrap();
    let calls = pipeline.slack.calls();
    assert_eq!(calls.len(), 1, "one coverage alert: {calls:#?}");
    let text = calls[0].text();
    assert!(calls[0].is_root_post());
    assert!(text.contains("CloudTrail not logging"), "{text}");
    assert!(
        text.contains(&org.management) && text.contains(OTHER_REGION),
        "{text}"
    );
}
