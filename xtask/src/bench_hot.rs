//! `hot-key`: a busy session must not cost the aggregator more per event
//! as it grows, nor hold up everyone else's alerts.
//!
//! 1. **Ingest cost of the 1st and the 100,000th event of one session.**
//!    A break-glass role session calls `GetCallerIdentity` 20 times a
//!    second; every event carries the session's access key and role
//!    session, so both keys are hot. The 1st event goes into an empty
//!    table. The 99,998 after it are loaded as the store writes their key
//!    uses (`store::ingest::key_use_item`), with the session's count and
//!    last time, because ingesting them one by one on moto would take
//!    hours; then the 100,000th event is ingested. Figures: the DynamoDB
//!    requests and items each ingest read, counted on the store's own
//!    client; and, for comparison, what the previous design read for the
//!    same event (every use of each key within the quiet period, and a
//!    head item per key), counted from the same history.
//! 2. **Alert latency for an unrelated account.** A busy session runs, in
//!    real time, at 20 events a second; its calls go to the activity queue,
//!    and sign-ins to the priority queue, as the audit stack routes them;
//!    each queue is drained as Lambda's event source mapping does (batches
//!    of up to 25, a 1 s batching window; one invocation at a time here);
//!    every 10 s an unrelated account's root sign-in
//!    joins the queue. Figure: the time from its arrival in the queue to
//!    its root message in Slack (the local stand-in). This run has a table
//!    of its own whose session starts empty: moto answers a `Query` by
//!    walking the whole partition (DynamoDB reads only what it returns),
//!    so on the 100,000-event history each of moto's answers takes
//!    longer, which would measure moto, not the aggregator.
//!
//! Everything runs on a private moto, in process, with the real
//! aggregator.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use glasswatch_aggregator::handler::{Aggregator, Processed};
use glasswatch_aggregator::store::ingest::key_use_item;
use glasswatch_aggregator::store::keys::session_pk;
use glasswatch_core::detect::correlation_keys;
use glasswatch_core::session::session_id;
use glasswatch_core::signal::ACTIVITY_DETAIL_TYPE;
use glasswatch_core::{Record, WatchList, classify};
use serde::Serialize;
use serde_json::{Value, json};
use test_support::slack::{CHANNEL_NAME, SlackStandIn};
use test_support::sqs_event;

use super::aggregator::{
    in_process_aggregator, moto_config, moto_organization, rfc3339, signal_envelope,
};
use super::{Figure, Target, load_watch_list, progress};
use crate::python;

/// Events a second of the busy session.
const RATE: u64 = 20;
/// The event whose ingest cost is measured after the history.
const HISTORY: u64 = 100_000;
/// `BatchWriteItem` takes 25 items.
const BATCH_WRITE: usize = 25;
/// An unrelated sign-in joins the queue this often.
const UNRELATED_EVERY: Duration = Duration::from_secs(10);
/// The event source mapping's batch size and window (audit template).
const ESM_BATCH: usize = 25;
const ESM_WINDOW: Duration = Duration::from_secs(1);
/// Invocations at once per queue. The audit stack allows 5; moto is not a
/// concurrent DynamoDB (its transactions are not isolated, and it answers
/// one request at a time), so each queue here has one.
const ESM_CONCURRENCY: usize = 1;
/// Seconds after the epoch of the session's first event.
const T0: i64 = 1_796_000_000;

/// What the part measured.
#[derive(Debug, Clone, Serialize)]
pub struct HotReport {
    pub first: IngestCost,
    pub last: IngestCost,
    /// Items the previous design would have read for the last event.
    pub previous_design_items: u64,
    pub latency_seconds: Vec<f64>,
    pub run_seconds: f64,
    pub hot_events_processed: u64,
}

/// What one ingest did to DynamoDB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct IngestCost {
    pub requests: u64,
    pub items_read: u64,
}

/// The session's `n`th event (from 1).
fn hot_record(account: &str, n: u64) -> Value {
    let time = T0 + i64::try_from(n / RATE).unwrap_or(i64::MAX);
    json!({
        "eventVersion": "1.10",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAHOTBENCHSESSION01:busy",
            "arn": format!("arn:aws:sts::{account}:assumed-role/BreakGlassRole/busy"),
            "accountId": account,
            "accessKeyId": "ASIAHOTBENCHKEY00001",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{account}:role/BreakGlassRole"), "userName": "BreakGlassRole"},
                "attributes": {"creationDate": rfc3339(T0), "mfaAuthenticated": "false"}
            }
        },
        "eventTime": rfc3339(time),
        "eventSource": "sts.amazonaws.com",
        "eventName": "GetCallerIdentity",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.17",
        "userAgent": "aws-cli/2.31.18",
        "eventID": format!("b0000000-0000-4000-8000-{n:012}"),
        "readOnly": true,
        "eventType": "AwsApiCall",
        "recipientAccountId": account
    })
}

/// An unrelated root sign-in, the `n`th (from 1).
fn root_sign_in(account: &str, n: u64, time: i64) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "Root", "principalId": account, "arn": format!("arn:aws:iam::{account}:root"), "accountId": account},
        "eventTime": rfc3339(time),
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.77",
        "userAgent": "Mozilla/5.0",
        "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {"MFAUsed": "Yes"},
        "eventID": format!("c0000000-0000-4000-8000-{n:012}"),
        "eventType": "AwsConsoleSignIn",
        "recipientAccountId": account
    })
}

fn envelope(watch: &WatchList, record: &Value) -> Result<String> {
    let parsed = Record::from_value(record).map_err(|e| anyhow!("bench record: {e}"))?;
    let detections = classify(watch, &parsed);
    signal_envelope(record, detections, &parsed.event_id, &parsed.event_time)
}

/// Process one message and count what the store did for it.
async fn ingest_cost(
    aggregator: &Aggregator,
    counter: &test_support::usage::CountRequests,
    body: &str,
    now: i64,
) -> Result<IngestCost> {
    let before = counter.snapshot();
    let processed = aggregator
        .process(body, now, Instant::now() + Duration::from_secs(60))
        .await
        .map_err(|e| anyhow!("ingest: {e}"))?;
    if !matches!(processed, Processed::Event { .. }) {
        bail!("the bench event was not stored as an event: {processed:?}");
    }
    let used = counter.snapshot().since(&before);
    Ok(IngestCost {
        requests: used.reads(),
        items_read: used.items_read,
    })
}

/// Load the key uses of events `2..HISTORY` as the store writes them, and
/// bring the session's count and last time along.
async fn load_history(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[String],
    session: &str,
    account: &str,
) -> Result<u64> {
    let bar = progress((HISTORY - 2) * keys.len() as u64, "history: key uses");
    let mut previous_design = 0;
    let last = T0 + i64::try_from((HISTORY - 1) / RATE).unwrap_or(0);
    let quiet = 3600;
    let mut requests: Vec<WriteRequest> = Vec::new();
    for key in keys {
        for n in 2..HISTORY {
            let record = hot_record(account, n);
            let time = glasswatch_core::record::parse_time(
                record["eventTime"].as_str().unwrap_or_default(),
            )
            .unwrap_or(T0);
            let event_id = record["eventID"].as_str().unwrap_or_default();
            if time >= last + 1 - quiet {
                previous_design += 1;
            }
            let item = key_use_item(
                key,
                time,
                event_id,
                session,
                AttributeValue::N("4102444800".into()),
            );
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .context("a key use does not build")?;
            requests.push(WriteRequest::builder().put_request(put).build());
            if requests.len() == BATCH_WRITE {
                write_batch(client, table, std::mem::take(&mut requests)).await?;
                bar.inc(BATCH_WRITE as u64);
            }
        }
    }
    write_batch(client, table, requests).await?;
    bar.finish_and_clear();
    client
        .update_item()
        .table_name(table)
        .key("pk", AttributeValue::S(session_pk(session)))
        .key("sk", AttributeValue::S("SESSION".into()))
        .update_expression("SET event_count = :n, last_seen = :t")
        .expression_attribute_values(":n", AttributeValue::N((HISTORY - 1).to_string()))
        .expression_attribute_values(":t", AttributeValue::N(last.to_string()))
        .send()
        .await
        .context("cannot set the session's count")?;
    // The previous design read each key's head item too.
    Ok(previous_design + keys.len() as u64)
}

async fn write_batch(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
) -> Result<()> {
    while !requests.is_empty() {
        let out = client
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .context("moto BatchWriteItem")?;
        requests = out
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
    }
    Ok(())
}

/// Run the part: `seconds` of the busy session for the latency figure.
pub fn figures(seconds: u64) -> Result<(Vec<Figure>, HotReport)> {
    let (_, watch) = load_watch_list()?;
    let venv = python::ensure()?;
    let moto = test_support::moto::PrivateMoto::start_with(&venv.bin("python"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    let report = runtime.block_on(run(&moto.endpoint, &watch, seconds))?;
    let mut sorted = report.latency_seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = super::median(&sorted).unwrap_or(f64::INFINITY);
    let max = report.latency_seconds.iter().copied().fold(0.0, f64::max);
    let figures = vec![
        Figure::info(
            "hot key: DynamoDB reads of the 1st event",
            report.first.requests as f64,
            "requests",
        ),
        Figure::info(
            "hot key: items read by the 1st event",
            report.first.items_read as f64,
            "items",
        ),
        Figure::with_target(
            "hot key: DynamoDB reads of the 100,000th event",
            report.last.requests as f64,
            "requests",
            Target::AtMost(20.0),
        ),
        Figure::with_target(
            "hot key: items read by the 100,000th event",
            report.last.items_read as f64,
            "items",
            Target::AtMost(20.0),
        ),
        Figure::info(
            "hot key: items the previous design read for it",
            report.previous_design_items as f64,
            "items",
        ),
        Figure::with_target(
            "unrelated alert under a 20 events/s session, median",
            median,
            "s",
            Target::Below(5.0),
        ),
        Figure::with_target(
            "unrelated alert under a 20 events/s session, max",
            max,
            "s",
            Target::Below(10.0),
        ),
        Figure::info(
            "busy session's events stored per second on moto",
            report.hot_events_processed as f64 / report.run_seconds.max(0.001),
            "events/s",
        ),
    ];
    Ok((figures, report))
}

async fn run(endpoint: &str, watch: &WatchList, seconds: u64) -> Result<HotReport> {
    let aws = moto_config(endpoint).await;
    let table = "glasswatch-hot";
    let accounts = moto_organization(&aws, table).await?;
    let (busy, unrelated) = (accounts[0].clone(), accounts[1].clone());
    let (calls, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let slack = SlackStandIn::start(Some(calls)).await;
    let (aggregator, counter) =
        in_process_aggregator(&aws, table, &format!("{}/api/", slack.uri()), CHANNEL_NAME)?;
    let latency_table = "glasswatch-hot-latency";
    glasswatch_aggregator::store::create_table(&aws_sdk_dynamodb::Client::new(&aws), latency_table)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let (busy_aggregator, _) = in_process_aggregator(
        &aws,
        latency_table,
        &format!("{}/api/", slack.uri()),
        CHANNEL_NAME,
    )?;

    eprintln!(
        "==> hot key: the 1st event, {} events of history, then the 100,000th",
        HISTORY - 2
    );
    let first_record = hot_record(&busy, 1);
    let first = ingest_cost(&aggregator, &counter, &envelope(watch, &first_record)?, T0).await?;
    let parsed = Record::from_value(&first_record).map_err(|e| anyhow!("{e}"))?;
    let keys: Vec<String> = correlation_keys(&parsed)
        .iter()
        .map(ToString::to_string)
        .collect();
    let session = session_id(&parsed.event_id);
    let raw = aws_sdk_dynamodb::Client::new(&aws);
    let previous_design_items = load_history(&raw, table, &keys, &session, &busy).await?;
    let last_record = hot_record(&busy, HISTORY);
    let last = ingest_cost(
        &aggregator,
        &counter,
        &envelope(watch, &last_record)?,
        T0 + 5000,
    )
    .await?;
    let stored = aggregator
        .store
        .session(&session)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .context("the busy session is not stored")?;
    if stored.session.event_count != HISTORY {
        bail!(
            "the busy session counts {} events, not {HISTORY}",
            stored.session.event_count
        );
    }

    eprintln!(
        "==> hot key: {seconds} s of the session at {RATE} events/s, an unrelated root sign-in every {} s",
        UNRELATED_EVERY.as_secs()
    );
    // Two queues, as the audit stack has: priority, and session activity.
    // A message: (arrival, body, the unrelated sign-in's number if it is one).
    let (priority, priority_inbox) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let (activity, activity_inbox) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let producer = {
        let watch = watch.clone();
        let (busy, unrelated) = (busy.clone(), unrelated.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
            let mut n = 0;
            let mut next_unrelated = UNRELATED_EVERY;
            let mut k = 0;
            let send = |body: String, unrelated: Option<u64>| {
                let lane = if body.contains(ACTIVITY_DETAIL_TYPE) {
                    &activity
                } else {
                    &priority
                };
                let _ = lane.send((Instant::now(), body, unrelated));
            };
            while started.elapsed() < Duration::from_secs(seconds) {
                tick.tick().await;
                n += 1;
                send(envelope(&watch, &hot_record(&busy, n))?, None);
                if started.elapsed() >= next_unrelated {
                    k += 1;
                    next_unrelated += UNRELATED_EVERY;
                    let time = T0 + i64::try_from(n / RATE).unwrap_or(0);
                    send(
                        envelope(&watch, &root_sign_in(&unrelated, k, time))?,
                        Some(k),
                    );
                }
            }
            anyhow::Ok(k)
        })
    };
    let posted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let marker = unrelated.clone();
    let watcher = {
        let posted = std::sync::Arc::clone(&posted);
        tokio::spawn(async move {
            while let Some(call) = seen.recv().await {
                if call.is_root_post() && call.text().contains(&marker) {
                    posted
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Instant::now());
                }
            }
        })
    };
    let started = Instant::now();
    let busy_aggregator = std::sync::Arc::new(busy_aggregator);
    let lanes = [
        event_source_mapping("priority", priority_inbox, &busy_aggregator, started),
        event_source_mapping("activity", activity_inbox, &busy_aggregator, started),
    ];
    let mut arrivals: Vec<Instant> = Vec::new();
    let mut hot_events_processed = 0u64;
    for lane in lanes {
        for worker in lane {
            let (mine, hot) = worker.await.context("a worker")??;
            arrivals.extend(mine);
            hot_events_processed += hot;
        }
    }
    arrivals.sort();
    let unrelated_sent = producer.await.context("the producer")??;
    let run_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(200)).await;
    watcher.abort();
    let posted = posted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if posted.len() as u64 != unrelated_sent {
        bail!(
            "{unrelated_sent} unrelated sign-ins queued, {} root messages posted",
            posted.len()
        );
    }
    let latency_seconds = arrivals
        .iter()
        .zip(&posted)
        .map(|(a, p)| p.saturating_duration_since(*a).as_secs_f64())
        .collect();
    Ok(HotReport {
        first,
        last,
        previous_design_items,
        latency_seconds,
        run_seconds,
        hot_events_processed,
    })
}

/// One queued message: when it arrived, its body, and the number of the
/// unrelated sign-in it is, if it is one.
type Message = (Instant, String, Option<u64>);

/// What one invocation worker saw: the unrelated sign-ins' arrivals, and
/// how many of the busy session's events it stored.
type WorkerReport = Result<(Vec<Instant>, u64)>;

/// Lambda's event source mapping on one queue: a poller forms batches as
/// messages come (up to 25, a 1 s window), and up to `ESM_CONCURRENCY`
/// invocations of the aggregator take them at once.
fn event_source_mapping(
    name: &'static str,
    mut inbox: tokio::sync::mpsc::UnboundedReceiver<Message>,
    aggregator: &std::sync::Arc<Aggregator>,
    started: Instant,
) -> Vec<tokio::task::JoinHandle<WorkerReport>> {
    let (batches, to_workers) = tokio::sync::mpsc::channel::<Vec<Message>>(ESM_CONCURRENCY * 4);
    tokio::spawn(async move {
        while let Some(first) = inbox.recv().await {
            let mut batch = vec![first];
            let window = Instant::now() + ESM_WINDOW;
            while batch.len() < ESM_BATCH {
                match tokio::time::timeout_at(window.into(), inbox.recv()).await {
                    Ok(Some(message)) => batch.push(message),
                    _ => break,
                }
            }
            if batches.send(batch).await.is_err() {
                break;
            }
        }
    });
    let to_workers = std::sync::Arc::new(tokio::sync::Mutex::new(to_workers));
    (0..ESM_CONCURRENCY)
        .map(|worker| {
            let to_workers = std::sync::Arc::clone(&to_workers);
            let aggregator = std::sync::Arc::clone(aggregator);
            tokio::spawn(async move {
                let (mut arrivals, mut hot, mut n) = (Vec::new(), 0u64, 0usize);
                loop {
                    let Some(batch) = to_workers.lock().await.recv().await else {
                        break;
                    };
                    for (arrived, _, unrelated) in &batch {
                        match unrelated {
                            Some(_) => arrivals.push(*arrived),
                            None => hot += 1,
                        }
                    }
                    n += 1;
                    let event = sqs_event(batch.iter().enumerate().map(|(i, (_, body, _))| {
                        (format!("{name}-{worker}-{n}-{i}"), body.clone())
                    }));
                    let now = T0 + i64::try_from(started.elapsed().as_secs()).unwrap_or(0);
                    let response = aggregator
                        .handle_batch(&event, now, Instant::now() + Duration::from_secs(60))
                        .await;
                    if !response.batch_item_failures.is_empty() {
                        bail!(
                            "{name} queue: {} messages of a batch failed",
                            response.batch_item_failures.len()
                        );
                    }
                }
                Ok((arrivals, hot))
            })
        })
        .collect()
}
