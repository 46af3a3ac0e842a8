//! Follow rules in this account and region (`glasswatch_core::follow`):
//! installed when the follow topic says to, removed by the heartbeat when
//! their credentials have expired. Each is a rule on the default bus that
//! matches one access key and invokes this agent with the event wrapped
//! (`{"glasswatch_follow": …, "event": …}`).

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::{
    DeadLetterConfig, InputTransformer, RetryPolicy, RuleState, Target,
};
use glasswatch_core::follow::{self, Follow};

/// The most follow rules an agent keeps in its region: a default bus holds
/// 300 rules, and the static ones need their share. A flood of follows
/// (from a compromised account, say) fails loudly here instead of
/// crowding out the rules that watch.
pub const MAX_FOLLOW_RULES: usize = 100;

/// Where follow rules deliver: this agent, and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowTarget {
    pub function_arn: String,
    pub dlq_arn: String,
    /// This account (from the function ARN).
    pub account: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("EventBridge {operation}: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
    #[error("a follow for account {for_account} reached the agent of account {here}")]
    WrongAccount { for_account: String, here: String },
    #[error("{0} follow rules already in this region, the most an agent keeps; not following {1}")]
    TooMany(usize, String),
    #[error("a follow rule cannot be built: {0}")]
    Build(String),
}

fn aws<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
) -> impl Fn(aws_sdk_eventbridge::error::SdkError<E, R>) -> FollowError {
    move |e| FollowError::Aws {
        operation,
        message: format!("{}", aws_sdk_eventbridge::error::DisplayErrorContext(e)),
    }
}

/// The follow rules in this region: (name, until).
async fn rules(client: &Client, prefix: &str) -> Result<Vec<(String, Option<i64>)>, FollowError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_rules()
            .name_prefix(format!("{prefix}-follow-"))
            .set_next_token(token)
            .send()
            .await
            .map_err(aws("ListRules"))?;
        for rule in page.rules() {
            if let Some(name) = rule.name()
                && follow::is_follow_rule(prefix, name)
            {
                out.push((
                    name.to_owned(),
                    rule.description().and_then(follow::until_of),
                ));
            }
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Install (or refresh) the rule following `follow.access_key`. Idempotent:
/// the same follow twice is the same rule.
pub async fn install(
    client: &Client,
    prefix: &str,
    target: &FollowTarget,
    follow: &Follow,
) -> Result<String, FollowError> {
    if follow.account != target.account {
        return Err(FollowError::WrongAccount {
            for_account: follow.account.clone(),
            here: target.account.clone(),
        });
    }
    let name = follow::rule_name(prefix, &follow.access_key);
    let existing = rules(client, prefix).await?;
    if !existing.iter().any(|(n, _)| *n == name) && existing.len() >= MAX_FOLLOW_RULES {
        return Err(FollowError::TooMany(
            existing.len(),
            follow.access_key.clone(),
        ));
    }
    client
        .put_rule()
        .name(&name)
        .description(follow::description(follow))
        .event_pattern(follow::pattern(&follow.access_key).to_string())
        .state(RuleState::EnabledWithAllCloudtrailManagementEvents)
        .send()
        .await
        .map_err(aws("PutRule"))?;
    let build = |e: aws_sdk_eventbridge::error::BuildError| FollowError::Build(e.to_string());
    let transformer = InputTransformer::builder()
        .input_template(follow::input_template(&follow.access_key))
        .build()
        .map_err(build)?;
    let agent = Target::builder()
        .id("agent")
        .arn(&target.function_arn)
        .input_transformer(transformer)
        .dead_letter_config(DeadLetterConfig::builder().arn(&target.dlq_arn).build())
        .retry_policy(
            RetryPolicy::builder()
                .maximum_event_age_in_seconds(86_400)
                .maximum_retry_attempts(185)
                .build(),
        )
        .build()
        .map_err(build)?;
    let out = client
        .put_targets()
        .rule(&name)
        .targets(agent)
        .send()
        .await
        .map_err(aws("PutTargets"))?;
    if out.failed_entry_count() > 0 {
        return Err(FollowError::Aws {
            operation: "PutTargets",
            message: format!("{:?}", out.failed_entries()),
        });
    }
    Ok(name)
}

/// Remove the follow rules whose credentials have expired at `now` (and
/// any whose description no longer says until when). Returns how many.
pub async fn remove_expired(client: &Client, prefix: &str, now: i64) -> Result<usize, FollowError> {
    let mut removed = 0;
    for (name, until) in rules(client, prefix).await? {
        if until.is_some_and(|u| u > now) {
            continue;
        }
        client
            .remove_targets()
            .rule(&name)
            .ids("agent")
            .send()
            .await
            .map_err(aws("RemoveTargets"))?;
        client
            .delete_rule()
            .name(&name)
            .send()
            .await
            .map_err(aws("DeleteRule"))?;
        removed += 1;
    }
    Ok(removed)
}
