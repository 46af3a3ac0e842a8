//! What `cargo xtask demo` prints while the incident plays: each CloudTrail
//! event as one line, and each Slack call as the channel would show it,
//! turned from Block Kit into plain terminal text. Pure: values in, lines
//! out.
//!
//! Everything shown here may carry attacker-chosen text (user agents,
//! session names), so every line goes through
//! [`terminal_safe`](glasswatch_core::audit::terminal_safe).

use std::collections::BTreeMap;

use glasswatch_core::audit::{clip, terminal_safe};
use serde_json::Value;

/// The widest line printed; longer ones are clipped with `…`.
const WIDTH: usize = 150;

/// One CloudTrail event, as it happens: time, where, what, who.
pub fn event_line(record: &Value, account_name: &str) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let time = s(&record["eventTime"]);
    let time = time.get(11..19).unwrap_or(&time).to_owned();
    let source = s(&record["eventSource"]);
    let service = source.trim_end_matches(".amazonaws.com");
    let identity = &record["userIdentity"];
    let who = match identity["type"].as_str() {
        Some("Root") => "root".to_owned(),
        Some("AWSAccount") => format!("account {}", s(&identity["accountId"])),
        _ => identity["arn"]
            .as_str()
            .or_else(|| identity["userName"].as_str())
            .or_else(|| identity["onBehalfOf"]["userId"].as_str())
            .unwrap_or("?")
            .to_owned(),
    };
    let line = format!(
        "{time}  {account_name}/{}  {service}:{}  by {who}",
        s(&record["awsRegion"]),
        s(&record["eventName"]),
    );
    clip(&terminal_safe(&line), WIDTH)
}

/// Slack mrkdwn as plain text: a link shows its label, entities are
/// decoded, code marks dropped, and a line that is wholly bold loses its
/// stars.
pub fn plain(mrkdwn: &str) -> String {
    let mut out = String::with_capacity(mrkdwn.len());
    let mut rest = mrkdwn;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        out.push_str(inner.split_once('|').map_or(inner, |(_, label)| label));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let out = out
        .replace('`', "")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    out.lines()
        .map(|line| {
            let line = without_emoji(line);
            line.strip_prefix('*')
                .and_then(|l| l.strip_suffix('*'))
                .filter(|l| !l.contains('*'))
                .unwrap_or(line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line without its leading emoji code (`:rotating_light: CRITICAL`,
/// `:warning: no`).
fn without_emoji(text: &str) -> &str {
    text.strip_prefix(':')
        .and_then(|rest| rest.split_once(": "))
        .filter(|(code, _)| !code.is_empty() && !code.contains(' '))
        .map_or(text, |(_, after)| after)
}

/// A message's Block Kit blocks as lines: the header, each section's text,
/// each field as `Label: value, value`, and the context line.
pub fn message_lines(body: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(blocks) = body["blocks"].as_array() else {
        lines.extend(
            plain(body["text"].as_str().unwrap_or_default())
                .lines()
                .map(str::to_owned),
        );
        return finish(lines);
    };
    for block in blocks {
        match block["type"].as_str() {
            Some("header") => lines
                .push(without_emoji(block["text"]["text"].as_str().unwrap_or_default()).to_owned()),
            Some("section") => {
                if let Some(text) = block["text"]["text"].as_str() {
                    lines.extend(plain(text).lines().map(str::to_owned));
                }
                for (label, value) in fields(block) {
                    lines.push(format!("{label}: {value}"));
                }
            }
            Some("context") => {
                let parts: Vec<String> = block["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["text"].as_str())
                    .map(plain)
                    .collect();
                lines.push(parts.join(" · "));
            }
            _ => {}
        }
    }
    finish(lines)
}

fn finish(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| clip(&terminal_safe(&l), WIDTH))
        .collect()
}

/// A section's fields: `*Label*\nvalue\nvalue` as (label, "value, value").
fn fields(block: &Value) -> Vec<(String, String)> {
    block["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["text"].as_str())
        .map(|text| {
            let text = plain(text);
            let mut lines = text.lines();
            let label = lines.next().unwrap_or_default().to_owned();
            (label, lines.collect::<Vec<_>>().join(", "))
        })
        .collect()
}

/// One field's value, by label (`Events`), for the one-line update.
pub fn field(body: &Value, label: &str) -> Option<String> {
    body["blocks"]
        .as_array()?
        .iter()
        .flat_map(fields)
        .find(|(l, _)| l == label)
        .map(|(_, v)| v)
}

/// The channel as the demo has seen it: the `ts` of each top-level
/// message, in order, so replies and updates can name their thread.
#[derive(Debug, Default)]
pub struct Channel {
    roots: BTreeMap<String, usize>,
}

impl Channel {
    /// The lines for one accepted call: a new thread, a reply under its
    /// thread's number, or a root message's new summary.
    pub fn show(&mut self, method: &str, ts: &str, body: &Value) -> Vec<String> {
        let lines = message_lines(body);
        let thread = body["thread_ts"].as_str();
        if method == "chat.update" {
            let n = self.number(ts);
            let headline = lines.first().cloned().unwrap_or_default();
            let events = field(body, "Events").unwrap_or_else(|| "?".to_owned());
            let last = field(body, "Last seen").unwrap_or_else(|| "?".to_owned());
            return vec![format!(
                "Slack ↻ thread #{n}'s root now reads: {headline} · {events} events · last seen {last}"
            )];
        }
        let (first, indent) = match thread {
            Some(root) => (
                format!("Slack ↳ reply in thread #{}", self.number(root)),
                "  │ ",
            ),
            None => {
                let n = self.roots.len() + 1;
                self.roots.insert(ts.to_owned(), n);
                (format!("Slack ● new thread #{n}"), "┃ ")
            }
        };
        std::iter::once(first)
            .chain(lines.into_iter().map(|l| format!("{indent}{l}")))
            .collect()
    }

    /// The thread number of the root message `ts` (`?` if unseen).
    pub fn number(&self, ts: &str) -> String {
        self.roots
            .get(ts)
            .map_or_else(|| "?".to_owned(), ToString::to_string)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn plain_text_shows_link_labels_decodes_entities_and_drops_marks() {
        assert_eq!(
            plain("*Who*\n`arn:x` &lt;!channel&gt; &amp; <https://a.example/|the console>"),
            "Who\narn:x <!channel> & the console"
        );
        assert_eq!(plain("*a* and *b*"), "*a* and *b*", "not wholly bold");
        assert_eq!(plain("open <https://x.example"), "open <https://x.example");
    }

    #[test]
    fn attacker_control_characters_never_reach_the_terminal() {
        let body = json!({"text": "x", "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "ua \u{1b}[31mred\u{202e}"}}
        ]});
        let lines = message_lines(&body);
        assert_eq!(lines, vec!["ua \u{fffd}[31mred\u{fffd}"]);
    }

    #[test]
    fn a_root_opens_a_thread_that_replies_and_updates_name() {
        let root = json!({"text": "t", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": ":rotating_light: CRITICAL · Root sign-in"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": "*Account*\n`111122223333` (prod)\n`444455556666` (dev)"},
                {"type": "mrkdwn", "text": "*Events*\n1"},
                {"type": "mrkdwn", "text": "*MFA used*\n:warning: no"}
            ]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "Glasswatch · session `s1`"}]}
        ]});
        let mut channel = Channel::default();
        assert_eq!(
            channel.show("chat.postMessage", "1.1", &root),
            vec![
                "Slack ● new thread #1",
                "┃ CRITICAL · Root sign-in",
                "┃ Account: 111122223333 (prod), 444455556666 (dev)",
                "┃ Events: 1",
                "┃ MFA used: no",
                "┃ Glasswatch · session s1",
            ]
        );
        let reply = json!({"thread_ts": "1.1", "text": "2 new events"});
        assert_eq!(
            channel.show("chat.postMessage", "1.2", &reply),
            vec!["Slack ↳ reply in thread #1", "  │ 2 new events"]
        );
        let update = channel.show("chat.update", "1.1", &root);
        assert_eq!(
            update,
            vec![
                "Slack ↻ thread #1's root now reads: CRITICAL · Root sign-in · 1 events · last seen ?"
            ]
        );
    }

    #[test]
    fn an_event_line_names_time_place_call_and_principal() {
        let record = json!({
            "eventTime": "2026-11-20T09:02:00Z", "awsRegion": "us-east-1",
            "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::1:user/break-glass-1"}
        });
        assert_eq!(
            event_line(&record, "shared-services"),
            "09:02:00  shared-services/us-east-1  signin:ConsoleLogin  by arn:aws:iam::1:user/break-glass-1"
        );
        let root = json!({"eventTime": "x", "userIdentity": {"type": "Root"}});
        assert_eq!(event_line(&root, "prod"), "x  prod/?  ?:?  by root");
    }
}
