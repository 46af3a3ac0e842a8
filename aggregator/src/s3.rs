//! S3 as the reconciler and `replay s3://` read it: a client (path-style
//! addressing behind an endpoint override, as moto needs), and an object
//! streamed into a blocking `Read` a few chunks ahead of its reader, so a
//! 50 MiB log file never sits in memory whole.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use aws_config::SdkConfig;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;

/// How many chunks a download may run ahead of its reader.
const CHUNKS_AHEAD: usize = 4;

/// S3 needs path-style addressing behind an endpoint override (moto).
pub fn client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Start `request` on `runtime` and return a reader of the object's bytes,
/// fed by the download. A failed request or a download that breaks off is
/// a read error naming the object; `on_chunk` sees each chunk's size (for
/// a progress bar). Read it off the runtime's threads (`spawn_blocking`,
/// or another thread): it blocks.
pub fn stream(
    runtime: &tokio::runtime::Handle,
    request: GetObjectFluentBuilder,
    on_chunk: impl Fn(usize) + Send + 'static,
) -> ObjectReader {
    let (send, receive) = sync_channel::<io::Result<bytes::Bytes>>(CHUNKS_AHEAD);
    let name = format!(
        "s3://{}/{}",
        request.get_bucket().as_deref().unwrap_or_default(),
        request.get_key().as_deref().unwrap_or_default()
    );
    runtime.spawn(async move {
        let failed = |send: &SyncSender<io::Result<bytes::Bytes>>, e: String| {
            let _ = send.send(Err(io::Error::other(e)));
        };
        let mut body = match request.send().await {
            Ok(out) => out.body,
            Err(e) => {
                return failed(
                    &send,
                    format!("s3:GetObject {name}: {}", DisplayErrorContext(&e)),
                );
            }
        };
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    on_chunk(chunk.len());
                    // A reader that stopped listening ends the download.
                    if send.send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = send.send(Ok(bytes::Bytes::new()));
                    return;
                }
                Err(e) => return failed(&send, format!("{name}: the download broke off: {e}")),
            }
        }
    });
    ObjectReader {
        receive,
        chunk: bytes::Bytes::new(),
        done: false,
    }
}

/// `Read` over the chunks a download sends. The download marks its end
/// with an empty chunk, so a download task that died without one (its
/// runtime shut down) is an error, never a silently short object.
#[derive(Debug)]
pub struct ObjectReader {
    receive: Receiver<io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
    done: bool,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.receive.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Ok(chunk) => self.chunk = chunk?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the download stopped before the end of the object",
                    ));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
