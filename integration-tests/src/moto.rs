//! A moto server on a free loopback port, stopped (and its memory
//! returned) when dropped: the one `cargo xtask test` shares with every
//! test, and one of a test's own for tests that write enough to strain a
//! shared one.
//!
//! moto 5 keeps every model instance it ever made for its dashboard, and
//! its `TransactWriteItems` deep-copies the whole table once per item of
//! every transaction; together, memory grows with the square of the
//! writes (gigabytes for a few hundred ingests), and a failed transaction
//! restores a copy that wipes other requests' writes. This server runs
//! with the tracking off and a journal of the touched items instead of
//! table copies (`moto_launch.py`); AWS behaviour is unchanged.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::lambda::{free_port, log_file, python_tool, wait_until_listening};

/// Start moto's server without its two emulation costs (see the script:
/// dashboard tracking, and whole-table copies in transactions).
const LAUNCH: &str = include_str!("moto_launch.py");

/// A moto server on a free loopback port.
#[derive(Debug)]
pub struct PrivateMoto {
    child: Child,
    pub endpoint: String,
    pub log: PathBuf,
}

impl PrivateMoto {
    /// Start it from the test virtualenv and wait until it listens.
    pub fn start() -> Result<Self> {
        Self::start_with(&python_tool("python"))
    }

    /// Start it with this virtualenv's `python`, which has moto installed.
    pub fn start_with(python: &std::path::Path) -> Result<Self> {
        let port = free_port()?;
        let (log, out) = log_file(&format!("moto-private-{port}.log"))?;
        let child = Command::new(python)
            .args(["-c", LAUNCH, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start moto with {}", python.display()))?;
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        wait_until_listening(&mut moto.child, port, "moto", &moto.log)?;
        Ok(moto)
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
