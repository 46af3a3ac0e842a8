//! The Python tools Glasswatch's checks use (moto, cfn-lint, checkov),
//! installed from PyPI into a virtualenv under `target/py`, pinned by
//! `xtask/python-requirements.txt`. Reinstalled only when that file changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run_command;

const REQUIREMENTS: &str = include_str!("../python-requirements.txt");

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

#[derive(Debug, Clone)]
pub struct Venv {
    pub root: PathBuf,
}

impl Venv {
    pub fn bin(&self, tool: &str) -> PathBuf {
        self.root.join("bin").join(tool)
    }
}

/// The virtualenv, created and filled on first use.
pub fn ensure() -> Result<Venv> {
    let root = target_dir().join("py");
    let stamp = root.join(".glasswatch-requirements");
    let venv = Venv { root: root.clone() };
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == REQUIREMENTS)
        && venv.bin("moto_server").exists()
    {
        return Ok(venv);
    }
    let python = find_python()?;
    eprintln!(
        "==> installing moto, cfn-lint and checkov into {} (first run only; about a minute)",
        root.display()
    );
    if !venv.bin("pip").exists() {
        run_command(
            Command::new(&python).args(["-m", "venv"]).arg(&root),
            "create the virtualenv",
        )?;
    }
    let requirements = root.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS).context("cannot write requirements.txt")?;
    run_command(
        Command::new(venv.bin("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "install the Python tools from PyPI",
    )?;
    std::fs::write(&stamp, REQUIREMENTS).context("cannot write the install stamp")?;
    Ok(venv)
}

fn find_python() -> Result<String> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args([
                "-c",
                "import sys, venv; sys.exit(0 if sys.version_info >= (3, 9) else 1)",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(candidate.to_owned());
        }
    }
    bail!(
        "no Python 3.9+ with the venv module found; install it (Debian: `apt-get install python3 python3-venv`)"
    )
}
