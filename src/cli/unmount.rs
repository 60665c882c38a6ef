//! `vskel unmount NAME|MOUNTPOINT [--lazy]`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::vserver::mount::{Unmounted, unmount};

/// Unmount a view (by vserver name) or a vskel mount (by mount point).
///
/// NAME unmounts the view where its server mounted it; a MOUNTPOINT (an
/// argument with a '/', or an existing path no view is named after)
/// unmounts the vskel mount there, a view's or an overlay's. Then vskel
/// waits up to 10 s for the server process to exit. A busy mount (a
/// process has a file open or its working directory in it) is refused:
/// stop what uses it, or give --lazy to detach the mount at once; it is
/// freed, and its server exits, when its last user leaves.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The view vserver, or the mount point.
    #[arg(value_name = "NAME|MOUNTPOINT")]
    target: String,
    /// Detach the mount even if it is busy; it goes when its last user leaves.
    #[arg(long, short = 'l')]
    lazy: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// The report as text.
fn text(report: &Unmounted) -> String {
    let what = match &report.name {
        Some(name) => format!("view {name} from "),
        None => String::new(),
    };
    let server = match (report.server_pid, report.server_exited) {
        (Some(pid), Some(true)) => format!("; server pid {pid} exited"),
        (Some(pid), _) if report.lazy => {
            format!("; server pid {pid} serves until the last user leaves")
        }
        (Some(pid), _) => format!("; server pid {pid} is still running"),
        _ => String::new(),
    };
    format!(
        "{}unmounted {what}{}{server}",
        if report.lazy { "lazily " } else { "" },
        report.mountpoint.display()
    )
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    // A view by name goes through the daemon when it runs (it stops
    // looking after the view); a mount point is unmounted here.
    let by_name = !args.target.contains('/') && args.target != "." && args.target != "..";
    if by_name && let Some(mut daemon) = crate::daemon::route::running(config)? {
        let (report, _): (Unmounted, _) = daemon.report(serde_json::json!({
            "cmd": "unmount", "vs": args.target, "lazy": args.lazy,
        }))?;
        return print(args.format, &report, || text(&report));
    }
    let report = unmount(config, &args.target, args.lazy)?;
    print(args.format, &report, || text(&report))
}
