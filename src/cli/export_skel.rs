//! `vskel export-skel SKEL oci:DIR[:TAG]`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::oci::ImageRef;
use crate::progress::Progress;
use crate::skel::oci::export_skel;

/// Write a skel's current generation as an OCI image into an image
/// layout directory, for any registry and its tools (skopeo, podman).
///
/// global/ becomes up to 64 layers (cut by directory, hard-link groups
/// kept in one layer), then local/ and static/, so the image's root
/// filesystem is the merged skel and runs under podman; a last layer holds
/// .vskel/ (scripts, config file, the generation record). Layers are
/// deterministic zstd tars: exporting the next generation into the same
/// layout reuses every layer that did not change, and the report says how
/// many bytes are new (what a push uploads). The default tag is the
/// generation number. Push with e.g.
/// `skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The skel.
    skel: String,
    /// Where: oci:DIR[:TAG] (DIR is made if missing; other tags in it stay).
    #[arg(value_name = "oci:DIR[:TAG]")]
    dest: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let dest = ImageRef::parse(&args.dest)?;
    let report = export_skel(config, &args.skel, &dest, progress)?;
    print(args.format, &report, || {
        format!(
            "exported skel {} generation {} to {} ({}): {} layers ({} unchanged), {} bytes, \
             {} of them new",
            report.skel,
            report.generation,
            report.image,
            report.digest,
            report.layers,
            report.layers_reused,
            report.total_bytes,
            report.new_bytes
        )
    })
}
