//! `vskel materialize NAME`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::vserver::materialize::materialize;

/// Make a view an ordinary on-disk vserver: unmount it if mounted, sync it
/// into <root>/NAME, record it as a tree (its context link points at the
/// tree) and remove its view directory (upper, work, rendered static).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The view vserver to materialize.
    name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    // The daemon stops looking after the view first, so it does not
    // mount it again while it becomes a tree.
    if let Some(mut daemon) = crate::daemon::route::running(config)? {
        let reply = daemon.ask(serde_json::json!({ "cmd": "materialize", "vs": args.name }))?;
        return print(args.format, &reply["report"], || {
            reply["text"].as_str().unwrap_or_default().to_string()
        });
    }
    let done = materialize(config, &args.name, progress)?;
    print(args.format, &done, || done.to_string())
}
