//! `export-skel` / `import-skel` of the real Debian skel: a round trip
//! through a real registry (Debian's docker-registry on 127.0.0.1, skopeo
//! copying to it and back) into a second vskel root gives the same skel;
//! the next generation after a 100-file change (a package upgrade's)
//! uploads a small part of the image and imports as a new generation; podman runs the image; a
//! damaged image is refused with nothing written.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::oci::{Registry, blob_bytes, listing_diff, require_tools, skel_listing, skopeo_copy};
use common::{Setup, require_root};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Rewrite 100 regular files of `global/` by rename, as a package
/// upgrade does: the files of the packages dpkg lists in
/// `local/var/lib/dpkg/info`, in name order from the first package at or
/// after "m", until 100 files are changed. Returns the packages.
fn change_100_files(skel: &Path) -> Vec<String> {
    let info = skel.join("local/var/lib/dpkg/info");
    let mut lists: Vec<PathBuf> = fs::read_dir(&info)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "list"))
        .collect();
    lists.sort();
    let at = lists
        .iter()
        .position(|p| p.file_name().unwrap().to_str().unwrap() >= "m")
        .unwrap_or(0);
    lists.rotate_left(at);
    let (mut changed, mut packages) = (0, Vec::new());
    for list in lists {
        if changed == 100 {
            break;
        }
        packages.push(list.file_stem().unwrap().to_string_lossy().into_owned());
        for line in fs::read_to_string(&list).unwrap().lines() {
            let p = skel.join("global").join(line.trim_start_matches('/'));
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if changed == 100 || !m.is_file() || std::os::unix::fs::MetadataExt::nlink(&m) != 1 {
                continue;
            }
            let mut data = fs::read(&p).unwrap();
            data.extend_from_slice(b"\n# changed for generation 2\n");
            let tmp = p.with_extension("vskel-test-new");
            fs::write(&tmp, data).unwrap();
            fs::rename(&tmp, &p).unwrap();
            changed += 1;
        }
    }
    assert_eq!(changed, 100, "the packages {packages:?} have too few files");
    packages
}

#[test]
fn the_debian_skel_travels_through_a_registry_and_its_next_generation_is_small() {
    let test = "the_debian_skel_travels_through_a_registry_and_its_next_generation_is_small";
    if !require_root(test) || !require_tools(test, &["skopeo", "docker-registry"]) {
        return;
    }
    let a = Setup::new("");
    let b = Setup::new("");
    let skel = a.build_debian_skel("deb");
    let layout = a.dir.path().join("image");
    let out = a.run_ok(&[
        "export-skel",
        "deb",
        &format!("oci:{}", layout.display()),
        "--format",
        "json",
    ]);
    let first = json(&out);
    assert_eq!(first["generation"], 1, "{first}");
    let full_bytes = first["total_bytes"].as_u64().unwrap();
    assert!(first["layers"].as_u64().unwrap() > 3, "{first}");

    // Same content, same digests: a second export changes nothing.
    let again = json(&a.run_ok(&[
        "export-skel",
        "deb",
        &format!("oci:{}", layout.display()),
        "--format",
        "json",
    ]));
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(again["new_bytes"], 0, "{again}");

    let registry = Registry::start();
    skopeo_copy(
        &format!("oci:{}:1", layout.display()),
        &registry.docker_ref("vskel/deb", "1"),
    );
    let pulled = b.dir.path().join("pulled");
    skopeo_copy(
        &registry.docker_ref("vskel/deb", "1"),
        &format!("oci:{}:1", pulled.display()),
    );
    let imported = json(&b.run_ok(&[
        "import-skel",
        &format!("oci:{}:1", pulled.display()),
        "deb",
        "--format",
        "json",
    ]));
    assert_eq!(imported["result"], "new", "{imported}");
    let b_skel = b.root.join(".skel/deb");
    let (la, lb) = (skel_listing(&skel), skel_listing(&b_skel));
    assert!(la.len() > 1000, "{} entries", la.len());
    assert!(
        la == lb,
        "the imported skel differs:\n{}",
        listing_diff(&la, &lb).join("\n")
    );

    // The next generation: 100 files changed.
    let before = blob_bytes(&layout);
    let packages = change_100_files(&skel);
    let second = json(&a.run_ok(&[
        "export-skel",
        "deb",
        &format!("oci:{}", layout.display()),
        "--format",
        "json",
    ]));
    assert_eq!(second["generation"], 2, "{second}");
    let after = blob_bytes(&layout);
    let new_bytes: u64 = after
        .iter()
        .filter(|(d, _)| !before.contains_key(*d))
        .map(|(_, s)| s)
        .sum();
    assert_eq!(new_bytes, second["new_bytes"].as_u64().unwrap(), "{second}");
    eprintln!(
        "full export {full_bytes} bytes; after a 100-file change of {packages:?}: {new_bytes} new \
         bytes ({:.1}%), {} of {} layers reused",
        new_bytes as f64 * 100.0 / full_bytes as f64,
        second["layers_reused"],
        second["layers"]
    );
    assert!(
        new_bytes * 5 < full_bytes,
        "{new_bytes} new bytes of {full_bytes}: not under 20%"
    );

    // Through the registry again, into the existing skel: generation 2.
    skopeo_copy(
        &format!("oci:{}:2", layout.display()),
        &registry.docker_ref("vskel/deb", "2"),
    );
    skopeo_copy(
        &registry.docker_ref("vskel/deb", "2"),
        &format!("oci:{}:2", pulled.display()),
    );
    let unchanged_file = PathBuf::from("global/usr/bin/ls");
    let ino_before = common::dev_ino(&b_skel.join(&unchanged_file));
    let next = json(&b.run_ok(&[
        "import-skel",
        &format!("oci:{}:2", pulled.display()),
        "deb",
        "--format",
        "json",
    ]));
    assert_eq!(next["result"], "generation", "{next}");
    assert_eq!(next["generation"], 2, "{next}");
    let (la, lb) = (skel_listing(&skel), skel_listing(&b_skel));
    assert!(
        la == lb,
        "generation 2 differs:\n{}",
        listing_diff(&la, &lb).join("\n")
    );
    assert_eq!(
        common::dev_ino(&b_skel.join(&unchanged_file)),
        ino_before,
        "an unchanged file lost its inode"
    );
    // Importing the same again changes nothing.
    let same = json(&b.run_ok(&[
        "import-skel",
        &format!("oci:{}:2", pulled.display()),
        "deb",
        "--format",
        "json",
    ]));
    assert_eq!(same["result"], "unchanged", "{same}");
}

#[test]
fn podman_runs_an_exported_skel() {
    let test = "podman_runs_an_exported_skel";
    if !require_root(test) || !require_tools(test, &["podman"]) {
        return;
    }
    if !common::oci::podman_runs_oci() {
        // CI installs what podman needs: there, not running is a failure.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: podman cannot run containers here"
        );
        eprintln!("SKIPPED: {test}: podman cannot run containers here");
        return;
    }
    let a = Setup::new("");
    let skel = a.build_debian_skel("deb");
    let layout = a.dir.path().join("image");
    a.run_ok(&["export-skel", "deb", &format!("oci:{}:1", layout.display())]);
    let want = fs::read_to_string(skel.join("global/etc/debian_version"))
        .or_else(|_| fs::read_to_string(skel.join("local/etc/debian_version")))
        .unwrap();
    let podman = common::oci::Podman::new();
    let got = podman.run_layout(&layout, "1", "cat /etc/debian_version");
    assert_eq!(got, want);
}

#[test]
fn a_damaged_skel_image_writes_nothing() {
    if !require_root("a_damaged_skel_image_writes_nothing") {
        return;
    }
    let a = Setup::new("");
    let b = Setup::new("");
    a.build_example_skel("base");
    let layout = a.dir.path().join("image");
    a.run_ok(&[
        "export-skel",
        "base",
        &format!("oci:{}:1", layout.display()),
    ]);
    let blobs = blob_bytes(&layout);
    let (largest, _) = blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let path = layout
        .join("blobs/sha256")
        .join(largest.trim_start_matches("sha256:"));
    let bytes = fs::read(&path).unwrap();
    for (what, damaged) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("one byte flipped", {
            let mut b = bytes.clone();
            let i = b.len() / 3;
            b[i] ^= 1;
            b
        }),
    ] {
        fs::write(&path, &damaged).unwrap();
        let out = b
            .vskel()
            .args([
                "import-skel",
                &format!("oci:{}:1", layout.display()),
                "base",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}: imported");
        assert!(
            !b.root.join(".skel/base").exists(),
            "{what}: a skel was left"
        );
        let staging = b.root.join(".vskel/staging");
        let left: Vec<_> = fs::read_dir(&staging)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{what}: staging holds {left:?}");
    }
    fs::write(&path, &bytes).unwrap();
    b.run_ok(&[
        "import-skel",
        &format!("oci:{}:1", layout.display()),
        "base",
    ]);
    assert!(b.root.join(".skel/base/global").is_dir());
}

#[test]
fn two_exports_into_one_layout_at_once_keep_both_tags() {
    if !require_root("two_exports_into_one_layout_at_once_keep_both_tags") {
        return;
    }
    // Two skels: one skel's exports wait for each other on its lock.
    let a = Setup::new("");
    a.build_example_skel("base");
    a.build_example_skel("other");
    let layout = a.dir.path().join("image");
    a.run_ok(&[
        "export-skel",
        "base",
        &format!("oci:{}:first", layout.display()),
    ]);
    let mut want = vec!["first".to_string()];
    for round in 0..10 {
        let children: Vec<_> = [
            ("base", format!("a{round}")),
            ("other", format!("b{round}")),
        ]
        .into_iter()
        .map(|(skel, tag)| {
            want.push(tag.clone());
            a.vskel_process()
                .args([
                    "export-skel",
                    skel,
                    &format!("oci:{}:{tag}", layout.display()),
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    let mut tags: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    tags.sort();
    want.sort();
    assert_eq!(
        tags, want,
        "a tag written at the same time as another was lost"
    );
}

#[test]
fn a_skel_with_a_socket_and_a_fifo_travels() {
    if !require_root("a_skel_with_a_socket_and_a_fifo_travels") {
        return;
    }
    let a = Setup::new("");
    let b = Setup::new("");
    let src = a.example_source();
    // A stale socket, as a tree copied from a running system has (a tar
    // has no socket type), and a FIFO.
    let sock = src.join("run-sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("etc/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    a.run_ok(&["build-skel", "base", "--from", src.to_str().unwrap()]);
    let skel = a.root.join(".skel/base");
    let layout = a.dir.path().join("image");
    let image = format!("oci:{}:1", layout.display());
    a.run_ok(&["export-skel", "base", &image]);
    b.run_ok(&["import-skel", &image, "base"]);
    let b_skel = b.root.join(".skel/base");
    let (la, lb) = (skel_listing(&skel), skel_listing(&b_skel));
    assert!(
        la == lb,
        "the imported skel differs:\n{}",
        listing_diff(&la, &lb).join("\n")
    );
    let socket = fs::symlink_metadata(b_skel.join("global/run-sock"))
        .or_else(|_| fs::symlink_metadata(b_skel.join("local/run-sock")))
        .unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_socket(&socket.file_type()),
        "run-sock arrived as {:?}",
        socket.file_type()
    );
}
