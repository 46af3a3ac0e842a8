//! A cheap test that rules out records [`crate::classify`] cannot flag,
//! before they are parsed: most records of an organization's trail are
//! noise, and the decision needs only a few of their bytes.
//!
//! Every rule of the detector needs one of these in the record's bytes:
//! - a watched name: an IAM user or role (the name, or for a glob its
//!   longest literal part), a permission set, an Identity Center user, a
//!   source identity;
//! - Glasswatch's name prefix or another name it owns (the tamper families
//!   that count only calls on Glasswatch's resources);
//! - `Root"` (the end of root's identity type, of a federated user's
//!   issuer type, and of `AssumeRoot`), when root is watched;
//! - the event source of a tamper family that flags every call (trails,
//!   Organizations, regions), and Identity Center's sources, when accounts
//!   are watched for it, with `AWSReservedSSO_` (its roles);
//! - or a JSON escape that could spell any of them another way (`\u`,
//!   `\/`; the others stand for quotes, backslashes and control
//!   characters, which no needle holds).
//!
//! The search is case-insensitive for every needle, a superset of what the
//! detector compares with exact case. A record without any of them cannot
//! be flagged, so skipping it changes no verdict; a record with one is
//! parsed and classified in full. Proven by proptest over generated and
//! mutated records and by the fixture corpus (`tests/prefilter.rs`).

use aho_corasick::{AhoCorasick, MatchKind};

use crate::detect::{ASSUME_ROOT, TAMPER, source};
use crate::watch::{NamePattern, SSO_ROLE_PREFIX, WatchList};

/// What may make a record worth parsing, compiled for search.
#[derive(Debug, Clone)]
pub struct Prefilter {
    /// Every needle, folded ([`FOLD`]).
    automaton: AhoCorasick,
    needles: Vec<String>,
    /// The longest needle's length.
    longest: usize,
}

/// How much of a buffer [`Prefilter::hits`] folds at a time.
const WINDOW: usize = 16 * 1024;

/// Every needle the detector's rules imply for `watch`, without those
/// that hold another (finding the shorter is enough).
pub fn needles(watch: &WatchList) -> Vec<String> {
    let mut needles: Vec<String> = Vec::new();
    for pattern in watch
        .users()
        .iter()
        .chain(watch.roles())
        .map(|e| &e.name)
        .chain(watch.source_identities())
    {
        match pattern {
            NamePattern::Exact(name) => needles.push(name.clone()),
            // Every literal part of a glob is in any name it matches; the
            // longest rules out the most.
            NamePattern::Glob(glob) => {
                needles.extend(glob.split('*').max_by_key(|p| p.len()).map(str::to_owned));
            }
        }
    }
    needles.extend(watch.permission_sets().iter().cloned());
    needles.extend(watch.sso_users().iter().cloned());
    needles.push(watch.name_prefix().to_owned());
    needles.extend(watch.owned_names().iter().cloned());
    // A value's closing quote, not its opening one: the search keys on a
    // needle's first bytes, and `"ro`, `"ac` start many keys.
    let value = |s: &str| format!("{s}\"");
    if watch.root() {
        // Also the end of `"AssumeRoot"`.
        needles.push(value("Root"));
        debug_assert!(ASSUME_ROOT.ends_with("Root"));
    }
    if !watch.sso_accounts().is_empty() {
        needles.push(SSO_ROLE_PREFIX.to_owned());
        needles.push(value(source::SSO));
        needles.push(value(source::SSO_OAUTH));
    }
    // Without a prefix every resource is Glasswatch's own.
    let every_call_flags = |owned_only: bool| !owned_only || watch.name_prefix().is_empty();
    for family in TAMPER.iter().filter(|f| every_call_flags(f.owned_only)) {
        needles.push(value(family.source));
    }
    let mut folded: Vec<(Vec<u8>, String)> = needles
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(|n| (fold(n.as_bytes()), n))
        .collect();
    folded.sort();
    folded.dedup_by(|a, b| a.0 == b.0);
    let kept: Vec<String> = folded
        .iter()
        .filter(|(f, _)| {
            !folded
                .iter()
                .any(|(other, _)| other != f && memchr::memmem::find(f, other).is_some())
        })
        .map(|(_, n)| n.clone())
        .collect();
    kept
}

impl Prefilter {
    pub fn new(watch: &WatchList) -> Self {
        let needles = needles(watch);
        let folded: Vec<Vec<u8>> = needles.iter().map(|n| fold(n.as_bytes())).collect();
        Self {
            // Leftmost-first lets the search use its vectorised packed
            // searcher; any match will do.
            automaton: AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(&folded)
                .expect("a few hundred short literal needles always compile"),
            longest: folded.iter().map(Vec::len).max().unwrap_or(1).max(1),
            needles,
        }
    }

    /// Could [`crate::classify`] flag the record these bytes hold? `false`
    /// only when it certainly cannot.
    pub fn may_flag(&self, bytes: &[u8]) -> bool {
        self.may_flag_with(bytes, &mut Vec::new())
    }

    /// [`Self::may_flag`] with a buffer of the caller's, reused across
    /// records.
    pub fn may_flag_with(&self, bytes: &[u8], scratch: &mut Vec<u8>) -> bool {
        has_escape(bytes) || self.needle_in(bytes, scratch)
    }

    /// Does a needle occur in `bytes` (escapes aside)?
    pub(crate) fn needle_in(&self, bytes: &[u8], scratch: &mut Vec<u8>) -> bool {
        fold_into(bytes, scratch);
        self.automaton.is_match(scratch.as_slice())
    }

    /// Where needles start in `chunk` (escapes aside), in order: one search
    /// over many records, for the log-file scanner.
    pub(crate) fn hits(&self, chunk: &[u8], scratch: &mut Vec<u8>, out: &mut Vec<usize>) {
        out.clear();
        // Window by window, each folded copy small enough to stay in
        // cache; a window reaches a needle's length into the next, where
        // the matches that start there are found.
        let reach = self.longest - 1;
        let mut at = 0;
        while at < chunk.len() {
            let end = (at + WINDOW).min(chunk.len());
            fold_into(&chunk[at..(end + reach).min(chunk.len())], scratch);
            out.extend(
                self.automaton
                    .find_iter(scratch.as_slice())
                    .map(|m| at + m.start())
                    .take_while(|&start| start < end),
            );
            at = end;
        }
    }

    /// The needles searched for, as the watch list implies them.
    pub fn needles(&self) -> &[String] {
        &self.needles
    }
}

/// Could this escape (the byte after a backslash) spell a needle?
pub(crate) fn risky_escape(byte: u8) -> bool {
    byte == b'u' || byte == b'/'
}

fn has_escape(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', bytes).any(|i| bytes.get(i + 1).is_some_and(|&b| risky_escape(b)))
}

/// Setting this bit maps every ASCII capital to its small letter (and a
/// few other bytes onto others). Any byte-wise map keeps a substring a
/// substring, so a needle in a record in any case is found after both
/// are folded: one case-sensitive search serves them all, at the price of
/// a few more records parsed.
const FOLD: u8 = 0x20;

fn fold(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    fold_into(bytes, &mut out);
    out
}

fn fold_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(bytes.iter().map(|b| b | FOLD));
}
