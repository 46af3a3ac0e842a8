//! `cargo xtask test`: the one test command. Installs the Python tools,
//! starts moto, runs fmt, clippy, every test in the workspace and the
//! template linters, and stops moto again whatever happened.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::python::{self, Venv, workspace_root};
use crate::run_command;
use test_support::moto::PrivateMoto;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip `cargo fmt --check` and `cargo clippy` (quicker local loops).
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments for `cargo test`, e.g. a test name filter.
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

pub fn run(args: &Args) -> Result<()> {
    ensure_rust_components()?;
    let venv = python::ensure()?;
    let moto = PrivateMoto::start_with(&venv.bin("python"))?;
    eprintln!("==> moto listening on {}", moto.endpoint);
    let mut failures = Vec::new();
    let mut step = |name: &str, result: Result<()>| {
        if let Err(e) = result {
            eprintln!("==> FAILED: {name}: {e:#}");
            failures.push(name.to_owned());
        }
    };
    if !args.no_lint {
        eprintln!("==> cargo fmt --check");
        step(
            "fmt",
            run_command(
                cargo().args(["fmt", "--all", "--check"]),
                "check formatting (run `cargo fmt --all`)",
            ),
        );
        eprintln!("==> cargo clippy");
        step(
            "clippy",
            run_command(
                cargo().args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]),
                "pass clippy",
            ),
        );
    }
    eprintln!("==> cargo test (moto at {})", moto.endpoint);
    step(
        "tests",
        run_command(
            cargo()
                .args(["test", "--workspace"])
                .args(&args.cargo_test_args)
                .env("GLASSWATCH_MOTO_ENDPOINT", &moto.endpoint)
                .env("GLASSWATCH_PYTHON_BIN", venv.root.join("bin")),
            "pass the tests",
        ),
    );
    step("templates", lint_templates(&venv));
    drop(moto);
    if !failures.is_empty() {
        bail!("failed steps: {}", failures.join(", "));
    }
    eprintln!("==> all checks passed");
    Ok(())
}

fn ensure_rust_components() -> Result<()> {
    let have = |tool: &str| {
        cargo()
            .args([tool, "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(have("fmt") && have("clippy")) {
        eprintln!("==> installing rustfmt and clippy");
        run_command(
            Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]),
            "install rustfmt and clippy with rustup",
        )?;
    }
    Ok(())
}

/// cfn-lint and checkov over every template in `stacksets/templates`, and
/// over the agent and audit templates as deploy renders them from
/// `glasswatch.toml` (with their generated rules).
fn lint_templates(venv: &Venv) -> Result<()> {
    let dir = workspace_root().join("stacksets/templates");
    let rendered_dir = crate::python::target_dir().join("rendered-templates");
    std::fs::create_dir_all(&rendered_dir)
        .with_context(|| format!("cannot create {}", rendered_dir.display()))?;
    let config = crate::replay::load_config(&workspace_root().join("glasswatch.toml"))?;
    let blueprint = glasswatch_stacksets::render::Blueprint::of(&config)
        .map_err(|e| anyhow::anyhow!("glasswatch.toml: {e}"))?;
    // With the code versions pinned, as deploy renders them once the zips
    // are uploaded.
    let versions: std::collections::BTreeMap<String, String> = config
        .organization
        .regions
        .iter()
        .map(|r| (r.clone(), "3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY".to_owned()))
        .collect();
    let pin = |template: &str, key: &str| {
        glasswatch_stacksets::render::pin_code_versions(template, key, &versions)
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let rendered = rendered_dir.join("agent-rendered.yaml");
    std::fs::write(&rendered, pin(&blueprint.agent_template, "AgentCodeKey")?)
        .with_context(|| format!("cannot write {}", rendered.display()))?;
    let rendered_audit = rendered_dir.join("audit-rendered.yaml");
    std::fs::write(
        &rendered_audit,
        pin(&blueprint.audit_template, "AggregatorCodeKey")?,
    )
    .with_context(|| format!("cannot write {}", rendered_audit.display()))?;
    let mut templates: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    templates.sort();
    templates.push(rendered);
    templates.push(rendered_audit);
    eprintln!(
        "==> cfn-lint and checkov on {} templates (one rendered with {} rules)",
        templates.len(),
        blueprint.rules.len()
    );
    run_command(
        Command::new(venv.bin("cfn-lint")).args(&templates),
        "pass cfn-lint",
    )?;
    for dir in [&dir, &rendered_dir] {
        run_command(
            Command::new(venv.bin("checkov"))
                .args([
                    "--quiet",
                    "--compact",
                    "--skip-download",
                    "--framework",
                    "cloudformation",
                    "-d",
                ])
                .arg(dir),
            "pass checkov",
        )?;
    }
    Ok(())
}
