//! `vskel remove-skel SKEL [--force] [--format json]`.

use std::io::{BufRead, IsTerminal, Write};

use super::output::{Format, print};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::skel::Skel;
use crate::skel::remove::{Removable, remove_skel};
use crate::vserver::registry::{self, Kind};

/// Remove a skel with everything it holds.
///
/// Its global/, local/, static/, scripts, config-file template,
/// generations (and the trees kept for them), global.bak/ and local.bak/
/// all go; immutable files too. Refused while any vserver or view made
/// from it is recorded (they are listed: `vskel remove-vs NAME` each
/// first), and while the skel is merged (`vskel split-skel SKEL` first).
/// On a terminal it asks before removing; without one, --force is needed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The skel to remove.
    name: String,
    /// Do not ask for confirmation (needed without a terminal). It never
    /// removes a skel that vservers or views use.
    #[arg(long)]
    force: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let users = |skel: &Skel| users_of(config, skel);
    let removed = remove_skel(config, &args.name, &users, |target| {
        if args.force { Ok(()) } else { confirm(target) }
    })?;
    print(args.format, &removed, || {
        format!(
            "removed skel {}: {} ({} files)",
            removed.name,
            removed.path.display(),
            removed.files
        )
    })
}

/// The recorded vservers and views of `skel`, as `NAME (KIND)`.
fn users_of(config: &Config, skel: &Skel) -> Result<Vec<String>> {
    Ok(registry::list(config)?
        .into_iter()
        .filter(|r| r.skel.as_deref() == Some(skel.name.as_str()))
        .map(|r| {
            let kind = match r.kind {
                Kind::Tree => "tree",
                Kind::View => "view",
                Kind::Unregistered => "unregistered",
            };
            let creating = if r.creating { ", being created" } else { "" };
            format!("{} ({kind}{creating})", r.name)
        })
        .collect())
}

/// Ask on the terminal; without one, refuse.
fn confirm(target: &Removable) -> Result<()> {
    let name = &target.skel.name;
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "remove-skel {name} would remove {} ({} files) and there is no terminal to ask \
             on: pass --force to remove it",
            target.skel.dirs.dir.display(),
            target.files
        )));
    }
    let mut stderr = std::io::stderr();
    write!(
        stderr,
        "remove skel {name} ({} files)? [y/N] ",
        target.files
    )
    .and_then(|()| stderr.flush())
    .map_err(|e| Error::io("write", "stderr", e))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("read", "stdin", e))?;
    if matches!(line.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
        Ok(())
    } else {
        Err(Error::Failed(format!("skel {name} left as it was")))
    }
}
