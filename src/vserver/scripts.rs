//! Post-create scripts: `<skel>/scripts/post-create-vs/*`, run in name order
//! with the vserver's values in the environment and its name as `$1`.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::tokens::Tokens;

/// Lines of a failing script's stderr quoted in the error.
const STDERR_TAIL_LINES: usize = 20;
/// Executable bits.
const ANY_EXEC: u32 = 0o111;

/// A script that failed.
#[derive(Debug)]
pub struct ScriptFailure {
    /// The script's file name.
    pub script: String,
    /// How it ended.
    pub status: String,
    /// The last lines of its stderr.
    pub stderr_tail: String,
}

/// The scripts in `dir`, in name order (missing dir: none). Entries that
/// are not executable are skipped with a warning.
pub fn scripts_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut scripts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.permissions().mode() & ANY_EXEC != 0 => scripts.push(path),
            Ok(_) => warn!("{} is not an executable file; not run", path.display()),
            Err(e) => warn!("{}: {e}; not run", path.display()),
        }
    }
    scripts.sort();
    Ok(scripts)
}

/// Run each script with `tokens` (VS_NAME, VS_IP, ...) in its environment
/// and `name` as its argument; stop at the first failure. Scripts' stdout
/// and stderr go to vskel's stderr (stdout is for vskel's results).
pub fn run_all(
    scripts: &[PathBuf],
    name: &str,
    tokens: &Tokens,
) -> std::result::Result<Vec<String>, ScriptFailure> {
    let mut ran = Vec::new();
    for script in scripts {
        let script_name = script
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        info!("running post-create script {script_name}");
        run_one(script, name, tokens).map_err(|(status, stderr_tail)| ScriptFailure {
            script: script_name.clone(),
            status,
            stderr_tail,
        })?;
        ran.push(script_name);
    }
    Ok(ran)
}

fn run_one(
    script: &Path,
    name: &str,
    tokens: &Tokens,
) -> std::result::Result<(), (String, String)> {
    let mut command = Command::new(script);
    command
        .arg(name)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => command.stdout(Stdio::from(fd)),
        Err(_) => command.stdout(Stdio::null()),
    };
    for (key, value) in tokens.iter() {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .map_err(|e| (format!("could not start: {e}"), String::new()))?;
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take()
        && let Err(e) = pipe.read_to_end(&mut stderr)
    {
        warn!("reading the stderr of {}: {e}", script.display());
    }
    let status = child
        .wait()
        .map_err(|e| (format!("could not wait for it: {e}"), String::new()))?;
    let text = String::from_utf8_lossy(&stderr);
    if !text.is_empty() {
        eprint!("{text}");
    }
    if status.success() {
        return Ok(());
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
    Err((status.to_string(), tail))
}
