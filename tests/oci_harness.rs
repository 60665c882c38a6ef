//! Checks of the OCI test harness (`tests/common/oci.rs`) itself, before
//! the export/import tests lean on it: the private registry round trip
//! with skopeo, the canonical listings (hard links, xattrs, symlinks,
//! directory times), blob accounting, and podman running an image layout
//! of the real Debian tree.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::oci::{
    self, Podman, Registry, blob_bytes, canonical_listing, listing_diff, new_blob_bytes,
    skel_listing, skopeo_copy, tag_blobs,
};
use sha2::{Digest, Sha256};

/// Layers as vskel writes them: zstd (skopeo pushes them unchanged,
/// where it would compress a plain tar and so change the manifest).
const LAYER_MEDIA: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// zstd level for the test layers (fast).
const ZSTD_LEVEL: i32 = 1;
const MANIFEST_MEDIA: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA: &str = "application/vnd.oci.image.config.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn tmp(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// `sha256:HEX` of `data`.
fn sha256_digest(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Write `data` as a blob of `layout`; its descriptor's digest and size.
fn write_blob(layout: &Path, data: &[u8]) -> (String, u64) {
    let digest = sha256_digest(data);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&digest["sha256:".len()..]), data).unwrap();
    (digest, data.len() as u64)
}

/// An uncompressed tar layer of `tree`, or of a one-file tree with
/// `content` when `tree` is None.
fn layer_tar(tree: Option<&Path>, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    match tree {
        Some(dir) => builder.append_dir_all(".", dir).unwrap(),
        None => {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, "hello.txt", content)
                .unwrap();
        }
    }
    builder.into_inner().unwrap()
}

/// Add an image of `layers` (uncompressed tars, bottom first) to the
/// layout at `layout` as `tag` (made if missing; other tags kept).
/// Returns the manifest's digest.
fn add_image(layout: &Path, tag: &str, layers: &[Vec<u8>]) -> String {
    fs::create_dir_all(layout).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        diff_ids.push(sha256_digest(layer));
        let compressed = zstd::encode_all(&layer[..], ZSTD_LEVEL).unwrap();
        let (digest, size) = write_blob(layout, &compressed);
        descs.push(serde_json::json!({"mediaType": LAYER_MEDIA, "digest": digest, "size": size}));
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_size) = write_blob(layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA,
        "config": {"mediaType": CONFIG_MEDIA, "digest": config_digest, "size": config_size},
        "layers": descs,
    });
    let (digest, size) = write_blob(layout, manifest.to_string().as_bytes());
    let index_path = layout.join("index.json");
    let mut manifests: Vec<serde_json::Value> = fs::read(&index_path)
        .ok()
        .map(|b| {
            let index: serde_json::Value = serde_json::from_slice(&b).unwrap();
            index["manifests"].as_array().unwrap().clone()
        })
        .unwrap_or_default();
    manifests.retain(|m| m["annotations"][REF_NAME] != tag);
    manifests.push(serde_json::json!({
        "mediaType": MANIFEST_MEDIA,
        "digest": digest,
        "size": size,
        "annotations": {REF_NAME: tag},
    }));
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    fs::write(&index_path, index.to_string()).unwrap();
    digest
}

/// The manifest digest `tag` has in `layout`'s index.
fn tagged_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"][REF_NAME] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn registry_round_trip_keeps_the_manifest_digest() {
    if !oci::require_tools(
        "registry_round_trip_keeps_the_manifest_digest",
        &["skopeo", "docker-registry"],
    ) {
        return;
    }
    let dir = tmp("vskel-oci-harness-");
    let src = dir.path().join("src");
    let digest = add_image(&src, "v1", &[layer_tar(None, b"hello\n")]);
    let registry = Registry::start();
    let remote = registry.docker_ref("vskel/tiny", "v1");
    assert_eq!(remote, format!("docker://{}/vskel/tiny:v1", registry.addr));
    skopeo_copy(&format!("oci:{}:v1", src.display()), &remote);
    let back = dir.path().join("back");
    skopeo_copy(&remote, &format!("oci:{}:v1", back.display()));
    assert_eq!(tagged_digest(&back, "v1"), digest);
    assert_eq!(tag_blobs(&back, "v1"), tag_blobs(&src, "v1"));

    // Stopping leaves no process behind.
    let pid_of_port = registry.addr.clone();
    drop(registry);
    assert!(
        std::net::TcpStream::connect(&pid_of_port).is_err(),
        "the registry still listens on {pid_of_port} after drop"
    );
}

#[test]
fn two_registries_run_side_by_side() {
    if !oci::require_tools("two_registries_run_side_by_side", &["docker-registry"]) {
        return;
    }
    let a = Registry::start();
    let b = Registry::start();
    assert_ne!(a.addr, b.addr);
}

#[test]
fn new_blob_bytes_counts_what_a_push_adds() {
    let dir = tmp("vskel-oci-harness-");
    let layout = dir.path().join("layout");
    let base = layer_tar(None, b"base\n");
    add_image(&layout, "g1", std::slice::from_ref(&base));
    let before = blob_bytes(&layout);
    assert_eq!(before.len(), 3, "layer, config, manifest: {before:?}");
    let top = layer_tar(None, b"changed\n");
    add_image(&layout, "g2", &[base.clone(), top.clone()]);
    let after = blob_bytes(&layout);
    let new: u64 = after
        .iter()
        .filter(|(d, _)| !before.contains_key(*d))
        .map(|(_, s)| s)
        .sum();
    assert_eq!(new_blob_bytes(&layout, "g2", &before), new);
    let top_blob = zstd::encode_all(&top[..], ZSTD_LEVEL).unwrap();
    let config_and_manifest = new - top_blob.len() as u64;
    assert!(
        config_and_manifest > 0 && config_and_manifest < 2000,
        "{config_and_manifest}"
    );
    assert_eq!(tag_blobs(&layout, "g2").len(), 4);
    assert_eq!(new_blob_bytes(&layout, "g1", &before), 0);
}

/// A small tree with every kind the listing must see.
fn sample_tree(dir: &Path) {
    fs::create_dir_all(dir.join("etc/sub")).unwrap();
    fs::write(dir.join("etc/a"), b"shared content\n").unwrap();
    fs::hard_link(dir.join("etc/a"), dir.join("etc/sub/b")).unwrap();
    fs::hard_link(dir.join("etc/a"), dir.join("z-last")).unwrap();
    fs::write(dir.join("alone"), b"one link\n").unwrap();
    std::os::unix::fs::symlink("etc/a", dir.join("link")).unwrap();
    xattr::set(dir.join("etc/a"), "user.vskel", b"value").unwrap();
    xattr::set(dir.join("alone"), "trusted.overlay.opaque", b"y").unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    fs::set_permissions(
        dir.join("etc/sub"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1755),
    )
    .unwrap();
    filetime::set_file_mtime(
        dir.join("etc"),
        filetime::FileTime::from_unix_time(1_600_000_000, 5),
    )
    .unwrap();
}

#[test]
fn canonical_listing_sees_links_xattrs_and_kinds() {
    let dir = tmp("vskel-oci-harness-");
    let tree = dir.path().join("tree");
    sample_tree(&tree);
    let listing = canonical_listing(&tree);
    let p = |s: &str| PathBuf::from(s);
    assert!(!listing.contains_key(&p("")), "the root is not listed");
    for member in ["etc/a", "etc/sub/b", "z-last"] {
        assert_eq!(listing[&p(member)].group, Some(p("etc/a")), "{member}");
    }
    assert_eq!(listing[&p("alone")].group, None);
    assert_eq!(
        listing[&p("etc/a")].xattrs,
        vec![("user.vskel".into(), b"value".to_vec())]
    );
    assert!(
        listing[&p("alone")].xattrs.is_empty(),
        "trusted.overlay.* left out"
    );
    let link = &listing[&p("link")];
    assert_eq!(
        (link.kind, link.link.clone(), link.hash.clone()),
        ('l', Some(p("etc/a")), None)
    );
    assert_eq!(listing[&p("fifo")].kind, 'p');
    let etc = &listing[&p("etc")];
    assert_eq!(
        (etc.kind, etc.size, etc.mtime),
        ('d', None, (1_600_000_000, 5))
    );
    assert_eq!(listing[&p("etc/sub")].mode, 0o1755);
    let want = sha256_digest(b"shared content\n");
    assert_eq!(
        listing[&p("etc/a")].hash.as_deref(),
        want.strip_prefix("sha256:")
    );

    // A copy that keeps everything lists the same, across inodes;
    // the listing did not change the tree's directory times.
    let copy = dir.path().join("copy");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let copied = canonical_listing(&copy);
    assert!(
        listing_diff(&listing, &copied).is_empty(),
        "{}",
        listing_diff(&listing, &copied).join("\n")
    );
    assert_ne!(
        fs::metadata(tree.join("etc/a")).unwrap().ino(),
        fs::metadata(copy.join("etc/a")).unwrap().ino()
    );

    // A broken hard link, a new mode and a missing file all show.
    fs::remove_file(copy.join("z-last")).unwrap();
    fs::copy(copy.join("etc/a"), copy.join("z-last")).unwrap();
    fs::remove_file(copy.join("alone")).unwrap();
    let diff = listing_diff(&listing, &canonical_listing(&copy));
    let joined = diff.join("\n");
    assert!(
        joined.contains("z-last:") && joined.contains("alone:"),
        "{joined}"
    );
    assert!(joined.contains("(absent)"), "{joined}");
}

#[test]
fn listing_diff_stops_at_twenty() {
    let dir = tmp("vskel-oci-harness-");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        fs::create_dir(d).unwrap();
    }
    for i in 0..30 {
        fs::write(a.join(format!("f{i:02}")), b"x").unwrap();
    }
    let diff = listing_diff(&canonical_listing(&a), &canonical_listing(&b));
    assert_eq!(diff.len(), 21, "{diff:?}");
    assert_eq!(diff[20], "... 30 differing paths in all");
}

#[test]
fn skel_listing_prefixes_parts_and_skips_bookkeeping() {
    let dir = tmp("vskel-oci-harness-");
    let skel = dir.path().join("skel");
    for d in [
        "global/etc",
        "local/etc",
        "scripts/post-create-vs",
        "generations",
    ] {
        fs::create_dir_all(skel.join(d)).unwrap();
    }
    fs::write(skel.join("global/etc/os-release"), b"debian\n").unwrap();
    fs::hard_link(
        skel.join("global/etc/os-release"),
        skel.join("local/etc/copy"),
    )
    .unwrap();
    fs::write(skel.join("configfile"), b"# vserver\n").unwrap();
    fs::write(skel.join("scripts/post-create-vs/10-hello"), b"#!/bin/sh\n").unwrap();
    fs::write(skel.join("generations/1"), b"record\n").unwrap();
    let listing = skel_listing(&skel);
    let keys: Vec<String> = listing.keys().map(|k| k.display().to_string()).collect();
    assert_eq!(
        keys,
        [
            "configfile",
            "global",
            "global/etc",
            "global/etc/os-release",
            "local",
            "local/etc",
            "local/etc/copy",
            "scripts",
            "scripts/post-create-vs",
            "scripts/post-create-vs/10-hello",
        ]
    );
    assert_eq!(
        listing[Path::new("local/etc/copy")].group,
        Some(PathBuf::from("global/etc/os-release")),
        "hard-link groups span the parts"
    );
    assert_eq!(listing[Path::new("global")].size, None);
}

#[test]
fn require_tools_skips_visibly_or_fails_on_ci() {
    // Not touching CI in this process (tests run in threads): a child
    // test binary would be needed; check the two branches' inputs only.
    assert!(oci::tool("sh").is_some());
    assert!(oci::tool("vskel-no-such-tool").is_none());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        let caught =
            std::panic::catch_unwind(|| oci::require_tools("probe", &["vskel-no-such-tool"]));
        assert!(caught.is_err(), "CI=true: a missing tool fails the test");
    } else {
        assert!(!oci::require_tools("probe", &["vskel-no-such-tool"]));
    }
}

#[test]
fn podman_runs_an_image_layout_of_the_debian_tree() {
    if !common::require_root("podman_runs_an_image_layout_of_the_debian_tree")
        || !oci::require_tools(
            "podman_runs_an_image_layout_of_the_debian_tree",
            &["podman", "runc"],
        )
    {
        return;
    }
    assert!(
        oci::podman_runs_oci(),
        "podman info fails with the harness's flags"
    );
    let rootfs = common::debian_rootfs();
    let dir = tmp("vskel-oci-harness-");
    let layout = dir.path().join("layout");
    add_image(&layout, "deb", &[layer_tar(Some(&rootfs), b"")]);
    let podman = Podman::new();
    let out = podman.run_layout(&layout, "deb", "cat /etc/debian_version");
    let want = fs::read_to_string(rootfs.join("etc/debian_version")).unwrap();
    assert_eq!(out, want);
    let state = podman
        .command()
        .get_args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap();
    drop(podman);
    assert!(!state.exists(), "{} left behind", state.display());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(state.parent().unwrap().to_str().unwrap()),
        "a podman mount left behind"
    );
}
