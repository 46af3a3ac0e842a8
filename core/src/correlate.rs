//! Correlation of events into sessions. DESIGN.md §2.
//!
//! Two events are linked when they share a correlation key and happened
//! within the quiet period of each other. A session is a connected
//! component of that graph. The definition depends only on the set of
//! events, so arrival order, redelivery and batching cannot change it, and
//! adding an event can only merge sessions, never split one. The quiet
//! window also keeps keys that recur (a role session name, an Identity
//! Center user) from joining uses a week apart.
//!
//! The incremental algorithm, shared by the in-memory [`Ledger`] and the
//! aggregator's DynamoDB store:
//! 1. find, for each of the event's keys, the nearest stored use before
//!    and the nearest after its `(time, eventID)` ([`KeyUse`]), and keep
//!    those within [`window`]. That is enough, and it bounds the reads
//!    whatever a key's history: the uses of a key within the quiet period
//!    on one side of an event are all within the quiet period of each
//!    other, so they are already one session, and the nearest stands for
//!    all of them;
//! 2. resolve the sessions they were written under to the live ones,
//!    following `merged into` redirects;
//! 3. [`plan`] the merge: one surviving session, named after the earliest
//!    event of all, and the sessions it absorbs;
//! 4. write the event, its key uses and the sessions, all at once.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::session::{Session, SessionEvent};

/// The times `[from, to]` within which another use of a key links to an
/// event at `time`.
pub fn window(time: i64, quiet_secs: i64) -> (i64, i64) {
    (
        time.saturating_sub(quiet_secs),
        time.saturating_add(quiet_secs),
    )
}

/// One stored use of a correlation key: which event carried it, when, and
/// the session the event was written under (possibly since merged away).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyUse {
    pub key: String,
    pub time: i64,
    pub event_id: String,
    pub session_id: String,
}

/// The sessions (as written) that `event` links to through `uses`. Uses
/// outside the window, of other keys, or of the event itself are ignored,
/// so a store may over-fetch.
pub fn linked_sessions<'a>(
    event: &SessionEvent,
    uses: impl IntoIterator<Item = &'a KeyUse>,
    quiet_secs: i64,
) -> BTreeSet<String> {
    let (from, to) = window(event.time, quiet_secs);
    uses.into_iter()
        .filter(|u| {
            u.event_id != event.event_id
                && (from..=to).contains(&u.time)
                && event.keys.contains(&u.key)
        })
        .map(|u| u.session_id.clone())
        .collect()
}

/// What storing one event does to the sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The session the event now belongs to, with the event counted.
    pub session: Session,
    /// Live sessions merged into it, by id (never the survivor's own id).
    pub absorbed: Vec<String>,
}

/// Merge `event` and the live sessions it links to. The survivor is named
/// after the earliest event of all, so the result does not depend on
/// which session existed first.
pub fn plan(event: &SessionEvent, linked: &[Session]) -> Plan {
    merged(Session::of(event), linked)
}

/// `start` merged with `linked`, and which of them it absorbs.
fn merged(start: Session, linked: &[Session]) -> Plan {
    let session = linked.iter().fold(start, |acc, s| acc.merge(s));
    let mut absorbed: Vec<String> = linked
        .iter()
        .map(|s| s.session_id.clone())
        .filter(|id| *id != session.session_id)
        .collect();
    absorbed.sort();
    absorbed.dedup();
    Plan { session, absorbed }
}

/// Merge live sessions that turned out to be one, with no new event:
/// what a store does when, after writing an event, it finds that a
/// concurrent writer put a linked use of one of its keys in another
/// session. `None` when there is nothing to merge.
pub fn merge_sessions(linked: &[Session]) -> Option<Plan> {
    let first = linked.first()?;
    let planned = merged(first.clone(), linked);
    (!planned.absorbed.is_empty()).then_some(planned)
}

/// A stored session: live, or merged into another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stored {
    Live(Box<Session>),
    MergedInto(String),
}

/// What [`Ledger::ingest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// The event was already stored: nothing changed.
    Duplicate { session_id: String },
    Stored {
        session_id: String,
        absorbed: Vec<String>,
    },
}

impl Ingest {
    pub fn session_id(&self) -> &str {
        match self {
            Self::Duplicate { session_id } | Self::Stored { session_id, .. } => session_id,
        }
    }
}

/// A session with the ids of its events, as the audit trail shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session: Session,
    pub event_ids: BTreeSet<String>,
}

/// The store's layout in memory: event items, key-use items and session
/// items with redirects. Used by `cargo xtask replay --sessions` and as the
/// reference the DynamoDB store is tested against.
#[derive(Debug, Clone)]
pub struct Ledger {
    quiet_secs: i64,
    /// event id → (event, session written under)
    events: BTreeMap<String, (SessionEvent, String)>,
    /// key → (time, event id) → session written under
    uses: BTreeMap<String, BTreeMap<(i64, String), String>>,
    sessions: BTreeMap<String, Stored>,
}

impl Ledger {
    pub fn new(quiet_secs: i64) -> Self {
        Self {
            quiet_secs,
            events: BTreeMap::new(),
            uses: BTreeMap::new(),
            sessions: BTreeMap::new(),
        }
    }

    /// Follow redirects from a session id as written to the live session.
    pub fn resolve<'a>(&'a self, mut id: &'a str) -> &'a str {
        // Each merge points to a session with an earlier anchor, so the
        // chain ends; the bound guards against a corrupted store.
        for _ in 0..=self.sessions.len() {
            match self.sessions.get(id) {
                Some(Stored::MergedInto(next)) => id = next,
                _ => return id,
            }
        }
        id
    }

    /// Store one event. Idempotent: a second delivery changes nothing.
    pub fn ingest(&mut self, event: &SessionEvent) -> Ingest {
        if let Some((_, written)) = self.events.get(&event.event_id) {
            return Ingest::Duplicate {
                session_id: self.resolve(written).to_owned(),
            };
        }
        let uses: Vec<KeyUse> = event
            .keys
            .iter()
            .filter_map(|key| self.uses.get(key).map(|m| (key, m)))
            .flat_map(|(key, m)| {
                let at = (event.time, event.event_id.clone());
                let before = m.range(..at.clone()).next_back();
                let after = m
                    .range((std::ops::Bound::Excluded(at), std::ops::Bound::Unbounded))
                    .next();
                before
                    .into_iter()
                    .chain(after)
                    .map(|((time, event_id), session_id)| KeyUse {
                        key: key.clone(),
                        time: *time,
                        event_id: event_id.clone(),
                        session_id: session_id.clone(),
                    })
            })
            .collect();
        let live: BTreeSet<String> = linked_sessions(event, &uses, self.quiet_secs)
            .iter()
            .map(|id| self.resolve(id).to_owned())
            .collect();
        let linked: Vec<Session> = live
            .iter()
            .filter_map(|id| match self.sessions.get(id) {
                Some(Stored::Live(s)) => Some(s.as_ref().clone()),
                _ => None,
            })
            .collect();
        let Plan { session, absorbed } = plan(event, &linked);
        let id = session.session_id.clone();
        self.events
            .insert(event.event_id.clone(), (event.clone(), id.clone()));
        for key in &event.keys {
            self.uses
                .entry(key.clone())
                .or_default()
                .insert((event.time, event.event_id.clone()), id.clone());
        }
        for gone in &absorbed {
            self.sessions
                .insert(gone.clone(), Stored::MergedInto(id.clone()));
        }
        self.sessions
            .insert(id.clone(), Stored::Live(Box::new(session)));
        Ingest::Stored {
            session_id: id,
            absorbed,
        }
    }

    /// The live session with this id.
    pub fn session(&self, id: &str) -> Option<&Session> {
        match self.sessions.get(self.resolve(id)) {
            Some(Stored::Live(s)) => Some(s),
            _ => None,
        }
    }

    /// Every live session with its events, earliest first.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        let mut by_id: BTreeMap<&str, SessionRecord> = BTreeMap::new();
        for (event_id, (_, written)) in &self.events {
            let id = self.resolve(written);
            if let Some(Stored::Live(session)) = self.sessions.get(id) {
                by_id
                    .entry(id)
                    .or_insert_with(|| SessionRecord {
                        session: session.as_ref().clone(),
                        event_ids: BTreeSet::new(),
                    })
                    .event_ids
                    .insert(event_id.clone());
            }
        }
        let mut out: Vec<SessionRecord> = by_id.into_values().collect();
        out.sort_by(|a, b| {
            (a.session.anchor_time, &a.session.anchor_event_id)
                .cmp(&(b.session.anchor_time, &b.session.anchor_event_id))
        });
        out
    }

    /// The stored event with this id.
    pub fn event(&self, event_id: &str) -> Option<&SessionEvent> {
        self.events.get(event_id).map(|(e, _)| e)
    }
}
