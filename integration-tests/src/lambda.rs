//! The Lambda Runtime API, emulated by `cargo lambda watch`, for tests that
//! run the real `bootstrap` binaries.
//!
//! `cargo lambda watch --only-lambda-apis` serves the Runtime API and the
//! Invoke API without building or starting anything itself; the test
//! starts the binary that `cargo test` already built (`CARGO_BIN_EXE_…`),
//! so no second build with different features runs inside a test.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::workspace_root;

/// The function name `cargo lambda watch` gives the function when it
/// does not start it itself.
const FUNCTION: &str = "_";

/// A running `cargo lambda watch`, stopped when dropped.
#[derive(Debug)]
pub struct LambdaWatch {
    child: Child,
    port: u16,
    pub log: PathBuf,
}

/// A tool installed into the test virtualenv by `cargo xtask test`.
///
/// # Panics
/// When the tests run without that virtualenv: the message says how.
pub fn python_tool(name: &str) -> PathBuf {
    let bin = std::env::var("GLASSWATCH_PYTHON_BIN").unwrap_or_else(|_| {
        panic!(
            "GLASSWATCH_PYTHON_BIN is not set: this test needs `{name}` from the test \
             virtualenv. Run it with `cargo xtask test`, or export \
             GLASSWATCH_PYTHON_BIN=$PWD/target/py/bin after one `cargo xtask test`"
        )
    });
    PathBuf::from(bin).join(name)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A new log file in the target directory, outside any watched source
/// tree.
pub(crate) fn log_file(name: &str) -> Result<(PathBuf, std::fs::File)> {
    let logs = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let log = logs.join(name);
    let out =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    Ok((log, out))
}

/// Wait until `child` (`what`, logging to `log`) listens on `port`: at
/// most 30 s, and not after it exited.
pub(crate) fn wait_until_listening(
    child: &mut Child,
    port: u16,
    what: &str,
    log: &Path,
) -> Result<()> {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}) before listening; see {}",
                log.display()
            );
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{what} did not listen within 30 s; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl LambdaWatch {
    /// Start the emulator on a free loopback port and wait until it
    /// accepts connections. Its log goes to the target directory, outside any watched
    /// source tree.
    pub fn start(name: &str) -> Result<Self> {
        let port = free_port()?;
        let root = workspace_root();
        let (log, out) = log_file(&format!("lambda-watch-{name}-{port}.log"))?;
        let tool = python_tool("cargo-lambda");
        let child = Command::new(&tool)
            .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes"])
            .args(["-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", tool.display()))?;
        let mut watch = Self { child, port, log };
        if let Err(e) =
            wait_until_listening(&mut watch.child, port, "cargo lambda watch", &watch.log)
        {
            watch.stop();
            return Err(e);
        }
        Ok(watch)
    }

    /// The value for the function's `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        format!("http://127.0.0.1:{}/.rt", self.port)
    }

    /// The environment a function needs besides its own configuration.
    pub fn function_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.runtime_api()),
            ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ]
    }

    /// Invoke the function synchronously through the Invoke API. Returns
    /// the HTTP status and the response body as JSON (a string body is
    /// returned as a JSON string).
    pub async fn invoke(&self, payload: &Value) -> Result<(u16, Value)> {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{FUNCTION}/invocations",
            self.port
        );
        let response = reqwest::Client::new()
            .post(&url)
            .json(payload)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.context("invoke response body")?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `bootstrap` binary `name` that cargo built next to the running test
/// (`target/debug/NAME`). `cargo test --workspace` (what `cargo xtask
/// test` runs) builds every package's binaries first; a lone
/// `cargo test -p glasswatch-integration-tests` does not, hence the check
/// that the binary exists and is newer than the sources it is built from
/// (`crates`, relative to the workspace root).
pub fn built_binary(name: &str, crates: &[&str]) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("the test's own path")?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary is not inside target/<profile>/deps")?;
    let binary = dir.join(name);
    let build = format!(
        "build it first: `cargo build {}` (or run `cargo xtask test`)",
        crates
            .iter()
            .filter(|c| **c != "core")
            .map(|c| format!("-p glasswatch-{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .map_err(|e| anyhow::anyhow!("{}: {e}; {build}", binary.display()))?;
    for krate in crates {
        let src = workspace_root().join(krate).join("src");
        for entry in std::fs::read_dir(&src).with_context(|| format!("list {}", src.display()))? {
            let path = entry?.path();
            if std::fs::metadata(&path)?.modified()? > built {
                bail!(
                    "{} is older than {}; {build}",
                    binary.display(),
                    path.display()
                );
            }
        }
    }
    Ok(binary)
}

/// A real `bootstrap` binary serving its own `cargo lambda watch`; both
/// stop when dropped.
#[derive(Debug)]
pub struct RunningFunction {
    watch: LambdaWatch,
    child: Child,
    /// The function's own output (JSON log lines).
    pub log: PathBuf,
}

impl RunningFunction {
    /// Start `binary` with a clean environment: `PATH`, the Runtime API
    /// variables, and `env`.
    pub fn start(name: &str, binary: &Path, env: &[(String, String)]) -> Result<Self> {
        let watch = LambdaWatch::start(name)?;
        let (log, out) = log_file(&format!("function-{name}-{}.log", watch.port))?;
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(watch.function_env())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self { watch, child, log })
    }

    /// Invoke synchronously. `Ok(Ok(body))` when the function returned,
    /// `Ok(Err(error))` when it failed (Lambda would retry it).
    pub async fn invoke(&self, payload: &Value) -> Result<std::result::Result<Value, String>> {
        let (status, body) = self.watch.invoke(payload).await?;
        let function_error = body.get("errorType").is_some() || body.get("errorMessage").is_some();
        Ok(if status >= 400 || function_error {
            Err(format!("HTTP {status}: {body}"))
        } else {
            Ok(body)
        })
    }
}

impl Drop for RunningFunction {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
