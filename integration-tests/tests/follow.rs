//! A break-glass role that assumes an unwatched role in another account
//! does not leave its session: the signal of the hop carries a follow
//! instruction, the agents of the target account install a rule for the
//! new key in each region, and the new role's calls (which no static
//! pattern matches) join the session. An unrelated session of the same
//! role stays out.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use glasswatch_core::DetectionKind;
use test_support::org::Org;
use test_support::pipeline::{Delivery, Options, Pipeline};
use test_support::scenario::{INCIDENT_START, Scenario};

#[tokio::test]
async fn a_role_chained_out_of_a_break_glass_session_is_followed_into_the_other_account() {
    let org = Org::create().await.unwrap();
    let events = Scenario::role_chain_out(&org, INCIDENT_START, "follow").unwrap();
    let pipeline = Pipeline::start(org, Options::default()).await.unwrap();
    let (hop, onward) = events.split_first().unwrap();

    assert_eq!(
        pipeline.deliver(&hop.envelope).await.unwrap(),
        Delivery::Relayed
    );
    let report = pipeline.drain().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");

    for event in onward {
        let want = if event.session.is_some() {
            Delivery::Relayed
        } else {
            Delivery::Dropped
        };
        assert_eq!(
            pipeline.deliver(&event.envelope).await.unwrap(),
            want,
            "{}",
            event.label
        );
    }
    let report = pipeline.drain().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");

    let stored = pipeline.stored_sessions().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:#?}");
    let session = &stored[0];
    let want: std::collections::BTreeSet<String> = events
        .iter()
        .filter(|e| e.session.is_some())
        .map(|e| e.event_id.clone())
        .collect();
    assert_eq!(session.event_ids, want);
    let accounts: std::collections::BTreeSet<&str> = session
        .item
        .session
        .accounts
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        accounts,
        [pipeline.org.prod.as_str(), pipeline.org.dev.as_str()]
            .into_iter()
            .collect()
    );
    let kinds = &session.item.session.kinds;
    assert!(
        kinds.contains(&DetectionKind::BreakGlassRoleChained),
        "{kinds:?}"
    );
    assert!(kinds.contains(&DetectionKind::SessionActivity), "{kinds:?}");
    let letters = pipeline.take_dead_letters().await.unwrap();
    assert!(letters.is_empty(), "dead letters: {letters:#?}");
}
