//! Building the two Lambda zips with cargo-lambda (from the virtualenv, with
//! zig) for `provided.al2023`, in the architecture the configuration names.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use glasswatch_core::config::LambdaArchitecture;

use crate::python::{Venv, target_dir, workspace_root};
use crate::run_command;

/// The binaries, as `cargo lambda build` names its output directories.
pub const AGENT: &str = "glasswatch-agent";
pub const AGGREGATOR: &str = "glasswatch-aggregator";

/// The zips of both functions.
#[derive(Debug, Clone)]
pub struct Built {
    pub agent: PathBuf,
    pub aggregator: PathBuf,
}

fn rust_target(arch: LambdaArchitecture) -> &'static str {
    match arch {
        LambdaArchitecture::Arm64 => "aarch64-unknown-linux-gnu",
        LambdaArchitecture::X86_64 => "x86_64-unknown-linux-gnu",
    }
}

/// arm64 needs the Rust standard library for aarch64, which only rustup
/// provides; say how to add it rather than fail deep inside the build.
fn check_target(arch: LambdaArchitecture) -> Result<()> {
    if arch == LambdaArchitecture::X86_64 {
        return Ok(());
    }
    let target = rust_target(arch);
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run `rustup target list --installed`")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == target)
    {
        bail!(
            "lambda_architecture = \"arm64\" needs the Rust target {target}, which is not installed.\n  \
             hint: run `rustup target add {target}`, or set `lambda_architecture = \"x86_64\"` under [deploy]"
        );
    }
    Ok(())
}

/// `cargo lambda build --release` of both functions, as zips.
pub fn build(venv: &Venv, arch: LambdaArchitecture) -> Result<Built> {
    check_target(arch)?;
    let flag = match arch {
        LambdaArchitecture::Arm64 => "--arm64",
        LambdaArchitecture::X86_64 => "--x86-64",
    };
    eprintln!("==> cargo lambda build --release {flag} (agent and aggregator)");
    let path = std::env::join_paths(
        std::iter::once(venv.root.join("bin")).chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    )
    .context("cannot build PATH for cargo-lambda")?;
    run_command(
        Command::new(venv.bin("cargo-lambda"))
            .current_dir(workspace_root())
            .env("PATH", path)
            .args([
                "lambda",
                "build",
                "--release",
                flag,
                "--output-format",
                "zip",
                "-p",
                AGENT,
                "-p",
                AGGREGATOR,
            ]),
        "build the Lambda zips with cargo lambda",
    )?;
    let zip = |name: &str| -> Result<PathBuf> {
        let path = target_dir().join("lambda").join(name).join("bootstrap.zip");
        if !path.is_file() {
            bail!("cargo lambda succeeded but {} is missing", path.display());
        }
        Ok(path)
    };
    Ok(Built {
        agent: zip(AGENT)?,
        aggregator: zip(AGGREGATOR)?,
    })
}

/// Prebuilt zips from a directory: `agent.zip` and `aggregator.zip`.
pub fn prebuilt(dir: &Path) -> Result<Built> {
    let built = Built {
        agent: dir.join("agent.zip"),
        aggregator: dir.join("aggregator.zip"),
    };
    for zip in [&built.agent, &built.aggregator] {
        if !zip.is_file() {
            bail!(
                "{} is missing; --artifacts DIR must hold agent.zip and aggregator.zip",
                zip.display()
            );
        }
    }
    Ok(built)
}
