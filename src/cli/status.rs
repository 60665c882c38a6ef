//! `vskel status [NAME...] [--format json]`.

use super::output::{Format, aligned, print};
use crate::config::Config;
use crate::error::Result;
use crate::vserver::registry::Kind;
use crate::vserver::status::{ServedBy, StatusReport, VsStatus, status};

/// Show each vserver's kind and, for a view, how it is served.
///
/// For a view: whether it is mounted and where, who serves it (the
/// daemon, or a lone `vskel mount` server) and its pid, whether its mount is stale (its
/// server died: `vskel mount` or `vskel unmount --lazy` clears it), how
/// many bytes its upper layer takes on disk, and its last error. Asked of
/// `vskel daemon` when it runs (it adds the views it serves, their
/// failures and retries), else read from /proc/self/mountinfo and the
/// views' pid files. An unknown NAME is a usage error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vservers to show [default: every registered one].
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let report = match crate::daemon::route::running(config)? {
        Some(mut daemon) => {
            let reply = daemon.ask(serde_json::json!({ "cmd": "status", "vs": args.names }))?;
            serde_json::from_value(reply).map_err(|e| {
                crate::error::Error::Failed(format!("the daemon's status is not one: {e}"))
            })?
        }
        None => StatusReport {
            vservers: status(config, &args.names)?,
        },
    };
    print(args.format, &report, || table(&report.vservers))
}

/// One vserver a line, in aligned columns.
fn table(vservers: &[VsStatus]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 7]> = vservers
        .iter()
        .map(|s| {
            let state = match (s.kind, s.mounted, s.stale) {
                _ if s.incomplete => "incomplete",
                (Kind::View, _, Some(true)) => "stale",
                (Kind::View, Some(true), _) => "mounted",
                (Kind::View, _, _) => "unmounted",
                _ => "-",
            };
            [
                s.name.clone(),
                match s.kind {
                    Kind::Tree => "tree",
                    Kind::View => "view",
                    Kind::Unregistered => "unregistered",
                }
                .to_string(),
                state.to_string(),
                match s.served_by {
                    Some(ServedBy::Lone) => "lone".to_string(),
                    Some(ServedBy::Daemon) => "daemon".to_string(),
                    None => dash(),
                } + &s.pid.map(|p| format!(" {p}")).unwrap_or_default(),
                s.upper_bytes.map(|b| b.to_string()).unwrap_or_else(dash),
                s.mountpoint
                    .as_ref()
                    .map(|m| m.display().to_string())
                    .unwrap_or_else(dash),
                s.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    aligned(
        [
            "NAME",
            "KIND",
            "STATE",
            "SERVER",
            "UPPER",
            "MOUNTPOINT",
            "ERROR",
        ],
        &rows,
    )
}
