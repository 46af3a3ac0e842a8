//! # glasswatch-core
//!
//! The pure domain of Glasswatch: everything that decides, and nothing that
//! does I/O, reads a clock or talks to AWS. Time and ids come in as
//! arguments, so every function here is deterministic and testable alone.
//!
//! Layout:
//! - [`audit`]: the pure part of `cargo xtask audit`: time arguments,
//!   the filter a query keys on, rows, tables, CSV, the evidence manifest;
//! - [`config`]: `glasswatch.toml`, typed and validated, with errors that
//!   name the file, line, key and a hint;
//! - [`env`]: Lambda settings from environment variables, errors naming
//!   the variable;
//! - [`watch`]: the compiled watch list, the single place that decides
//!   whether a name, ARN or resource is watched;
//! - [`record`]: the CloudTrail record model, parsed tolerantly, bare or in
//!   an EventBridge envelope;
//! - [`detect`]: classification of a record into detections, with the
//!   correlation keys sessions are built from;
//! - [`patterns`]: EventBridge patterns generated from the watch list, a
//!   superset of what `detect` flags;
//! - [`prefilter`]: the byte search that rules out, unparsed, the log
//!   file records `detect` cannot flag;
//! - [`input`]: decoding of recorded events (single JSON, JSON Lines,
//!   CloudTrail log files, gzipped or not) from any `Read`;
//! - [`signal`]: the messages the agent relays (signal, heartbeat), their
//!   deterministic ids, and fitting them under EventBridge's entry limit;
//! - [`correlate`]: events into sessions by shared keys within the quiet
//!   period, order-independent; the in-memory [`correlate::Ledger`];
//! - [`follow`]: following the credentials a break-glass session takes
//!   into the accounts where they act (follow rules, followed events);
//! - [`coverage`]: heartbeats into account×region health, and when that
//!   is worth an alert;
//! - [`verify`]: the envelope check (sender against claimed account,
//!   organization membership);
//! - [`session`]: what an event contributes to a session, and the
//!   order-independent session summary;
//! - [`notify`]: what Slack should be sent for a session now (root,
//!   coalesced digest, update), shared by the aggregator and replay;
//! - [`trail`]: the durable path's pure part: the `[trail]` table, trail
//!   object keys, notifications, one log file scanned with the trust
//!   check, digest files against what was processed;
//! - [`slack`]: Slack messages (Block Kit and webhook text) for sessions,
//!   with every attacker-chosen string escaped.

pub mod audit;
pub mod config;
pub mod correlate;
pub mod coverage;
pub mod detect;
pub mod env;
pub mod follow;
pub mod input;
pub mod notify;
pub mod patterns;
pub mod prefilter;
pub mod record;
pub mod session;
pub mod signal;
pub mod slack;
pub mod trail;
pub mod verify;
pub mod watch;

pub use config::{Config, ConfigError, ConfigErrors, WatchConfig};
pub use detect::{CorrelationKey, Detection, DetectionKind, Mfa, Severity, classify};
pub use record::{Record, RecordError};
pub use watch::WatchList;
