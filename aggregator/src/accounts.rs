//! The organization's accounts, read through Organizations and cached per
//! container. An account missing from the cache forces one refresh (at
//! most once a minute), so an account created since is not rejected.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

const MIN_REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("Organizations ListAccounts: {0}")]
pub struct AccountsError(String);

#[derive(Debug)]
struct Cache {
    names: BTreeMap<String, String>,
    fetched: Option<Instant>,
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
                fetched: None,
            }),
        }
    }

    async fn fetch(&self) -> Result<BTreeMap<String, String>, AccountsError> {
        let mut names = BTreeMap::new();
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
                }
            }
        }
        Ok(names)
    }

    /// Account id → name, fresh within the TTL; `must_have` forces a
    /// refresh when missing (rate-limited).
    pub async fn names(
        &self,
        must_have: &[&str],
    ) -> Result<BTreeMap<String, String>, AccountsError> {
        let mut cache = self.cache.lock().await;
        let age = cache.fetched.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a >= self.ttl);
        let missing = must_have.iter().any(|a| !cache.names.contains_key(*a));
        if stale || (missing && age.is_none_or(|a| a >= MIN_REFRESH)) {
            cache.names = self.fetch().await?;
            cache.fetched = Some(Instant::now());
        }
        Ok(cache.names.clone())
    }
}
