//! What Slack should be sent for a session now: the policy shared by the
//! aggregator and `cargo xtask replay --slack`.
//!
//! - No root message yet: post it (after claiming the right to, which is
//!   the shell's job).
//! - New events since the last message: one coalesced digest in the
//!   thread and the root updated with running counts, but not more often
//!   than [`DIGEST_INTERVAL_SECS`] unless flushing (the scheduled tick).

use crate::config::SlackMode;
use crate::session::{Session, SessionEvent};
use crate::slack::{
    RenderContext, SlackRequest, session_digest_of, session_root, session_update_in,
};

/// A thread digest goes out at most this often per session; the tick
/// sends what accumulated in between.
pub const DIGEST_INTERVAL_SECS: i64 = 60;

/// The `ts` recorded for a webhook root message, which has none.
pub const WEBHOOK_ROOT: &str = "webhook";

/// What Slack shows of a session so far, as stored with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlackState {
    /// The root message's `ts` ([`WEBHOOK_ROOT`] for a webhook).
    pub root_ts: Option<String>,
    /// The channel id Slack posted the root message to (bot mode), which
    /// `chat.update` needs; `None` falls back to the configured channel.
    pub root_channel: Option<String>,
    /// Events covered by messages sent.
    pub notified_count: u64,
    pub digest_sent_at: Option<i64>,
    /// The last digest went out but the root's update did not: the root
    /// still shows older counts.
    pub root_stale: bool,
}

/// The next step for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Post the root message; its `ts` becomes the thread.
    Root(SlackRequest),
    /// Send the digest of the new events (to be recorded as sent at
    /// once, so it is never posted twice), then update the root with the
    /// running counts (a failure of which only leaves the root stale).
    Follow {
        digest: Option<SlackRequest>,
        update: Option<SlackRequest>,
    },
    /// New events, but a digest went out too recently: keep pending.
    Defer,
    /// Slack is up to date.
    Nothing,
}

/// Decide what to send for `session` given what was sent before.
/// `new_events` are the events at hand for the digest (this
/// invocation's, and those deferred; may be fewer than the session has
/// that are not yet covered, or none when flushing).
pub fn next_step(
    ctx: &RenderContext,
    session: &Session,
    state: &SlackState,
    new_events: &[SessionEvent],
    now: i64,
    flush: bool,
) -> Step {
    let region = &session.anchor_region;
    let Some(root) = state.root_ts.as_deref() else {
        return Step::Root(session_root(ctx, session, region));
    };
    let thread = (ctx.mode == SlackMode::Bot && root != WEBHOOK_ROOT).then_some(root);
    let update = || {
        thread.map(|ts| {
            let channel = state.root_channel.as_deref().unwrap_or(&ctx.channel);
            session_update_in(ctx, session, region, channel, ts)
        })
    };
    if session.event_count <= state.notified_count {
        return match update() {
            Some(update) if state.root_stale => Step::Follow {
                digest: None,
                update: Some(update),
            },
            _ => Step::Nothing,
        };
    }
    if !flush
        && state
            .digest_sent_at
            .is_some_and(|at| now - at < DIGEST_INTERVAL_SECS)
    {
        return Step::Defer;
    }
    let uncovered =
        usize::try_from(session.event_count - state.notified_count).unwrap_or(usize::MAX);
    Step::Follow {
        digest: session_digest_of(ctx, session, thread, new_events, uncovered),
        update: update(),
    }
}

/// Everything a session's events would make Slack show when they arrive
/// together: the root message, then (if more than the first event) one
/// digest in its thread and the updated root. `root_ts` stands for the
/// `ts` Slack would return. Used by `replay --slack`.
pub fn replay(
    ctx: &RenderContext,
    session: &Session,
    events: &[SessionEvent],
    root_ts: &str,
) -> Vec<SlackRequest> {
    let mut out = Vec::new();
    if let Step::Root(root) = next_step(ctx, session, &SlackState::default(), events, 0, true) {
        out.push(root);
    }
    let later: Vec<SessionEvent> = events
        .iter()
        .filter(|e| e.event_id != session.anchor_event_id)
        .cloned()
        .collect();
    let sent = SlackState {
        root_ts: Some(match ctx.mode {
            SlackMode::Bot => root_ts.to_owned(),
            SlackMode::Webhook => WEBHOOK_ROOT.to_owned(),
        }),
        notified_count: 1,
        ..SlackState::default()
    };
    if let Step::Follow { digest, update } = next_step(ctx, session, &sent, &later, 0, true) {
        out.extend(digest);
        out.extend(update);
    }
    out
}
