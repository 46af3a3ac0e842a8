//! The pipeline between the parts, on moto, since moto runs no Lambda
//! code:
//!
//! ```text
//! CloudTrail event ──▶ agent of its account×region (in process, or the real binary
//!   │                  under `cargo lambda watch`), re-invoked on failure as Lambda
//!   │                  retries an async invocation; then its DLQ
//!   ▼ PutEvents (the account's own credentials)
//! bus ──rule {"source":["glasswatch.agent"]}──▶ SQS        (moto routes it)
//!   ▼ forwarder: the envelope `account` := the sender
//! central queue (audit account, redrive to the DLQ)
//!   ▼ poller: batches like an event source mapping with ReportBatchItemFailures
//! aggregator (in process, or the real binary) ──▶ DynamoDB, Slack stand-in
//! ```
//!
//! Two moto gaps shape it (DESIGN.md §7): `PutEvents` to another account's
//! bus by ARN lands on the caller's own bus of that name, and moto's SQS
//! delivery drops the envelope's `account`. So every account×region gets
//! a bus named like the central one, whose rule delivers to that account's
//! outbox queue; the forwarder moves each message to the central queue and
//! sets `account` to the outbox's account, which is what EventBridge
//! writes (the sender). The audit account's own agents use the real
//! central bus the same way.
//!
//! The tests make a table, queue and DLQ of their own; the demo hands
//! over those its deploy made ([`Deployed`]), so the signals pass
//! through the audit stack's queue into its table. The poller then
//! replaces the stack's event source mapping, which is disabled: moto's
//! imitation of it would consume messages.
//!
//! The agents and the aggregator reach moto through [`ChaosProxy`]s (and
//! the aggregator reaches Slack through another), which inject faults
//! when asked; the forwarder and the poller stand for AWS itself and talk
//! to moto directly.
//!
//! moto 5.2.5 restores a deep copy of the whole table when a
//! `TransactWriteItems` fails, wiping writes made meanwhile by other
//! requests. So the poller runs one aggregator invocation at a time, and
//! ticks between batches, never beside one: on AWS, concurrent batches
//! are safe, here they would test moto.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};
use glasswatch_agent::{Agent, AgentConfig, Outcome};
use glasswatch_aggregator::slack::SlackClient;
use glasswatch_aggregator::store::{SessionItem, Store, create_table};
use glasswatch_aggregator::{Aggregator, AggregatorConfig};
use glasswatch_core::Config;
use glasswatch_core::config::SlackMode;
use glasswatch_core::signal::{SIGNAL_DETAIL_TYPE, SIGNAL_SOURCE, build_signal};
use glasswatch_core::slack::{RenderContext, session_root};
use serde_json::{Value, json};
use tokio::sync::Mutex as AsyncMutex;

use crate::chaos::{ChaosProxy, Profile};
use crate::lambda::{RunningFunction, built_binary};
use crate::org::Org;
use crate::slack::{CHANNEL_ID, CHANNEL_NAME, SlackStandIn};
use crate::{account_credentials, config_with, moto_endpoint, signal_bus, unique, workspace_root};

/// How the pipeline behaves; [`Options::default`] is AWS-like with no
/// faults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Receives before SQS moves a message to the DLQ.
    pub max_receive_count: u32,
    /// Seconds a received message stays invisible (how long a failed
    /// message waits before it comes back).
    pub visibility_timeout_secs: i32,
    /// Messages per aggregator invocation: a fixed size, or (`None`) a
    /// random size from 1 to 10 for each batch.
    pub batch_size: Option<i32>,
    /// Invocations of an agent per event: Lambda runs an async
    /// invocation up to three times.
    pub agent_attempts: u32,
    /// The agent's `PutEvents` retry budget.
    pub relay_budget_ms: u64,
    /// Run the real `bootstrap` binaries instead of the handlers in
    /// process.
    pub binaries: bool,
    /// Seeds the fault proxies and the batch sizes.
    pub seed: u64,
    /// Give up draining after this long.
    pub drain_timeout: Duration,
    /// Use a deployed audit stack's table, queue and DLQ (the demo's)
    /// instead of new ones.
    pub deployed: Option<Deployed>,
    /// Receives each Slack call as it arrives (the demo prints them).
    pub slack_observer: Option<tokio::sync::mpsc::UnboundedSender<crate::slack::SlackCall>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_receive_count: 5,
            visibility_timeout_secs: 1,
            batch_size: Some(10),
            agent_attempts: 3,
            relay_budget_ms: 3000,
            binaries: false,
            seed: 1,
            drain_timeout: Duration::from_secs(300),
            deployed: None,
            slack_observer: None,
        }
    }
}

/// What a deployed audit stack (in the audit account and region) gives
/// the pipeline: its outputs `TableName`, `QueueUrl` and
/// `DeadLetterQueueUrl`.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
}

/// The poller stands in for the deployed event source mapping, which moto
/// cannot run: moto's own stand-in takes a batch from the queue on every
/// `SendMessage` and, when its fake invocation "succeeds", deletes it, so
/// signals would vanish unprocessed. Disabled, it leaves them to the
/// poller.
async fn disable_event_source_mappings(
    config: &aws_config::SdkConfig,
    queue_arn: &str,
) -> Result<()> {
    let lambda = aws_sdk_lambda::Client::new(config);
    let mappings = lambda
        .list_event_source_mappings()
        .event_source_arn(queue_arn)
        .send()
        .await
        .with_context(|| format!("the event source mappings of {queue_arn}"))?;
    for mapping in mappings.event_source_mappings() {
        let uuid = mapping
            .uuid()
            .context("an event source mapping without a uuid")?;
        lambda
            .update_event_source_mapping()
            .uuid(uuid)
            .enabled(false)
            .send()
            .await
            .with_context(|| format!("disable event source mapping {uuid}"))?;
    }
    Ok(())
}

/// What the EventBridge schedule rule `rule` in `account` and `region`
/// sends its target now.
fn scheduled_event(account: &str, region: &str, rule: &str) -> Result<Value> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .context("now")?
        .format(&time::format_description::well_known::Rfc3339)
        .context("format now")?;
    Ok(json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": now,
        "region": region,
        "resources": [format!("arn:aws:events:{region}:{account}:rule/{rule}")],
        "detail": {},
    }))
}

/// A session as stored, with the events that resolve to it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    pub item: SessionItem,
    pub event_ids: BTreeSet<String>,
}

/// What happened to one event handed to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Relayed,
    /// The agent found nothing to report.
    Dropped,
    /// Every attempt failed; the event is in the agent's DLQ.
    DeadLettered {
        error: String,
    },
}

/// Messages taken out of the dead-letter queues.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetters {
    /// Signal envelopes from the central DLQ.
    pub central: Vec<Value>,
    /// CloudTrail envelopes from the agents' DLQs.
    pub agents: Vec<Value>,
}

impl DeadLetters {
    pub fn is_empty(&self) -> bool {
        self.central.is_empty() && self.agents.is_empty()
    }

    /// The CloudTrail event ids they carry.
    pub fn event_ids(&self) -> BTreeSet<String> {
        let central = self
            .central
            .iter()
            .map(|b| &b["detail"]["record"]["eventID"]);
        let agents = self.agents.iter().map(|b| &b["detail"]["eventID"]);
        central
            .chain(agents)
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub forwarded: usize,
    pub batches: usize,
    pub messages: usize,
    /// Messages reported failed (or in a failed invocation).
    pub failed: usize,
    /// Whole invocations that failed.
    pub invocation_errors: Vec<String>,
}

enum AgentRunner {
    InProcess(Box<Agent>),
    Binary(RunningFunction),
}

impl std::fmt::Debug for AgentRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InProcess(_) => f.write_str("AgentRunner::InProcess"),
            Self::Binary(b) => write!(f, "AgentRunner::Binary({})", b.log.display()),
        }
    }
}

impl AgentRunner {
    /// `Ok(true)` relayed, `Ok(false)` dropped, `Err` failed.
    async fn invoke(&self, event: &Value) -> Result<bool, String> {
        match self {
            Self::InProcess(agent) => {
                let deadline = Instant::now() + Duration::from_secs(30);
                // The counts are the EMF line Lambda would log: not
                // wanted on this process's stdout.
                match agent.handle_counted(event, Some(deadline)).await.0 {
                    Ok(
                        Outcome::Relayed { .. }
                        | Outcome::Heartbeat { .. }
                        | Outcome::Following { .. },
                    ) => Ok(true),
                    Ok(Outcome::Dropped) => Ok(false),
                    Err(e) => Err(e.to_string()),
                }
            }
            Self::Binary(function) => match function.invoke(event).await {
                Ok(Ok(body)) => {
                    let text = body.as_str().unwrap_or_default();
                    if ["Relayed", "Heartbeat", "Following"]
                        .iter()
                        .any(|p| text.starts_with(p))
                    {
                        Ok(true)
                    } else if text == "Dropped" {
                        Ok(false)
                    } else {
                        Err(format!("unexpected answer {body}"))
                    }
                }
                Ok(Err(error)) => Err(error),
                Err(e) => Err(format!("{e:#}")),
            },
        }
    }
}

enum AggregatorRunner {
    InProcess(Box<Aggregator>),
    Binary(RunningFunction),
}

impl std::fmt::Debug for AggregatorRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InProcess(_) => f.write_str("AggregatorRunner::InProcess"),
            Self::Binary(b) => write!(f, "AggregatorRunner::Binary({})", b.log.display()),
        }
    }
}

impl AggregatorRunner {
    async fn invoke(&self, payload: &Value) -> Result<Value, String> {
        match self {
            Self::InProcess(aggregator) => aggregator
                .invoke(payload, Instant::now() + Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string()),
            Self::Binary(function) => match function.invoke(payload).await {
                Ok(result) => result,
                Err(e) => Err(format!("{e:#}")),
            },
        }
    }
}

/// One account×region: its credentials, bus outbox and agent DLQ.
#[derive(Debug)]
struct Sender {
    account: String,
    region: String,
    credentials: Credentials,
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    outbox_url: String,
    agent_dlq_url: String,
    agent_dlq_arn: String,
}

/// What Lambda does with an async invocation that failed every attempt:
/// the event goes to the function's dead-letter queue, with the error.
async fn dead_letter(sender: &Sender, input: &Value, error: &str) -> Result<()> {
    sender
        .sqs
        .send_message()
        .queue_url(&sender.agent_dlq_url)
        .message_body(input.to_string())
        .message_attributes(
            "ErrorMessage",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(error.chars().take(1000).collect::<String>())
                .build()?,
        )
        .send()
        .await
        .context("send to the agent DLQ")?;
    Ok(())
}

impl Sender {
    /// The agent's function ARN as its stack spells it: the target of the
    /// follow rules it installs.
    fn function_arn(&self, name_prefix: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name_prefix}-agent",
            self.region, self.account
        )
    }
}

/// The running pipeline. Dropping it stops the proxies and any binaries.
#[derive(Debug)]
pub struct Pipeline {
    pub org: Org,
    pub options: Options,
    pub slack: SlackStandIn,
    /// Between the Lambdas and moto.
    pub aws_proxy: ChaosProxy,
    /// Between the aggregator and Slack.
    pub slack_proxy: ChaosProxy,
    pub table: String,
    /// The central bus (audit account, audit region).
    pub bus_arn: String,
    pub queue_url: String,
    pub dlq_url: String,
    queue_arn: String,
    /// The store, read directly from moto (not through the proxy).
    pub store: Store,
    dynamodb: aws_sdk_dynamodb::Client,
    audit_sqs: aws_sdk_sqs::Client,
    senders: BTreeMap<(String, String), Sender>,
    watch_json: String,
    name_prefix: String,
    aggregator: AggregatorRunner,
    agents: AsyncMutex<BTreeMap<(String, String), Arc<AgentRunner>>>,
    rng: Mutex<fastrand::Rng>,
}

/// The repository's `glasswatch.toml`, which the demo and tests use.
pub fn repo_config() -> Result<Config> {
    let path = workspace_root().join("glasswatch.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Config::parse(&text, "glasswatch.toml").map_err(|e| anyhow::anyhow!("{e}"))
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("attributes of {url}"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("queue arn")
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> Result<String> {
    let mut create = sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        create = create.attributes(k.clone(), v);
    }
    create
        .send()
        .await
        .with_context(|| format!("create queue {name}"))?
        .queue_url
        .context("queue url")
}

impl Pipeline {
    /// Build everything in moto for `org` and start the parts.
    pub async fn start(org: Org, options: Options) -> Result<Self> {
        let audit_region = org.audit_region().to_owned();
        let aws_proxy = ChaosProxy::start(&moto_endpoint(), Profile::Aws, options.seed).await?;
        aws_proxy.answer_as("AWSOrganizationsV20161128.", &org.management);
        let slack = SlackStandIn::start(options.slack_observer.clone()).await;
        let slack_proxy =
            ChaosProxy::start(&slack.uri(), Profile::Slack, options.seed.wrapping_add(1)).await?;

        let mut credentials = BTreeMap::new();
        for account in org.accounts() {
            credentials.insert(
                account.to_owned(),
                account_credentials(account, &audit_region).await?,
            );
        }
        let audit_config =
            config_with(&credentials[&org.audit], &audit_region, &moto_endpoint()).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&audit_config);
        let audit_sqs = aws_sdk_sqs::Client::new(&audit_config);
        let (table, queue_url, dlq_url) = match &options.deployed {
            Some(d) => (d.table.clone(), d.queue_url.clone(), d.dlq_url.clone()),
            None => {
                let table = unique("gw-e2e");
                create_table(&dynamodb, &table)
                    .await
                    .with_context(|| format!("create table {table}"))?;
                let dlq_url = create_queue(&audit_sqs, &unique("gw-e2e-dlq"), &[]).await?;
                let dlq_arn = queue_arn(&audit_sqs, &dlq_url).await?;
                let redrive = json!({
                    "deadLetterTargetArn": dlq_arn,
                    "maxReceiveCount": options.max_receive_count
                })
                .to_string();
                let queue_url = create_queue(
                    &audit_sqs,
                    &unique("gw-e2e-signals"),
                    &[
                        (QueueAttributeName::RedrivePolicy, redrive),
                        (
                            QueueAttributeName::VisibilityTimeout,
                            options.visibility_timeout_secs.to_string(),
                        ),
                    ],
                )
                .await?;
                (table, queue_url, dlq_url)
            }
        };
        let queue_arn = queue_arn(&audit_sqs, &queue_url).await?;
        if options.deployed.is_some() {
            disable_event_source_mappings(&audit_config, &queue_arn).await?;
        }

        let bus = unique("gw-central");
        let mut senders = BTreeMap::new();
        let mut bus_arn = None;
        for account in org.accounts() {
            for region in &org.regions {
                let config = config_with(&credentials[account], region, &moto_endpoint()).await;
                let events = aws_sdk_eventbridge::Client::new(&config);
                let sqs = aws_sdk_sqs::Client::new(&config);
                let (arn, outbox_url) = signal_bus(&events, &sqs, &bus)
                    .await
                    .with_context(|| format!("the bus of {account}/{region}"))?;
                if account == org.audit && *region == audit_region {
                    bus_arn = Some(arn);
                }
                let agent_dlq_url = create_queue(&sqs, &unique("gw-agent-dlq"), &[]).await?;
                let agent_dlq_arn = self::queue_arn(&sqs, &agent_dlq_url).await?;
                senders.insert(
                    (account.to_owned(), region.clone()),
                    Sender {
                        account: account.to_owned(),
                        region: region.clone(),
                        credentials: credentials[account].clone(),
                        sqs,
                        events,
                        outbox_url,
                        agent_dlq_url,
                        agent_dlq_arn,
                    },
                );
            }
        }
        let bus_arn = bus_arn.context("no central bus")?;

        let config = repo_config()?;
        let watch_json = config.watch_env_json();
        let slack_api = format!("{}/api/", slack_proxy.url());
        let aggregator = if options.binaries {
            let secrets = aws_sdk_secretsmanager::Client::new(&audit_config);
            let secret_arn = secrets
                .create_secret()
                .name(unique("glasswatch/slack"))
                .secret_string(r#"{"token":"xoxb-glasswatch-e2e"}"#)
                .send()
                .await
                .context("create the Slack secret")?
                .arn
                .context("secret arn")?;
            let c = &credentials[&org.audit];
            let env = vec![
                ("AWS_REGION".to_owned(), audit_region.clone()),
                ("AWS_ENDPOINT_URL".to_owned(), aws_proxy.url()),
                ("AWS_ACCESS_KEY_ID".to_owned(), c.access_key_id().to_owned()),
                (
                    "AWS_SECRET_ACCESS_KEY".to_owned(),
                    c.secret_access_key().to_owned(),
                ),
                (
                    "AWS_SESSION_TOKEN".to_owned(),
                    c.session_token().unwrap_or_default().to_owned(),
                ),
                ("GLASSWATCH_TABLE".to_owned(), table.clone()),
                ("GLASSWATCH_SLACK_MODE".to_owned(), "bot".to_owned()),
                (
                    "GLASSWATCH_SLACK_CHANNEL".to_owned(),
                    CHANNEL_NAME.to_owned(),
                ),
                ("GLASSWATCH_WATCH".to_owned(), watch_json.clone()),
                ("GLASSWATCH_SLACK_SECRET_ARN".to_owned(), secret_arn),
                ("GLASSWATCH_SLACK_API_URL".to_owned(), slack_api),
                ("GLASSWATCH_LOG".to_owned(), "info".to_owned()),
            ];
            let binary = built_binary("glasswatch-aggregator", &["aggregator", "core"])?;
            AggregatorRunner::Binary(RunningFunction::start("aggregator", &binary, &env)?)
        } else {
            let table = table.clone();
            let watch_json = watch_json.clone();
            let lookup = move |name: &str| -> Option<String> {
                Some(match name {
                    "GLASSWATCH_TABLE" => table.clone(),
                    "GLASSWATCH_WATCH" => watch_json.clone(),
                    "GLASSWATCH_SLACK_MODE" => "bot".to_owned(),
                    "GLASSWATCH_SLACK_CHANNEL" => CHANNEL_NAME.to_owned(),
                    "GLASSWATCH_SLACK_SECRET_ARN" => "in-process".to_owned(),
                    "GLASSWATCH_SLACK_API_URL" => slack_api.clone(),
                    _ => return None,
                })
            };
            let config =
                AggregatorConfig::from_lookup(lookup).map_err(|e| anyhow::anyhow!("{e}"))?;
            let proxied =
                config_with(&credentials[&org.audit], &audit_region, &aws_proxy.url()).await;
            let client =
                SlackClient::bot_with_api_base("xoxb-glasswatch-e2e", &config.slack_api_url)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            AggregatorRunner::InProcess(Box::new(Aggregator::new(config, &proxied, client)))
        };
        let store = Store::new(dynamodb.clone(), table.clone(), 3600, 2555);
        Ok(Self {
            rng: Mutex::new(fastrand::Rng::with_seed(options.seed)),
            org,
            options,
            slack,
            aws_proxy,
            slack_proxy,
            table,
            bus_arn,
            queue_url,
            dlq_url,
            queue_arn,
            store,
            dynamodb,
            audit_sqs,
            senders,
            watch_json,
            name_prefix: config.deploy.name_prefix.clone(),
            aggregator,
            agents: AsyncMutex::new(BTreeMap::new()),
        })
    }

    /// Make a share of the Lambdas' calls to moto and Slack fail.
    pub fn set_fault_rate(&self, rate: f64) {
        self.aws_proxy.set_rate(rate);
        self.slack_proxy.set_rate(rate);
    }

    /// Both proxies' reports, for a failure message.
    pub fn fault_report(&self) -> String {
        format!("{}\n{}", self.aws_proxy.report(), self.slack_proxy.report())
    }

    fn sender(&self, account: &str, region: &str) -> Result<&Sender> {
        self.senders
            .get(&(account.to_owned(), region.to_owned()))
            .with_context(|| format!("no account×region {account}/{region} in the organization"))
    }

    async fn agent(&self, account: &str, region: &str) -> Result<Arc<AgentRunner>> {
        let mut agents = self.agents.lock().await;
        let key = (account.to_owned(), region.to_owned());
        if let Some(agent) = agents.get(&key) {
            return Ok(agent.clone());
        }
        let sender = self.sender(account, region)?;
        let runner = if self.options.binaries {
            let c = &sender.credentials;
            let env = vec![
                ("AWS_REGION".to_owned(), region.to_owned()),
                ("AWS_ENDPOINT_URL".to_owned(), self.aws_proxy.url()),
                ("AWS_ACCESS_KEY_ID".to_owned(), c.access_key_id().to_owned()),
                (
                    "AWS_SECRET_ACCESS_KEY".to_owned(),
                    c.secret_access_key().to_owned(),
                ),
                (
                    "AWS_SESSION_TOKEN".to_owned(),
                    c.session_token().unwrap_or_default().to_owned(),
                ),
                ("GLASSWATCH_BUS_ARN".to_owned(), self.bus_arn.clone()),
                ("GLASSWATCH_WATCH".to_owned(), self.watch_json.clone()),
                (
                    "GLASSWATCH_RELAY_BUDGET_MS".to_owned(),
                    self.options.relay_budget_ms.to_string(),
                ),
                ("GLASSWATCH_LOG".to_owned(), "info".to_owned()),
                (
                    "GLASSWATCH_FUNCTION_ARN".to_owned(),
                    sender.function_arn(&self.name_prefix),
                ),
                (
                    "GLASSWATCH_DLQ_ARN".to_owned(),
                    sender.agent_dlq_arn.clone(),
                ),
            ];
            let binary = built_binary("glasswatch-agent", &["agent", "core"])?;
            AgentRunner::Binary(RunningFunction::start(
                &format!("agent-{account}-{region}"),
                &binary,
                &env,
            )?)
        } else {
            let config = AgentConfig::from_lookup(|name| match name {
                "GLASSWATCH_BUS_ARN" => Some(self.bus_arn.clone()),
                "GLASSWATCH_WATCH" => Some(self.watch_json.clone()),
                "GLASSWATCH_RELAY_BUDGET_MS" => Some(self.options.relay_budget_ms.to_string()),
                "GLASSWATCH_FUNCTION_ARN" => Some(sender.function_arn(&self.name_prefix)),
                "GLASSWATCH_DLQ_ARN" => Some(sender.agent_dlq_arn.clone()),
                _ => None,
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let proxied = config_with(&sender.credentials, region, &self.aws_proxy.url()).await;
            AgentRunner::InProcess(Box::new(Agent {
                config,
                events: aws_sdk_eventbridge::Client::new(&proxied),
                cloudtrail: aws_sdk_cloudtrail::Client::new(&proxied),
                sqs: aws_sdk_sqs::Client::new(&proxied),
                local_events: aws_sdk_eventbridge::Client::new(&proxied),
            }))
        };
        let runner = Arc::new(runner);
        agents.insert(key, runner.clone());
        Ok(runner)
    }

    /// Hand a CloudTrail event (an EventBridge envelope) to the agent of
    /// its account and region, as the account's rule would, and retry a
    /// failed invocation as Lambda retries an async one; when every
    /// attempt fails, the event goes to that agent's DLQ.
    pub async fn deliver(&self, envelope: &Value) -> Result<Delivery> {
        let account = envelope["account"]
            .as_str()
            .context("envelope without account")?;
        let region = envelope["region"]
            .as_str()
            .context("envelope without region")?;
        let agent = self.agent(account, region).await?;
        let sender = self.sender(account, region)?;
        // A follow rule an agent installed matches too: EventBridge invokes
        // the agent a second time, with the rule's input.
        let mut inputs = vec![envelope.clone()];
        inputs.extend(self.follow_input(sender, envelope).await?);
        let mut relayed = false;
        for input in &inputs {
            match self.invoke_retrying(&agent, input).await {
                Ok(r) => relayed |= r,
                Err(last) => {
                    dead_letter(sender, input, &last).await?;
                    return Ok(Delivery::DeadLettered { error: last });
                }
            }
        }
        Ok(if relayed {
            Delivery::Relayed
        } else {
            Delivery::Dropped
        })
    }

    /// Invoke an agent as Lambda does an async invocation: retried, with
    /// the last error when every attempt failed.
    async fn invoke_retrying(&self, agent: &AgentRunner, input: &Value) -> Result<bool, String> {
        let mut last = String::new();
        for attempt in 0..self.options.agent_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            match agent.invoke(input).await {
                Ok(relayed) => return Ok(relayed),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// What the follow rule matching this event's access key delivers,
    /// when an agent has installed one in the event's account and region:
    /// its target's input template, filled in as EventBridge does.
    async fn follow_input(&self, sender: &Sender, envelope: &Value) -> Result<Option<Value>> {
        let Some(key) = envelope["detail"]["userIdentity"]["accessKeyId"]
            .as_str()
            .filter(|k| k.starts_with("ASIA"))
        else {
            return Ok(None);
        };
        let rule = glasswatch_core::follow::rule_name(&self.name_prefix, key);
        let targets = match sender
            .events
            .list_targets_by_rule()
            .rule(&rule)
            .send()
            .await
        {
            Ok(out) => out.targets.unwrap_or_default(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "ListTargetsByRule {rule} in {}/{}",
                    sender.account, sender.region
                )));
            }
        };
        let Some(template) = targets
            .iter()
            .find_map(|t| t.input_transformer().map(|i| i.input_template().to_owned()))
        else {
            return Ok(None);
        };
        let filled = template
            .replace("<aws.events.event.json>", &envelope.to_string())
            .replace("<aws.events.rule-name>", &rule);
        serde_json::from_str(&filled)
            .map(Some)
            .with_context(|| format!("the input template of {rule} is not JSON once filled"))
    }

    /// What the central bus's follow rule and the follow topic do with a
    /// signal that carries `follow`: hand the instruction to the agents of
    /// the account it names, in every region, as SNS invokes them.
    async fn publish_follow(&self, envelope: &Value) -> Result<()> {
        let follow = &envelope["detail"]["follow"];
        let Some(account) = follow["account"].as_str() else {
            return Ok(());
        };
        let sns = json!({"Records": [{
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "Sns": {
                "Type": "Notification",
                "TopicArn": format!("arn:aws:sns:{}:{}:{}-follow", self.org.audit_region(), self.org.audit, self.name_prefix),
                "Message": follow.to_string(),
            }
        }]});
        for region in &self.org.regions {
            if let Ok(sender) = self.sender(account, region) {
                let agent = self.agent(account, region).await?;
                // SNS invokes the agent asynchronously: Lambda retries,
                // then puts the event in the function's DLQ.
                if let Err(last) = self.invoke_retrying(&agent, &sns).await {
                    dead_letter(sender, &sns, &last).await?;
                }
            }
        }
        Ok(())
    }

    /// [`deliver`](Self::deliver) every envelope at once, as events from
    /// many accounts arrive together. Results are in the envelopes' order.
    pub async fn deliver_all(self: &Arc<Self>, envelopes: &[Value]) -> Result<Vec<Delivery>> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, envelope) in envelopes.iter().enumerate() {
            let pipeline = self.clone();
            let envelope = envelope.clone();
            tasks.spawn(async move { (i, pipeline.deliver(&envelope).await) });
        }
        let mut out: Vec<Option<Delivery>> = vec![None; envelopes.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, delivery) = joined.context("a delivery task panicked")?;
            out[i] = Some(delivery?);
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Put a signal for `record` on the central bus with `sender`'s
    /// credentials, bypassing its agent: what a compromised account can
    /// do.
    pub async fn put_signal_as(&self, sender: &str, region: &str, record: &Value) -> Result<()> {
        let watch = repo_config()?
            .watch_list()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let parsed = glasswatch_core::Record::from_value(record)?;
        let detections = glasswatch_core::classify(&watch, &parsed);
        let (_, detail) = build_signal(
            record,
            detections,
            "forged",
            &parsed.account,
            &parsed.region,
        )?;
        let out = self
            .sender(sender, region)?
            .events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_arn)
                    .source(SIGNAL_SOURCE)
                    .detail_type(SIGNAL_DETAIL_TYPE)
                    .detail(detail)
                    .build(),
            )
            .send()
            .await
            .context("PutEvents")?;
        if out.failed_entry_count() > 0 {
            bail!("PutEvents failed: {:?}", out.entries());
        }
        Ok(())
    }

    /// Move what the buses delivered to each account's outbox onto the
    /// central queue, with the envelope's `account` set to the sender.
    pub async fn forward(&self) -> Result<usize> {
        let mut moved = 0;
        for sender in self.senders.values() {
            loop {
                let messages = sender
                    .sqs
                    .receive_message()
                    .queue_url(&sender.outbox_url)
                    .max_number_of_messages(10)
                    .send()
                    .await
                    .context("receive from an outbox")?
                    .messages
                    .unwrap_or_default();
                if messages.is_empty() {
                    break;
                }
                for message in messages {
                    let mut envelope: Value =
                        serde_json::from_str(message.body().unwrap_or_default())
                            .context("outbox message")?;
                    envelope["account"] = Value::from(sender.account.as_str());
                    envelope["region"] = Value::from(sender.region.as_str());
                    self.publish_follow(&envelope).await?;
                    self.audit_sqs
                        .send_message()
                        .queue_url(&self.queue_url)
                        .message_body(envelope.to_string())
                        .send()
                        .await
                        .context("send to the central queue")?;
                    sender
                        .sqs
                        .delete_message()
                        .queue_url(&sender.outbox_url)
                        .receipt_handle(message.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                        .context("delete from an outbox")?;
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    async fn queue_is_empty(&self) -> Result<bool> {
        let attributes = self
            .audit_sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .context("central queue attributes")?
            .attributes
            .unwrap_or_default();
        let count = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(count(QueueAttributeName::ApproximateNumberOfMessages) == 0
            && count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible) == 0)
    }

    fn next_batch_size(&self) -> i32 {
        self.options.batch_size.unwrap_or_else(|| {
            self.rng
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .i32(1..=10)
        })
    }

    /// Forward, then feed the central queue to the aggregator until it is
    /// empty: batches as an event source mapping with
    /// `ReportBatchItemFailures` makes them. Reported failures stay in the
    /// queue and come back after the visibility timeout; after
    /// `max_receive_count` receives SQS moves them to the DLQ.
    pub async fn drain(&self) -> Result<DrainReport> {
        let started = Instant::now();
        let mut report = DrainReport::default();
        loop {
            if started.elapsed() > self.options.drain_timeout {
                bail!(
                    "the queue did not drain within {:?}: {report:?}",
                    self.options.drain_timeout
                );
            }
            let forwarded = self.forward().await?;
            report.forwarded += forwarded;
            let messages = self
                .audit_sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(self.next_batch_size())
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .context("receive from the central queue")?
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                if forwarded == 0 && self.queue_is_empty().await? {
                    return Ok(report);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let mut event = SqsEvent::default();
            event.records = messages
                .iter()
                .map(|m| {
                    let mut record = SqsMessage::default();
                    record.message_id = m.message_id.clone();
                    record.receipt_handle = m.receipt_handle.clone();
                    record.body = m.body.clone();
                    record.md5_of_body = m.md5_of_body.clone();
                    record.attributes = m
                        .attributes()
                        .map(|a| {
                            a.iter()
                                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    record.event_source = Some("aws:sqs".to_owned());
                    record.event_source_arn = Some(self.queue_arn.clone());
                    record.aws_region = Some(self.org.audit_region().to_owned());
                    record
                })
                .collect();
            let payload = serde_json::to_value(&event)?;
            let ids: BTreeSet<String> = messages
                .iter()
                .filter_map(|m| m.message_id.clone())
                .collect();
            let failed: BTreeSet<String> = match self.aggregator.invoke(&payload).await {
                Ok(answer) => {
                    let reported: BTreeSet<String> = answer["batchItemFailures"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|f| {
                                    f["itemIdentifier"].as_str().unwrap_or_default().to_owned()
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    // An identifier that is not in the batch fails it all.
                    if reported.is_subset(&ids) {
                        reported
                    } else {
                        ids.clone()
                    }
                }
                Err(e) => {
                    report.invocation_errors.push(e);
                    ids.clone()
                }
            };
            report.batches += 1;
            report.messages += messages.len();
            report.failed += failed.len();
            let done: Vec<DeleteMessageBatchRequestEntry> = messages
                .iter()
                .filter(|m| m.message_id.as_ref().is_some_and(|id| !failed.contains(id)))
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .ok()
                })
                .collect();
            if !done.is_empty() {
                self.audit_sqs
                    .delete_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(done))
                    .send()
                    .await
                    .context("delete processed messages")?;
            }
        }
    }

    /// One scheduled tick of the aggregator (coverage, pending Slack
    /// messages).
    pub async fn tick(&self) -> Result<Value, String> {
        let payload = scheduled_event(
            &self.org.audit,
            self.org.audit_region(),
            "glasswatch-aggregator-tick",
        )
        .map_err(|e| format!("{e:#}"))?;
        self.aggregator.invoke(&payload).await
    }

    /// Every agent's scheduled heartbeat, as its schedule rule invokes it,
    /// then the queue drained: the aggregator's coverage items are fresh.
    /// Fails when an agent cannot report.
    pub async fn heartbeats(&self) -> Result<DrainReport> {
        for (account, region) in self.senders.keys() {
            let beat = scheduled_event(account, region, "glasswatch-heartbeat")?;
            let delivery = self.deliver(&beat).await?;
            if delivery != Delivery::Relayed {
                bail!("the heartbeat of {account}/{region}: {delivery:?}");
            }
        }
        self.drain().await
    }

    /// Tick until nothing is pending, at most `max_ticks` times. Returns
    /// what is still pending (session ids).
    pub async fn settle(&self, max_ticks: usize) -> Result<Vec<String>> {
        for _ in 0..max_ticks {
            let pending = self.store.pending().await?;
            if pending.is_empty() {
                return Ok(pending);
            }
            // A failed tick is retried by the next one, as on AWS.
            if let Err(e) = self.tick().await {
                println!("tick failed (the next one retries): {e}");
            }
        }
        Ok(self.store.pending().await?)
    }

    /// Every live session with the ids of the events that resolve to it.
    pub async fn stored_sessions(&self) -> Result<Vec<StoredSession>> {
        let mut by_session: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for event_id in self.stored_event_ids().await? {
            let session = self
                .store
                .session_of_event(&event_id)
                .await?
                .with_context(|| format!("event {event_id} vanished"))?;
            by_session.entry(session).or_default().insert(event_id);
        }
        let mut out = Vec::new();
        for (id, event_ids) in by_session {
            let item = self
                .store
                .session(&id)
                .await?
                .with_context(|| format!("session {id} has events but no item"))?;
            out.push(StoredSession { item, event_ids });
        }
        Ok(out)
    }

    async fn scan_keys(&self, prefix: &str, sk: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :p) AND sk = :sk")
                .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()))
                .expression_attribute_values(":sk", AttributeValue::S(sk.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .context("scan the table")?;
            for item in page.items() {
                if let Some(pk) = item.get("pk").and_then(|v| v.as_s().ok()) {
                    out.push(pk.trim_start_matches(prefix).to_owned());
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// The event ids with an `EVENT#` item.
    pub async fn stored_event_ids(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .scan_keys("EVENT#", "EVENT")
            .await?
            .into_iter()
            .collect())
    }

    /// The event ids kept as untrusted signals (`SPOOFED#`).
    pub async fn spoofed_event_ids(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .scan_keys("SPOOFED#", "SPOOFED")
            .await?
            .into_iter()
            .collect())
    }

    /// An `EVENT#` item's attributes, as strings.
    pub async fn event_item(&self, event_id: &str) -> Result<Option<BTreeMap<String, String>>> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("EVENT#{event_id}")))
            .key("sk", AttributeValue::S("EVENT".into()))
            .send()
            .await
            .context("get an event item")?
            .item;
        Ok(item.map(|i| {
            i.into_iter()
                .filter_map(|(k, v)| Some((k, v.as_s().ok()?.clone())))
                .collect()
        }))
    }

    /// Take everything out of the central DLQ and the agents' DLQs.
    pub async fn take_dead_letters(&self) -> Result<DeadLetters> {
        let mut letters = DeadLetters {
            central: crate::drain_queue(&self.audit_sqs, &self.dlq_url).await?,
            agents: Vec::new(),
        };
        for sender in self.senders.values() {
            letters
                .agents
                .extend(crate::drain_queue(&sender.sqs, &sender.agent_dlq_url).await?);
        }
        Ok(letters)
    }

    /// Send dead letters back, as an operator redrives a DLQ: signals to
    /// the central queue, CloudTrail events to their agents.
    pub async fn redrive(&self, letters: &DeadLetters) -> Result<Vec<Delivery>> {
        for body in &letters.central {
            self.audit_sqs
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(body.to_string())
                .send()
                .await
                .context("redrive to the central queue")?;
        }
        let mut deliveries = Vec::new();
        for envelope in &letters.agents {
            deliveries.push(self.deliver(envelope).await?);
        }
        Ok(deliveries)
    }

    /// How Slack should render this session's root message now.
    pub fn expected_root(&self, session: &glasswatch_core::session::Session) -> Value {
        let mut ctx = RenderContext::new(SlackMode::Bot, CHANNEL_ID);
        ctx.account_names = self.org.names.clone();
        let request = session_root(&ctx, session, &session.anchor_region);
        json!(request.body().blocks)
    }

    /// Slack against the store, for sessions that are all fully sent:
    /// every session has exactly one root message, which shows the
    /// session as stored; a root message posted for a session later
    /// merged into another says so in its thread; every other message is
    /// a reply in a root's thread. Root messages naming no session (a
    /// spoofing alert) are problems unless `other_roots` allows that many.
    /// Returns every problem found.
    pub fn check_slack(
        &self,
        sessions: &[StoredSession],
        other_roots: usize,
    ) -> Result<(), String> {
        let mut problems = Vec::new();
        let roots = self.slack.roots();
        let displayed = self.slack.displayed();
        let root_ts: BTreeSet<&str> = roots.iter().map(|c| c.ts.as_str()).collect();
        let mut known: BTreeMap<String, &StoredSession> = BTreeMap::new();
        for s in sessions {
            known.insert(s.item.session.session_id.clone(), s);
            for gone in &s.item.absorbed {
                known.insert(gone.clone(), s);
            }
        }
        // Each root names one session (in its context line).
        let mut posted: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut others = Vec::new();
        for root in &roots {
            let text = root.text();
            let named: Vec<&String> = known
                .keys()
                .filter(|id| text.contains(&format!("session `{id}`")))
                .collect();
            match named.as_slice() {
                [id] => posted
                    .entry((*id).clone())
                    .or_default()
                    .push(root.ts.clone()),
                [] => others.push(root.text()),
                _ => problems.push(format!(
                    "root message {} names sessions {named:?}: {text}",
                    root.ts
                )),
            }
        }
        if others.len() > other_roots {
            problems.push(format!(
                "{} root messages name no session: {others:#?}",
                others.len()
            ));
        }
        for (id, ts) in &posted {
            if ts.len() != 1 {
                problems.push(format!(
                    "session {id} has {} root messages: {ts:?}",
                    ts.len()
                ));
            }
        }
        for s in sessions {
            let session = &s.item.session;
            let id = &session.session_id;
            let Some(ts) = s.item.root_ts.as_deref() else {
                problems.push(format!("session {id} has no root message"));
                continue;
            };
            if s.item.notified_count != session.event_count {
                problems.push(format!(
                    "session {id}: Slack covers {} of {} events",
                    s.item.notified_count, session.event_count
                ));
            }
            match displayed.get(ts) {
                Some(shown) if shown.body["blocks"] == self.expected_root(session) => {}
                Some(shown) => problems.push(format!(
                    "session {id}: root {ts} shows {} instead of {}",
                    shown.body["blocks"],
                    self.expected_root(session)
                )),
                None => problems.push(format!("session {id}: root {ts} was never posted")),
            }
            // Roots of sessions merged into this one point here, or to a
            // session that was itself merged into it later.
            let successors: Vec<&String> = s.item.absorbed.iter().chain([id]).collect();
            for gone in &s.item.absorbed {
                for old_ts in posted.get(gone).into_iter().flatten() {
                    if old_ts == ts {
                        continue;
                    }
                    let notice = self.slack.thread(old_ts).iter().any(|c| {
                        let text = c.text();
                        text.contains("continues in session")
                            && successors
                                .iter()
                                .any(|n| *n != gone && text.contains(n.as_str()))
                    });
                    if !notice {
                        problems.push(format!(
                            "absorbed session {gone} (root {old_ts}) has no notice that it continues in {id}"
                        ));
                    }
                }
            }
        }
        for call in self.slack.calls() {
            if call.method == "chat.postMessage"
                && let Some(thread) = call.thread_ts()
                && !root_ts.contains(thread)
            {
                problems.push(format!("reply in unknown thread {thread}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

/// Sessions whose event count is not the number of events that resolve
/// to them: an event counted twice (or lost from the count).
pub fn miscounted(sessions: &[StoredSession]) -> Vec<String> {
    sessions
        .iter()
        .filter(|s| s.item.session.event_count != s.event_ids.len() as u64)
        .map(|s| {
            format!(
                "session {} counts {} events but {} resolve to it",
                s.item.session.session_id,
                s.item.session.event_count,
                s.event_ids.len()
            )
        })
        .collect()
}
