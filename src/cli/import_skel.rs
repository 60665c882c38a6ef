//! `vskel import-skel oci:DIR[:TAG] NAME`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::oci::ImageRef;
use crate::progress::Progress;
use crate::skel::oci::import::{ImportResult, import_skel};

/// Build a skel from an OCI image that `vskel export-skel` (or
/// export-vs) wrote, e.g. after `skopeo copy docker://REGISTRY/REPO:TAG
/// oci:DIR:TAG`.
///
/// The image is untrusted: every blob's digest is checked, an entry that
/// would land outside the skel (`..`, absolute names, links out, through a
/// symlink) is refused, and what the layers hold must equal the image's
/// generation record; otherwise nothing is written. A new NAME becomes a
/// skel whole or not at all. When skel NAME exists, the image becomes its
/// next generation (unchanged files keep their inodes; `vskel upgrade-vs`
/// brings its vservers along), or nothing happens if the skel holds that
/// content already. With no TAG, the layout's only image is taken.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where from: oci:DIR[:TAG].
    #[arg(value_name = "oci:DIR[:TAG]")]
    src: String,
    /// The skel's name on this host.
    name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let src = ImageRef::parse(&args.src)?;
    let report = import_skel(config, &src, &args.name, progress)?;
    print(args.format, &report, || match report.result {
        ImportResult::Unchanged => format!(
            "skel {} holds what {} holds already (its generation {}): nothing imported",
            report.skel, report.image, report.generation
        ),
        ImportResult::New | ImportResult::Generation => format!(
            "imported {} as skel {} {}: {} layers, {} entries, {} bytes",
            report.image,
            report.skel,
            if report.result == ImportResult::New {
                format!("(new, generation {})", report.generation)
            } else {
                format!(
                    "generation {} (`vskel upgrade-vs --all --skel {}` brings its vservers along)",
                    report.generation, report.skel
                )
            },
            report.layers,
            report.entries,
            report.bytes
        ),
    })
}
