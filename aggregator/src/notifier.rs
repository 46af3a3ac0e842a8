//! The Slack sender the handler uses: a [`SlackClient`] whose credential is
//! fetched from Secrets Manager when the first message needs it, not at
//! init, so a Secrets Manager outage at cold start stops no event from
//! being stored (the messages stay pending until it recovers). When Slack
//! says the credential is no longer good (`invalid_auth`, a revoked token,
//! a webhook gone), the secret is fetched again once and the message
//! resent: a rotated token is picked up without a redeploy.

use std::sync::Arc;
use std::time::Instant;

use glasswatch_core::config::SlackMode;
use glasswatch_core::slack::SlackRequest;
use tokio::sync::Mutex;

use crate::config::AggregatorConfig;
use crate::secret;
use crate::slack::{Sent, SlackClient, SlackError};

/// Slack's answers that mean "this credential does not work (any more)".
const BAD_CREDENTIAL: [&str; 6] = [
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "no_service",
];

/// Where the credential comes from.
enum Source {
    /// From Secrets Manager, when needed.
    Secret {
        secrets: aws_sdk_secretsmanager::Client,
        secret_id: String,
        mode: SlackMode,
        api_url: String,
    },
    /// Given ready-made (tests, the local pipeline).
    Fixed,
}

/// Sends Slack requests, fetching the credential lazily.
pub struct Slack {
    source: Source,
    client: Mutex<Option<Arc<SlackClient>>>,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Secret { secret_id, .. } => format!("secret {secret_id}"),
            Source::Fixed => "fixed client".to_owned(),
        };
        f.debug_struct("Slack")
            .field("source", &source)
            .finish_non_exhaustive()
    }
}

impl From<SlackClient> for Slack {
    fn from(client: SlackClient) -> Self {
        Self {
            source: Source::Fixed,
            client: Mutex::new(Some(Arc::new(client))),
        }
    }
}

impl Slack {
    /// A sender whose credential is the configured secret, read when the
    /// first message goes out.
    pub fn from_secret(config: &AggregatorConfig, secrets: aws_sdk_secretsmanager::Client) -> Self {
        Self {
            source: Source::Secret {
                secrets,
                secret_id: config.slack_secret_arn.clone(),
                mode: config.slack_mode,
                api_url: config.slack_api_url.clone(),
            },
            client: Mutex::new(None),
        }
    }

    async fn client(&self, refresh: bool) -> Result<Arc<SlackClient>, SlackError> {
        let mut cached = self.client.lock().await;
        if let Some(client) = cached.as_ref()
            && !(refresh && matches!(self.source, Source::Secret { .. }))
        {
            return Ok(client.clone());
        }
        let Source::Secret {
            secrets,
            secret_id,
            mode,
            api_url,
        } = &self.source
        else {
            return Err(SlackError::Config("no Slack client".into()));
        };
        let credential = |what| async move {
            secret::fetch(secrets, secret_id, what)
                .await
                .map_err(|e| SlackError::Credential(e.to_string()))
        };
        let client = match mode {
            SlackMode::Bot => {
                SlackClient::bot_with_api_base(credential("bot token").await?.expose(), api_url)?
            }
            SlackMode::Webhook => SlackClient::webhook(credential("webhook URL").await?.expose())?,
        };
        let client = Arc::new(client);
        *cached = Some(client.clone());
        Ok(client)
    }

    /// Send one request; a refused credential is fetched again once.
    pub async fn send(
        &self,
        request: &SlackRequest,
        deadline: Instant,
    ) -> Result<Sent, SlackError> {
        match self.client(false).await?.send(request, deadline).await {
            Err(SlackError::Api { code }) if BAD_CREDENTIAL.contains(&code.as_str()) => {
                tracing::warn!(code = %code, "Slack refused the credential; reading the secret again");
                self.client(true).await?.send(request, deadline).await
            }
            other => other,
        }
    }

    /// A message's permalink (bot mode).
    pub async fn permalink(
        &self,
        channel: &str,
        ts: &str,
        deadline: Instant,
    ) -> Result<String, SlackError> {
        self.client(false)
            .await?
            .permalink(channel, ts, deadline)
            .await
    }
}
