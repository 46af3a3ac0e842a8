//! The generated EventBridge patterns let through at least every fixture
//! record the detector flags, as routed by moto's EventBridge: each pattern
//! on a rule whose target is an SQS queue, each fixture sent with PutEvents.
//! (moto's TestEventPattern returns nothing, hence the routing.)

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, RuleState, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use glasswatch_core::patterns::event_patterns;
use glasswatch_core::{Config, Record, classify};
use serde_json::Value;
use test_support::{fixtures, sdk_config, unique, workspace_root};

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
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("{bus}-{}", pattern.id))
            .send()
            .await?
            .queue_url
            .context("queue url")?;
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .context("queue arn")?;
        events
            .put_rule()
            .name(&pattern.name)
            .event_bus_name(&bus)
            .event_pattern(pattern.pattern_json())
            .state(RuleState::EnabledWithAllCloudtrailManagementEvents)
            .send()
            .await
            .with_context(|| format!("put rule {}", pattern.name))?;
        events
            .put_targets()
            .rule(&pattern.name)
            .event_bus_name(&bus)
            .targets(Target::builder().id("queue").arn(queue_arn).build()?)
            .send()
            .await?;
        queues.push((pattern.id.clone(), queue_url));
    }

    // Send every fixture as its CloudTrail record in an event's detail.
    let mut flagged = BTreeMap::new();
    let mut unflagged = BTreeSet::new();
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
        entries.push(
            PutEventsRequestEntry::builder()
                .event_bus_name(&bus)
                .source("glasswatch.fixture")
                .detail_type(detail_type)
                .detail(detail.to_string())
                .build(),
        );
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
        loop {
            let messages = sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .send()
                .await?
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let body: Value = serde_json::from_str(message.body().unwrap_or_default())?;
                let id = body["detail"]["eventID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                arrived.entry(id).or_default().insert(rule.clone());
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await?;
            }
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
