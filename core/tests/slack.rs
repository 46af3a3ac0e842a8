//! Slack rendering: the exact requests for sessions, digests, merges,
//! spoofed signals and coverage, pinned as insta JSON snapshots, and the
//! escaping of attacker-chosen strings end to end.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

/// A JSON snapshot with object keys sorted: `serde_json`'s
/// `preserve_order` may be on through feature unification in a workspace
/// build and off in a single-crate one, and the snapshot must not care.
macro_rules! snap {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ sort_maps => true }, {
            insta::assert_json_snapshot!($name, $value);
        })
    };
}

use std::collections::{BTreeMap, BTreeSet};

use glasswatch_core::notify::{SlackState, Step, next_step};
use glasswatch_core::session::{Recovered, Session, SessionEvent};
use glasswatch_core::slack::{
    CoverageProblem, Misplaced, MissedByFastPath, RenderContext, SlackMode, SlackRequest,
    SpoofedSignal, coverage_alert, coverage_recovered, missed_by_fast_path, session_digest,
    session_merged, session_root, session_update, spoofed_signal,
};
use glasswatch_core::{DetectionKind, Mfa};
use serde_json::Value;

/// 2026-10-08T14:02:31Z
const T0: i64 = 1_791_468_151;
const ROOT_TS: &str = "1791468152.000100";

fn ctx(mode: SlackMode) -> RenderContext {
    let mut ctx = RenderContext::new(mode, "C0SECURITY");
    ctx.account_names = BTreeMap::from([
        ("111122223333".to_owned(), "prod".to_owned()),
        ("444455556666".to_owned(), "shared-services".to_owned()),
    ]);
    ctx
}

#[allow(clippy::too_many_arguments)]
fn event(
    id: &str,
    time: i64,
    name: &str,
    account: &str,
    region: &str,
    principal: &str,
    kind: DetectionKind,
    summary: &str,
) -> SessionEvent {
    SessionEvent {
        event_id: id.to_owned(),
        time,
        event_time: String::new(),
        event_source: "sts.amazonaws.com".to_owned(),
        event_name: name.to_owned(),
        account: account.to_owned(),
        region: region.to_owned(),
        principal: principal.to_owned(),
        severity: kind.default_severity(),
        kinds: BTreeSet::from([kind]),
        keys: BTreeSet::new(),
        summary: summary.to_owned(),
        source_ip: Some("203.0.113.7".to_owned()),
        user_agent: Some(
            "aws-cli/2.15.0 Python/3.11.6 Linux/6.5.0 exe/x86_64.ubuntu.22".to_owned(),
        ),
        mfa: Mfa::Yes,
        error_code: None,
        recovered: None,
    }
}

const ROLE_SESSION: &str = "arn:aws:sts::444455556666:assumed-role/BreakGlassRole/alice-emergency";

fn anchor() -> SessionEvent {
    event(
        "6f1c2d3e-0a1b-4c5d-8e9f-001122334455",
        T0,
        "AssumeRole",
        "444455556666",
        "us-east-1",
        "arn:aws:iam::111122223333:user/alice",
        DetectionKind::BreakGlassRoleAssumed,
        "arn:aws:iam::111122223333:user/alice assumed BreakGlassRole as session alice-emergency",
    )
}

fn activity(i: i64) -> SessionEvent {
    let mut e = event(
        &format!("a0000000-0000-4000-8000-{i:012}"),
        T0 + 60 + i,
        "ListUsers",
        "444455556666",
        if i % 2 == 0 { "us-east-1" } else { "eu-west-1" },
        ROLE_SESSION,
        DetectionKind::SessionActivity,
        &format!("{ROLE_SESSION} called iam:ListUsers"),
    );
    e.event_source = "iam.amazonaws.com".to_owned();
    e.source_ip = Some("198.51.100.20".to_owned());
    e
}

/// The anchor and its first follow-up.
fn base_session() -> Session {
    Session::of(&anchor()).with_event(&activity(1))
}

/// A role session's call back in the caller's account.
fn hop() -> SessionEvent {
    let mut e = event(
        "0b1b2b3b-0000-4000-8000-000000000099",
        T0 + 30,
        "GetCallerIdentity",
        "111122223333",
        "eu-west-1",
        ROLE_SESSION,
        DetectionKind::SessionActivity,
        &format!("{ROLE_SESSION} called sts:GetCallerIdentity"),
    );
    e.mfa = Mfa::Unknown;
    e
}

/// Three events in two accounts and two regions.
fn session() -> Session {
    base_session().with_event(&hop())
}

fn json_line(request: &SlackRequest) -> String {
    serde_json::to_string(request).unwrap()
}

fn blocks(request: &SlackRequest) -> &[Value] {
    &request.body().blocks
}

/// All text of the request's blocks, one string per text object.
fn texts(request: &SlackRequest) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(t)) = map.get("text") {
                    out.push(t.clone());
                }
                for child in map.values() {
                    walk(child, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for b in blocks(request) {
        walk(b, &mut out);
    }
    out
}

#[test]
fn root_message_bot() {
    let request = session_root(&ctx(SlackMode::Bot), &session(), "us-east-1");
    let line = json_line(&request);
    assert!(
        line.starts_with(
            r#"{"mode":"bot","method":"chat.postMessage","body":{"channel":"C0SECURITY","#
        ),
        "{line}"
    );
    assert!(!line.contains('\n'));
    let body = request.body();
    assert_eq!(body.thread_ts, None);
    assert_eq!(body.ts, None);
    assert_eq!(blocks(&request)[0]["type"], "header");
    let all = texts(&request).join("\n");
    assert!(all.contains("CRITICAL · Break-glass role assumed"));
    assert!(all.contains("`444455556666` (shared-services)"));
    assert!(all.contains("*Account*\n`111122223333` (prod)\n`444455556666` (shared-services)"));
    assert!(all.contains("*Region*\neu-west-1, us-east-1"));
    assert!(all.contains("*First seen*\n2026-10-08T14:02:31Z"));
    assert!(all.contains("*Events*\n3"));
    assert!(all.contains("*MFA used*\nyes"));
    assert!(all.contains(
        "<https://us-east-1.console.aws.amazon.com/cloudtrail/home?region=us-east-1#/events/6f1c2d3e-0a1b-4c5d-8e9f-001122334455|"
    ));
    assert!(all.contains(&session().session_id));
    snap!("root_bot", request);
}

#[test]
fn root_update_carries_ts_and_running_counts() {
    let mut s = session();
    for i in 2..=41 {
        s = s.with_event(&activity(i));
    }
    let request = session_update(&ctx(SlackMode::Bot), &s, "us-east-1", ROOT_TS);
    let line = json_line(&request);
    assert!(line.starts_with(r#"{"mode":"bot","method":"chat.update","body":{"#));
    assert_eq!(request.body().ts.as_deref(), Some(ROOT_TS));
    assert_eq!(request.body().thread_ts, None);
    assert_eq!(request.body().channel.as_deref(), Some("C0SECURITY"));
    let all = texts(&request).join("\n");
    assert!(all.contains("*Events*\n43"));
    assert!(all.contains("*Last seen*\n2026-10-08T14:04:12Z"));
    // Same layout as the root, only the counts move.
    let root = session_root(&ctx(SlackMode::Bot), &s, "us-east-1");
    assert_eq!(root.body().blocks, request.body().blocks);
    snap!("root_update", request);
}

fn burst(n: i64) -> Vec<SessionEvent> {
    // Deliberately out of order: odd indices first, then even, reversed.
    let mut events: Vec<SessionEvent> = (0..n).filter(|i| i % 2 == 1).map(activity).collect();
    events.extend((0..n).filter(|i| i % 2 == 0).rev().map(activity));
    events
}

#[test]
fn digest_of_500_events_is_one_threaded_message() {
    let events = burst(500);
    let mut s = session();
    for e in &events {
        s = s.with_event(e);
    }
    let request = session_digest(&ctx(SlackMode::Bot), &s, Some(ROOT_TS), &events).unwrap();
    assert_eq!(request.body().thread_ts.as_deref(), Some(ROOT_TS));
    assert_eq!(request.body().channel.as_deref(), Some("C0SECURITY"));

    let section = blocks(&request)[0]["text"]["text"].as_str().unwrap();
    let lines: Vec<&str> = section.lines().collect();
    // A heading, ten events, the "more" line.
    assert_eq!(lines.len(), 12, "{section}");
    assert_eq!(lines[0], "*500 new events*");
    assert_eq!(lines[11], "…and 490 more (500 total)");
    // Earliest first, whatever the input order.
    assert!(lines[1].starts_with(
        "`2026-10-08T14:03:31Z` · `444455556666` (shared-services) / us-east-1 · `ListUsers` · "
    ));
    assert!(lines[10].starts_with("`2026-10-08T14:03:40Z` "));
    assert!(lines[1..11].iter().all(|l| l.contains("`ListUsers`")));

    let mut reversed = events.clone();
    reversed.reverse();
    let again = session_digest(&ctx(SlackMode::Bot), &s, Some(ROOT_TS), &reversed).unwrap();
    assert_eq!(again, request);

    // A redelivered event is one event.
    let mut doubled = events.clone();
    doubled.extend(events.iter().take(5).cloned());
    let deduped = session_digest(&ctx(SlackMode::Bot), &s, Some(ROOT_TS), &doubled).unwrap();
    assert_eq!(deduped, request);

    snap!("digest_bot_500", request);
}

#[test]
fn small_digest_lists_every_event_without_a_more_line() {
    let events = burst(3);
    let request = session_digest(&ctx(SlackMode::Bot), &session(), Some(ROOT_TS), &events).unwrap();
    let section = blocks(&request)[0]["text"]["text"].as_str().unwrap();
    assert_eq!(section.lines().count(), 4, "{section}");
    assert!(!section.contains("more"));
    assert!(section.starts_with("*3 new events*\n"));
}

#[test]
fn webhook_root_and_digest_name_the_session() {
    let s = session();
    let root = session_root(&ctx(SlackMode::Webhook), &s, "us-east-1");
    let line = json_line(&root);
    assert!(line.starts_with(r#"{"mode":"webhook","body":{"#), "{line}");
    assert_eq!(root.body().channel, None);
    assert_eq!(root.body().thread_ts, None);
    // Same facts as the bot's root.
    let bot = session_root(&ctx(SlackMode::Bot), &s, "us-east-1");
    assert_eq!(root.body().blocks, bot.body().blocks);
    snap!("root_webhook", root);

    let events = burst(25);
    let s = events.iter().fold(s, |s, e| s.with_event(e));
    // Even with a ts at hand, a webhook cannot thread.
    let digest = session_digest(&ctx(SlackMode::Webhook), &s, Some(ROOT_TS), &events).unwrap();
    assert_eq!(digest.body().thread_ts, None);
    assert!(digest.body().text.contains(&s.session_id));
    let all = texts(&digest).join("\n");
    assert!(all.contains(&format!("in session `{}`", s.session_id)));
    assert!(all.contains("…and 15 more (25 total)"));
    assert!(all.contains("28 events so far"));
    snap!("digest_webhook", digest);
}

#[test]
fn bot_digest_without_a_root_ts_stands_alone() {
    let s = session();
    let digest = session_digest(&ctx(SlackMode::Bot), &s, None, &burst(2)).unwrap();
    assert_eq!(digest.body().thread_ts, None);
    assert!(digest.body().text.contains(&s.session_id));
    assert_eq!(blocks(&digest)[0]["type"], "header");
}

#[test]
fn merged_notice_threads_in_the_absorbed_session() {
    let absorbed = Session::of(&hop());
    let survivor = base_session().merge(&absorbed);
    let bot = session_merged(&ctx(SlackMode::Bot), &absorbed, &survivor, Some(ROOT_TS));
    assert_eq!(bot.body().thread_ts.as_deref(), Some(ROOT_TS));
    let text = texts(&bot).join("\n");
    assert!(text.contains(&format!("continues in session `{}`", survivor.session_id)));
    assert!(text.contains("3 events in all"));
    snap!("merged_bot", bot);

    let hook = session_merged(
        &ctx(SlackMode::Webhook),
        &absorbed,
        &survivor,
        Some(ROOT_TS),
    );
    assert_eq!(hook.body().thread_ts, None);
    let text = texts(&hook).join("\n");
    assert!(text.contains(&format!(
        "Session `{}` of `{ROLE_SESSION}` continues in session `{}`",
        absorbed.session_id, survivor.session_id
    )));
    snap!("merged_webhook", hook);
}

#[test]
fn spoofed_signal_alerts() {
    let mut signal = SpoofedSignal {
        sender: Some("999988887777".to_owned()),
        claimed_account: "111122223333".to_owned(),
        event_id: "0d0e0a0d-beef-4000-8000-000000000001".to_owned(),
        event_name: "ConsoleLogin".to_owned(),
        region: "us-east-1".to_owned(),
        received_at: T0,
        held_back: 0,
        misplaced: None,
    };
    let request = spoofed_signal(&ctx(SlackMode::Bot), &signal);
    assert_eq!(
        request.body().text,
        "CRITICAL: spoofed Glasswatch signal: sent by account 999988887777, claims account 111122223333 (prod)"
    );
    assert!(texts(&request)[0].contains("CRITICAL · Spoofed signal"));
    snap!("spoofed", request);

    signal.sender = Some("111122223333".to_owned());
    let request = spoofed_signal(&ctx(SlackMode::Bot), &signal);
    assert_eq!(
        request.body().text,
        "CRITICAL: untrusted Glasswatch signal from account 111122223333 (prod)"
    );
    assert!(texts(&request).join("\n").contains("was refused"));

    signal.sender = None;
    let request = spoofed_signal(&ctx(SlackMode::Webhook), &signal);
    let all = texts(&request).join("\n");
    assert!(all.contains("*unverified*"));
    assert!(request.body().text.contains("unverified"));
    snap!("spoofed_unverified", request);
}

#[test]
fn coverage_alerts_and_recovery() {
    let c = ctx(SlackMode::Bot);
    let silent = coverage_alert(
        &c,
        "111122223333",
        "ap-southeast-2",
        &CoverageProblem::MissedHeartbeats {
            intervals: 3,
            last_heartbeat: T0 - 900,
        },
    );
    let all = texts(&silent).join("\n");
    assert!(all.contains("HIGH · Agent silent"));
    assert!(all.contains("for 3 intervals"));
    assert!(all.contains("*Last heartbeat*\n2026-10-08T13:47:31Z"));
    snap!("coverage_silent", silent);

    let trail = coverage_alert(
        &c,
        "444455556666",
        "eu-north-1",
        &CoverageProblem::TrailNotLogging { last_heartbeat: T0 },
    );
    assert!(
        texts(&trail)
            .join("\n")
            .contains("CRITICAL · CloudTrail not logging")
    );
    snap!("coverage_trail_not_logging", trail);

    let recovered = coverage_recovered(&c, "111122223333", "ap-southeast-2", T0 + 600);
    assert!(recovered.body().text.starts_with("Recovered"));
    snap!("coverage_recovered", recovered);
}

#[test]
fn unknown_accounts_show_their_id_alone() {
    let c = RenderContext::new(SlackMode::Bot, "C0SECURITY");
    let request = session_root(&c, &session(), "us-east-1");
    let all = texts(&request).join("\n");
    assert!(
        texts(&request)
            .iter()
            .any(|t| t == "*Account*\n`111122223333`\n`444455556666`"),
        "{all}"
    );
    assert!(!all.contains("shared-services"));
    assert!(!all.contains("prod"));
}

#[test]
fn long_user_agents_are_capped() {
    let mut e = anchor();
    e.user_agent = Some("A".repeat(5000));
    let request = session_root(&ctx(SlackMode::Bot), &Session::of(&e), "us-east-1");
    let ua = texts(&request)
        .into_iter()
        .find(|t| t.starts_with("*User agent*"))
        .unwrap();
    let value = ua.trim_start_matches("*User agent*\n");
    // Two backticks around at most 200 characters, the last an ellipsis.
    assert_eq!(value.chars().count(), 202, "{value}");
    assert!(value.ends_with("A…`"));
}

#[test]
fn attacker_strings_never_reach_slack_unescaped() {
    const PRINCIPAL: &str = "arn:aws:sts::111122223333:assumed-role/BreakGlassRole/<!channel>";
    const AGENT: &str = "Mozilla/5.0 <https://evil|click> <!channel>";
    let mut e = event(
        "<https://evil|click>",
        T0,
        "<!channel>",
        "111122223333",
        "us-east-1",
        PRINCIPAL,
        DetectionKind::BreakGlassRoleAssumed,
        &format!("<https://evil|click> assumed BreakGlassRole as {PRINCIPAL}"),
    );
    e.user_agent = Some(AGENT.to_owned());
    e.source_ip = Some("<!channel>".to_owned());
    let s = Session::of(&e);
    // (request, whether the fake link was put in a field long enough to
    // show it whole; a region, say, is capped first and ends in `…`)
    let mut requests: Vec<(SlackRequest, bool)> = Vec::new();
    for mode in [SlackMode::Bot, SlackMode::Webhook] {
        let c = ctx(mode);
        requests.push((session_root(&c, &s, "us-east-1"), true));
        requests.push((session_update(&c, &s, "us-east-1", ROOT_TS), true));
        let one = std::slice::from_ref(&e);
        requests.push((session_digest(&c, &s, Some(ROOT_TS), one).unwrap(), true));
        requests.push((session_digest(&c, &s, None, one).unwrap(), true));
        requests.push((session_merged(&c, &s, &s, Some(ROOT_TS)), false));
        requests.push((
            spoofed_signal(
                &c,
                &SpoofedSignal {
                    sender: Some("<!channel>".to_owned()),
                    claimed_account: "<https://evil|click>".to_owned(),
                    event_id: "<!channel>".to_owned(),
                    event_name: "<https://evil|click>".to_owned(),
                    region: "<!channel>".to_owned(),
                    received_at: T0,
                    held_back: 0,
                    misplaced: None,
                },
            ),
            true,
        ));
        requests.push((
            coverage_alert(
                &c,
                "<!channel>",
                "<https://evil|click>",
                &CoverageProblem::TrailNotLogging { last_heartbeat: T0 },
            ),
            false,
        ));
        requests.push((
            coverage_recovered(&c, "<!channel>", "<https://evil|click>", T0),
            false,
        ));
        requests.push((
            spoofed_signal(
                &c,
                &SpoofedSignal {
                    sender: Some("<!channel>".to_owned()),
                    claimed_account: "<!channel>".to_owned(),
                    event_id: "<https://evil|click>".to_owned(),
                    event_name: "<!channel>".to_owned(),
                    region: "<!channel>".to_owned(),
                    received_at: T0,
                    held_back: 0,
                    misplaced: Some(Misplaced {
                        log_file: "AWSLogs/<https://evil|click>".to_owned(),
                        file_account: "<!channel>".to_owned(),
                        file_region: "<!channel>".to_owned(),
                    }),
                },
            ),
            true,
        ));
        requests.push((
            missed_by_fast_path(
                &c,
                &MissedByFastPath {
                    account: "<!channel>".to_owned(),
                    region: "<!channel>".to_owned(),
                    log_file: "<!channel>".to_owned(),
                    events: vec![("<https://evil|click>".to_owned(), "<!channel>".to_owned())],
                    late_secs: 420,
                },
            ),
            true,
        ));
    }
    // Recovered events say so, in the thread and on the root.
    let mut recovered = e.clone();
    recovered.recovered = Some(Recovered {
        log_file: "AWSLogs/<!channel>".to_owned(),
        late_secs: 420,
    });
    let c = ctx(SlackMode::Bot);
    let digest = json_line(
        &session_digest(&c, &s, Some(ROOT_TS), std::slice::from_ref(&recovered)).unwrap(),
    );
    assert!(
        digest.contains("recovered from the trail, 7m 00s late"),
        "{digest}"
    );
    let root = json_line(&session_root(&c, &Session::of(&recovered), "us-east-1"));
    assert!(
        root.contains("1 event recovered from the trail: EventBridge did not deliver it"),
        "{root}"
    );
    assert!(!json_line(&session_root(&c, &s, "us-east-1")).contains("recovered"));
    for (request, shows_link) in &requests {
        let line = json_line(request);
        assert!(!line.contains("<!channel>"), "{line}");
        assert!(!line.contains("<https://evil|click>"), "{line}");
        assert!(!line.contains("<https://evil"), "{line}");
        assert!(line.contains("&lt;!channel&gt;"), "{line}");
        if *shows_link {
            assert!(line.contains("&lt;https://evil|click&gt;"), "{line}");
        } else if !line.contains("merged into") {
            assert!(line.contains("&lt;https://evil|click…"), "{line}");
        }
    }
    // The root's fallback text (what notifications show) is escaped too.
    let root = &requests[0].0;
    assert!(root.body().text.contains("BreakGlassRole/&lt;!channel&gt;"));
    // The only link in the root is ours, with the event id percent-encoded.
    let link = texts(root)
        .into_iter()
        .find(|t| t.contains("console.aws.amazon.com"))
        .unwrap();
    assert!(
        link.contains("#/events/%3Chttps%3A%2F%2Fevil%7Cclick%3E|Open the first event"),
        "{link}"
    );
}

/// A bot root posted to a channel by name (`#break-glass`) must be
/// updated in the channel id Slack answered with: `chat.update` refuses
/// names.
#[test]
fn root_updates_go_to_the_channel_id_of_the_root_post() {
    let mut c = ctx(SlackMode::Bot);
    c.channel = "#break-glass".to_owned();
    let s = session();
    let state = SlackState {
        root_ts: Some(ROOT_TS.to_owned()),
        root_channel: Some("C0ROOTPOST".to_owned()),
        notified_count: 1,
        ..SlackState::default()
    };
    let Step::Follow { digest, update } =
        next_step(&c, &s, &state, &[activity(1), hop()], T0, true)
    else {
        panic!("expected a digest and an update");
    };
    let digest = digest.unwrap();
    assert_eq!(digest.body().thread_ts.as_deref(), Some(ROOT_TS));
    let update = update.unwrap();
    assert_eq!(update.body().channel.as_deref(), Some("C0ROOTPOST"));
    assert_eq!(update.body().ts.as_deref(), Some(ROOT_TS));

    // The digest went out but the update failed: only the update is owed,
    // and the digest is never posted again.
    let stale = SlackState {
        notified_count: s.event_count,
        root_stale: true,
        ..state.clone()
    };
    assert_eq!(
        next_step(&c, &s, &stale, &[], T0, true),
        Step::Follow {
            digest: None,
            update: Some(update)
        }
    );
    let fresh = SlackState {
        root_stale: false,
        ..stale
    };
    assert_eq!(next_step(&c, &s, &fresh, &[], T0, true), Step::Nothing);
}

/// A store keeps a bounded list of deferred events; the digest still
/// counts every event it covers.
#[test]
fn digest_counts_events_beyond_those_listed() {
    let events = burst(3);
    let mut s = base_session();
    for i in 2..60 {
        s = s.with_event(&activity(i));
    }
    let state = SlackState {
        root_ts: Some(ROOT_TS.to_owned()),
        notified_count: 2,
        ..SlackState::default()
    };
    let Step::Follow { digest, .. } =
        next_step(&ctx(SlackMode::Bot), &s, &state, &events, T0, true)
    else {
        panic!("expected a digest");
    };
    let text = json_line(&digest.unwrap());
    assert!(text.contains("*58 new events*"), "{text}");
    assert!(text.contains("more (58 total)"), "{text}");
}
