//! The organization's accounts, read through Organizations and cached per
//! container. An account missing from the cache forces one refresh (at
//! most once a minute), so an account created since is not rejected.
//!
//! Organizations being down must not stop events from being stored:
//! [`Accounts::list`] falls back to the list this container read last,
//! then to the last good list kept in the table (every successful read
//! refreshes it), and says which one it used. With none at all, the
//! membership check is left to the central bus's organization-only
//! policy, and the signal is still stored.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::store::{Store, StoreError};

const MIN_REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("Organizations ListAccounts: {0}")]
pub struct AccountsError(String);

/// Where an [`AccountList`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSource {
    /// Read from Organizations within the cache's lifetime.
    Organizations,
    /// Organizations failed: this container's last list, however old.
    Cached,
    /// Organizations failed: the last good list kept in the table.
    Saved,
    /// Organizations failed and no list was ever kept: membership cannot
    /// be checked here.
    Unavailable,
}

/// The accounts as far as they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountList {
    /// Account id → name.
    pub names: BTreeMap<String, String>,
    /// Accounts whose status is `ACTIVE` (not suspended or closing).
    pub active: BTreeSet<String>,
    pub source: ListSource,
}

impl AccountList {
    /// Whether `account` is a member; `None` when that cannot be known.
    pub fn member(&self, account: &str) -> Option<bool> {
        (self.source != ListSource::Unavailable).then(|| self.names.contains_key(account))
    }
}

#[derive(Debug)]
struct Cache {
    names: BTreeMap<String, String>,
    active: BTreeSet<String>,
    fetched: Option<Instant>,
    /// When Organizations last failed, if it has since the last success.
    failed: Option<Instant>,
    saved: bool,
}

/// Cached account ids and names.
#[derive(Debug)]
pub struct Accounts {
    client: aws_sdk_organizations::Client,
    ttl: Duration,
    cache: Mutex<Cache>,
}

impl Accounts {
    pub fn new(client: aws_sdk_organizations::Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Mutex::new(Cache {
                names: BTreeMap::new(),
                active: BTreeSet::new(),
                fetched: None,
                failed: None,
                saved: false,
            }),
        }
    }

    async fn fetch(&self) -> Result<(BTreeMap<String, String>, BTreeSet<String>), AccountsError> {
        let mut names = BTreeMap::new();
        let mut active = BTreeSet::new();
        let mut pages = self.client.list_accounts().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                AccountsError(format!(
                    "{}",
                    aws_sdk_organizations::error::DisplayErrorContext(e)
                ))
            })?;
            for account in page.accounts() {
                if let Some(id) = account.id() {
                    names.insert(id.to_owned(), account.name().unwrap_or_default().to_owned());
                    if account
                        .status()
                        .is_none_or(|s| *s == aws_sdk_organizations::types::AccountStatus::Active)
                    {
                        active.insert(id.to_owned());
                    }
                }
            }
        }
        Ok((names, active))
    }

    /// Account id → name, fresh within the TTL; `must_have` forces a
    /// refresh when missing (rate-limited). Fails when Organizations does.
    pub async fn names(
        &self,
        must_have: &[&str],
    ) -> Result<BTreeMap<String, String>, AccountsError> {
        let mut cache = self.cache.lock().await;
        if Self::due(&cache, self.ttl, must_have) {
            let (names, active) = self.fetch().await?;
            cache.names = names;
            cache.active = active;
            cache.fetched = Some(Instant::now());
            cache.failed = None;
            cache.saved = false;
        }
        Ok(cache.names.clone())
    }

    fn due(cache: &Cache, ttl: Duration, must_have: &[&str]) -> bool {
        let age = cache.fetched.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a >= ttl);
        let missing = must_have.iter().any(|a| !cache.names.contains_key(*a));
        stale || (missing && age.is_none_or(|a| a >= MIN_REFRESH))
    }

    /// The accounts, whatever Organizations does (see the module notes).
    /// After a failure, Organizations is asked again at most once a
    /// minute. Only a failure to keep a good list in the table is an
    /// error.
    pub async fn list(
        &self,
        must_have: &[&str],
        store: &Store,
        now: i64,
    ) -> Result<AccountList, StoreError> {
        let mut cache = self.cache.lock().await;
        let resting = cache.failed.is_some_and(|f| f.elapsed() < MIN_REFRESH);
        if Self::due(&cache, self.ttl, must_have) && !resting {
            match self.fetch().await {
                Ok((names, active)) => {
                    let changed = names != cache.names || !cache.saved;
                    cache.names = names;
                    cache.active = active;
                    cache.fetched = Some(Instant::now());
                    cache.failed = None;
                    if changed {
                        store.save_accounts(&cache.names, now).await?;
                        cache.saved = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Organizations unavailable; using the last account list");
                    cache.failed = Some(Instant::now());
                }
            }
        }
        let source = match (cache.fetched, cache.failed) {
            (Some(_), None) => ListSource::Organizations,
            (Some(_), Some(_)) => ListSource::Cached,
            (None, _) => {
                return Ok(match store.saved_accounts().await? {
                    Some((names, _)) => AccountList {
                        active: names.keys().cloned().collect(),
                        names,
                        source: ListSource::Saved,
                    },
                    None => AccountList {
                        names: BTreeMap::new(),
                        active: BTreeSet::new(),
                        source: ListSource::Unavailable,
                    },
                });
            }
        };
        Ok(AccountList {
            names: cache.names.clone(),
            active: cache.active.clone(),
            source,
        })
    }
}
