//! `vskel create-vs [--view] SKEL NAME FQDN IP`.

use super::output::{Format, print};
use super::prompt::value_or_ask;
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::validate::Loopback;
use crate::vserver::create::{CreateRequest, create_view_vs, create_vs};

/// Create a vserver from a skel: a real hard-linked tree, or (--view) a view.
///
/// Global files are hard-linked to the skel's inodes, local ones copied,
/// static ones copied with %%VS_NAME%%, %%VS_IP%%, %%VS_FQDN%%,
/// %%VS_CONTEXT%% (and [tokens] from the config) replaced. The context ID
/// comes from <etc>/contexts/nextid; <etc>/NAME.conf is written from the
/// skel's configfile. Then each of the skel's scripts/post-create-vs/* runs
/// with VS_NAME VS_IP VS_FQDN VS_CONTEXT VS_ROOT VS_SKEL in its
/// environment. Values left out are asked for on a terminal.
///
/// With --view, no tree is made: <root>/.views/NAME/ gets static/ (the
/// skel's static/ rendered) and empty upper/, work/ and merged/, and
/// `vskel mount NAME` shows the vserver as a copy-on-write view of the skel
/// at .views/NAME/merged (its VS_ROOT). The post-create scripts of a view
/// run against the view, mounted there for them (their writes land in its
/// upper layer) and unmounted again; where it cannot be mounted (no FUSE)
/// they run at its first `vskel sync`, against the tree.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Make a view (mounted with `vskel mount NAME`) instead of a tree.
    #[arg(long)]
    view: bool,
    /// The skel to create it from.
    skel: Option<String>,
    /// The vserver's name (letters, digits, '.', '_', '-'; at most 64 bytes).
    name: Option<String>,
    /// Its fully qualified domain name.
    fqdn: Option<String>,
    /// Its IPv4 or IPv6 address (not unspecified, broadcast, multicast or
    /// reserved; loopback only with --allow-loopback).
    ip: Option<String>,
    /// Accept a loopback IP address (127.0.0.0/8, ::1): a vserver only the
    /// host itself can reach.
    #[arg(long)]
    allow_loopback: bool,
    /// Accept an IP address another vserver has already (refused otherwise).
    #[arg(long)]
    shared_ip: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let request = CreateRequest {
        skel: value_or_ask(
            args.skel.as_deref(),
            "SKEL",
            "Skel to create the vserver from",
        )?,
        name: value_or_ask(args.name.as_deref(), "NAME", "Name of the new vserver")?,
        fqdn: value_or_ask(
            args.fqdn.as_deref(),
            "FQDN",
            "Its fully qualified domain name",
        )?,
        ip: value_or_ask(args.ip.as_deref(), "IP", "Its IP address")?,
        loopback: if args.allow_loopback {
            Loopback::Allow
        } else {
            Loopback::Refuse
        },
        shared_ip: args.shared_ip,
    };
    if args.view {
        let created = create_view_vs(config, &request, progress)?;
        return print(args.format, &created, || {
            let pending = if created.pending_scripts.is_empty() {
                format!(
                    "; {} post-create scripts run in the view",
                    created.scripts.len()
                )
            } else {
                format!(
                    "; post-create scripts {} run at the first `vskel sync {}`",
                    created.pending_scripts.join(", "),
                    created.name
                )
            };
            format!(
                "created view vserver {} from skel {}: context {}, config {}; \
                 static/ rendered ({} files); `vskel mount {}` mounts it at {}{pending}",
                created.name,
                created.skel,
                created.context,
                created.config_file.display(),
                created.counts.rendered + created.counts.copied,
                created.name,
                created.root.display(),
            )
        });
    }
    let created = create_vs(config, &request, progress)?;
    print(args.format, &created, || {
        let c = &created.counts;
        format!(
            "created vserver {} from skel {} at {}: context {}, config {}; \
             {} entries hard-linked, {} copied, {} rendered, {} directories; {} scripts run",
            created.name,
            created.skel,
            created.root.display(),
            created.context,
            created.config_file.display(),
            c.linked,
            c.copied,
            c.rendered,
            c.dirs,
            created.scripts.len()
        )
    })
}
