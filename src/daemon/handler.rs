//! The daemon's answers on its control socket: `status` (what `vskel
//! status` shows, with the daemon's own view of the views it serves),
//! `mount`, `unmount`, `sync`, `materialize` (`"vs": NAME`) and `reload`.
//! Each command's arguments are checked first; a bad one is an error
//! reply naming it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Map, Value, json};

use super::protocol::{Handler, unknown_command};
use super::supervisor::Phase;
use super::views::{Applied, Views};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::vserver::registry::Kind;
use crate::vserver::status::{ServedBy, StatusReport, VsStatus, status};

/// What the handler answers with.
pub struct DaemonHandler {
    /// The configuration now (replaced on reload).
    pub config: Arc<RwLock<Config>>,
    /// The views.
    pub views: Arc<Views>,
    /// Re-read the configuration and apply it (the `reload` command and
    /// SIGHUP do the same).
    pub reload: Arc<dyn Fn() -> Result<Applied> + Send + Sync>,
}

impl Handler for DaemonHandler {
    fn handle(&self, cmd: &str, args: &Map<String, Value>) -> std::result::Result<Value, String> {
        let config = self.config.read().clone();
        let answer = |value: Result<Value>| value.map_err(|e| e.to_string());
        match cmd {
            "status" => answer(self.status(&config, &names(args)?)),
            "mount" => {
                let name = vs(args)?;
                let at = path_arg(args, "at")?;
                answer(
                    self.views
                        .mount(name, at.as_deref())
                        .map(|m| json!({ "report": m })),
                )
            }
            "unmount" => {
                let name = vs(args)?;
                let lazy = bool_arg(args, "lazy")?;
                answer(
                    self.views
                        .unmount(&config, name, lazy)
                        .map(|u| json!({ "report": u })),
                )
            }
            "sync" => {
                let name = vs(args)?;
                let dry_run = bool_arg(args, "dry_run")?;
                answer(
                    crate::vserver::sync::sync_view(&config, name, dry_run, &Progress::hidden())
                        .map(|s| json!({ "report": s, "text": s.to_string() })),
                )
            }
            "materialize" => {
                let name = vs(args)?;
                let released = self.views.release(name);
                let done =
                    crate::vserver::materialize::materialize(&config, name, &Progress::hidden());
                if done.is_err()
                    && let Some(slot) = released
                {
                    // Still a view: keep serving it.
                    slot.want(self.views.shared(), None);
                }
                answer(done.map(|m| json!({ "report": m, "text": m.to_string() })))
            }
            "reload" => answer((self.reload)().map(|applied| json!({ "report": applied }))),
            other => Err(unknown_command(other)),
        }
    }

    /// The vservers root it serves and its pid: a command line of another
    /// setup (another `--config`) does not send it its commands.
    fn hello(&self) -> Map<String, Value> {
        let root = self.config.read().root.clone();
        Map::from_iter([
            ("root".to_string(), json!(root)),
            ("pid".to_string(), json!(std::process::id())),
        ])
    }
}

impl DaemonHandler {
    /// `vskel status` of `names` (every vserver when empty), with what
    /// the daemon knows of the views it serves: served by it, and the
    /// last error of a failing one; views it was asked for that are not
    /// registered are listed too, with their error.
    fn status(&self, config: &Config, names: &[String]) -> Result<Value> {
        let mut vservers = status(config, names)?;
        for (name, state) in self.views.states() {
            if !names.is_empty() && !names.contains(&name) {
                continue;
            }
            let at = match vservers.iter().position(|s| s.name == name) {
                Some(at) => at,
                None if state.wanted => {
                    vservers.push(unregistered(&name));
                    vservers.len() - 1
                }
                None => continue,
            };
            let entry = &mut vservers[at];
            if let Some(mounted) = &state.mounted
                && entry.pid == Some(mounted.pid)
            {
                entry.served_by = Some(ServedBy::Daemon);
            }
            let retry = match state.phase {
                Phase::Retrying(when) => format!(
                    "; starting it again in {} s",
                    when.saturating_duration_since(std::time::Instant::now())
                        .as_secs()
                ),
                _ => String::new(),
            };
            if let Some(error) = state.error.filter(|_| state.mounted.is_none()) {
                entry.error = Some(match entry.error.take() {
                    Some(own) => format!("{own}; {error}{retry}"),
                    None => format!("{error}{retry}"),
                });
            }
        }
        serde_json::to_value(StatusReport { vservers })
            .map_err(|e| crate::error::Error::Failed(format!("the status report: {e}")))
    }
}

/// A view the daemon was asked for that is not registered.
fn unregistered(name: &str) -> VsStatus {
    let mut status = VsStatus::unknown(name, Kind::Unregistered);
    status.mounted = Some(false);
    status
}

/// `"vs"`: a vserver name.
fn vs(args: &Map<String, Value>) -> std::result::Result<&str, String> {
    match args.get("vs") {
        Some(Value::String(name)) => Ok(name),
        Some(_) => Err("\"vs\" must be a vserver name (a string)".to_string()),
        None => Err("the command needs \"vs\": the vserver's name".to_string()),
    }
}

/// `"vs"` for status: absent (every vserver), a name or a list of names.
fn names(args: &Map<String, Value>) -> std::result::Result<Vec<String>, String> {
    let bad = || "\"vs\" must be a name or a list of names".to_string();
    match args.get("vs") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(name)) => Ok(vec![name.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|n| n.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// An optional boolean argument (absent: false).
fn bool_arg(args: &Map<String, Value>, key: &str) -> std::result::Result<bool, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("\"{key}\" must be true or false")),
    }
}

/// An optional absolute path argument.
fn path_arg(args: &Map<String, Value>, key: &str) -> std::result::Result<Option<PathBuf>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(path)) if Path::new(path).is_absolute() => Ok(Some(path.into())),
        Some(_) => Err(format!("\"{key}\" must be an absolute path")),
    }
}
