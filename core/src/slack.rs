//! Slack messages for break-glass sessions and for the monitor's own
//! health. DESIGN.md §3 and §5.
//!
//! Everything here is pure: a function takes a [`RenderContext`], the facts
//! to report and (where it matters) a time, and returns the
//! [`SlackRequest`] that would go over HTTP. Nothing reads a clock or sends
//! anything; the aggregator's client does that.
//!
//! Every string that comes out of a CloudTrail record, an envelope or an
//! account's own settings is attacker-controlled: principal ARNs, user and
//! session names, user agents, source IPs, event names, summaries, account
//! and trail names. Each one goes through [`escape_inline`] (one line,
//! `&`, `<` and `>` escaped, capped) before it enters any text: Block Kit
//! `mrkdwn` and `plain_text` objects and the fallback `text` alike. So
//! `<!channel>` or `<https://x|y>` in a role session name renders as text,
//! never as a mention or a link, and no string can push a block past
//! Slack's size limits.
//!
//! Two modes ([`SlackMode`]): a bot token posts with `chat.postMessage`,
//! which returns the message `ts` that threads follow-ups and lets
//! `chat.update` refresh a session's root message; an incoming webhook can
//! do neither, so its follow-ups are standalone messages that name the
//! session.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::detect::{DetectionKind, Mfa, Severity};
use crate::session::{Session, SessionEvent};

/// The console domain of the commercial AWS partition.
pub const DEFAULT_CONSOLE_DOMAIN: &str = "console.aws.amazon.com";

/// At most this many events are listed in one digest; the rest are
/// counted on a "…and K more" line.
pub const DIGEST_LINES: usize = 10;

/// Longest a user agent may be once rendered (escaped), `…` included.
pub const MAX_USER_AGENT: usize = 200;

/// Slack's limit on a `section` block's text (characters).
pub const SECTION_TEXT_LIMIT: usize = 3000;
/// Slack's limit on one `section` field's text (characters).
pub const FIELD_TEXT_LIMIT: usize = 2000;
/// Slack's limit on a `header` block's text (characters).
pub const HEADER_TEXT_LIMIT: usize = 150;
/// The fallback `text` is kept under this (Slack truncates long messages
/// and recommends at most 4,000 characters).
pub const FALLBACK_TEXT_LIMIT: usize = 1000;

// Caps on single attacker-controlled values, in rendered characters.
const MAX_PRINCIPAL: usize = 256;
const MAX_SUMMARY: usize = 400;
const MAX_DIGEST_SUMMARY: usize = 120;
const MAX_EVENT_NAME: usize = 64;
const MAX_ACCOUNT_ID: usize = 16;
const MAX_ACCOUNT_NAME: usize = 50;
const MAX_REGION: usize = 24;
const MAX_SOURCE_IP: usize = 64;
const MAX_ID: usize = 64;
const MAX_LOG_FILE: usize = 200;
// How many members of a set a root message lists before "+N more".
const LIST_ACCOUNTS: usize = 10;
const LIST_REGIONS: usize = 10;
const LIST_SOURCE_IPS: usize = 5;
const LIST_USER_AGENTS: usize = 3;
const LIST_OTHER_PRINCIPALS: usize = 3;

/// How messages reach Slack (`[slack] mode` in `glasswatch.toml`): a bot
/// token (`chat.postMessage` and `chat.update`, with threads) or an
/// incoming webhook (one channel, no threads, no updates).
pub use crate::config::SlackMode;

/// What every message needs besides its own facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderContext {
    pub mode: SlackMode,
    /// The channel bot messages go to. `chat.update` needs the channel's
    /// id (`C…`), not its name. Unused by webhooks, whose channel is fixed
    /// when the webhook is created.
    pub channel: String,
    /// Account id → account name, as Organizations reports them. An
    /// account missing here is shown by its id alone.
    pub account_names: BTreeMap<String, String>,
    /// The console link base: links go to
    /// `https://{region}.{console_domain}/cloudtrail/home?region={region}#/events/{eventId}`.
    /// [`DEFAULT_CONSOLE_DOMAIN`] for the commercial partition.
    pub console_domain: String,
}

impl RenderContext {
    /// A context for `mode` and `channel` with no account names and the
    /// commercial console.
    pub fn new(mode: SlackMode, channel: impl Into<String>) -> Self {
        Self {
            mode,
            channel: channel.into(),
            account_names: BTreeMap::new(),
            console_domain: DEFAULT_CONSOLE_DOMAIN.to_owned(),
        }
    }
}

/// A Bot API method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BotMethod {
    #[serde(rename = "chat.postMessage")]
    PostMessage,
    #[serde(rename = "chat.update")]
    Update,
}

impl BotMethod {
    /// The method's name, which is also its path under the API base.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PostMessage => "chat.postMessage",
            Self::Update => "chat.update",
        }
    }
}

/// The JSON body of a message. Fields that do not apply are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    /// Bot mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `chat.update` only: the message to replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
    /// A thread reply: the `ts` of the thread's root message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
    /// The fallback text, shown in notifications and where blocks cannot
    /// be.
    pub text: String,
    pub blocks: Vec<Value>,
    /// `false` on new messages, so Slack never fetches a URL that an
    /// attacker wrote into a field (that would tell them the alert fired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfurl_links: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfurl_media: Option<bool>,
}

/// Exactly what would be sent over HTTP. Serialises to one JSON object:
/// `{"mode":"bot","method":"chat.postMessage","body":{…}}`,
/// `{"mode":"bot","method":"chat.update","body":{…}}` or
/// `{"mode":"webhook","body":{…}}`, so a message that could not be sent
/// can be stored as it is and sent later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum SlackRequest {
    Bot {
        method: BotMethod,
        body: MessageBody,
    },
    Webhook {
        body: MessageBody,
    },
}

impl SlackRequest {
    pub fn body(&self) -> &MessageBody {
        match self {
            Self::Bot { body, .. } | Self::Webhook { body } => body,
        }
    }

    pub fn mode(&self) -> SlackMode {
        match self {
            Self::Bot { .. } => SlackMode::Bot,
            Self::Webhook { .. } => SlackMode::Webhook,
        }
    }
}

// ---------------------------------------------------------------------------
// Escaping

/// Slack mrkdwn escaping: `&` → `&amp;`, `<` → `&lt;`, `>` → `&gt;`, and
/// nothing else. With these three escaped, text cannot form a mention
/// (`<!channel>`, `<@U…>`) or a link (`<https://x|y>`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match entity(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    out
}

fn entity(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}

/// An attacker-controlled value made safe for one line of Slack text:
/// line breaks and other control characters become spaces, invisible
/// direction overrides and zero-width spaces are dropped, `&<>` are
/// escaped as [`escape`] does, and the result is at most `max_chars`
/// characters, ending in `…` when it was cut. The cap counts the escaped
/// text and never splits an entity, so a caller can add caps up to a
/// Slack limit.
pub fn escape_inline(text: &str, max_chars: usize) -> String {
    render_value(text, max_chars, false)
}

/// Like [`escape_inline`], for text that goes inside a code span: a
/// backtick, which would close the span early, becomes `ˋ` (U+02CB).
pub fn escape_code(text: &str, max_chars: usize) -> String {
    render_value(text, max_chars, true)
}

fn render_value(text: &str, max_chars: usize, in_code: bool) -> String {
    if max_chars == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut chars = 0;
    // Byte length of `out` at the last point where it was short enough to
    // take the ellipsis.
    let mut fits = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let piece: &str = match c {
            '\u{200B}' | '\u{FEFF}' | '\u{200E}' | '\u{200F}' => continue,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => continue,
            '\u{2028}' | '\u{2029}' => " ",
            c if c.is_control() => " ",
            '`' if in_code => "\u{02CB}",
            c => match entity(c) {
                Some(e) => e,
                None => c.encode_utf8(&mut buf),
            },
        };
        let n = piece.chars().count();
        if chars + n > max_chars {
            out.truncate(fits);
            out.push('…');
            return out;
        }
        out.push_str(piece);
        chars += n;
        if chars < max_chars {
            fits = out.len();
        }
    }
    out
}

/// A value in a code span. An empty value shows as `(empty)` rather than
/// as two stray backticks.
fn code(text: &str, max_chars: usize) -> String {
    if text.is_empty() {
        return "_(empty)_".to_owned();
    }
    format!("`{}`", escape_code(text, max_chars))
}

/// Trusted text (already built from escaped parts) cut to `max_chars` as a
/// last resort. The budgets below keep texts under their limits, so this
/// should never cut.
fn clip(text: String, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text;
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

// ---------------------------------------------------------------------------
// Small pieces

/// Seconds since the epoch as RFC 3339 UTC (`2026-10-08T14:02:31Z`).
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after the epoch"))
}

/// The CloudTrail console's event-history page for one event, or `None`
/// when `region` is not something a region can be (it comes from the
/// record, so it is checked before it goes into a host name). The event id
/// is percent-encoded.
pub fn console_event_url(console_domain: &str, region: &str, event_id: &str) -> Option<String> {
    let region_ok = !region.is_empty()
        && region.len() <= MAX_REGION
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let domain_ok = !console_domain.is_empty()
        && console_domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !region_ok || !domain_ok || event_id.is_empty() {
        return None;
    }
    let mut id = String::with_capacity(event_id.len());
    for b in event_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            id.push(char::from(b));
        } else {
            let _ = write!(id, "%{b:02X}");
        }
    }
    Some(format!(
        "https://{region}.{console_domain}/cloudtrail/home?region={region}#/events/{id}"
    ))
}

fn severity_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::High => ":warning:",
        Severity::Medium => ":large_orange_diamond:",
        Severity::Info => ":information_source:",
    }
}

fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "CRITICAL",
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Info => "INFO",
    }
}

/// The headline of a session: its most telling kind.
fn kind_title(kinds: &std::collections::BTreeSet<DetectionKind>) -> &'static str {
    const ORDER: [(DetectionKind, &str); 9] = [
        (DetectionKind::RootSignIn, "Root sign-in"),
        (DetectionKind::MonitoringTamper, "Monitoring tampered with"),
        (DetectionKind::BreakGlassSignIn, "Break-glass sign-in"),
        (
            DetectionKind::BreakGlassRoleAssumed,
            "Break-glass role assumed",
        ),
        (
            DetectionKind::BreakGlassSso,
            "Break-glass Identity Center access",
        ),
        (
            DetectionKind::BreakGlassRoleChained,
            "Break-glass session took another role",
        ),
        (
            DetectionKind::BreakGlassCredentialChange,
            "Break-glass credentials changed",
        ),
        (DetectionKind::FailedSignIn, "Failed break-glass sign-in"),
        (
            DetectionKind::SessionActivity,
            "Break-glass session activity",
        ),
    ];
    ORDER
        .iter()
        .find(|(k, _)| kinds.contains(k))
        .map_or("Break-glass session", |(_, t)| t)
}

fn header(severity: Severity, title: &str) -> Value {
    json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": clip(
                format!("{} {} · {title}", severity_emoji(severity), severity_label(severity)),
                HEADER_TEXT_LIMIT,
            ),
            "emoji": true,
        },
    })
}

fn section(text: String) -> Value {
    json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT_LIMIT)},
    })
}

fn fields(fields: Vec<(&str, String)>) -> Value {
    let fields: Vec<Value> = fields
        .into_iter()
        .map(|(label, value)| {
            json!({
                "type": "mrkdwn",
                "text": clip(format!("*{label}*\n{value}"), FIELD_TEXT_LIMIT),
            })
        })
        .collect();
    json!({"type": "section", "fields": fields})
}

fn context(text: String) -> Value {
    json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": clip(text, SECTION_TEXT_LIMIT)}],
    })
}

/// An account as `` `id` (name) ``, or its id alone when the name is not
/// known.
fn account_label(ctx: &RenderContext, account: &str) -> String {
    let id = code(account, MAX_ACCOUNT_ID);
    match ctx.account_names.get(account) {
        Some(name) => format!("{id} ({})", escape_inline(name, MAX_ACCOUNT_NAME)),
        None => id,
    }
}

/// Plain-text account for the fallback text: `id (name)`.
fn account_plain(ctx: &RenderContext, account: &str) -> String {
    let id = escape_inline(account, MAX_ACCOUNT_ID);
    match ctx.account_names.get(account) {
        Some(name) => format!("{id} ({})", escape_inline(name, MAX_ACCOUNT_NAME)),
        None => id,
    }
}

/// The first `max` items joined by `sep`, then `+N more`.
fn list(items: Vec<String>, max: usize, sep: &str) -> String {
    if items.is_empty() {
        return "_none seen_".to_owned();
    }
    let extra = items.len().saturating_sub(max);
    let mut out = items.into_iter().take(max).collect::<Vec<_>>().join(sep);
    if extra > 0 {
        let _ = write!(out, "{sep}+{extra} more");
    }
    out
}

fn mfa_text(mfa: Mfa) -> &'static str {
    match mfa {
        Mfa::Yes => "yes",
        Mfa::No => ":warning: no",
        Mfa::Unknown => "unknown",
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A new message to the context's channel (bot) or the webhook.
fn new_message(
    ctx: &RenderContext,
    text: String,
    blocks: Vec<Value>,
    thread_ts: Option<&str>,
) -> SlackRequest {
    let text = clip(text, FALLBACK_TEXT_LIMIT);
    match ctx.mode {
        SlackMode::Bot => SlackRequest::Bot {
            method: BotMethod::PostMessage,
            body: MessageBody {
                channel: Some(ctx.channel.clone()),
                ts: None,
                thread_ts: thread_ts.map(str::to_owned),
                text,
                blocks,
                unfurl_links: Some(false),
                unfurl_media: Some(false),
            },
        },
        SlackMode::Webhook => SlackRequest::Webhook {
            body: MessageBody {
                channel: None,
                ts: None,
                thread_ts: None,
                text,
                blocks,
                unfurl_links: Some(false),
                unfurl_media: Some(false),
            },
        },
    }
}

// ---------------------------------------------------------------------------
// Sessions

/// The root message of a session: a header with severity and headline, the
/// anchor's summary, the facts (who, accounts with names, regions, source
/// IPs, MFA, user agents, first and last seen, event count, kinds), a link
/// to the anchor event in the CloudTrail console, and the session id.
///
/// `anchor_region` is the region of the session's anchor event, where the
/// console link must point ([`Session`] does not record it).
///
/// Bot mode: a `chat.postMessage` whose `ts` is the session's thread.
/// Webhook mode: a webhook message.
pub fn session_root(ctx: &RenderContext, session: &Session, anchor_region: &str) -> SlackRequest {
    new_message(
        ctx,
        root_fallback(ctx, session),
        root_blocks(ctx, session, anchor_region),
        None,
    )
}

/// The root message of a session again, with its running counts, to
/// replace the message posted as `ts` (`chat.update`). Only bot mode has a
/// `ts`, so this is always a bot request.
pub fn session_update(
    ctx: &RenderContext,
    session: &Session,
    anchor_region: &str,
    ts: &str,
) -> SlackRequest {
    session_update_in(ctx, session, anchor_region, &ctx.channel, ts)
}

/// [`session_update`] of the root message posted as `ts` in `channel`:
/// the channel id Slack answered the post with. `chat.update` refuses a
/// channel name (`#break-glass`), which `chat.postMessage` accepts.
pub fn session_update_in(
    ctx: &RenderContext,
    session: &Session,
    anchor_region: &str,
    channel: &str,
    ts: &str,
) -> SlackRequest {
    SlackRequest::Bot {
        method: BotMethod::Update,
        body: MessageBody {
            channel: Some(channel.to_owned()),
            ts: Some(ts.to_owned()),
            thread_ts: None,
            text: clip(root_fallback(ctx, session), FALLBACK_TEXT_LIMIT),
            blocks: root_blocks(ctx, session, anchor_region),
            unfurl_links: None,
            unfurl_media: None,
        },
    }
}

fn root_fallback(ctx: &RenderContext, session: &Session) -> String {
    let accounts: Vec<String> = session
        .accounts
        .iter()
        .take(3)
        .map(|a| account_plain(ctx, a))
        .collect();
    let more = if session.accounts.len() > 3 {
        format!(" and {} more", session.accounts.len() - 3)
    } else {
        String::new()
    };
    format!(
        "{} {}: {} in {}{more} ({})",
        severity_label(session.severity),
        kind_title(&session.kinds),
        escape_inline(&session.summary, MAX_SUMMARY),
        accounts.join(", "),
        plural(session.event_count, "event", "events"),
    )
}

fn root_blocks(ctx: &RenderContext, session: &Session, anchor_region: &str) -> Vec<Value> {
    let mut who = code(&session.principal, MAX_PRINCIPAL);
    let others: Vec<String> = session
        .principals
        .iter()
        .filter(|p| **p != session.principal)
        .map(|p| code(p, MAX_PRINCIPAL))
        .collect();
    if !others.is_empty() {
        who.push_str("\nalso: ");
        who.push_str(&list(others, LIST_OTHER_PRINCIPALS, "\n"));
    }
    let accounts = session
        .accounts
        .iter()
        .map(|a| account_label(ctx, a))
        .collect();
    let regions = session
        .regions
        .iter()
        .map(|r| escape_inline(r, MAX_REGION))
        .collect();
    let ips = session
        .source_ips
        .iter()
        .map(|ip| code(ip, MAX_SOURCE_IP))
        .collect();
    let agents = session
        .user_agents
        .iter()
        .map(|ua| code(ua, MAX_USER_AGENT))
        .collect();
    let kinds = session
        .kinds
        .iter()
        .map(|k| format!("`{}`", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ");

    let link = match console_event_url(&ctx.console_domain, anchor_region, &session.anchor_event_id)
    {
        Some(url) => format!(
            ":mag: <{url}|Open the first event in the CloudTrail console> ({})",
            code(&session.anchor_event_id, MAX_ID)
        ),
        None => format!(
            ":mag: First event {} (no console link: region {} is not recognised)",
            code(&session.anchor_event_id, MAX_ID),
            code(anchor_region, MAX_REGION)
        ),
    };

    let mut blocks = vec![
        header(session.severity, kind_title(&session.kinds)),
        section(escape_inline(&session.summary, MAX_SUMMARY)),
        fields(vec![
            ("Who", who),
            ("Account", list(accounts, LIST_ACCOUNTS, "\n")),
            ("Region", list(regions, LIST_REGIONS, ", ")),
            ("Source IP", list(ips, LIST_SOURCE_IPS, ", ")),
            ("MFA used", mfa_text(session.mfa).to_owned()),
            ("User agent", list(agents, LIST_USER_AGENTS, "\n")),
            ("First seen", format_time(session.first_seen)),
            ("Last seen", format_time(session.last_seen)),
            ("Events", session.event_count.to_string()),
            ("Kinds", kinds),
        ]),
        section(link),
    ];
    if session.recovered > 0 {
        blocks.push(context(format!(
            ":inbox_tray: {} recovered from the trail: EventBridge did not deliver {}, \
             the organization trail's log files did.",
            plural(session.recovered, "event", "events"),
            if session.recovered == 1 { "it" } else { "them" }
        )));
    }
    blocks.push(context(format!(
        "Glasswatch · session {}",
        code(&session.session_id, MAX_ID)
    )));
    blocks
}

/// One coalesced message for the events that arrived since the last one:
/// at most [`DIGEST_LINES`] lines `time · account / region · eventName ·
/// summary`, in `(time, eventID)` order whatever the input order, then
/// `…and K more (M total)`. A burst of 500 events is one message. An event
/// id listed twice counts once. `None` when there are no events.
///
/// Bot mode with the root's `thread_ts`: a reply in the session's thread.
/// Webhook mode (or a bot without a root `ts`): a standalone message that
/// names the session, since it cannot thread.
pub fn session_digest(
    ctx: &RenderContext,
    session: &Session,
    thread_ts: Option<&str>,
    events: &[SessionEvent],
) -> Option<SlackRequest> {
    session_digest_of(ctx, session, thread_ts, events, 0)
}

/// [`session_digest`] for `total` new events of which `events` are the
/// ones at hand (a store keeps a bounded list of deferred events): the
/// count and the "more" line say `total` when it is the larger.
pub fn session_digest_of(
    ctx: &RenderContext,
    session: &Session,
    thread_ts: Option<&str>,
    events: &[SessionEvent],
    total: usize,
) -> Option<SlackRequest> {
    let mut sorted: Vec<&SessionEvent> = events.iter().collect();
    sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    sorted.dedup_by(|a, b| a.event_id == b.event_id);
    // Events counted but none at hand still make a digest (that counts
    // them), so the thread never silently falls behind the session.
    let severity = sorted
        .iter()
        .map(|e| e.severity)
        .max()
        .or((total > 0).then_some(session.severity))?;
    let total = sorted.len().max(total);

    // Lines are added while they fit the section with room for the
    // "more" line, so even hostile input cannot overflow it.
    const MORE_ROOM: usize = 80;
    let mut body = String::new();
    let mut shown = 0;
    for event in sorted.iter().take(DIGEST_LINES) {
        let line = digest_line(ctx, event);
        let len = body.chars().count() + line.chars().count() + 1;
        if len + MORE_ROOM > SECTION_TEXT_LIMIT {
            break;
        }
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(&line);
        shown += 1;
    }
    if shown < total {
        let _ = write!(body, "\n…and {} more ({total} total)", total - shown);
    }

    let threaded = ctx.mode == SlackMode::Bot && thread_ts.is_some();
    let count = plural(total as u64, "new event", "new events");
    let session_ref = code(&session.session_id, MAX_ID);
    let principal = code(&session.principal, MAX_PRINCIPAL);
    let footer = format!(
        "Glasswatch · session {session_ref} · {} so far",
        plural(session.event_count, "event", "events")
    );
    let (text, blocks) = if threaded {
        (
            format!("{count} in this break-glass session"),
            vec![section(format!("*{count}*\n{body}")), context(footer)],
        )
    } else {
        (
            format!(
                "{count} in break-glass session {} ({})",
                escape_inline(&session.session_id, MAX_ID),
                escape_inline(&session.principal, MAX_PRINCIPAL)
            ),
            vec![
                header(severity, "Break-glass session activity"),
                section(format!("*{count}* in session {session_ref} of {principal}")),
                section(body),
                context(footer),
            ],
        )
    };
    Some(new_message(
        ctx,
        text,
        blocks,
        thread_ts.filter(|_| threaded),
    ))
}

fn digest_line(ctx: &RenderContext, event: &SessionEvent) -> String {
    let mut line = format!(
        "`{}` · {} / {} · {} · {}",
        format_time(event.time),
        account_label(ctx, &event.account),
        escape_inline(&event.region, MAX_REGION),
        code(&event.event_name, MAX_EVENT_NAME),
        escape_inline(&event.summary, MAX_DIGEST_SUMMARY),
    );
    if let Some(recovered) = &event.recovered {
        let _ = write!(
            line,
            " · _recovered from the trail, {} late_",
            format_duration(recovered.late_secs)
        );
    }
    line
}

/// `45s`, `12m 05s`, `3h 02m`, `2d 04h`.
pub fn format_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Events of one account × region that only the trail's log files
/// delivered: the fast path (EventBridge) missed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedByFastPath {
    pub account: String,
    pub region: String,
    /// The log file's object key.
    pub log_file: String,
    /// The missed events: `(eventID, eventName)`, in the file's order.
    pub events: Vec<(String, String)>,
    /// The latest of them, in seconds from event to processing.
    pub late_secs: i64,
}

/// The fast path missed break-glass events (a coverage-style alert, high):
/// they are in their sessions now, marked as recovered from the trail.
pub fn missed_by_fast_path(ctx: &RenderContext, missed: &MissedByFastPath) -> SlackRequest {
    let place = format!(
        "{} / {}",
        account_label(ctx, &missed.account),
        code(&missed.region, MAX_REGION)
    );
    let count = plural(
        missed.events.len() as u64,
        "break-glass event",
        "break-glass events",
    );
    let ids = missed
        .events
        .iter()
        .map(|(id, name)| format!("{} {}", code(name, MAX_EVENT_NAME), code(id, MAX_ID)))
        .collect();
    new_message(
        ctx,
        format!(
            "HIGH: {count} in {} / {} missed by EventBridge, recovered from the trail",
            account_plain(ctx, &missed.account),
            escape_inline(&missed.region, MAX_REGION)
        ),
        vec![
            header(Severity::High, "Missed by the fast path"),
            section(format!(
                "{count} in {place} did not arrive through EventBridge; the organization \
                 trail's log files held them, {} late. They are recovered from the trail and \
                 in their sessions now.",
                format_duration(missed.late_secs)
            )),
            section(list(ids, DIGEST_LINES, "\n")),
            context(format!(
                "Glasswatch · coverage · log file {}",
                code(&missed.log_file, MAX_LOG_FILE)
            )),
        ],
        None,
    )
}

/// Session `absorbed` turned out to be part of session `survivor` (a
/// linking event arrived late) after both had been announced. `survivor`
/// is the session as it stands after the merge, `absorbed` as it was last
/// announced. Bot mode with `absorbed`'s root `ts`: a reply in
/// `absorbed`'s thread. Otherwise a message naming both sessions.
pub fn session_merged(
    ctx: &RenderContext,
    absorbed: &Session,
    survivor: &Session,
    absorbed_thread_ts: Option<&str>,
) -> SlackRequest {
    let threaded = ctx.mode == SlackMode::Bot && absorbed_thread_ts.is_some();
    let from = code(&absorbed.session_id, MAX_ID);
    let to = code(&survivor.session_id, MAX_ID);
    let survivor_desc = format!(
        "started {} by {}",
        format_time(survivor.first_seen),
        code(&survivor.principal, MAX_PRINCIPAL)
    );
    let (text, lead) = if threaded {
        (
            format!(
                "This session continues in session {}",
                escape_inline(&survivor.session_id, MAX_ID)
            ),
            format!(
                ":link: This session continues in session {to} ({survivor_desc}): \
                 a later event linked them. Further activity is reported there."
            ),
        )
    } else {
        (
            format!(
                "Break-glass session {} continues in session {}",
                escape_inline(&absorbed.session_id, MAX_ID),
                escape_inline(&survivor.session_id, MAX_ID)
            ),
            format!(
                ":link: Session {from} of {} continues in session {to} ({survivor_desc}): \
                 a later event linked them. Further activity is reported there.",
                code(&absorbed.principal, MAX_PRINCIPAL)
            ),
        )
    };
    new_message(
        ctx,
        text,
        vec![
            section(lead),
            context(format!(
                "Glasswatch · session {from} merged into {to} · {} in all",
                plural(survivor.event_count, "event", "events")
            )),
        ],
        absorbed_thread_ts.filter(|_| threaded),
    )
}

// ---------------------------------------------------------------------------
// Trust and coverage

/// A signal whose sender does not match the account its record claims
/// (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoofedSignal {
    /// The envelope's `account`, set by EventBridge to the sender; `None`
    /// when the envelope had none, so the sender is unverified.
    pub sender: Option<String>,
    /// The record's `recipientAccountId`.
    pub claimed_account: String,
    pub event_id: String,
    pub event_name: String,
    pub region: String,
    /// When the aggregator received it, seconds since the epoch.
    pub received_at: i64,
    /// Alerts about this sender held back since its last one (one alert
    /// per sender per window; every signal is stored).
    #[serde(default)]
    pub held_back: u64,
    /// Set when the record came from the trail's log file of another
    /// account or region than it names (then `sender` is the file's
    /// account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misplaced: Option<Misplaced>,
}

/// The log file a misplaced record was in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Misplaced {
    pub log_file: String,
    pub file_account: String,
    pub file_region: String,
}

/// A critical alert for a signal the trust check refused: sent by another
/// account than the one its record claims, without a sender at all
/// ("unverified"), or (sender and claim agreeing) from an account that is
/// not trusted. Its events do not join any session.
pub fn spoofed_signal(ctx: &RenderContext, signal: &SpoofedSignal) -> SlackRequest {
    let claimed = account_label(ctx, &signal.claimed_account);
    if let Some(misplaced) = &signal.misplaced {
        return misplaced_record(ctx, signal, misplaced);
    }
    let (lead, sender, text) = match &signal.sender {
        // Sender and claim agree, so the check refused the account itself:
        // it is not in the organization (see `verify`).
        Some(sender) if *sender == signal.claimed_account => (
            format!(
                "A signal from account {claimed} was refused: the sender matches the \
                 account the event claims, but it is not an account Glasswatch trusts."
            ),
            account_label(ctx, sender),
            format!(
                "CRITICAL: untrusted Glasswatch signal from account {}",
                account_plain(ctx, sender)
            ),
        ),
        Some(sender) => (
            format!(
                "A signal claims to be a CloudTrail event of account {claimed}, \
                 but account {} sent it. Someone in that account may be forging alerts \
                 or trying to hide real ones.",
                account_label(ctx, sender)
            ),
            account_label(ctx, sender),
            format!(
                "CRITICAL: spoofed Glasswatch signal: sent by account {}, claims account {}",
                account_plain(ctx, sender),
                account_plain(ctx, &signal.claimed_account)
            ),
        ),
        None => (
            format!(
                "A signal claims to be a CloudTrail event of account {claimed}, \
                 but its envelope names no sender, so where it came from is *unverified*."
            ),
            "*unverified* (the envelope has no account)".to_owned(),
            format!(
                "CRITICAL: unverified Glasswatch signal claiming account {}",
                account_plain(ctx, &signal.claimed_account)
            ),
        ),
    };
    new_message(
        ctx,
        text,
        vec![
            header(Severity::Critical, "Spoofed signal"),
            section(lead),
            fields(vec![
                ("Sender (envelope)", sender),
                ("Claimed account (recipientAccountId)", claimed),
                ("Event name", code(&signal.event_name, MAX_EVENT_NAME)),
                ("Event id", code(&signal.event_id, MAX_ID)),
                ("Region", code(&signal.region, MAX_REGION)),
                ("Received", format_time(signal.received_at)),
            ]),
            context(if signal.held_back > 0 {
                format!(
                    "Glasswatch · trust check: envelope account vs recipientAccountId · {} more from this sender since the last alert (stored, not alerted)",
                    signal.held_back
                )
            } else {
                "Glasswatch · trust check: envelope account vs recipientAccountId".to_owned()
            }),
        ],
        None,
    )
}

/// A record the trail's log file of one account and region holds, though
/// it names another (critical, like a spoofed signal): it joins no
/// session.
fn misplaced_record(
    ctx: &RenderContext,
    signal: &SpoofedSignal,
    misplaced: &Misplaced,
) -> SlackRequest {
    let file_place = format!(
        "{} / {}",
        account_label(ctx, &misplaced.file_account),
        code(&misplaced.file_region, MAX_REGION)
    );
    let claimed_place = format!(
        "{} / {}",
        account_label(ctx, &signal.claimed_account),
        code(&signal.region, MAX_REGION)
    );
    new_message(
        ctx,
        format!(
            "CRITICAL: misplaced record in the trail: the log file of {} / {} holds an event of {} / {}",
            account_plain(ctx, &misplaced.file_account),
            escape_inline(&misplaced.file_region, MAX_REGION),
            account_plain(ctx, &signal.claimed_account),
            escape_inline(&signal.region, MAX_REGION)
        ),
        vec![
            header(Severity::Critical, "Misplaced record in the trail"),
            section(format!(
                "The organization trail's log file of {file_place} holds a break-glass event \
                 of {claimed_place}. CloudTrail writes each account's and region's records to \
                 their own files, so someone else wrote this one into the bucket."
            )),
            fields(vec![
                ("Log file", code(&misplaced.log_file, MAX_LOG_FILE)),
                ("Event name", code(&signal.event_name, MAX_EVENT_NAME)),
                ("Event id", code(&signal.event_id, MAX_ID)),
                ("Read", format_time(signal.received_at)),
            ]),
            context(
                "Glasswatch · trust check: log file key vs recipientAccountId and awsRegion"
                    .to_owned(),
            ),
        ],
        None,
    )
}

/// Why an account×region is no longer watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum CoverageProblem {
    /// No heartbeat for `intervals` heartbeat intervals; the last one came
    /// at `last_heartbeat` (seconds since the epoch).
    MissedHeartbeats { intervals: i64, last_heartbeat: i64 },
    /// The agent reports that no trail logs in the region, so API calls no
    /// longer reach EventBridge. `last_heartbeat` is the report's time.
    TrailNotLogging { last_heartbeat: i64 },
    /// Deploy targeted the account×region, but no heartbeat ever came
    /// since `expected_since`: the agent may never have been deployed.
    NeverReported { intervals: i64, expected_since: i64 },
    /// The agent's dead-letter queue holds `count` events it could not
    /// relay (reported by its heartbeat at `last_heartbeat`).
    DeadLetters { count: u64, last_heartbeat: i64 },
}

/// An account×region stopped being watched: high for silence, critical for
/// a trail that is not logging.
pub fn coverage_alert(
    ctx: &RenderContext,
    account: &str,
    region: &str,
    problem: &CoverageProblem,
) -> SlackRequest {
    let place = format!(
        "{} / {}",
        account_label(ctx, account),
        code(region, MAX_REGION)
    );
    let place_plain = format!(
        "{} / {}",
        account_plain(ctx, account),
        escape_inline(region, MAX_REGION)
    );
    let (severity, title, lead, text, last) = match problem {
        CoverageProblem::MissedHeartbeats {
            intervals,
            last_heartbeat,
        } => (
            Severity::High,
            "Agent silent",
            format!(
                "No heartbeat from {place} for {intervals} intervals. \
                 Break-glass use there may go unseen until the agent is back."
            ),
            format!("HIGH: no Glasswatch heartbeat from {place_plain} for {intervals} intervals"),
            *last_heartbeat,
        ),
        CoverageProblem::TrailNotLogging { last_heartbeat } => (
            Severity::Critical,
            "CloudTrail not logging",
            format!(
                "The agent in {place} reports that no CloudTrail trail is logging. \
                 API calls there no longer reach Glasswatch."
            ),
            format!("CRITICAL: CloudTrail is not logging in {place_plain}"),
            *last_heartbeat,
        ),
        CoverageProblem::NeverReported {
            intervals,
            expected_since,
        } => (
            Severity::High,
            "Agent never reported",
            format!(
                "Deploy covers {place}, but no heartbeat has come from it in {intervals} intervals. \
                 The agent may not be deployed there, so break-glass use may go unseen."
            ),
            format!("HIGH: no Glasswatch heartbeat ever from {place_plain}"),
            *expected_since,
        ),
        CoverageProblem::DeadLetters {
            count,
            last_heartbeat,
        } => (
            Severity::High,
            "Agent dead-lettered events",
            format!(
                "The agent in {place} has {} in its dead-letter queue: events it could not \
                 relay. Look at them (they are the evidence) and redrive them once the cause is fixed.",
                plural(*count, "event", "events")
            ),
            format!(
                "HIGH: {} in the Glasswatch agent's dead-letter queue in {place_plain}",
                plural(*count, "event", "events")
            ),
            *last_heartbeat,
        ),
    };
    new_message(
        ctx,
        text,
        vec![
            header(severity, title),
            section(lead),
            fields(vec![
                ("Account", account_label(ctx, account)),
                ("Region", code(region, MAX_REGION)),
                ("Last heartbeat", format_time(last)),
            ]),
            context("Glasswatch · coverage".to_owned()),
        ],
        None,
    )
}

/// An account×region is watched again (heartbeats arrive and its trail
/// logs) as of `at`.
pub fn coverage_recovered(
    ctx: &RenderContext,
    account: &str,
    region: &str,
    at: i64,
) -> SlackRequest {
    let place = format!(
        "{} / {}",
        account_label(ctx, account),
        code(region, MAX_REGION)
    );
    new_message(
        ctx,
        format!(
            "Recovered: Glasswatch coverage of {} / {} is back",
            account_plain(ctx, account),
            escape_inline(region, MAX_REGION)
        ),
        vec![
            json!({
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": ":white_check_mark: RECOVERED · Coverage restored",
                    "emoji": true,
                },
            }),
            section(format!(
                "{place} is watched again: heartbeats arrive and a trail is logging, as of {}.",
                format_time(at)
            )),
            context("Glasswatch · coverage".to_owned()),
        ],
        None,
    )
}

/// A CloudWatch alarm of Glasswatch's own changed state, as SNS delivered
/// it (the aggregator's queue is subscribed to the alarm topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmNotice {
    pub name: String,
    /// `ALARM` or `OK`.
    pub state: String,
    pub reason: String,
    pub description: String,
    pub account: String,
    pub region: String,
}

/// An alarm went off (high), or came back to `OK`.
pub fn alarm_alert(ctx: &RenderContext, alarm: &AlarmNotice) -> SlackRequest {
    let firing = alarm.state == "ALARM";
    let name = code(&alarm.name, MAX_ID);
    let text = if firing {
        format!(
            "HIGH: Glasswatch alarm {} is firing",
            escape_inline(&alarm.name, MAX_ID)
        )
    } else {
        format!(
            "Recovered: Glasswatch alarm {} is OK",
            escape_inline(&alarm.name, MAX_ID)
        )
    };
    let title = if firing {
        "Glasswatch alarm"
    } else {
        "Glasswatch alarm OK"
    };
    let header_block = if firing {
        header(Severity::High, title)
    } else {
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": ":white_check_mark: RECOVERED · Glasswatch alarm OK", "emoji": true},
        })
    };
    new_message(
        ctx,
        text,
        vec![
            header_block,
            section(format!(
                "{name} is {}: {}",
                code(&alarm.state, MAX_EVENT_NAME),
                escape_inline(&alarm.description, MAX_DIGEST_SUMMARY)
            )),
            fields(vec![
                ("Account", account_label(ctx, &alarm.account)),
                ("Region", code(&alarm.region, MAX_REGION)),
                ("Reason", escape_inline(&alarm.reason, MAX_DIGEST_SUMMARY)),
            ]),
            context("Glasswatch · CloudWatch alarm".to_owned()),
        ],
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_touches_only_the_three_characters() {
        assert_eq!(
            escape("<!channel> & <https://evil|click> *ok* `x`"),
            "&lt;!channel&gt; &amp; &lt;https://evil|click&gt; *ok* `x`"
        );
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn inline_flattens_lines_and_drops_invisible_controls() {
        assert_eq!(escape_inline("a\nb\r\tc\u{2028}d", 100), "a b  c d");
        assert_eq!(escape_inline("ab\u{202E}cd\u{200B}", 100), "abcd");
        assert_eq!(escape_inline("<x>", 100), "&lt;x&gt;");
    }

    #[test]
    fn code_spans_cannot_be_closed_early() {
        assert_eq!(escape_code("a`b", 10), "a\u{02CB}b");
        assert_eq!(
            code("x` <!here> `y", 50),
            "`x\u{02CB} &lt;!here&gt; \u{02CB}y`"
        );
        assert_eq!(code("", 10), "_(empty)_");
        // Outside code spans a backtick is left alone.
        assert_eq!(escape_inline("a`b", 10), "a`b");
    }

    #[test]
    fn caps_count_rendered_characters_and_end_in_an_ellipsis() {
        let ua = "M".repeat(500);
        let capped = escape_inline(&ua, MAX_USER_AGENT);
        assert_eq!(capped.chars().count(), MAX_USER_AGENT);
        assert!(capped.ends_with('…'));
        assert!(capped.starts_with("MMMM"));
        // Exactly at the cap: untouched.
        let exact = "a".repeat(MAX_USER_AGENT);
        assert_eq!(escape_inline(&exact, MAX_USER_AGENT), exact);
        // Short: untouched.
        assert_eq!(escape_inline("curl/8.0", MAX_USER_AGENT), "curl/8.0");
        assert_eq!(escape_inline("anything", 0), "");
        assert_eq!(escape_inline("ab", 1), "…");
    }

    #[test]
    fn caps_never_split_an_entity() {
        // 4 characters of room: "a" + "&lt;" is 5, so the entity is cut
        // whole and "a…" remains.
        assert_eq!(escape_inline("a<<<<", 4), "a…");
        let capped = escape_inline(&"<".repeat(1000), 200);
        assert!(capped.chars().count() <= 200);
        assert!(capped.ends_with("&lt;…"), "{capped}");
        assert_eq!(capped.matches("&lt;").count(), 49);
        // Multi-byte characters are counted as characters, not bytes.
        let capped = escape_inline(&"é".repeat(300), 10);
        assert_eq!(capped, format!("{}…", "é".repeat(9)));
    }

    #[test]
    fn clip_is_a_last_resort_cap() {
        assert_eq!(clip("abcdef".to_owned(), 4), "abc…");
        assert_eq!(clip("abc".to_owned(), 4), "abc");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(format_time(1_791_468_151), "2026-10-08T14:02:31Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(i64::MAX),
            format!("{} s after the epoch", i64::MAX)
        );
    }

    #[test]
    fn console_links_encode_the_event_id_and_refuse_odd_regions() {
        assert_eq!(
            console_event_url(DEFAULT_CONSOLE_DOMAIN, "us-east-1", "ab-12").as_deref(),
            Some(
                "https://us-east-1.console.aws.amazon.com/cloudtrail/home?region=us-east-1#/events/ab-12"
            )
        );
        assert_eq!(
            console_event_url(DEFAULT_CONSOLE_DOMAIN, "eu-west-1", "a|b> c").as_deref(),
            Some(
                "https://eu-west-1.console.aws.amazon.com/cloudtrail/home?region=eu-west-1#/events/a%7Cb%3E%20c"
            )
        );
        assert_eq!(
            console_event_url(DEFAULT_CONSOLE_DOMAIN, "evil.com/x?", "id"),
            None
        );
        assert_eq!(console_event_url(DEFAULT_CONSOLE_DOMAIN, "", "id"), None);
        assert_eq!(console_event_url("evil.com/", "us-east-1", "id"), None);
        assert_eq!(
            console_event_url(DEFAULT_CONSOLE_DOMAIN, "us-east-1", ""),
            None
        );
    }

    #[test]
    fn lists_name_how_many_more() {
        let items: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        assert_eq!(list(items.clone(), 3, ", "), "0, 1, 2, +2 more");
        assert_eq!(list(items, 5, ", "), "0, 1, 2, 3, 4");
        assert_eq!(list(Vec::new(), 5, ", "), "_none seen_");
    }

    #[test]
    fn headline_prefers_the_most_telling_kind() {
        let kinds = [DetectionKind::SessionActivity, DetectionKind::RootSignIn]
            .into_iter()
            .collect();
        assert_eq!(kind_title(&kinds), "Root sign-in");
        assert_eq!(kind_title(&Default::default()), "Break-glass session");
    }

    fn hostile_session() -> Session {
        let big = |c: char| c.to_string().repeat(5000);
        let event = SessionEvent {
            event_id: big('<'),
            time: 1_791_468_151,
            event_time: "2026-10-08T14:02:31Z".into(),
            event_source: "sts.amazonaws.com".into(),
            event_name: big('`'),
            account: big('&'),
            region: big('>'),
            principal: big('<'),
            severity: Severity::Critical,
            kinds: DetectionKind::ALL.into_iter().collect(),
            keys: Default::default(),
            summary: big('<'),
            source_ip: Some(big('&')),
            user_agent: Some(big('<')),
            mfa: Mfa::No,
            error_code: None,
            recovered: None,
        };
        let mut session = Session::of(&event);
        for i in 0..40 {
            let mut e = event.clone();
            e.event_id = format!("{i}{}", big('<'));
            e.account = format!("{i}{}", big('&'));
            e.principal = format!("{i}{}", big('<'));
            e.user_agent = Some(format!("{i}{}", big('>')));
            e.source_ip = Some(format!("{i}{}", big('&')));
            e.region = format!("{i}{}", big('>'));
            session = session.with_event(&e);
        }
        session
    }

    /// Walk a body and check every text object against Slack's limits.
    fn assert_within_limits(body: &MessageBody) {
        assert!(body.text.chars().count() <= FALLBACK_TEXT_LIMIT);
        for block in &body.blocks {
            let kind = block["type"].as_str().unwrap();
            let count = |v: &Value| v.as_str().unwrap().chars().count();
            match kind {
                "header" => assert!(count(&block["text"]["text"]) <= HEADER_TEXT_LIMIT),
                "section" => {
                    if let Some(text) = block.get("text") {
                        assert!(count(&text["text"]) <= SECTION_TEXT_LIMIT);
                    }
                    if let Some(fields) = block.get("fields") {
                        let fields = fields.as_array().unwrap();
                        assert!(fields.len() <= 10);
                        for f in fields {
                            assert!(count(&f["text"]) <= FIELD_TEXT_LIMIT);
                        }
                    }
                }
                "context" => {
                    for e in block["elements"].as_array().unwrap() {
                        assert!(count(&e["text"]) <= SECTION_TEXT_LIMIT);
                    }
                }
                other => panic!("unexpected block {other}"),
            }
        }
    }

    #[test]
    fn hostile_input_stays_within_slack_limits() {
        let session = hostile_session();
        let mut ctx = RenderContext::new(SlackMode::Bot, "C0123");
        for account in &session.accounts {
            ctx.account_names.insert(account.clone(), "<".repeat(5000));
        }
        let mut recovered = session.clone();
        recovered.recovered = u64::MAX;
        let root = session_root(
            &ctx,
            &recovered,
            &session.regions.iter().next().unwrap().clone(),
        );
        assert_within_limits(root.body());
        assert_within_limits(session_update(&ctx, &session, "r", "1.2").body());

        let events: Vec<SessionEvent> = (0..30)
            .map(|i| SessionEvent {
                event_id: format!("{i:03}{}", "<".repeat(3000)),
                time: i,
                event_time: String::new(),
                event_source: String::new(),
                event_name: "<".repeat(3000),
                account: session.accounts.iter().next().unwrap().clone(),
                region: ">".repeat(3000),
                principal: String::new(),
                severity: Severity::Info,
                kinds: Default::default(),
                keys: Default::default(),
                summary: "&".repeat(3000),
                source_ip: None,
                user_agent: None,
                mfa: Mfa::Unknown,
                error_code: None,
                recovered: Some(crate::session::Recovered {
                    log_file: "<".repeat(3000),
                    late_secs: i,
                }),
            })
            .collect();
        for mode in [SlackMode::Bot, SlackMode::Webhook] {
            ctx.mode = mode;
            let digest = session_digest(&ctx, &session, Some("1.2"), &events).unwrap();
            assert_within_limits(digest.body());
            let text = &digest.body().blocks;
            let listing = text
                .iter()
                .filter_map(|b| b["text"]["text"].as_str())
                .find(|t| t.contains("more ("))
                .unwrap();
            assert!(listing.ends_with("(30 total)"), "{listing}");
            assert_within_limits(session_merged(&ctx, &session, &session, Some("1.2")).body());
            assert_within_limits(
                spoofed_signal(
                    &ctx,
                    &SpoofedSignal {
                        sender: Some("<".repeat(5000)),
                        claimed_account: "<".repeat(5000),
                        event_id: "<".repeat(5000),
                        event_name: "<".repeat(5000),
                        region: "<".repeat(5000),
                        received_at: 0,
                        held_back: 0,
                        misplaced: Some(Misplaced {
                            log_file: "<".repeat(5000),
                            file_account: "<".repeat(5000),
                            file_region: "<".repeat(5000),
                        }),
                    },
                )
                .body(),
            );
            assert_within_limits(
                missed_by_fast_path(
                    &ctx,
                    &MissedByFastPath {
                        account: "<".repeat(5000),
                        region: "<".repeat(5000),
                        log_file: "<".repeat(5000),
                        events: (0..100)
                            .map(|_| ("<".repeat(5000), "<".repeat(5000)))
                            .collect(),
                        late_secs: 1,
                    },
                )
                .body(),
            );
            let problem = CoverageProblem::MissedHeartbeats {
                intervals: 3,
                last_heartbeat: 0,
            };
            assert_within_limits(
                coverage_alert(&ctx, &"<".repeat(5000), &"<".repeat(5000), &problem).body(),
            );
            assert_within_limits(
                coverage_recovered(&ctx, &"<".repeat(5000), &"<".repeat(5000), 0).body(),
            );
        }
    }

    #[test]
    fn an_empty_digest_is_no_message() {
        let session = hostile_session();
        let ctx = RenderContext::new(SlackMode::Bot, "C0123");
        assert_eq!(session_digest(&ctx, &session, Some("1.2"), &[]), None);
    }

    #[test]
    fn requests_serialise_with_mode_and_method_and_round_trip() {
        let ctx = RenderContext::new(SlackMode::Bot, "C0123");
        let req = coverage_recovered(&ctx, "111122223333", "eu-west-1", 0);
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["mode"], "bot");
        assert_eq!(json["method"], "chat.postMessage");
        assert_eq!(json["body"]["channel"], "C0123");
        assert!(json["body"].get("thread_ts").is_none());
        let back: SlackRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, req);

        let ctx = RenderContext::new(SlackMode::Webhook, "ignored");
        let req = coverage_recovered(&ctx, "111122223333", "eu-west-1", 0);
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["mode"], "webhook");
        assert!(json.get("method").is_none());
        assert!(json["body"].get("channel").is_none());
    }
}
