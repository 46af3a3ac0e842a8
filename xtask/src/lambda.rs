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

/// One function's build: the Linux binary and the zip deploy uploads.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub binary: PathBuf,
    pub zip: PathBuf,
}

/// `cargo lambda build --release` of the given functions (each package's
/// binary has the package's name), as zips, with zig from the virtualenv.
pub fn build_functions(
    venv: &Venv,
    arch: LambdaArchitecture,
    functions: &[&str],
) -> Result<Vec<Artifact>> {
    check_target(arch)?;
    let flag = match arch {
        LambdaArchitecture::Arm64 => "--arm64",
        LambdaArchitecture::X86_64 => "--x86-64",
    };
    eprintln!(
        "==> cargo lambda build --release {flag} --output-format zip: {}",
        functions.join(", ")
    );
    let path = std::env::join_paths(
        std::iter::once(venv.root.join("bin")).chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    )
    .context("cannot build PATH for cargo-lambda")?;
    let mut command = Command::new(venv.bin("cargo-lambda"));
    command
        .current_dir(workspace_root())
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target_dir())
        .args([
            "lambda",
            "build",
            "--release",
            flag,
            "--output-format",
            "zip",
        ]);
    for function in functions {
        command.args(["-p", function, "--bin", function]);
    }
    run_command(&mut command, "build the Lambda zips with cargo lambda")?;
    functions
        .iter()
        .map(|function| {
            let artifact = Artifact {
                binary: target_dir()
                    .join(rust_target(arch))
                    .join("release")
                    .join(function),
                zip: target_dir()
                    .join("lambda")
                    .join(function)
                    .join("bootstrap.zip"),
            };
            for file in [&artifact.binary, &artifact.zip] {
                if !file.is_file() {
                    bail!("cargo lambda succeeded but {} is missing", file.display());
                }
            }
            Ok(artifact)
        })
        .collect()
}

/// Both functions, for deploy.
pub fn build(venv: &Venv, arch: LambdaArchitecture) -> Result<Built> {
    let mut built = build_functions(venv, arch, &[AGENT, AGGREGATOR])?.into_iter();
    match (built.next(), built.next()) {
        (Some(agent), Some(aggregator)) => Ok(Built {
            agent: agent.zip,
            aggregator: aggregator.zip,
        }),
        _ => bail!("cargo lambda built fewer functions than asked for"),
    }
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
