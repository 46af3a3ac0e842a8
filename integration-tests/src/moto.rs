//! A moto server of a test's own, for tests that write enough to strain a
//! shared one, stopped (and its memory returned) when dropped.
//!
//! moto 5 keeps every model instance it ever made for its dashboard, and
//! its `TransactWriteItems` deep-copies the whole table once per item of
//! every transaction; together, memory grows with the square of the
//! writes (gigabytes for a few hundred ingests). This server runs with
//! that dashboard tracking off; AWS behaviour is unchanged.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::lambda::{free_port, python_tool};
use crate::workspace_root;

/// Start moto's server with instance tracking off: `BaseModel.__new__`
/// without the append to `instances_tracked`.
const LAUNCH: &str = "\
import sys
import moto.core.common_models as models
def untracked(cls, *args, **kwargs):
    return super(models.BaseModel, cls).__new__(cls)
models.BaseModel.__new__ = staticmethod(untracked)
from moto.server import main
main(sys.argv[1:])
";

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
        let port = free_port()?;
        let logs = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from);
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let log = logs.join(format!("moto-private-{port}.log"));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let python = python_tool("python");
        let child = Command::new(&python)
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
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = moto.child.try_wait()? {
                bail!(
                    "moto exited ({status}) before listening; see {}",
                    moto.log.display()
                );
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "moto did not listen within 30 s; see {}",
                    moto.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(moto)
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
