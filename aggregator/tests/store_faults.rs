//! DynamoDB faults injected with `aws-smithy-mocks`: a transaction
//! cancelled by a concurrent writer is re-read and retried; throttling and
//! endless conflicts surface as retryable errors, never as success.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::types::CancellationReason;
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use glasswatch_aggregator::store::{Evidence, Store, StoreError};
use glasswatch_core::correlate::Ingest;
use glasswatch_core::session::{SessionEvent, session_id};
use glasswatch_core::verify::Verdict;
use glasswatch_core::{DetectionKind, Mfa, Severity};

fn event() -> SessionEvent {
    SessionEvent {
        event_id: "e1".into(),
        time: 1_795_000_000,
        event_time: "2026-11-19T10:13:20Z".into(),
        event_source: "sts.amazonaws.com".into(),
        event_name: "AssumeRole".into(),
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        principal: "p".into(),
        severity: Severity::High,
        kinds: BTreeSet::from([DetectionKind::BreakGlassRoleAssumed]),
        keys: BTreeSet::from(["key:ASIA1".to_owned()]),
        summary: "s".into(),
        source_ip: None,
        user_agent: None,
        mfa: Mfa::Unknown,
        error_code: None,
        recovered: None,
    }
}

const EVIDENCE: Evidence<'static> = Evidence {
    verdict: &Verdict::Verified,
    sender: Some("111122223333"),
    signal_json: "{}",
};

fn empty_reads(gets: &Arc<AtomicUsize>) -> (Rule, Rule) {
    let gets = gets.clone();
    (
        mock!(aws_sdk_dynamodb::Client::get_item).then_compute_output(move |_| {
            gets.fetch_add(1, Ordering::SeqCst);
            GetItemOutput::builder().build()
        }),
        mock!(aws_sdk_dynamodb::Client::query).then_output(|| QueryOutput::builder().build()),
    )
}

fn cancelled(code: &str) -> TransactWriteItemsError {
    TransactWriteItemsError::TransactionCanceledException(
        TransactionCanceledException::builder()
            .message("cancelled")
            .cancellation_reasons(CancellationReason::builder().code(code).build())
            .build(),
    )
}

fn store(rules: &[&Rule]) -> Store {
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
    Store::new(client, "t", 3600, 30)
}

#[tokio::test]
async fn a_cancelled_transaction_is_read_again_and_retried() {
    let gets = Arc::new(AtomicUsize::new(0));
    let (get, query) = empty_reads(&gets);
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .sequence()
        .error(|| cancelled("ConditionalCheckFailed"))
        .output(|| TransactWriteItemsOutput::builder().build())
        .build();
    let store = store(&[&get, &query, &transact]);
    let outcome = store.ingest(&event(), &EVIDENCE).await.unwrap().ingest;
    assert_eq!(
        outcome,
        Ingest::Stored {
            session_id: session_id("e1"),
            absorbed: vec![]
        }
    );
    assert_eq!(transact.num_calls(), 2);
    // Each attempt reads the event item again; after the commit, settling
    // reads the session it wrote.
    assert_eq!(gets.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn endless_conflicts_are_a_retryable_error() {
    let gets = Arc::new(AtomicUsize::new(0));
    let (get, query) = empty_reads(&gets);
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .then_error(|| cancelled("TransactionConflict"));
    let store = store(&[&get, &query, &transact]);
    let err = store.ingest(&event(), &EVIDENCE).await.unwrap_err();
    assert!(matches!(err, StoreError::Retryable { .. }), "{err}");
    assert!(err.to_string().contains("concurrent writers"), "{err}");
}

#[tokio::test]
async fn throttling_is_a_retryable_error_not_a_success() {
    let gets = Arc::new(AtomicUsize::new(0));
    let (get, query) = empty_reads(&gets);
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .sequence()
        .http_status(
            400,
            Some(
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#
                    .to_owned(),
            ),
        )
        .times(10)
        .build();
    let store = store(&[&get, &query, &transact]);
    let err = store.ingest(&event(), &EVIDENCE).await.unwrap_err();
    assert!(matches!(err, StoreError::Retryable { .. }), "{err}");
    assert!(
        err.to_string().contains("ProvisionedThroughputExceeded"),
        "{err}"
    );
}

#[tokio::test]
async fn a_validation_failure_in_a_transaction_is_not_retried_forever() {
    let gets = Arc::new(AtomicUsize::new(0));
    let (get, query) = empty_reads(&gets);
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .then_error(|| cancelled("ValidationError"));
    let store = store(&[&get, &query, &transact]);
    assert!(store.ingest(&event(), &EVIDENCE).await.is_err());
    assert_eq!(transact.num_calls(), 1);
}
