//! The generated EventBridge patterns let through at least every fixture
//! record the detector flags, as routed by moto's EventBridge: each pattern
//! on a rule whose target is an SQS queue, each fixture sent with PutEvents
//! under its AWS source (moto accepts `aws.*` sources from PutEvents, AWS
//! does not). The same records under a source of someone's own reach no
//! rule. (moto's TestEventPattern returns nothing, hence the routing.)

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use glasswatch_core::patterns::event_patterns;
use glasswatch_core::{Config, Record, classify};
use test_support::{drain_queue, fixtures, route_to_new_queue, sdk_config, unique, workspace_root};

#[tokio::test]
async fn patterns_let_through_every_flagged_fixture() -> Result<()> {
    let config = sdk_config("us-east-1").await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let text = std::fs::read_to_string(workspace_root().join("glasswatch.toml"))?;
    let watch = Config::parse(&text, "glasswatch.toml")
        .map_err(anyhow::Error::msg)?
        .watch_list()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let patterns = event_patterns(&watch)?;

    let bus = unique("gw-patterns");
    events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .context("create bus")?;
    let mut queues = Vec::new();
    for pattern in &patterns {
        let queue_url = route_to_new_queue(
            &events,
            &sqs,
            &bus,
            &pattern.name,
            &pattern.pattern_json(),
            &format!("{bus}-{}", pattern.id),
        )
        .await?;
        queues.push((pattern.id.clone(), queue_url));
    }

    // Send every fixture as its CloudTrail record in an event's detail.
    let mut flagged = BTreeMap::new();
    let mut unflagged = BTreeSet::new();
    let mut forgeries = BTreeSet::new();
    let mut entries = Vec::new();
    for fixture in fixtures() {
        let doc = &fixture.document;
        let record = Record::from_value(doc).with_context(|| fixture.label.clone())?;
        let (detail, detail_type) = match doc.get("detail") {
            Some(detail) => (
                detail.clone(),
                doc["detail-type"].as_str().unwrap_or_default().to_owned(),
            ),
            None => (doc.clone(), "AWS API Call via CloudTrail".to_owned()),
        };
        if classify(&watch, &record).is_empty() {
            unflagged.insert(record.event_id.clone());
        } else {
            flagged.insert(record.event_id.clone(), fixture.label.clone());
        }
        let aws_source = doc["source"].as_str().map_or_else(
            || {
                let service = record.event_source.trim_end_matches(".amazonaws.com");
                format!("aws.{service}")
            },
            str::to_owned,
        );
        // The record as AWS puts it on the bus, and a forgery of it: the
        // same detail under a source of someone's own, with its own id.
        let mut forged = detail.clone();
        forged["eventID"] = format!("forged-{}", record.event_id).into();
        forgeries.insert(format!("forged-{}", record.event_id));
        for (source, detail) in [(aws_source.as_str(), detail), ("custom.app", forged)] {
            entries.push(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&bus)
                    .source(source)
                    .detail_type(&detail_type)
                    .detail(detail.to_string())
                    .build(),
            );
        }
    }
    for batch in entries.chunks(10) {
        let out = events
            .put_events()
            .set_entries(Some(batch.to_vec()))
            .send()
            .await?;
        assert_eq!(
            out.failed_entry_count, 0,
            "PutEvents failed: {:?}",
            out.entries
        );
    }

    // Collect what each rule let through.
    let mut arrived: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rule, queue_url) in &queues {
        for body in drain_queue(&sqs, queue_url).await? {
            let id = body["detail"]["eventID"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            arrived.entry(id).or_default().insert(rule.clone());
        }
    }

    let missed: Vec<&String> = flagged
        .iter()
        .filter(|(id, _)| !arrived.contains_key(*id))
        .map(|(_, label)| label)
        .collect();
    assert!(
        missed.is_empty(),
        "patterns dropped records the detector flags: {missed:?}"
    );
    let forged_through: Vec<&String> = forgeries
        .iter()
        .filter(|id| arrived.contains_key(*id))
        .collect();
    assert!(
        forged_through.is_empty(),
        "records under a source of someone's own reached the agent's rules: {forged_through:?}"
    );
    assert!(
        flagged.len() >= 40,
        "only {} flagged fixtures reached the test",
        flagged.len()
    );
    // The patterns must also filter: most ordinary records never reach the agent.
    let passed_unflagged = unflagged
        .iter()
        .filter(|id| arrived.contains_key(*id))
        .count();
    assert!(
        passed_unflagged * 2 < unflagged.len(),
        "{passed_unflagged} of {} unflagged records passed the patterns; they filter too little",
        unflagged.len()
    );
    Ok(())
}
