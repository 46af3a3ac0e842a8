//! `cargo xtask replay s3://BUCKET/PREFIX/`: the trail's log files, listed
//! and streamed from S3 (bounded: one object per job in flight, a few
//! chunks buffered each), chosen by the date in their keys.

use std::io::Read;

use anyhow::{Context, Result, bail};
use aws_config::BehaviorVersion;
use glasswatch_core::record::parse_time;
use glasswatch_core::trail::{Digest, ObjectKey, ObjectKind};
use glasswatch_stacksets::error::aws;
use indicatif::ProgressBar;
use tokio::runtime::Runtime;

/// An `s3://` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    pub prefix: String,
}

impl Location {
    /// `s3://BUCKET[/PREFIX]`, or `None` for a local path.
    pub fn parse(arg: &str) -> Option<Result<Self>> {
        let rest = arg.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(anyhow::anyhow!(
                "`{arg}` names no bucket: write s3://BUCKET/PREFIX/"
            )));
        }
        Some(Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }))
    }
}

/// One object to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bucket: String,
    pub key: String,
    pub size: u64,
}

impl Object {
    pub fn name(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// The window `--since`/`--until` choose, in Unix seconds (inclusive
/// days: `--until 2026-11-20` takes the whole day).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    pub fn parse(since: Option<&str>, until: Option<&str>) -> Result<Self> {
        let at = |text: &str, end: bool| -> Result<i64> {
            if let Some(t) = parse_time(text) {
                return Ok(t);
            }
            let day = parse_time(&format!("{text}T00:00:00Z")).with_context(|| {
                format!("`{text}` is neither a day (YYYY-MM-DD) nor an RFC 3339 time")
            })?;
            Ok(if end { day + 86_399 } else { day })
        };
        let window = Self {
            since: since.map(|s| at(s, false)).transpose()?,
            until: until.map(|u| at(u, true)).transpose()?,
        };
        if let (Some(s), Some(u)) = (window.since, window.until)
            && s > u
        {
            bail!("--since is after --until");
        }
        Ok(window)
    }

    fn is_open(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Was a log file delivered at `time` (its key's) in the window?
    fn holds(&self, time: i64) -> bool {
        self.since.is_none_or(|s| time >= s) && self.until.is_none_or(|u| time <= u)
    }

    /// Each day the window touches, as a key's date path `YYYY/MM/DD/`;
    /// `None` when it is open at either end.
    fn days(&self) -> Option<Vec<String>> {
        let (since, until) = (self.since?, self.until?);
        let mut day = since - since.rem_euclid(86_400);
        let mut out = Vec::new();
        while day <= until {
            let date = time::OffsetDateTime::from_unix_timestamp(day).ok()?;
            out.push(format!(
                "{:04}/{:02}/{:02}/",
                date.year(),
                u8::from(date.month()),
                date.day()
            ));
            day += 86_400;
        }
        Some(out)
    }
}

/// Where a prefix stands in the trail's layout
/// (`[prefix/]AWSLogs/[o-…/]<account>/CloudTrail/<region>/YYYY/MM/DD/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Above the regions: list its sub-prefixes.
    Descend,
    /// `…/CloudTrail/<region>/`: its days are listed.
    Region,
    /// Below a region, or not ending at a `/`: listed whole.
    Whole,
    /// Not the trail's log files (digests, other services, other trees).
    Skip,
}

/// How deep a tree may go before `AWSLogs/` (the trail's own prefix).
const MAX_PREFIX_DEPTH: usize = 3;

fn step(prefix: &str) -> Step {
    if !prefix.is_empty() && !prefix.ends_with('/') {
        return Step::Whole;
    }
    let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    let Some(at) = segments.iter().position(|s| *s == "AWSLogs") else {
        return if segments.len() < MAX_PREFIX_DEPTH {
            Step::Descend
        } else {
            Step::Skip
        };
    };
    let mut after = &segments[at + 1..];
    if after.first().is_some_and(|s| s.starts_with("o-")) {
        after = &after[1..];
    }
    match after {
        [] => Step::Descend,
        [account, ..] if !glasswatch_core::config::is_account_id(account) => Step::Skip,
        [_] => Step::Descend,
        [_, service, ..] if *service != "CloudTrail" => Step::Skip,
        [_, _] => Step::Descend,
        [_, _, region, ..] if !glasswatch_core::config::is_region(region) => Step::Skip,
        [_, _, _] => Step::Region,
        _ => Step::Whole,
    }
}

/// S3 as the environment configures it (`AWS_PROFILE`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`), and a runtime to drive it.
pub struct S3 {
    pub runtime: Runtime,
    client: aws_sdk_s3::Client,
}

impl S3 {
    pub fn connect() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let sdk = runtime.block_on(aws_config::defaults(BehaviorVersion::latest()).load());
        let client = glasswatch_stacksets::aws::s3(&sdk);
        Ok(Self { runtime, client })
    }

    /// The log files under `location` in `window`, in key order. Other
    /// objects (digests, anything not a trail log file) are left out when a
    /// window is given, since their date is unknown; without one, every
    /// `.json`/`.json.gz` object counts. Returns them and how many were
    /// left out.
    pub fn list(&self, location: &Location, window: Window) -> Result<(Vec<Object>, usize)> {
        let (mut objects, left_out) = self.runtime.block_on(async {
            let prefixes = match window.days() {
                Some(days) => self.day_prefixes(location, &days).await?,
                None => vec![location.prefix.clone()],
            };
            // A few listings at once: a long window over many accounts and
            // regions is thousands of them.
            let mut running = tokio::task::JoinSet::new();
            let (mut objects, mut left_out) = (Vec::new(), 0);
            let mut prefixes = prefixes.into_iter();
            loop {
                while running.len() < LISTINGS_AT_ONCE
                    && let Some(prefix) = prefixes.next()
                {
                    let (client, bucket) = (self.client.clone(), location.bucket.clone());
                    running
                        .spawn(async move { list_prefix(&client, &bucket, &prefix, window).await });
                }
                let Some(done) = running.join_next().await else {
                    break;
                };
                let (found, skipped) = done.context("a listing task failed")??;
                objects.extend(found);
                left_out += skipped;
            }
            anyhow::Ok((objects, left_out))
        })?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((objects, left_out))
    }

    /// `<region>/YYYY/MM/DD/` for every account and region under the
    /// location and every day; the location itself when it reaches below
    /// a region (or ends inside a name).
    async fn day_prefixes(&self, location: &Location, days: &[String]) -> Result<Vec<String>> {
        Ok(match self.regions(location).await? {
            Some(regions) => regions
                .iter()
                .flat_map(|r| days.iter().map(move |d| format!("{r}{d}")))
                .collect(),
            None => vec![location.prefix.clone()],
        })
    }

    /// Every `…/CloudTrail/<region>/` under the location, found level by
    /// level; `None` when the location reaches below a region.
    async fn regions(&self, location: &Location) -> Result<Option<Vec<String>>> {
        let mut regions = Vec::new();
        let mut pending = vec![location.prefix.clone()];
        while let Some(prefix) = pending.pop() {
            match step(&prefix) {
                Step::Region => regions.push(prefix),
                Step::Whole if prefix == location.prefix => return Ok(None),
                Step::Whole | Step::Skip => {}
                Step::Descend => {
                    let mut pages = self
                        .client
                        .list_objects_v2()
                        .bucket(&location.bucket)
                        .prefix(&prefix)
                        .delimiter("/")
                        .into_paginator()
                        .send();
                    while let Some(page) = pages.next().await {
                        let page =
                            page.map_err(|e| listing_failed(&location.bucket, &prefix, e))?;
                        pending.extend(
                            page.common_prefixes()
                                .iter()
                                .filter_map(|p| p.prefix().map(str::to_owned)),
                        );
                    }
                }
            }
        }
        regions.sort();
        Ok(Some(regions))
    }

    /// The digest files of every account and region under the location
    /// for the window's days and the day after its end (a digest comes an
    /// hour after the files it lists), each read and parsed.
    pub fn digests(&self, location: &Location, window: Window) -> Result<Vec<(ObjectKey, Digest)>> {
        let days = Window {
            until: window.until.map(|u| u + 86_400),
            ..window
        }
        .days()
        .context("--digests needs both --since and --until")?;
        let objects = self.runtime.block_on(async {
            let regions = self.regions(location).await?.with_context(|| {
                format!(
                    "--digests needs a prefix at or above the regions (…/CloudTrail/<region>/), not s3://{}/{}",
                    location.bucket, location.prefix
                )
            })?;
            let mut objects = Vec::new();
            for region in regions {
                let root = region.replacen("/CloudTrail/", "/CloudTrail-Digest/", 1);
                for day in &days {
                    let prefix = format!("{root}{day}");
                    let (found, _) =
                        list_prefix(&self.client, &location.bucket, &prefix, Window::default()).await?;
                    objects.extend(found);
                }
            }
            anyhow::Ok(objects)
        })?;
        objects
            .iter()
            .filter_map(|o| ObjectKey::parse(&o.key).ok().map(|k| (o, k)))
            .filter(|(_, key)| key.kind == ObjectKind::Digest)
            .map(|(object, key)| {
                let digest = Digest::read(self.open(object, &ProgressBar::hidden()))
                    .map_err(|e| anyhow::anyhow!("{}: {e}", object.name()))?;
                Ok((key, digest))
            })
            .collect()
    }

    /// Stream `object`: a reader fed by a download on the runtime, a few
    /// chunks ahead of it at most. A failed download is a read error.
    pub fn open(&self, object: &Object, bar: &ProgressBar) -> Box<dyn Read + Send> {
        let request = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key);
        let bar = bar.clone();
        Box::new(glasswatch_aggregator::s3::stream(
            self.runtime.handle(),
            request,
            move |n| bar.inc(n as u64),
        ))
    }
}

/// Every object under `prefix`: those `window` takes, and how many others.
async fn list_prefix(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    window: Window,
) -> Result<(Vec<Object>, usize)> {
    let (mut objects, mut left_out) = (Vec::new(), 0);
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| listing_failed(bucket, prefix, e))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let wanted = if window.is_open() {
                key.ends_with(".json.gz") || key.ends_with(".json")
            } else {
                ObjectKey::parse(key)
                    .is_ok_and(|k| k.kind == ObjectKind::LogFile && window.holds(k.time))
            };
            if wanted {
                objects.push(Object {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                });
            } else {
                left_out += 1;
            }
        }
    }
    Ok((objects, left_out))
}

fn listing_failed<E>(
    bucket: &str,
    prefix: &str,
    e: aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    anyhow::anyhow!(
        "cannot list s3://{bucket}/{prefix}: {}",
        aws("s3:ListObjectsV2", e)
    )
}

/// How many listings run at once.
const LISTINGS_AT_ONCE: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_windows() {
        assert!(Location::parse("logs/x.json.gz").is_none());
        let l = Location::parse("s3://trail/AWSLogs/o-1/").unwrap().unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("trail", "AWSLogs/o-1/")
        );
        let l = Location::parse("s3://trail").unwrap().unwrap();
        assert_eq!(l.prefix, "");
        assert!(Location::parse("s3:///x").unwrap().is_err());

        let w = Window::parse(Some("2026-11-20"), Some("2026-11-20")).unwrap();
        let day = parse_time("2026-11-20T00:00:00Z").unwrap();
        assert_eq!((w.since, w.until), (Some(day), Some(day + 86_399)));
        assert!(w.holds(day) && w.holds(day + 3600) && !w.holds(day - 600));
        assert!(!w.holds(day + 86_400));
        let error = Window::parse(Some("yesterday"), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("neither a day"), "{error}");
        assert!(Window::parse(Some("2026-11-21"), Some("2026-11-20")).is_err());
        assert!(Window::default().is_open());
        assert_eq!(w.days().unwrap(), ["2026/11/20/"]);
        let two = Window::parse(Some("2026-12-31T23:00:00Z"), Some("2027-01-01")).unwrap();
        assert_eq!(two.days().unwrap(), ["2026/12/31/", "2027/01/01/"]);
        assert_eq!(
            Window::parse(Some("2026-11-20"), None).unwrap().days(),
            None
        );
    }

    #[test]
    fn the_walk_stops_at_regions_and_skips_what_is_not_the_trail() {
        for (prefix, want) in [
            ("", Step::Descend),
            ("logs/", Step::Descend),
            ("a/b/c/", Step::Skip),
            ("AWSLogs/", Step::Descend),
            ("logs/AWSLogs/o-abc123/", Step::Descend),
            ("AWSLogs/o-abc123/111122223333/", Step::Descend),
            ("AWSLogs/111122223333/CloudTrail/", Step::Descend),
            ("AWSLogs/111122223333/CloudTrail-Digest/", Step::Skip),
            ("AWSLogs/111122223333/Config/", Step::Skip),
            ("AWSLogs/not-an-account/", Step::Skip),
            (
                "AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/",
                Step::Region,
            ),
            ("AWSLogs/111122223333/CloudTrail/global/", Step::Skip),
            (
                "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/",
                Step::Whole,
            ),
            ("AWSLogs/1111", Step::Whole),
        ] {
            assert_eq!(step(prefix), want, "{prefix}");
        }
    }
}
