//! vskel as a library: build a skel from the small built-in example tree
//! and create a vserver from it, all in a temporary directory, and print
//! what was made (which entries share the skel's inode, which are copies,
//! what the tokens rendered to). The whole loop (views mounted, diff,
//! sync, materialize) is `vskel demo`, the README's first command.
//!
//! `cargo run --example demo` (add `-- --keep` to keep the directory).
//! Works without root; as root it also keeps owners and makes /dev nodes.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use vskel::config::Config;
use vskel::progress::Progress;
use vskel::skel::build::build_skel;
use vskel::validate::Loopback;
use vskel::vserver::create::{CreateRequest, create_vs};

fn main() -> anyhow::Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    let tmp = tempfile::Builder::new().prefix("vskel-demo-").tempdir()?;
    let base = tmp.path();
    let source = base.join("example-root");
    vskel::example::make_example_root(&source)?;

    let mut config = Config::default();
    let config_text = format!(
        "root = {:?}\netc = {:?}\ndefaults = {:?}\n",
        base.join("vservers"),
        base.join("etc-vservers"),
        base.join("etc-vskel")
    );
    fs::create_dir_all(base.join("vservers"))?;
    fs::write(base.join("vskel.toml"), &config_text)?;
    config.apply_toml(&config_text, &base.join("vskel.toml"))?;
    // vskel lifts the immutable attribute of protected files only for its
    // own link calls, and only inside such a session (crash-safely).
    let _unlock = vskel::protect::begin(&config);

    println!("== vskel demo in {}", base.display());
    println!(
        "config ({}):\n{config_text}",
        base.join("vskel.toml").display()
    );
    let built = build_skel(&config, "demo", &source, &Progress::hidden())?;
    println!(
        "built skel {} from the example tree: {} files copied, {} directories; \
         shared files protected: {}",
        built.path.display(),
        built.counts.copied,
        built.counts.dirs,
        config.protect
    );
    let created = create_vs(
        &config,
        &CreateRequest {
            skel: "demo".into(),
            name: "web1".into(),
            fqdn: "web1.example.org".into(),
            ip: "192.0.2.10".into(),
            loopback: Loopback::Refuse,
            shared_ip: false,
        },
        &Progress::hidden(),
    )?;
    println!(
        "created vserver {} at {} (context {}); config file {}\n",
        created.name,
        created.root.display(),
        created.context,
        created.config_file.display()
    );

    println!("what the vserver's files are:");
    list(&created.root, &built.path, Path::new(""))?;
    println!(
        "\n/etc/hosts, rendered from the skel's static/etc/hosts:\n{}",
        fs::read_to_string(created.root.join("etc/hosts"))?
    );
    println!(
        "{}:\n{}",
        created.config_file.display(),
        fs::read_to_string(&created.config_file)?
    );
    if keep {
        let kept = tmp.keep();
        println!(
            "kept {} (remove it with chattr -R -i, then rm -rf)",
            kept.display()
        );
    } else {
        unprotect(base)?;
    }
    Ok(())
}

/// Clear the immutable attribute below `dir`, so the demo's temporary
/// directory can be removed.
fn unprotect(dir: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            unprotect(&path)?;
        } else if meta.is_file() {
            let file = fs::File::open(&path)?;
            let flags = rustix::fs::ioctl_getflags(&file)?;
            if flags.contains(rustix::fs::IFlags::IMMUTABLE) {
                rustix::fs::ioctl_setflags(&file, flags - rustix::fs::IFlags::IMMUTABLE)?;
            }
        }
    }
    Ok(())
}

/// Print each non-directory entry of the vserver with where it came from.
fn list(vs: &Path, skel: &Path, rel: &Path) -> anyhow::Result<()> {
    let mut names: Vec<_> = fs::read_dir(vs.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let rel = rel.join(name);
        let meta = fs::symlink_metadata(vs.join(&rel))?;
        if meta.is_dir() {
            list(vs, skel, &rel)?;
            continue;
        }
        let in_global = fs::symlink_metadata(skel.join("global").join(&rel)).ok();
        let origin = match in_global {
            Some(g) if g.ino() == meta.ino() => "hard link to the skel's global inode",
            _ if skel.join("static").join(&rel).symlink_metadata().is_ok() => {
                "rendered copy of static/"
            }
            _ => "copy of local/",
        };
        let kind = if meta.file_type().is_symlink() {
            format!(" -> {}", fs::read_link(vs.join(&rel))?.display())
        } else {
            String::new()
        };
        println!("  /{:<34} {origin}{kind}", rel.display());
    }
    Ok(())
}
