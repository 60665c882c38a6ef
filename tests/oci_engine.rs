//! The OCI engine end to end (as root): a tree written as a layer and an
//! image, read back and unpacked, must be the same tree; the same tree
//! must give the same digests; hostile layers must be refused without
//! writing anything; whiteouts in both forms; skopeo reads and copies the
//! images.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use ocidir::oci_spec::image::{Descriptor, MediaType};
use sha2::{Digest as _, Sha256};
use vskel::oci::layout::{ImageLayout, NewImage, hex};
use vskel::oci::{LayerItem, Whiteouts, apply_layer, write_layer};
use vskel::tree::TreeRoot;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

fn tmp() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).unwrap();
    tempfile::Builder::new()
        .prefix("oci-engine-")
        .tempdir_in(base)
        .unwrap()
}

fn set_mtime(path: &Path, secs: i64, nsecs: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nsecs);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

fn mknod(path: &Path, kind: rustix::fs::FileType, mode: u32, rdev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(mode),
        rdev,
    )
    .unwrap();
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// A valid `security.capability` (v2, cap_net_bind_service permitted).
const CAPABILITY: [u8; 20] = [
    0x00, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The tree of the round trip: every kind of entry and metadata.
fn build_tree(root: &Path) {
    let long_dir = format!("long-{}", "d".repeat(120));
    let long_file = format!("file-{}", "f".repeat(120));
    fs::create_dir_all(root.join("d/sub")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    fs::create_dir(root.join(&long_dir)).unwrap();
    fs::write(root.join(&long_dir).join(&long_file), b"long name\n").unwrap();

    fs::write(root.join("f"), b"hello\n").unwrap();
    lchown(&root.join("f"), 1000, 1000);
    fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o640)).unwrap();

    fs::write(root.join("suid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("d/sub"), fs::Permissions::from_mode(0o1777)).unwrap();

    fs::write(root.join("h1"), b"linked\n").unwrap();
    fs::hard_link(root.join("h1"), root.join("d/h2")).unwrap();
    fs::hard_link(root.join("h1"), root.join("d/sub/h3")).unwrap();

    symlink("/etc/passwd", root.join("abs")).unwrap();
    symlink("d/h2", root.join("rel")).unwrap();
    symlink("../f", root.join("d/up")).unwrap();
    lchown(&root.join("rel"), 1000, 1000);

    mknod(
        &root.join("null"),
        rustix::fs::FileType::CharacterDevice,
        0o666,
        rustix::fs::makedev(1, 3),
    );
    mknod(&root.join("fifo"), rustix::fs::FileType::Fifo, 0o620, 0);
    // A tar has no socket type: it travels as a marked FIFO.
    mknod(&root.join("d/sock"), rustix::fs::FileType::Socket, 0o751, 0);
    lchown(&root.join("d/sock"), 1000, 1001);

    fs::write(root.join("cap"), b"\x7fELF").unwrap();
    lchown(&root.join("cap"), 1000, 1000);
    fs::set_permissions(root.join("cap"), fs::Permissions::from_mode(0o755)).unwrap();
    xattr::set(root.join("cap"), "user.note", b"a note").unwrap();
    xattr::set(root.join("cap"), "security.capability", &CAPABILITY).unwrap();
    xattr::set(root.join("d"), "user.dir", b"on a dir").unwrap();
    // Overlay-private attributes never go into a layer.
    xattr::set(root.join("f"), "trusted.overlay.origin", b"x").unwrap();

    // Times last (making entries changes their directory's mtime).
    let mut all = Vec::new();
    walk(root, Path::new(""), &mut all);
    for (i, rel) in all.iter().enumerate() {
        set_mtime(
            &root.join(rel),
            1_600_000_000 + i as i64,
            123_456_789 * (i as u32 % 3),
        );
    }
}

/// Every path below `root` (relative, parents first), root left out.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let child = rel.join(&name);
        out.push(child.clone());
        if fs::symlink_metadata(root.join(&child)).unwrap().is_dir() {
            walk(root, &child, out);
        }
    }
}

/// A listing of everything below `root`: type, mode, owner, size,
/// mtime with nanoseconds, content digest, xattrs, link target, device
/// and hard-link group (the first path of the inode).
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut paths = Vec::new();
    if root.exists() {
        walk(root, Path::new(""), &mut paths);
    }
    let mut first_of_inode: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for rel in paths {
        let path = root.join(&rel);
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else {
            "file"
        };
        let mut line = format!(
            "{kind} mode={:o} owner={}:{} mtime={}.{:09}",
            md.mode() & 0o7777,
            md.uid(),
            md.gid(),
            md.mtime(),
            md.mtime_nsec()
        );
        if ft.is_file() {
            let data = fs::read(&path).unwrap();
            line += &format!(" size={} sha256={}", md.len(), hex(&Sha256::digest(&data)));
            let key = rel.display().to_string();
            let group = first_of_inode.entry(md.ino()).or_insert(key);
            line += &format!(" inode-of={group}");
        }
        if ft.is_symlink() {
            line += &format!(" -> {}", fs::read_link(&path).unwrap().display());
        }
        if ft.is_char_device() || ft.is_block_device() {
            line += &format!(" rdev={:x}", md.rdev());
        }
        let mut names: Vec<_> = xattr::list(&path).unwrap().collect();
        names.sort();
        for name in names {
            let value = xattr::get(&path, &name).unwrap().unwrap_or_default();
            line += &format!(" xattr:{}={}", name.to_string_lossy(), hex(&value));
        }
        out.insert(rel.display().to_string(), line);
    }
    out
}

fn all_items(root: &Path) -> Vec<LayerItem> {
    let mut paths = Vec::new();
    walk(root, Path::new(""), &mut paths);
    paths.into_iter().map(LayerItem::Entry).collect()
}

fn new_image(layers: Vec<vskel::oci::WrittenLayer>) -> NewImage {
    NewImage {
        layers,
        annotations: vec![
            ("org.vskel.kind".into(), "skel".into()),
            ("org.vskel.skel".into(), "base".into()),
            ("org.vskel.generation".into(), "3".into()),
        ],
        labels: vec![("org.vskel.skel".into(), "base".into())],
        created: 1_700_000_000,
        cmd: Some(vec!["/bin/sh".into()]),
    }
}

fn part(name: &str) -> Vec<(String, String)> {
    vec![("org.vskel.part".to_string(), name.to_string())]
}

#[test]
fn round_trip_keeps_every_entry_and_its_metadata() {
    require_root!();
    let work = tmp();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let layout = ImageLayout::create(&work.path().join("img")).unwrap();
    let source = TreeRoot::open(&src).unwrap();
    let layer = write_layer(
        &layout,
        &source,
        &all_items(&src),
        Path::new(""),
        &part("global"),
    )
    .unwrap();
    assert!(layer.new);
    assert_eq!(
        layer.descriptor.media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let written = layout
        .write_image(&new_image(vec![layer.clone()]), "1")
        .unwrap();
    assert!(written.new_bytes > 0 && written.new_bytes == written.total_bytes);

    let layout = ImageLayout::open(&work.path().join("img")).unwrap();
    let image = layout.read_image(Some("1")).unwrap();
    assert_eq!(image.digest, written.digest);
    assert_eq!(layout.read_image(None).unwrap().digest, written.digest);
    let config = &image.config;
    assert_eq!(config.rootfs().diff_ids(), &vec![layer.diff_id.clone()]);
    assert_eq!(config.created().as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(config.os().to_string(), "linux");
    let manifest_layer = &image.manifest.layers()[0];
    assert_eq!(
        manifest_layer.annotations().as_ref().unwrap()["org.vskel.part"],
        "global"
    );

    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let target = TreeRoot::open(&out).unwrap();
    let applied = apply_layer(
        &layout,
        manifest_layer,
        &config.rootfs().diff_ids()[0],
        &target,
        Path::new(""),
        Whiteouts::Remove,
    )
    .unwrap();
    assert_eq!(applied.entries, layer.entries);

    let mut want = listing(&src);
    assert_eq!(want.len(), 17, "{want:#?}");
    assert!(
        want["cap"].contains("xattr:security.capability="),
        "{}",
        want["cap"]
    );
    assert!(want["suid"].contains("mode=4755"), "{}", want["suid"]);
    // The overlay-private attribute is left out of the layer.
    let f = want.get_mut("f").unwrap();
    *f = f
        .split(" xattr:trusted.overlay.origin")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(listing(&out), want);
}

#[test]
fn a_prefix_is_added_and_stripped() {
    require_root!();
    let work = tmp();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let layout = ImageLayout::create(&work.path().join("img")).unwrap();
    let source = TreeRoot::open(&src).unwrap();
    let prefix = Path::new("rootfs/base");
    let layer = write_layer(&layout, &source, &all_items(&src), prefix, &[]).unwrap();
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let target = TreeRoot::open(&out).unwrap();
    apply_layer(
        &layout,
        &layer.descriptor,
        &layer.diff_id,
        &target,
        prefix,
        Whiteouts::Remove,
    )
    .unwrap();
    let mut want = listing(&src);
    let f = want.get_mut("f").unwrap();
    *f = f
        .split(" xattr:trusted.overlay.origin")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(listing(&out), want);

    // Without the prefix, its entries are outside: refused.
    let other = work.path().join("other");
    fs::create_dir(&other).unwrap();
    let target = TreeRoot::open(&other).unwrap();
    let err = apply_layer(
        &layout,
        &layer.descriptor,
        &layer.diff_id,
        &target,
        Path::new("elsewhere"),
        Whiteouts::Remove,
    )
    .unwrap_err();
    assert!(err.to_string().contains("prefix"), "{err}");
    assert!(listing(&other).is_empty());
}

#[test]
fn the_same_tree_gives_the_same_digests() {
    require_root!();
    let work = tmp();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let source = TreeRoot::open(&src).unwrap();
    let mut items = all_items(&src);
    items.reverse(); // the order given does not matter

    let mut digests = Vec::new();
    for name in ["a", "b"] {
        let layout = ImageLayout::create(&work.path().join(name)).unwrap();
        let layer = write_layer(&layout, &source, &items, Path::new(""), &part("global")).unwrap();
        let image = layout
            .write_image(&new_image(vec![layer.clone()]), "1")
            .unwrap();
        digests.push((
            layer.descriptor.digest().to_string(),
            layer.diff_id,
            image.digest,
        ));
    }
    assert_eq!(digests[0], digests[1]);

    let layout = ImageLayout::open(&work.path().join("a")).unwrap();
    let layer = write_layer(&layout, &source, &items, Path::new(""), &part("global")).unwrap();
    assert!(!layer.new);
    let image = layout.write_image(&new_image(vec![layer]), "1").unwrap();
    assert_eq!(image.digest, digests[0].2);
    assert_eq!(image.new_bytes, 0);
    assert!(image.total_bytes > 0);

    // A second tag is kept beside the first; re-tagging replaces.
    let mut other = new_image(Vec::new());
    other.created = 1;
    let second = layout.write_image(&other, "2").unwrap();
    assert_eq!(
        layout.tags().unwrap(),
        vec!["1".to_string(), "2".to_string()]
    );
    let third = layout.write_image(&new_image(Vec::new()), "2").unwrap();
    assert_ne!(second.digest, third.digest);
    assert_eq!(layout.tags().unwrap().len(), 2);
    assert_eq!(layout.read_image(Some("2")).unwrap().digest, third.digest);
    let err = layout.read_image(None).unwrap_err().to_string();
    assert!(err.contains("1, 2"), "{err}");
    let err = layout.read_image(Some("9")).unwrap_err().to_string();
    assert!(err.contains("\"9\"") && err.contains("1, 2"), "{err}");
}

#[test]
fn open_refuses_a_directory_that_is_no_layout() {
    let work = tmp();
    let err = ImageLayout::open(work.path()).err().unwrap().to_string();
    assert!(err.contains(&work.path().display().to_string()), "{err}");
    assert!(err.contains("not an OCI image layout"), "{err}");
    fs::write(work.path().join("precious"), b"x").unwrap();
    let err = ImageLayout::create(work.path()).err().unwrap().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert!(!work.path().join("oci-layout").exists());
    let made = work.path().join("new/layout");
    ImageLayout::create(&made).unwrap();
    assert_eq!(
        fs::read_to_string(made.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    ImageLayout::create(&made).unwrap();
}

/// Timing on a large tree: `OCI_ENGINE_TREE=/usr cargo test --release
/// --test oci_engine large_tree -- --ignored --nocapture`.
#[test]
#[ignore]
fn large_tree_round_trip() {
    let Some(tree) = std::env::var_os("OCI_ENGINE_TREE") else {
        eprintln!("skipped: set OCI_ENGINE_TREE");
        return;
    };
    let work = tmp();
    let src = PathBuf::from(tree);
    let layout = ImageLayout::create(&work.path().join("img")).unwrap();
    let source = TreeRoot::open(&src).unwrap();
    let mut paths = Vec::new();
    walk(&src, Path::new(""), &mut paths);
    let items: Vec<_> = paths.into_iter().map(LayerItem::Entry).collect();
    let start = std::time::Instant::now();
    let layer = write_layer(&layout, &source, &items, Path::new(""), &[]).unwrap();
    eprintln!(
        "write_layer: {} entries, {} tar bytes, {} compressed, {:?}",
        layer.entries,
        layer.tar_bytes,
        layer.descriptor.size(),
        start.elapsed()
    );
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let target = TreeRoot::open(&out).unwrap();
    let start = std::time::Instant::now();
    let applied = apply_layer(
        &layout,
        &layer.descriptor,
        &layer.diff_id,
        &target,
        Path::new(""),
        Whiteouts::Remove,
    )
    .unwrap();
    eprintln!("apply_layer: {applied:?}, {:?}", start.elapsed());
}

// ---- hostile layers ------------------------------------------------------

/// One entry of a hand-made tar: raw name bytes, type, link target, data.
struct Raw {
    name: &'static [u8],
    kind: tar::EntryType,
    link: &'static [u8],
    data: &'static [u8],
}

fn file(name: &'static [u8]) -> Raw {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        link: b"",
        data: b"data",
    }
}

fn entry(name: &'static [u8], kind: tar::EntryType, link: &'static [u8]) -> Raw {
    Raw {
        name,
        kind,
        link,
        data: b"",
    }
}

/// A tar of `entries`, names written raw into the header (the builder
/// would refuse the hostile ones).
fn raw_tar(entries: &[Raw]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_gnu();
        {
            let old = header.as_old_mut();
            old.name[..e.name.len()].copy_from_slice(e.name);
            old.linkname[..e.link.len()].copy_from_slice(e.link);
        }
        header.set_entry_type(e.kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(e.data.len() as u64);
        header.set_cksum();
        builder.append(&header, e.data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Store `tar` as a zstd layer blob: its descriptor and diff_id.
fn store_layer(layout: &ImageLayout, tar: &[u8]) -> (Descriptor, String) {
    let compressed = zstd::encode_all(tar, 3).unwrap();
    let blob = layout.store_bytes(&compressed).unwrap();
    let desc = Descriptor::new(
        MediaType::ImageLayerZstd,
        blob.size,
        blob.digest
            .parse::<ocidir::oci_spec::image::Digest>()
            .unwrap(),
    );
    (desc, format!("sha256:{}", hex(&Sha256::digest(tar))))
}

fn blob_file(layout_dir: &Path, desc: &Descriptor) -> PathBuf {
    layout_dir
        .join("blobs/sha256")
        .join(desc.digest().to_string().strip_prefix("sha256:").unwrap())
}

/// Makes a case's layer in a layout (given with its directory).
type MakeLayer = Box<dyn Fn(&ImageLayout, &Path) -> (Descriptor, String)>;
type Case = (&'static str, MakeLayer);

fn plain(entries: Vec<Raw>) -> MakeLayer {
    let tar = raw_tar(&entries);
    Box::new(move |layout, _| store_layer(layout, &tar))
}

/// A tar whose one entry, a regular file, carries the socket marker.
fn socket_marked_file() -> MakeLayer {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([("VSKEL.socket", &b"1"[..])])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(4);
    header.set_cksum();
    builder.append_data(&mut header, "f", &b"data"[..]).unwrap();
    let tar = builder.into_inner().unwrap();
    Box::new(move |layout, _| store_layer(layout, &tar))
}

fn hostile_cases() -> Vec<Case> {
    use tar::EntryType::*;
    vec![
        ("the socket marker on a regular file", socket_marked_file()),
        (
            "a flipped byte",
            Box::new(|layout: &ImageLayout, dir: &Path| {
                let (desc, diff_id) = store_layer(layout, &raw_tar(&[file(b"ok")]));
                let path = blob_file(dir, &desc);
                let mut bytes = fs::read(&path).unwrap();
                let at = bytes.len() / 2;
                bytes[at] ^= 0x40;
                fs::write(&path, bytes).unwrap();
                (desc, diff_id)
            }),
        ),
        (
            "a truncated blob",
            Box::new(|layout: &ImageLayout, dir: &Path| {
                let (desc, diff_id) = store_layer(layout, &raw_tar(&[file(b"ok")]));
                let path = blob_file(dir, &desc);
                let bytes = fs::read(&path).unwrap();
                fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
                (desc, diff_id)
            }),
        ),
        (
            "a descriptor size too small",
            Box::new(|layout: &ImageLayout, _: &Path| {
                let (mut desc, diff_id) = store_layer(layout, &raw_tar(&[file(b"ok")]));
                desc.set_size(desc.size() - 1);
                (desc, diff_id)
            }),
        ),
        (
            "a descriptor size too large",
            Box::new(|layout: &ImageLayout, _: &Path| {
                let (mut desc, diff_id) = store_layer(layout, &raw_tar(&[file(b"ok")]));
                desc.set_size(desc.size() + 1);
                (desc, diff_id)
            }),
        ),
        (
            "a diff_id mismatch",
            Box::new(|layout: &ImageLayout, _: &Path| {
                let (desc, _) = store_layer(layout, &raw_tar(&[file(b"ok")]));
                (desc, format!("sha256:{}", "0".repeat(64)))
            }),
        ),
        (
            "a sha512 layer digest",
            Box::new(|layout: &ImageLayout, _: &Path| {
                let (mut desc, diff_id) = store_layer(layout, &raw_tar(&[file(b"ok")]));
                desc.set_digest(format!("sha512:{}", "a".repeat(128)).parse().unwrap());
                (desc, diff_id)
            }),
        ),
        (
            "entry ../decoy/x",
            plain(vec![file(b"ok"), file(b"../decoy/x")]),
        ),
        (
            "entry a/../../x",
            plain(vec![file(b"ok"), file(b"a/../../x")]),
        ),
        ("absolute /etc/x", plain(vec![file(b"ok"), file(b"/etc/x")])),
        (
            "hard link to ../../etc/passwd",
            plain(vec![file(b"ok"), entry(b"l", Link, b"../../etc/passwd")]),
        ),
        (
            "hard link to /etc/passwd",
            plain(vec![file(b"ok"), entry(b"l", Link, b"/etc/passwd")]),
        ),
        (
            "hard link to a missing file",
            plain(vec![entry(b"l", Link, b"nothere")]),
        ),
        (
            "hard link to a directory",
            plain(vec![entry(b"d/", Directory, b""), entry(b"l", Link, b"d")]),
        ),
        (
            "through a climbing symlink",
            plain(vec![entry(b"a", Symlink, b"../../.."), file(b"a/x")]),
        ),
        (
            "through a symlink of the layer",
            plain(vec![entry(b"a", Symlink, b"sub"), file(b"a/x")]),
        ),
        (
            "through a file of the layer",
            plain(vec![file(b"a"), file(b"a/x")]),
        ),
        (
            "a relative symlink climbing out",
            plain(vec![
                entry(b"d/", Directory, b""),
                entry(b"d/l", Symlink, b"../../decoy"),
            ]),
        ),
        (
            "an unknown entry type",
            plain(vec![
                file(b"ok"),
                entry(b"s", tar::EntryType::new(b'Z'), b""),
            ]),
        ),
        (
            "a GNU sparse entry",
            plain(vec![entry(b"s", GNUSparse, b"")]),
        ),
        ("a whiteout of ..", plain(vec![file(b"d/.wh...")])),
    ]
}

#[test]
fn hostile_layers_are_refused_and_write_nothing() {
    require_root!();
    let work = tmp();
    let decoy = work.path().join("decoy");
    fs::create_dir(&decoy).unwrap();
    fs::write(decoy.join("keep"), b"decoy").unwrap();
    let decoy_before = listing(&decoy);

    for (i, (what, make)) in hostile_cases().into_iter().enumerate() {
        let dir = work.path().join(format!("img{i}"));
        let layout = ImageLayout::create(&dir).unwrap();
        let (desc, diff_id) = make(&layout, &dir);
        let out = work.path().join(format!("target{i}"));
        fs::create_dir(&out).unwrap();
        let target = TreeRoot::open(&out).unwrap();
        let result = apply_layer(
            &layout,
            &desc,
            &diff_id,
            &target,
            Path::new(""),
            Whiteouts::Remove,
        );
        let err = result.err().unwrap_or_else(|| panic!("{what}: accepted"));
        eprintln!("{what}: {err}");
        assert!(listing(&out).is_empty(), "{what}: wrote into the target");
        assert_eq!(listing(&decoy), decoy_before, "{what}: wrote outside");
        let mut stray = fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("img") && !n.starts_with("target") && n != "decoy")
            .collect::<Vec<_>>();
        stray.sort();
        assert!(stray.is_empty(), "{what}: made {stray:?}");
    }
}

#[test]
fn a_hostile_digest_in_the_index_is_refused() {
    let work = tmp();
    let dir = work.path().join("img");
    ImageLayout::create(&dir).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:../../../etc/passwd",
            "size": 10,
            "annotations": {"org.opencontainers.image.ref.name": "x"}
        }]
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let refused = match ImageLayout::open(&dir) {
        Err(_) => true,
        Ok(layout) => layout.read_image(Some("x")).is_err(),
    };
    assert!(refused);
}

#[test]
fn open_blob_checks_size_and_digest() {
    use std::io::Read;
    let work = tmp();
    let layout = ImageLayout::create(&work.path().join("img")).unwrap();
    let blob = layout.store_bytes(b"some bytes").unwrap();
    assert!(blob.new);
    assert!(!layout.store_bytes(b"some bytes").unwrap().new);
    let good = Descriptor::new(
        MediaType::ImageConfig,
        blob.size,
        blob.digest
            .parse::<ocidir::oci_spec::image::Digest>()
            .unwrap(),
    );
    let mut data = Vec::new();
    layout
        .open_blob(&good)
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    assert_eq!(data, b"some bytes");
    for size in [blob.size - 1, blob.size + 1] {
        let mut bad = good.clone();
        bad.set_size(size);
        let err = layout
            .open_blob(&bad)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(&blob.digest), "{err}");
    }
    let other = layout.store_bytes(b"other bytes!").unwrap();
    let mut bad = good.clone();
    bad.set_size(other.size);
    fs::rename(
        work.path()
            .join("img/blobs/sha256")
            .join(other.digest.strip_prefix("sha256:").unwrap()),
        work.path()
            .join("img/blobs/sha256")
            .join(blob.digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    let err = layout
        .open_blob(&bad)
        .unwrap()
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("digest"), "{err}");
}

// ---- whiteouts -----------------------------------------------------------

fn whiteout_layer(work: &Path) -> (ImageLayout, Descriptor, String) {
    let src = work.join("src");
    fs::create_dir_all(src.join("od")).unwrap();
    fs::write(src.join("od/new"), b"new").unwrap();
    let layout = ImageLayout::create(&work.join("img")).unwrap();
    let source = TreeRoot::open(&src).unwrap();
    let items = vec![
        LayerItem::Whiteout("gone".into()),
        LayerItem::Whiteout("gonedir".into()),
        LayerItem::Opaque("od".into()),
        LayerItem::Entry("od".into()),
        LayerItem::Entry("od/new".into()),
    ];
    let layer = write_layer(&layout, &source, &items, Path::new(""), &[]).unwrap();
    assert_eq!(layer.entries, 5);
    (layout, layer.descriptor, layer.diff_id)
}

#[test]
fn whiteouts_remove_what_lower_layers_had() {
    require_root!();
    let work = tmp();
    let (layout, desc, diff_id) = whiteout_layer(work.path());
    let out = work.path().join("out");
    fs::create_dir_all(out.join("od/sub")).unwrap();
    fs::create_dir_all(out.join("gonedir/deep")).unwrap();
    fs::write(out.join("gone"), b"x").unwrap();
    fs::write(out.join("keep"), b"x").unwrap();
    fs::write(out.join("od/old"), b"x").unwrap();
    fs::write(out.join("od/sub/old"), b"x").unwrap();
    let target = TreeRoot::open(&out).unwrap();
    let applied = apply_layer(
        &layout,
        &desc,
        &diff_id,
        &target,
        Path::new(""),
        Whiteouts::Remove,
    )
    .unwrap();
    assert_eq!(applied.whiteouts, 3);
    let names: Vec<String> = listing(&out).into_keys().collect();
    assert_eq!(names, ["keep", "od", "od/new"]);
}

#[test]
fn whiteouts_in_kernel_overlay_form() {
    require_root!();
    let work = tmp();
    let (layout, desc, diff_id) = whiteout_layer(work.path());
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("gone"), b"replaced by a whiteout").unwrap();
    let target = TreeRoot::open(&out).unwrap();
    apply_layer(
        &layout,
        &desc,
        &diff_id,
        &target,
        Path::new(""),
        Whiteouts::KernelOverlay,
    )
    .unwrap();
    for name in ["gone", "gonedir"] {
        let md = fs::symlink_metadata(out.join(name)).unwrap();
        assert!(md.file_type().is_char_device(), "{name}");
        assert_eq!(md.rdev(), 0, "{name}");
    }
    assert_eq!(
        xattr::get(out.join("od"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(out.join("od/new")).unwrap(), b"new");
}

// ---- skopeo --------------------------------------------------------------

#[test]
fn skopeo_reads_and_copies_the_image() {
    require_root!();
    let skopeo = Path::new("/usr/bin/skopeo");
    if !skopeo.exists() {
        eprintln!("skipped: skopeo is not installed");
        return;
    }
    let work = tmp();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let img = work.path().join("img");
    let layout = ImageLayout::create(&img).unwrap();
    let source = TreeRoot::open(&src).unwrap();
    let layer = write_layer(
        &layout,
        &source,
        &all_items(&src),
        Path::new(""),
        &part("global"),
    )
    .unwrap();
    let written = layout.write_image(&new_image(vec![layer]), "7").unwrap();

    let out = Command::new(skopeo)
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:7", img.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        format!("sha256:{}", hex(&Sha256::digest(&out.stdout))),
        written.digest
    );

    let copy = work.path().join("copy");
    let out = Command::new(skopeo)
        .arg("copy")
        .arg(format!("oci:{}:7", img.display()))
        .arg(format!("oci:{}:7", copy.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copied = ImageLayout::open(&copy)
        .unwrap()
        .read_image(Some("7"))
        .unwrap();
    assert_eq!(copied.digest, written.digest);
}
