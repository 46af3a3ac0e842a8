//! The Slack credential from Secrets Manager, fetched once per container.
//!
//! The secret is the bot token (`xoxb-…`) or the webhook URL, either as
//! the plain secret string or as JSON `{"token": "…"}` /
//! `{"webhook_url": "…"}`. The value never reaches a log: [`Secret`]'s
//! `Debug` prints a placeholder.

use std::fmt;

/// A secret string that does not print itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Secrets Manager GetSecretValue {id}: {message}")]
    Fetch { id: String, message: String },
    #[error(
        "secret {id} holds no usable {what} (plain string, or JSON with `token` or `webhook_url`)"
    )]
    Empty { id: String, what: &'static str },
}

/// Pick the credential out of the secret's text.
pub fn parse(id: &str, text: &str, what: &'static str) -> Result<Secret, SecretError> {
    let empty = || SecretError::Empty {
        id: id.to_owned(),
        what,
    };
    let text = text.trim();
    let value = if text.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|_| empty())?;
        ["token", "webhook_url", "url"]
            .iter()
            .find_map(|k| json.get(*k).and_then(serde_json::Value::as_str))
            .map(str::to_owned)
            .ok_or_else(empty)?
    } else {
        text.to_owned()
    };
    if value.trim().is_empty() {
        return Err(empty());
    }
    Ok(Secret(value))
}

/// Fetch and parse the secret.
pub async fn fetch(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    what: &'static str,
) -> Result<Secret, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| SecretError::Fetch {
            id: id.to_owned(),
            message: format!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)),
        })?;
    parse(id, out.secret_string().unwrap_or_default(), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_json_secrets() {
        assert_eq!(parse("s", "xoxb-1\n", "token").unwrap().expose(), "xoxb-1");
        assert_eq!(
            parse("s", r#"{"token":"xoxb-2"}"#, "token")
                .unwrap()
                .expose(),
            "xoxb-2"
        );
        assert_eq!(
            parse(
                "s",
                r#"{"webhook_url":"https://hooks.slack.com/services/x"}"#,
                "webhook URL"
            )
            .unwrap()
            .expose(),
            "https://hooks.slack.com/services/x"
        );
        assert!(parse("s", r#"{"other":"x"}"#, "token").is_err());
        assert!(parse("s", "  ", "token").is_err());
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("xoxb-very-secret");
        assert!(!format!("{s:?}").contains("very-secret"));
    }
}
