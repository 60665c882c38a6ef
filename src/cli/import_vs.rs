//! `vskel import-vs oci:DIR[:TAG] NAME [--ip IP] [--fqdn FQDN] [--view]`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::oci::ImageRef;
use crate::progress::Progress;
use crate::validate::Loopback;
use crate::vserver::oci::{VsImportOptions, import_vs};

/// Make a vserver from an image `vskel export-vs` wrote on another host.
///
/// Its skel generation is imported first when this host lacks it (as
/// `vskel import-skel` does, under the skel's name: a new skel, or a new
/// generation of it). The vserver gets a new context ID, and its static
/// files are rendered for this host's IP address and FQDN (default: the
/// ones it had); its own changes are unpacked over the skel, and its
/// post-create scripts do not run again. It becomes a tree whose
/// unchanged global files are the skel's inodes, or with --view a view
/// whose upper layer holds its changes. The image is untrusted, as for
/// import-skel; a failure leaves no vserver behind.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where from: oci:DIR[:TAG].
    #[arg(value_name = "oci:DIR[:TAG]")]
    src: String,
    /// The vserver's name on this host.
    name: String,
    /// Its IP address here [default: the one it had].
    #[arg(long)]
    ip: Option<String>,
    /// Its FQDN here [default: the one it had].
    #[arg(long)]
    fqdn: Option<String>,
    /// Make it a view instead of a tree.
    #[arg(long)]
    view: bool,
    /// Accept a loopback IP address (127.0.0.0/8, ::1).
    #[arg(long)]
    allow_loopback: bool,
    /// Accept an IP address another vserver has already.
    #[arg(long)]
    shared_ip: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let src = ImageRef::parse(&args.src)?;
    let options = VsImportOptions {
        ip: args.ip.clone(),
        fqdn: args.fqdn.clone(),
        view: args.view,
        loopback: if args.allow_loopback {
            Loopback::Allow
        } else {
            Loopback::Refuse
        },
        shared_ip: args.shared_ip,
    };
    let report = import_vs(config, &src, &args.name, &options, progress)?;
    print(args.format, &report, || {
        format!(
            "imported vserver {} as a {}: context {}, IP {}, FQDN {}; skel {} {}; {} entries \
             and {} whiteouts of its own",
            report.vserver,
            if args.view { "view" } else { "tree" },
            report.context,
            report.ip,
            report.fqdn,
            report.skel.skel,
            match report.skel.result {
                crate::skel::oci::import::ImportResult::New => "imported",
                crate::skel::oci::import::ImportResult::Generation => "given a new generation",
                crate::skel::oci::import::ImportResult::Unchanged => "already here",
            },
            report.entries,
            report.whiteouts
        )
    })
}
