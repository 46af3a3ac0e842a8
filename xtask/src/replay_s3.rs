//! `cargo xtask replay s3://BUCKET/PREFIX/`: the trail's log files, listed
//! and streamed from S3 (bounded: one object per job in flight, a few
//! chunks buffered each), chosen by the date in their keys.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use anyhow::{Context, Result, bail};
use aws_config::BehaviorVersion;
use glasswatch_core::record::parse_time;
use glasswatch_core::trail::ObjectKey;
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

    /// Is a log file delivered at `time` (its key's) in the window? A log
    /// file holds events of the minutes before its delivery, so `since`
    /// reaches 15 minutes further.
    fn holds(&self, time: i64) -> bool {
        self.since.is_none_or(|s| time + 15 * 60 >= s) && self.until.is_none_or(|u| time <= u)
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
        let mut objects = Vec::new();
        let mut left_out = 0;
        self.runtime.block_on(async {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&location.bucket)
                .prefix(&location.prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    anyhow::anyhow!(
                        "cannot list s3://{}/{}: {}",
                        location.bucket,
                        location.prefix,
                        aws("s3:ListObjectsV2", e)
                    )
                })?;
                for object in page.contents() {
                    let Some(key) = object.key() else { continue };
                    let wanted = if window.is_open() {
                        key.ends_with(".json.gz") || key.ends_with(".json")
                    } else {
                        ObjectKey::parse(key).is_ok_and(|k| {
                            k.kind == glasswatch_core::trail::ObjectKind::LogFile
                                && window.holds(k.time)
                        })
                    };
                    if wanted {
                        objects.push(Object {
                            bucket: location.bucket.clone(),
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
            anyhow::Ok(())
        })?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((objects, left_out))
    }

    /// Stream `object`: a reader fed by a download on the runtime, a few
    /// chunks ahead of it at most. A failed download is a read error.
    pub fn open(&self, object: &Object, bar: &ProgressBar) -> Box<dyn Read + Send> {
        let (send, receive) = sync_channel::<io::Result<bytes::Bytes>>(CHUNKS_AHEAD);
        let request = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key);
        let bar = bar.clone();
        self.runtime.spawn(async move {
            let failed = |send: &SyncSender<io::Result<bytes::Bytes>>, e: String| {
                let _ = send.send(Err(io::Error::other(e)));
            };
            let mut body = match request.send().await {
                Ok(out) => out.body,
                Err(e) => return failed(&send, aws("s3:GetObject", e).to_string()),
            };
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => {
                        bar.inc(chunk.len() as u64);
                        // A reader that stopped listening ends the download.
                        if send.send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => return failed(&send, format!("the download broke off: {e}")),
                }
            }
        });
        Box::new(ChannelReader {
            receive,
            chunk: bytes::Bytes::new(),
        })
    }
}

/// How many chunks a download may run ahead of its reader.
const CHUNKS_AHEAD: usize = 4;

/// `Read` over the chunks a download sends.
struct ChannelReader {
    receive: Receiver<io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.receive.recv() {
                Ok(chunk) => self.chunk = chunk?,
                // The download is over.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

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
        assert!(w.holds(day + 3600) && w.holds(day - 600) && !w.holds(day - 3600));
        assert!(!w.holds(day + 86_400));
        let error = Window::parse(Some("yesterday"), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("neither a day"), "{error}");
        assert!(Window::parse(Some("2026-11-21"), Some("2026-11-20")).is_err());
        assert!(Window::default().is_open());
    }
}
