//! The overlay core driven directly on temporary layers, without a mount:
//! fast, and it sees what a mount hides (the kernel's caches answer many
//! requests before they reach the server). Needs root for `trusted.*`
//! xattrs and 0/0 whiteouts, not `/dev/fuse`.

mod common;

use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use std::sync::RwLock;

use common::require_root;
use rustix::fs::RenameFlags;
use vskel::view::LayerSpec;
use vskel::view::files::{Handle, OpenFile};
use vskel::view::mutate::{Caller, Make, SetAttr};
use vskel::view::node::ROOT_ID;
use vskel::view::overlay::Errno;
use vskel::view::overlay::{Layer, Overlay};

/// Layers in a temporary directory: `lower` (one layer, made by `fill`),
/// an empty `upper` and `work`, and a `decoy` file outside all of them.
struct Layers {
    dir: tempfile::TempDir,
}

impl Layers {
    fn new(fill: impl FnOnce(&Path)) -> Layers {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["lower", "upper", "work"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        fill(&dir.path().join("lower"));
        fs::write(dir.path().join("decoy"), b"host\n").unwrap();
        fs::set_permissions(dir.path().join("decoy"), fs::Permissions::from_mode(0o644)).unwrap();
        Layers { dir }
    }

    fn overlay(&self) -> Overlay {
        let d = self.dir.path();
        Overlay::new(&LayerSpec {
            upper: d.join("upper"),
            work: d.join("work"),
            lowers: vec![d.join("lower")],
        })
        .unwrap()
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn decoy(&self) -> (u32, u32, i64, Vec<u8>) {
        let p = self.path("decoy");
        let md = fs::symlink_metadata(&p).unwrap();
        (md.mode(), md.uid(), md.mtime(), fs::read(&p).unwrap())
    }
}

const ME: Caller = Caller { uid: 0, gid: 0 };

/// Taken shared by every test, and exclusively by the one that runs the
/// process out of descriptors (the others would fail meanwhile).
static DESCRIPTORS: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    DESCRIPTORS.read().unwrap_or_else(|p| p.into_inner())
}

/// Every way of acting on a node by name, after a symlink to a host file
/// took the node's name: none may reach the host file. The node lives on
/// for its open handles only; by name it is gone.
#[test]
fn a_node_whose_name_was_taken_by_a_symlink_is_never_reached_by_that_name() {
    if !require_root("a_node_whose_name_was_taken_by_a_symlink_is_never_reached_by_that_name") {
        return;
    }
    let _fds = shared();
    // Cases: the file replaced was made in the view, or is a lower file.
    for made_in_view in [true, false] {
        let layers = Layers::new(|lower| fs::write(lower.join("f"), b"lower\n").unwrap());
        let before = layers.decoy();
        let ov = layers.overlay();
        let f = if made_in_view {
            ov.unlink(ROOT_ID, OsStr::new("f")).unwrap();
            let (entry, fd) = ov
                .make(ROOT_ID, OsStr::new("f"), Make::File { mode: 0o644 }, 0, ME)
                .unwrap();
            assert!(fd.is_some());
            entry.attr.id
        } else {
            ov.lookup(ROOT_ID, OsStr::new("f")).unwrap().attr.id
        };
        let target =
            CString::new(layers.path("decoy").into_os_string().into_encoded_bytes()).unwrap();
        ov.make(
            ROOT_ID,
            OsStr::new("s"),
            Make::Symlink { target: &target },
            0,
            ME,
        )
        .unwrap();
        ov.rename(
            ROOT_ID,
            OsStr::new("s"),
            ROOT_ID,
            OsStr::new("f"),
            RenameFlags::empty(),
        )
        .unwrap();
        assert!(ov.is_unlinked(f), "made in view: {made_in_view}");

        let chmod = SetAttr {
            mode: Some(0o4777),
            uid: Some(65534),
            size: Some(0),
            ..SetAttr::default()
        };
        assert_eq!(ov.setattr(f, &chmod, None).unwrap_err(), Errno::NOENT);
        assert_eq!(ov.open(f, libc::O_RDWR).unwrap_err(), Errno::NOENT);
        assert_eq!(ov.open(f, libc::O_RDONLY).unwrap_err(), Errno::NOENT);
        assert_eq!(ov.getxattr(f, c"user.x").unwrap_err(), Errno::NOENT);
        assert_eq!(
            ov.setxattr(f, c"user.x", b"1", 0).unwrap_err(),
            Errno::NOENT
        );
        assert_eq!(ov.getattr(f).unwrap_err(), Errno::NOENT);
        assert_eq!(
            ov.link(f, ROOT_ID, OsStr::new("again")).unwrap_err(),
            Errno::NOENT
        );
        assert_eq!(layers.decoy(), before, "made in view: {made_in_view}");
        assert_eq!(fs::read(layers.path("lower/f")).unwrap(), b"lower\n");
    }
}

/// A change of a node whose every name is gone acts on an open file of
/// it in the upper layer (fchmod of an unlinked file works on Linux; the
/// kernel sends no handle with it), and its attributes come from there.
#[test]
fn a_change_of_an_unlinked_node_acts_on_its_open_file() {
    if !require_root("a_change_of_an_unlinked_node_acts_on_its_open_file") {
        return;
    }
    let _fds = shared();
    let layers = Layers::new(|_| {});
    let before = layers.decoy();
    let ov = layers.overlay();
    let (entry, fd) = ov
        .make(ROOT_ID, OsStr::new("f"), Make::File { mode: 0o600 }, 0, ME)
        .unwrap();
    let f = entry.attr.id;
    let file = std::sync::Arc::new(fs::File::from(fd.unwrap()));
    ov.handles().insert(Handle::File(OpenFile {
        node: f,
        file: file.clone(),
        layer: Layer::Upper,
        backing: false,
    }));
    ov.unlink(ROOT_ID, OsStr::new("f")).unwrap();
    assert!(ov.is_unlinked(f));
    assert_eq!(ov.getattr(f).unwrap_err(), Errno::NOENT, "by name: gone");
    let change = SetAttr {
        mode: Some(0o4750),
        uid: Some(65534),
        gid: Some(65534),
        size: Some(4096),
        ..SetAttr::default()
    };
    let (attr, _) = ov.setattr(f, &change, None).unwrap();
    let got =
        |a: &vskel::view::overlay::Attrs| (a.stat.st_mode & 0o7777, a.stat.st_uid, a.stat.st_size);
    assert_eq!(got(&attr), (0o4750, 65534, 4096));
    assert_eq!(
        got(&ov.getattr_of(f, None).unwrap().0),
        (0o4750, 65534, 4096)
    );
    let st = rustix::fs::fstat(&*file).unwrap();
    assert_eq!(
        (st.st_mode & 0o7777, st.st_uid, st.st_size),
        (0o4750, 65534, 4096)
    );
    // Reopened through the open file (as through /proc/PID/fd), never a name.
    let (again, layer) = ov.open(f, libc::O_RDWR).unwrap();
    assert_eq!(layer, Layer::Upper);
    let st2 = rustix::fs::fstat(&again).unwrap();
    assert_eq!((st2.st_dev, st2.st_ino), (st.st_dev, st.st_ino));
    assert_eq!(layers.decoy(), before);
}

/// House issue, defect 4, on the bare core: a 0/0 character device is a
/// whiteout, refused with EPERM before anything is made.
#[test]
fn a_whiteout_device_is_refused() {
    if !require_root("a_whiteout_device_is_refused") {
        return;
    }
    let _fds = shared();
    let layers = Layers::new(|lower| fs::create_dir(lower.join("d")).unwrap());
    let ov = layers.overlay();
    let d = ov.lookup(ROOT_ID, OsStr::new("d")).unwrap().attr.id;
    let whiteout = Make::Node {
        kind: rustix::fs::FileType::CharacterDevice,
        mode: 0o644,
        rdev: 0,
    };
    assert_eq!(
        ov.make(d, OsStr::new("c"), whiteout, 0, ME).unwrap_err(),
        Errno::PERM
    );
    assert!(
        !layers.path("upper/d").exists(),
        "nothing copied up or made"
    );
    let device = Make::Node {
        kind: rustix::fs::FileType::CharacterDevice,
        mode: 0o644,
        rdev: rustix::fs::makedev(1, 3),
    };
    ov.make(d, OsStr::new("null"), device, 0, ME).unwrap();
    assert_eq!(
        fs::symlink_metadata(layers.path("upper/d/null"))
            .unwrap()
            .rdev(),
        rustix::fs::makedev(1, 3)
    );
}

/// House issue, defect 1: out of descriptors, a name that exists is never
/// answered "absent" (the kernel would keep that for an hour), and what
/// failed is not cached: once descriptors are free, every name is found.
#[test]
fn out_of_descriptors_an_existing_name_is_an_error_not_absent() {
    if !require_root("out_of_descriptors_an_existing_name_is_an_error_not_absent") {
        return;
    }
    let _all = DESCRIPTORS.write().unwrap_or_else(|p| p.into_inner());
    const DIRS: usize = 64;
    let layers = Layers::new(|lower| {
        for i in 0..DIRS {
            fs::create_dir(lower.join(format!("d{i}"))).unwrap();
            fs::write(lower.join(format!("d{i}/f")), b"x").unwrap();
        }
    });
    let ov = layers.overlay();
    let lookup_all = |ov: &Overlay| -> Vec<Result<(), Errno>> {
        let mut results = Vec::new();
        for i in 0..DIRS {
            let d = ov.lookup(ROOT_ID, OsStr::new(&format!("d{i}")));
            results.push(d.as_ref().map(|_| ()).map_err(|e| *e));
            if let Ok(d) = d {
                results.push(ov.lookup(d.attr.id, OsStr::new("f")).map(|_| ()));
            }
        }
        results
    };
    // Use up every descriptor, then give back a few (lookups need some).
    let mut held = Vec::new();
    while let Ok(f) = fs::File::open("/dev/null") {
        held.push(f);
    }
    held.truncate(held.len().saturating_sub(2));
    let starved = lookup_all(&ov);
    drop(held);
    let emfile = starved.iter().filter(|r| **r == Err(Errno::MFILE)).count();
    let absent = starved.iter().filter(|r| **r == Err(Errno::NOENT)).count();
    assert!(
        emfile > 0,
        "the lookups never ran out of descriptors: {starved:?}"
    );
    assert_eq!(absent, 0, "existing names answered ENOENT: {starved:?}");
    let fed = lookup_all(&ov);
    assert!(
        fed.iter().all(|r| r.is_ok()),
        "failures were cached: {fed:?}"
    );
    assert_eq!(fed.len(), 2 * DIRS);
}

/// House issue, defect 5: a lower layer that was once an upper one (vskel's
/// or the kernel's) keeps its renamed directories: their redirects point
/// the layers below to where the content is. Checked against kernel
/// overlayfs over the same layers.
#[test]
fn redirects_in_lower_layers_are_followed() {
    if !require_root("redirects_in_lower_layers_are_followed") {
        return;
    }
    let _fds = shared();
    let layers = Layers::new(|lower| {
        fs::create_dir_all(lower.join("a/dir/sub")).unwrap();
        fs::write(lower.join("a/dir/f"), b"moved with its directory\n").unwrap();
        fs::write(lower.join("a/dir/sub/g"), b"deeper\n").unwrap();
        fs::create_dir_all(lower.join("a/e")).unwrap();
        fs::create_dir_all(lower.join("b/stay")).unwrap();
    });
    {
        let ov = layers.overlay();
        let a = ov.lookup(ROOT_ID, OsStr::new("a")).unwrap().attr.id;
        let e = ov.lookup(a, OsStr::new("e")).unwrap().attr.id;
        ov.lookup(a, OsStr::new("dir")).unwrap();
        ov.rename(
            a,
            OsStr::new("dir"),
            e,
            OsStr::new("x"),
            RenameFlags::empty(),
        )
        .unwrap();
        // And one renamed within its directory.
        let b = ov.lookup(ROOT_ID, OsStr::new("b")).unwrap().attr.id;
        ov.lookup(b, OsStr::new("stay")).unwrap();
        ov.rename(
            b,
            OsStr::new("stay"),
            b,
            OsStr::new("went"),
            RenameFlags::empty(),
        )
        .unwrap();
    }
    // The old upper becomes the top lower of a new stack.
    let d = layers.dir.path();
    for sub in ["upper2", "work2", "mnt"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    let ov = Overlay::new(&LayerSpec {
        upper: d.join("upper2"),
        work: d.join("work2"),
        lowers: vec![d.join("upper"), d.join("lower")],
    })
    .unwrap();
    let find = |path: &str| -> Result<u64, Errno> {
        let mut id = ROOT_ID;
        for name in path.split('/') {
            id = ov.lookup(id, OsStr::new(name))?.attr.id;
        }
        Ok(id)
    };
    let f = find("a/e/x/f").expect("the moved directory's file");
    let (fd, _) = ov.open(f, libc::O_RDONLY).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut fs::File::from(fd), &mut text).unwrap();
    assert_eq!(text, "moved with its directory\n");
    find("a/e/x/sub/g").expect("below the moved directory");
    find("b/went").expect("renamed within its directory");
    assert_eq!(
        find("a/dir").unwrap_err(),
        Errno::NOENT,
        "the old name stays gone"
    );
    let x = find("a/e/x").unwrap();
    let mut names = Vec::new();
    ov.list_plus(x, 0, |item, _| {
        names.push(item.name.to_string_lossy().into_owned());
        true
    })
    .unwrap();
    names.sort();
    assert_eq!(names, ["f", "sub"]);

    // Kernel overlayfs over the same two lowers shows the same.
    let lowerdir = format!(
        "lowerdir={}:{}",
        d.join("upper").display(),
        d.join("lower").display()
    );
    let mnt = d.join("mnt");
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &lowerdir])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "kernel overlayfs refused the layers");
    let _guard = common::MountGuard(mnt.clone());
    assert_eq!(
        fs::read_to_string(mnt.join("a/e/x/f")).unwrap(),
        "moved with its directory\n"
    );
    assert!(mnt.join("b/went").is_dir());
    assert!(!mnt.join("a/dir").exists());
}

/// House issue, defect 2: more lower layers than the node table can
/// address are refused with a clear error, not silently invisible.
#[test]
fn more_lower_layers_than_the_view_can_address_are_refused() {
    if !require_root("more_lower_layers_than_the_view_can_address_are_refused") {
        return;
    }
    let _fds = shared();
    let d = tempfile::tempdir().unwrap();
    let mut lowers = Vec::new();
    for i in 0..=vskel::view::node::MAX_LOWERS {
        let l = d.path().join(format!("l{i}"));
        fs::create_dir(&l).unwrap();
        fs::write(l.join(format!("only-in-{i}")), b"x").unwrap();
        lowers.push(l);
    }
    for sub in ["upper", "work"] {
        fs::create_dir(d.path().join(sub)).unwrap();
    }
    let spec = |lowers: &[std::path::PathBuf]| LayerSpec {
        upper: d.path().join("upper"),
        work: d.path().join("work"),
        lowers: lowers.to_vec(),
    };
    let err = Overlay::new(&spec(&lowers)).unwrap_err().to_string();
    assert!(
        err.contains("33 lower layers") && err.contains("at most 32"),
        "{err}"
    );
    // The most it takes, every layer visible.
    let ov = Overlay::new(&spec(&lowers[..vskel::view::node::MAX_LOWERS])).unwrap();
    let last = format!("only-in-{}", vskel::view::node::MAX_LOWERS - 1);
    ov.lookup(ROOT_ID, OsStr::new(&last))
        .expect("the last layer shows");
}
