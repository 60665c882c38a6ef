//! The overlay core driven directly on temporary layers, without a mount:
//! fast, and it sees what a mount hides (the kernel's caches answer many
//! requests before they reach the server). Needs root for `trusted.*`
//! xattrs and 0/0 whiteouts, not `/dev/fuse`.
//!
//! Besides the tests of single defects, a table of cases (lower layers,
//! operations, the upper layer and the view expected) runs each case on
//! the core and on kernel overlayfs over the same layers, so the
//! expectations are what the kernel does.

mod common;

use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use std::sync::RwLock;

use common::require_root;
use rustix::fs::RenameFlags;
use vskel::view::LayerSpec;
use vskel::view::handles::{Handle, OpenFile};
use vskel::view::mutate::{Caller, Make, SetAttr};
use vskel::view::node::ROOT_ID;
use vskel::view::overlay::Overlay;
use vskel::view::types::Errno;
use vskel::view::types::Layer;

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
        assert_eq!(ov.open(f, libc::O_RDWR, None).unwrap_err(), Errno::NOENT);
        assert_eq!(ov.open(f, libc::O_RDONLY, None).unwrap_err(), Errno::NOENT);
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
        |a: &vskel::view::types::Attrs| (a.stat.st_mode & 0o7777, a.stat.st_uid, a.stat.st_size);
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
    let (again, layer) = ov.open(f, libc::O_RDWR, None).unwrap();
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
    let (fd, _) = ov.open(f, libc::O_RDONLY, None).unwrap();
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

// ---------------------------------------------------------------------------
// Table-driven cases: lower layers as tables of entries, operations on the
// view, and what the upper layer and the view must then show. Each case
// runs on the bare core and, unless it says otherwise, on kernel overlayfs
// over a copy of the same layers: the expectations are the kernel's.
// ---------------------------------------------------------------------------

/// An entry of a lower layer, made in table order.
#[derive(Clone, Copy)]
enum L {
    /// A directory with its mode.
    Dir(&'static str, u32),
    /// A file with its mode and content.
    File(&'static str, u32, &'static str),
    /// A second name of an existing file: (new, existing).
    Link(&'static str, &'static str),
    /// A symlink and its target.
    Sym(&'static str, &'static str),
    /// A FIFO with its mode.
    Fifo(&'static str, u32),
    /// Owner and group.
    Own(&'static str, u32, u32),
    /// An xattr.
    X(&'static str, &'static str, &'static [u8]),
    /// A whiteout (in a lower layer that was an upper one).
    Whiteout(&'static str),
    /// An opaque directory (ditto).
    Opaque(&'static str),
    /// Times: atime, mtime (seconds; nanoseconds 0). Last, after children.
    Times(&'static str, i64, i64),
    /// Exact permission bits (set after owner, which clears setuid).
    Mode(&'static str, u32),
}

/// An operation on the view, by path.
#[derive(Clone, Copy, Debug)]
enum Op {
    Unlink(&'static str),
    Rmdir(&'static str),
    /// Remove a tree, deepest first (as `rm -rf`).
    RmRf(&'static str),
    Mkdir(&'static str, u32),
    Create(&'static str, u32, &'static str),
    /// Write at the end of an existing file.
    Append(&'static str, &'static str),
    Rename(&'static str, &'static str, RenameFlags),
    Link(&'static str, &'static str),
    Chmod(&'static str, u32),
    Chown(&'static str, u32, u32),
    SetX(&'static str, &'static str, &'static [u8]),
    RmX(&'static str, &'static str),
}

/// What the upper layer holds afterwards. The kinds (whiteout, directory,
/// file, symlink) list every entry of the upper layer, nothing else may be
/// there; the rest checks metadata of entries listed.
#[derive(Clone, Copy, Debug)]
enum U {
    Whiteout(&'static str),
    Dir(&'static str),
    File(&'static str, &'static str),
    Sym(&'static str, &'static str),
    /// A FIFO.
    Fifo(&'static str),
    /// An xattr and its value, or that it is absent (`None`).
    X(&'static str, &'static str, Option<&'static [u8]>),
    /// An xattr with any value.
    HasX(&'static str, &'static str),
    /// Mode bits including setuid/setgid/sticky.
    Mode(&'static str, u32),
    Own(&'static str, u32, u32),
    /// atime, mtime in seconds.
    Times(&'static str, i64, i64),
    /// Two names of one inode.
    SameInode(&'static str, &'static str),
    Nlink(&'static str, u64),
}

/// What the view shows afterwards.
#[derive(Clone, Copy, Debug)]
enum V {
    Reads(&'static str, &'static str),
    Absent(&'static str),
    IsDir(&'static str),
    /// The complete listing of a directory (sorted).
    Lists(&'static str, &'static [&'static str]),
    Mode(&'static str, u32),
    Own(&'static str, u32, u32),
    Nlink(&'static str, u64),
    SameInode(&'static str, &'static str),
    Readlink(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    /// Lower layers, top first.
    lowers: &'static [&'static [L]],
    /// Operations, each with what it must answer.
    ops: &'static [(Op, Result<(), Errno>)],
    upper: &'static [U],
    view: &'static [V],
    /// Also run on kernel overlayfs (`None`), or why not.
    not_kernel: Option<&'static str>,
}

const OK: Result<(), Errno> = Ok(());
const NONE: RenameFlags = RenameFlags::empty();
const EXCHANGE: RenameFlags = RenameFlags::EXCHANGE;
const NOREPLACE: RenameFlags = RenameFlags::NOREPLACE;
/// `security.capability` (v2) granting cap_net_bind_service.
const CAP: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    xattr::set(path, name, value).unwrap_or_else(|e| panic!("setxattr {path:?} {name}: {e}"));
}

fn fill_layer(root: &Path, entries: &[L]) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    for e in entries {
        match *e {
            L::Dir(p, mode) => {
                fs::create_dir(root.join(p)).unwrap();
                fs::set_permissions(root.join(p), fs::Permissions::from_mode(mode)).unwrap();
            }
            L::File(p, mode, text) => {
                fs::write(root.join(p), text).unwrap();
                fs::set_permissions(root.join(p), fs::Permissions::from_mode(mode)).unwrap();
            }
            L::Link(new, old) => fs::hard_link(root.join(old), root.join(new)).unwrap(),
            L::Sym(p, target) => symlink(target, root.join(p)).unwrap(),
            L::Fifo(p, mode) => {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    root.join(p),
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(mode),
                    0,
                )
                .unwrap();
                fs::set_permissions(root.join(p), fs::Permissions::from_mode(mode)).unwrap();
            }
            L::Own(p, uid, gid) => {
                std::os::unix::fs::lchown(root.join(p), Some(uid), Some(gid)).unwrap()
            }
            L::X(p, name, value) => set_xattr(&root.join(p), name, value),
            L::Whiteout(p) => {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    root.join(p),
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::empty(),
                    0,
                )
                .unwrap();
            }
            L::Opaque(p) => set_xattr(&root.join(p), "trusted.overlay.opaque", b"y"),
            L::Times(p, atime, mtime) => {
                let t = |s: i64| rustix::fs::Timespec {
                    tv_sec: s,
                    tv_nsec: 0,
                };
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    root.join(p),
                    &rustix::fs::Timestamps {
                        last_access: t(atime),
                        last_modification: t(mtime),
                    },
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .unwrap();
            }
            L::Mode(p, mode) => {
                fs::set_permissions(root.join(p), fs::Permissions::from_mode(mode)).unwrap()
            }
        }
    }
}

/// What a check needs to know of an entry of the view.
#[derive(Debug, PartialEq)]
struct Seen {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    ino: u64,
    dir: bool,
}

/// The view, on the bare core or on a kernel mount: acted on and read by
/// path.
trait Viewed {
    fn act(&self, op: Op) -> Result<(), Errno>;
    fn seen(&self, path: &str) -> Result<Seen, Errno>;
    fn read(&self, path: &str) -> Result<Vec<u8>, Errno>;
    fn list(&self, path: &str) -> Result<Vec<String>, Errno>;
    fn readlink(&self, path: &str) -> Result<Vec<u8>, Errno>;
}

fn parent_and_name(path: &str) -> (&str, &OsStr) {
    match path.rsplit_once('/') {
        Some((dir, name)) => (dir, OsStr::new(name)),
        None => ("", OsStr::new(path)),
    }
}

struct Core(Overlay);

impl Core {
    fn find(&self, path: &str) -> Result<u64, Errno> {
        let mut id = ROOT_ID;
        for name in path.split('/').filter(|n| !n.is_empty()) {
            id = self.0.lookup(id, OsStr::new(name))?.attr.id;
        }
        Ok(id)
    }

    fn parent(&self, path: &str) -> Result<(u64, std::ffi::OsString), Errno> {
        let (dir, name) = parent_and_name(path);
        Ok((self.find(dir)?, name.to_os_string()))
    }

    fn rm_rf(&self, path: &str) -> Result<(), Errno> {
        let id = self.find(path)?;
        let (p, n) = self.parent(path)?;
        if self.0.getattr(id)?.0.stat.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return self.0.unlink(p, &n);
        }
        for item in self.0.listing(id)?.iter() {
            self.rm_rf(&format!("{path}/{}", item.name.to_string_lossy()))?;
        }
        self.0.rmdir(p, &n)
    }
}

impl Viewed for Core {
    fn act(&self, op: Op) -> Result<(), Errno> {
        let ov = &self.0;
        match op {
            Op::Unlink(p) => {
                let (d, n) = self.parent(p)?;
                ov.unlink(d, &n)
            }
            Op::Rmdir(p) => {
                let (d, n) = self.parent(p)?;
                ov.rmdir(d, &n)
            }
            Op::RmRf(p) => self.rm_rf(p),
            Op::Mkdir(p, mode) => {
                let (d, n) = self.parent(p)?;
                ov.make(d, &n, Make::Dir { mode }, 0o022, ME).map(|_| ())
            }
            Op::Create(p, mode, text) => {
                let (d, n) = self.parent(p)?;
                let (_, fd) = ov.make(d, &n, Make::File { mode }, 0o022, ME)?;
                rustix::io::write(fd.unwrap(), text.as_bytes()).map(|_| ())
            }
            Op::Append(p, text) => {
                // The kernel sends the offset of an append (as FUSE does).
                let (fd, layer) = ov.open(self.find(p)?, libc::O_WRONLY, None)?;
                assert_eq!(layer, Layer::Upper, "opened for writing: copied up");
                let end = rustix::fs::fstat(&fd)?.st_size as u64;
                rustix::io::pwrite(fd, text.as_bytes(), end).map(|_| ())
            }
            Op::Rename(a, b, flags) => {
                let (da, na) = self.parent(a)?;
                let (db, nb) = self.parent(b)?;
                ov.rename(da, &na, db, &nb, flags)
            }
            Op::Link(old, new) => {
                let (d, n) = self.parent(new)?;
                ov.link(self.find(old)?, d, &n).map(|_| ())
            }
            Op::Chmod(p, mode) => {
                let change = SetAttr {
                    mode: Some(mode),
                    ..SetAttr::default()
                };
                ov.setattr(self.find(p)?, &change, None).map(|_| ())
            }
            Op::Chown(p, uid, gid) => {
                let change = SetAttr {
                    uid: Some(uid),
                    gid: Some(gid),
                    ..SetAttr::default()
                };
                ov.setattr(self.find(p)?, &change, None).map(|_| ())
            }
            Op::SetX(p, name, value) => {
                let name = CString::new(name).unwrap();
                ov.setxattr(self.find(p)?, &name, value, 0)
            }
            Op::RmX(p, name) => {
                let name = CString::new(name).unwrap();
                ov.removexattr(self.find(p)?, &name)
            }
        }
    }

    fn seen(&self, path: &str) -> Result<Seen, Errno> {
        let st = self.0.getattr(self.find(path)?)?.0.stat;
        Ok(Seen {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            nlink: st.st_nlink,
            ino: st.st_ino,
            dir: st.st_mode & libc::S_IFMT == libc::S_IFDIR,
        })
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, Errno> {
        let (fd, _) = self.0.open(self.find(path)?, libc::O_RDONLY, None)?;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut fs::File::from(fd), &mut out).unwrap();
        Ok(out)
    }

    fn list(&self, path: &str) -> Result<Vec<String>, Errno> {
        let id = self.find(path)?;
        let mut names: Vec<String> = self
            .0
            .listing(id)?
            .iter()
            .map(|l| l.name.to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn readlink(&self, path: &str) -> Result<Vec<u8>, Errno> {
        self.0.readlink(self.find(path)?)
    }
}

/// Kernel overlayfs mounted at a path.
struct Kernel(std::path::PathBuf);

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_io_error(&e).unwrap_or(Errno::IO)
}

impl Viewed for Kernel {
    fn act(&self, op: Op) -> Result<(), Errno> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let at = |p: &str| self.0.join(p);
        let r = match op {
            Op::Unlink(p) => fs::remove_file(at(p)),
            Op::Rmdir(p) => fs::remove_dir(at(p)),
            Op::RmRf(p) => fs::remove_dir_all(at(p)),
            Op::Mkdir(p, mode) => fs::DirBuilder::new().mode(mode).create(at(p)),
            Op::Create(p, mode, text) => fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(at(p))
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes())),
            Op::Append(p, text) => fs::OpenOptions::new()
                .append(true)
                .open(at(p))
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes())),
            Op::Rename(a, b, flags) => {
                return rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    at(a),
                    rustix::fs::CWD,
                    at(b),
                    flags,
                );
            }
            Op::Link(old, new) => fs::hard_link(at(old), at(new)),
            Op::Chmod(p, mode) => fs::set_permissions(at(p), fs::Permissions::from_mode(mode)),
            Op::Chown(p, uid, gid) => std::os::unix::fs::lchown(at(p), Some(uid), Some(gid)),
            Op::SetX(p, name, value) => xattr::set(at(p), name, value),
            Op::RmX(p, name) => xattr::remove(at(p), name),
        };
        r.map_err(io_errno)
    }

    fn seen(&self, path: &str) -> Result<Seen, Errno> {
        let md = fs::symlink_metadata(self.0.join(path)).map_err(io_errno)?;
        Ok(Seen {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            nlink: md.nlink(),
            ino: md.ino(),
            dir: md.is_dir(),
        })
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, Errno> {
        fs::read(self.0.join(path)).map_err(io_errno)
    }

    fn list(&self, path: &str) -> Result<Vec<String>, Errno> {
        let mut names: Vec<String> = fs::read_dir(self.0.join(path))
            .map_err(io_errno)?
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn readlink(&self, path: &str) -> Result<Vec<u8>, Errno> {
        fs::read_link(self.0.join(path))
            .map(|t| t.into_os_string().into_encoded_bytes())
            .map_err(io_errno)
    }
}

/// Every entry of an upper layer: path -> kind letter (`w`hiteout,
/// `d`irectory, `f`ile, `l`ink, `o`ther).
fn upper_kinds(root: &Path) -> std::collections::BTreeMap<String, char> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(root: &Path, rel: &str, out: &mut std::collections::BTreeMap<String, char>) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = fs::symlink_metadata(root.join(&path)).unwrap();
            let ft = md.file_type();
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_char_device() && md.rdev() == 0 {
                'w'
            } else if ft.is_dir() {
                'd'
            } else if ft.is_file() {
                'f'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_fifo() {
                'p'
            } else {
                'o'
            };
            out.insert(path.clone(), kind);
            if kind == 'd' {
                walk(root, &path, out);
            }
        }
    }
    walk(root, "", &mut out);
    out
}

fn check_upper(case: &str, on: &str, upper: &Path, want: &[U]) {
    let ctx = |u: &U| format!("{case} ({on}): {u:?}");
    let mut kinds = std::collections::BTreeMap::new();
    for u in want {
        let md = |p: &str| {
            fs::symlink_metadata(upper.join(p)).unwrap_or_else(|e| panic!("{}: {e}", ctx(u)))
        };
        match *u {
            U::Whiteout(p) => drop(kinds.insert(p.to_string(), 'w')),
            U::Dir(p) => drop(kinds.insert(p.to_string(), 'd')),
            // Read after the other checks: a read may change the atime.
            U::File(p, _) => drop(kinds.insert(p.to_string(), 'f')),
            U::Sym(p, target) => {
                kinds.insert(p.to_string(), 'l');
                assert_eq!(
                    fs::read_link(upper.join(p)).unwrap(),
                    Path::new(target),
                    "{}",
                    ctx(u)
                );
            }
            U::Fifo(p) => drop(kinds.insert(p.to_string(), 'p')),
            U::X(p, name, value) => {
                let got = xattr::get(upper.join(p), name).unwrap();
                assert_eq!(got.as_deref(), value, "{}", ctx(u));
            }
            U::HasX(p, name) => {
                assert!(
                    xattr::get(upper.join(p), name).unwrap().is_some(),
                    "{}",
                    ctx(u)
                )
            }
            U::Mode(p, mode) => assert_eq!(md(p).mode() & 0o7777, mode, "{}", ctx(u)),
            U::Own(p, uid, gid) => assert_eq!((md(p).uid(), md(p).gid()), (uid, gid), "{}", ctx(u)),
            U::Times(p, atime, mtime) => {
                let m = md(p);
                assert_eq!((m.atime(), m.mtime()), (atime, mtime), "{}", ctx(u));
            }
            U::SameInode(a, b) => assert_eq!(md(a).ino(), md(b).ino(), "{}", ctx(u)),
            U::Nlink(p, n) => assert_eq!(md(p).nlink(), n, "{}", ctx(u)),
        }
    }
    for u in want {
        if let U::File(p, text) = *u {
            let got = fs::read_to_string(upper.join(p));
            assert_eq!(
                got.map_err(|e| e.to_string()).as_deref(),
                Ok(text),
                "{}",
                ctx(u)
            );
        }
    }
    let got = upper_kinds(upper);
    assert_eq!(
        got, kinds,
        "{case} ({on}): the upper layer holds exactly these entries"
    );
}

fn check_view(case: &str, on: &str, view: &dyn Viewed, want: &[V]) {
    for v in want {
        let ctx = format!("{case} ({on}): {v:?}");
        let seen = |p: &str| view.seen(p).unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
        match *v {
            V::Reads(p, text) => {
                assert_eq!(
                    view.read(p).map_err(|e| format!("{e:?}")),
                    Ok(text.as_bytes().to_vec()),
                    "{ctx}"
                )
            }
            V::Absent(p) => assert_eq!(view.seen(p).err(), Some(Errno::NOENT), "{ctx}"),
            V::IsDir(p) => assert!(seen(p).dir, "{ctx}"),
            V::Lists(p, names) => assert_eq!(
                view.list(p),
                Ok(names.iter().map(|n| n.to_string()).collect()),
                "{ctx}"
            ),
            V::Mode(p, mode) => assert_eq!(seen(p).mode, mode, "{ctx}"),
            V::Own(p, uid, gid) => assert_eq!((seen(p).uid, seen(p).gid), (uid, gid), "{ctx}"),
            V::Nlink(p, n) => assert_eq!(seen(p).nlink, n, "{ctx}"),
            V::SameInode(a, b) => assert_eq!(seen(a).ino, seen(b).ino, "{ctx}"),
            V::Readlink(p, target) => {
                assert_eq!(view.readlink(p), Ok(target.as_bytes().to_vec()), "{ctx}")
            }
        }
    }
}

/// Lower layers (made from the tables), an empty upper and work.
fn make_layers(base: &Path, lowers: &[&[L]]) -> LayerSpec {
    let spec = LayerSpec {
        upper: base.join("upper"),
        work: base.join("work"),
        lowers: (0..lowers.len())
            .map(|i| base.join(format!("lower{i}")))
            .collect(),
    };
    fs::create_dir_all(&spec.upper).unwrap();
    fs::create_dir_all(&spec.work).unwrap();
    for (dir, entries) in spec.lowers.iter().zip(lowers) {
        fs::create_dir_all(dir).unwrap();
        fill_layer(dir, entries);
    }
    spec
}

fn run_case(case: &Case) {
    let base = tempfile::tempdir().unwrap();
    // On the bare core.
    let spec = make_layers(&base.path().join("core"), case.lowers);
    let core = Core(Overlay::new(&spec).unwrap());
    for (op, want) in case.ops {
        assert_eq!(core.act(*op), *want, "{} (core): {op:?}", case.name);
    }
    check_upper(case.name, "core", &spec.upper, case.upper);
    check_view(case.name, "core", &core, case.view);
    // A fresh core over the layers as left shows the same.
    drop(core);
    let again = Core(Overlay::new(&spec).unwrap());
    check_view(case.name, "core, again", &again, case.view);
    drop(again);
    if case.not_kernel.is_some() {
        return;
    }
    // On kernel overlayfs over the same tables.
    let spec = make_layers(&base.path().join("kernel"), case.lowers);
    let mnt = base.path().join("kernel/mnt");
    fs::create_dir(&mnt).unwrap();
    let lowerdir: Vec<String> = spec
        .lowers
        .iter()
        .map(|l| l.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=on,index=off,metacopy=off",
        lowerdir.join(":"),
        spec.upper.display(),
        spec.work.display()
    );
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{}: kernel overlayfs refused {options}",
        case.name
    );
    let guard = common::MountGuard(mnt.clone());
    let kernel = Kernel(mnt.clone());
    for (op, want) in case.ops {
        assert_eq!(kernel.act(*op), *want, "{} (kernel): {op:?}", case.name);
    }
    // The upper layer first (as on the core): reading a file may change
    // its atime.
    check_upper(case.name, "kernel", &spec.upper, case.upper);
    check_view(case.name, "kernel", &kernel, case.view);
    drop(guard);
}

const OPAQUE: &str = "trusted.overlay.opaque";
const REDIRECT: &str = "trusted.overlay.redirect";

const CASES: &[Case] = &[
    Case {
        name: "unlink of a lower file leaves a whiteout",
        lowers: &[&[
            L::Dir("d", 0o755),
            L::File("d/f", 0o644, "f"),
            L::File("d/g", 0o644, "g"),
        ]],
        ops: &[(Op::Unlink("d/f"), OK)],
        upper: &[U::Dir("d"), U::Whiteout("d/f")],
        view: &[
            V::Absent("d/f"),
            V::Lists("d", &["g"]),
            V::Reads("d/g", "g"),
        ],
        not_kernel: None,
    },
    Case {
        name: "unlink of a copied-up file leaves a whiteout",
        lowers: &[&[L::File("f", 0o644, "l")]],
        ops: &[(Op::Append("f", "u"), OK), (Op::Unlink("f"), OK)],
        upper: &[U::Whiteout("f")],
        view: &[V::Absent("f"), V::Lists("", &[])],
        not_kernel: None,
    },
    Case {
        name: "unlink of a file made in the view leaves nothing",
        lowers: &[&[]],
        ops: &[(Op::Create("n", 0o644, "n"), OK), (Op::Unlink("n"), OK)],
        upper: &[],
        view: &[V::Absent("n"), V::Lists("", &[])],
        not_kernel: None,
    },
    Case {
        name: "rmdir of a lower directory leaves a whiteout",
        lowers: &[&[L::Dir("d", 0o755), L::Dir("d/e", 0o755)]],
        ops: &[(Op::Rmdir("d/e"), OK)],
        upper: &[U::Dir("d"), U::Whiteout("d/e")],
        view: &[V::Absent("d/e"), V::Lists("d", &[])],
        not_kernel: None,
    },
    Case {
        name: "rmdir of a non-empty lower directory is refused, nothing copied up",
        lowers: &[&[L::Dir("d", 0o755), L::File("d/f", 0o644, "f")]],
        ops: &[(Op::Rmdir("d"), Err(Errno::NOTEMPTY))],
        upper: &[],
        view: &[V::Reads("d/f", "f")],
        not_kernel: None,
    },
    Case {
        name: "a whiteout in a lower layer hides the name below",
        lowers: &[
            &[L::Whiteout("f")],
            &[L::File("f", 0o644, "below"), L::File("g", 0o644, "g")],
        ],
        ops: &[],
        upper: &[],
        view: &[V::Absent("f"), V::Lists("", &["g"])],
        not_kernel: None,
    },
    Case {
        name: "a file made over a lower layer's whiteout",
        lowers: &[&[L::Whiteout("f")], &[L::File("f", 0o644, "below")]],
        ops: &[(Op::Create("f", 0o644, "new"), OK)],
        upper: &[U::File("f", "new")],
        view: &[V::Reads("f", "new"), V::Lists("", &["f"])],
        not_kernel: None,
    },
    Case {
        name: "a directory made over a lower layer's whiteout is empty",
        lowers: &[
            &[L::Whiteout("d")],
            &[L::Dir("d", 0o755), L::File("d/x", 0o644, "x")],
        ],
        ops: &[(Op::Mkdir("d", 0o755), OK)],
        upper: &[U::Dir("d")],
        view: &[V::Lists("d", &[]), V::Absent("d/x")],
        not_kernel: None,
    },
    Case {
        name: "rmdir then mkdir over a lower directory: opaque",
        lowers: &[&[L::Dir("d", 0o755), L::File("d/f", 0o644, "f")]],
        ops: &[
            (Op::Unlink("d/f"), OK),
            (Op::Rmdir("d"), OK),
            (Op::Mkdir("d", 0o755), OK),
            (Op::Create("d/n", 0o644, "n"), OK),
        ],
        upper: &[
            U::Dir("d"),
            U::X("d", OPAQUE, Some(b"y")),
            U::File("d/n", "n"),
        ],
        view: &[V::Lists("d", &["n"]), V::Absent("d/f")],
        not_kernel: None,
    },
    Case {
        name: "rm -rf of a lower tree in two layers, then recreated: opaque",
        lowers: &[
            &[
                L::Dir("d", 0o755),
                L::Dir("d/e", 0o755),
                L::File("d/e/f", 0o644, "f"),
                L::Sym("d/s", "e"),
            ],
            &[
                L::Dir("d", 0o755),
                L::File("d/g", 0o644, "g"),
                L::Dir("d/e", 0o755),
                L::File("d/e/h", 0o644, "h"),
            ],
        ],
        ops: &[
            (Op::RmRf("d"), OK),
            (Op::Mkdir("d", 0o755), OK),
            (Op::Mkdir("d/e", 0o755), OK),
        ],
        upper: &[
            U::Dir("d"),
            U::X("d", OPAQUE, Some(b"y")),
            U::Dir("d/e"),
            U::X("d/e", OPAQUE, None),
        ],
        view: &[
            V::Lists("d", &["e"]),
            V::Lists("d/e", &[]),
            V::Absent("d/g"),
            V::Absent("d/s"),
        ],
        not_kernel: None,
    },
    Case {
        name: "an opaque directory in a lower layer hides the layers below",
        lowers: &[
            &[
                L::Dir("d", 0o755),
                L::Opaque("d"),
                L::File("d/a", 0o644, "a"),
            ],
            &[L::Dir("d", 0o755), L::File("d/b", 0o644, "b")],
        ],
        ops: &[],
        upper: &[],
        view: &[
            V::Lists("d", &["a"]),
            V::Absent("d/b"),
            V::Reads("d/a", "a"),
        ],
        not_kernel: None,
    },
    Case {
        name: "a lower directory renamed to another directory: absolute redirect",
        lowers: &[&[
            L::Dir("a", 0o755),
            L::Dir("a/dir", 0o755),
            L::File("a/dir/f", 0o644, "f"),
            L::Dir("b", 0o755),
        ]],
        ops: &[(Op::Rename("a/dir", "b/x", NONE), OK)],
        upper: &[
            U::Dir("a"),
            U::Whiteout("a/dir"),
            U::Dir("b"),
            U::Dir("b/x"),
            U::X("b/x", REDIRECT, Some(b"/a/dir")),
        ],
        view: &[
            V::Reads("b/x/f", "f"),
            V::Absent("a/dir"),
            V::Lists("a", &[]),
            V::Lists("b/x", &["f"]),
        ],
        not_kernel: None,
    },
    Case {
        name: "a lower directory renamed within its directory: redirect, old name gone",
        lowers: &[&[
            L::Dir("a", 0o755),
            L::Dir("a/old", 0o755),
            L::File("a/old/f", 0o644, "f"),
        ]],
        ops: &[(Op::Rename("a/old", "a/new", NONE), OK)],
        upper: &[
            U::Dir("a"),
            U::Whiteout("a/old"),
            U::Dir("a/new"),
            U::HasX("a/new", REDIRECT),
        ],
        view: &[
            V::Reads("a/new/f", "f"),
            V::Absent("a/old"),
            V::Lists("a", &["new"]),
        ],
        not_kernel: None,
    },
    Case {
        name: "a lower directory renamed over an empty lower directory",
        lowers: &[&[
            L::Dir("a", 0o755),
            L::File("a/x", 0o644, "x"),
            L::Dir("b", 0o755),
            L::Dir("b/gone", 0o755),
        ]],
        ops: &[
            (Op::Rename("a", "b", NONE), Err(Errno::NOTEMPTY)),
            (Op::Rmdir("b/gone"), OK),
            (Op::Rename("a", "b", NONE), OK),
        ],
        upper: &[U::Whiteout("a"), U::Dir("b"), U::HasX("b", REDIRECT)],
        view: &[V::Lists("b", &["x"]), V::Absent("a"), V::Absent("b/gone")],
        not_kernel: None,
    },
    Case {
        name: "a lower symlink renamed",
        lowers: &[&[L::Sym("s", "target")]],
        ops: &[(Op::Rename("s", "t", NONE), OK)],
        upper: &[U::Whiteout("s"), U::Sym("t", "target")],
        view: &[V::Readlink("t", "target"), V::Absent("s")],
        not_kernel: None,
    },
    Case {
        name: "copy-up keeps owner, mode with setuid, times, xattrs and capabilities; the parent's too",
        lowers: &[&[
            L::Dir("d", 0o750),
            L::File("d/f", 0o755, "data"),
            L::Own("d", 1000, 1001),
            L::Own("d/f", 1000, 1001),
            L::Mode("d/f", 0o4755),
            L::X("d/f", "user.a", b"1"),
            L::X("d/f", "trusted.t", b"2"),
            L::X("d/f", "security.capability", CAP),
            L::X("d", "user.dir", b"3"),
            L::Times("d/f", 1_000_000, 2_000_000),
            L::Times("d", 3_000_000, 4_000_000),
        ]],
        ops: &[(Op::SetX("d/f", "user.new", b"4"), OK)],
        upper: &[
            U::Dir("d"),
            U::Mode("d", 0o750),
            U::Own("d", 1000, 1001),
            U::X("d", "user.dir", Some(b"3")),
            U::Times("d", 3_000_000, 4_000_000),
            U::File("d/f", "data"),
            U::Mode("d/f", 0o4755),
            U::Own("d/f", 1000, 1001),
            U::Times("d/f", 1_000_000, 2_000_000),
            U::X("d/f", "user.a", Some(b"1")),
            U::X("d/f", "trusted.t", Some(b"2")),
            U::X("d/f", "security.capability", Some(CAP)),
            U::X("d/f", "user.new", Some(b"4")),
        ],
        view: &[
            V::Mode("d/f", 0o4755),
            V::Own("d/f", 1000, 1001),
            V::Reads("d/f", "data"),
            V::Own("d", 1000, 1001),
        ],
        not_kernel: None,
    },
    Case {
        name: "copy-up of data on write, xattrs kept",
        lowers: &[&[L::File("f", 0o640, "lower\n"), L::X("f", "user.a", b"1")]],
        ops: &[(Op::Append("f", "more\n"), OK)],
        upper: &[
            U::File("f", "lower\nmore\n"),
            U::Mode("f", 0o640),
            U::X("f", "user.a", Some(b"1")),
        ],
        view: &[V::Reads("f", "lower\nmore\n"), V::Mode("f", 0o640)],
        not_kernel: None,
    },
    Case {
        name: "chmod copies up, the parents first; removing an absent xattr copies nothing",
        lowers: &[&[
            L::Dir("a", 0o755),
            L::Dir("a/b", 0o700),
            L::Own("a/b", 7, 8),
            L::File("a/b/f", 0o644, "x"),
            L::X("a/b/f", "user.gone", b"1"),
            L::File("a/b/g", 0o644, "y"),
        ]],
        ops: &[
            (Op::Chmod("a/b/f", 0o600), OK),
            (Op::RmX("a/b/g", "user.gone"), Err(Errno::NODATA)),
        ],
        upper: &[
            U::Dir("a"),
            U::Dir("a/b"),
            U::Mode("a/b", 0o700),
            U::Own("a/b", 7, 8),
            U::File("a/b/f", "x"),
            U::Mode("a/b/f", 0o600),
            U::X("a/b/f", "user.gone", Some(b"1")),
        ],
        view: &[V::Mode("a/b/f", 0o600), V::Lists("a/b", &["f", "g"])],
        not_kernel: None,
    },
    Case {
        name: "removexattr of a lower xattr",
        lowers: &[&[
            L::File("f", 0o644, "x"),
            L::X("f", "user.a", b"1"),
            L::X("f", "user.b", b"2"),
        ]],
        ops: &[(Op::RmX("f", "user.a"), OK)],
        upper: &[
            U::File("f", "x"),
            U::X("f", "user.a", None),
            U::X("f", "user.b", Some(b"2")),
        ],
        view: &[V::Reads("f", "x")],
        not_kernel: None,
    },
    Case {
        name: "a hard link of a lower file copies it up and links it",
        lowers: &[&[L::File("f", 0o644, "x")]],
        ops: &[(Op::Link("f", "f2"), OK)],
        upper: &[
            U::File("f", "x"),
            U::File("f2", "x"),
            U::SameInode("f", "f2"),
            U::Nlink("f", 2),
        ],
        view: &[V::SameInode("f", "f2"), V::Nlink("f2", 2)],
        not_kernel: None,
    },
    Case {
        name: "two lower names of one inode: a write through one links up the other",
        lowers: &[&[
            L::Dir("d", 0o755),
            L::Dir("e", 0o755),
            L::File("d/f", 0o644, "one\n"),
            L::Link("e/g", "d/f"),
            L::File("d/h", 0o644, "h"),
        ]],
        ops: &[(Op::Append("d/f", "two\n"), OK)],
        upper: &[
            U::Dir("d"),
            U::Dir("e"),
            U::File("d/f", "one\ntwo\n"),
            U::File("e/g", "one\ntwo\n"),
            U::SameInode("d/f", "e/g"),
            U::Nlink("d/f", 2),
        ],
        view: &[
            V::Reads("e/g", "one\ntwo\n"),
            V::Nlink("e/g", 2),
            V::Nlink("d/f", 2),
            V::SameInode("d/f", "e/g"),
        ],
        not_kernel: Some("kernel overlayfs without index copies up one name and breaks the link"),
    },
    Case {
        name: "three lower names of one inode, one removed: the other two are linked up",
        lowers: &[&[
            L::File("f", 0o644, "one\n"),
            L::Link("g", "f"),
            L::Link("h", "f"),
        ]],
        ops: &[(Op::Unlink("h"), OK), (Op::Append("g", "two\n"), OK)],
        upper: &[
            U::Whiteout("h"),
            U::File("f", "one\ntwo\n"),
            U::File("g", "one\ntwo\n"),
            U::SameInode("f", "g"),
            U::Nlink("f", 2),
        ],
        view: &[
            V::Reads("f", "one\ntwo\n"),
            V::Nlink("f", 2),
            V::Absent("h"),
        ],
        not_kernel: Some("kernel overlayfs without index copies up one name and breaks the link"),
    },
    Case {
        name: "a lower symlink and FIFO copied up keep owner, mode and trusted xattrs",
        lowers: &[&[
            L::Sym("s", "target"),
            L::Own("s", 5, 6),
            L::Fifo("p", 0o640),
            L::Own("p", 7, 8),
            L::X("p", "trusted.t", b"1"),
        ]],
        ops: &[
            (Op::SetX("s", "trusted.new", b"2"), OK),
            (Op::SetX("p", "trusted.new", b"3"), OK),
        ],
        upper: &[
            U::Sym("s", "target"),
            U::Own("s", 5, 6),
            U::X("s", "trusted.new", Some(b"2")),
            U::Fifo("p"),
            U::Own("p", 7, 8),
            U::Mode("p", 0o640),
            U::X("p", "trusted.t", Some(b"1")),
            U::X("p", "trusted.new", Some(b"3")),
        ],
        view: &[
            V::Readlink("s", "target"),
            V::Own("s", 5, 6),
            V::Mode("p", 0o640),
        ],
        not_kernel: None,
    },
    Case {
        name: "RENAME_NOREPLACE onto an existing lower file is refused",
        lowers: &[&[L::File("a", 0o644, "a"), L::File("b", 0o644, "b")]],
        ops: &[(Op::Rename("a", "b", NOREPLACE), Err(Errno::EXIST))],
        upper: &[],
        view: &[V::Reads("a", "a"), V::Reads("b", "b")],
        not_kernel: None,
    },
    Case {
        name: "RENAME_NOREPLACE onto a removed lower name",
        lowers: &[&[L::File("a", 0o644, "a"), L::File("b", 0o644, "b")]],
        ops: &[(Op::Unlink("b"), OK), (Op::Rename("a", "b", NOREPLACE), OK)],
        upper: &[U::Whiteout("a"), U::File("b", "a")],
        view: &[V::Reads("b", "a"), V::Absent("a"), V::Lists("", &["b"])],
        not_kernel: None,
    },
    Case {
        name: "RENAME_NOREPLACE of an upper file onto a lower directory is refused",
        lowers: &[&[L::Dir("d", 0o755)]],
        ops: &[
            (Op::Create("f", 0o644, ""), OK),
            (Op::Rename("f", "d", NOREPLACE), Err(Errno::EXIST)),
        ],
        upper: &[U::File("f", "")],
        view: &[V::IsDir("d"), V::Reads("f", "")],
        not_kernel: None,
    },
    Case {
        name: "RENAME_NOREPLACE of a lower directory onto an upper one is refused; to a free name it moves",
        lowers: &[&[L::Dir("d", 0o755), L::File("d/x", 0o644, "x")]],
        ops: &[
            (Op::Mkdir("u", 0o755), OK),
            (Op::Rename("d", "u", NOREPLACE), Err(Errno::EXIST)),
            (Op::Rename("d", "u/d", NOREPLACE), OK),
        ],
        upper: &[
            U::Whiteout("d"),
            U::Dir("u"),
            U::Dir("u/d"),
            U::X("u/d", REDIRECT, Some(b"/d")),
        ],
        view: &[V::Reads("u/d/x", "x"), V::Absent("d")],
        not_kernel: None,
    },
    Case {
        name: "RENAME_EXCHANGE of two lower files",
        lowers: &[&[L::File("a", 0o644, "a"), L::File("b", 0o600, "b")]],
        ops: &[(Op::Rename("a", "b", EXCHANGE), OK)],
        upper: &[
            U::File("a", "b"),
            U::Mode("a", 0o600),
            U::File("b", "a"),
            U::Mode("b", 0o644),
        ],
        view: &[V::Reads("a", "b"), V::Reads("b", "a")],
        not_kernel: None,
    },
    Case {
        name: "RENAME_EXCHANGE of a lower and an upper file",
        lowers: &[&[L::File("a", 0o644, "a")]],
        ops: &[
            (Op::Create("n", 0o644, "n"), OK),
            (Op::Rename("a", "n", EXCHANGE), OK),
        ],
        upper: &[U::File("a", "n"), U::File("n", "a")],
        view: &[
            V::Reads("a", "n"),
            V::Reads("n", "a"),
            V::Lists("", &["a", "n"]),
        ],
        not_kernel: None,
    },
    Case {
        name: "RENAME_EXCHANGE with a missing name fails",
        lowers: &[&[L::File("a", 0o644, "a")]],
        ops: &[(Op::Rename("a", "none", EXCHANGE), Err(Errno::NOENT))],
        upper: &[],
        view: &[V::Reads("a", "a")],
        not_kernel: None,
    },
    Case {
        name: "RENAME_EXCHANGE of a lower file and a lower directory",
        lowers: &[&[
            L::File("f", 0o644, "f"),
            L::Dir("d", 0o755),
            L::File("d/x", 0o644, "x"),
        ]],
        ops: &[(Op::Rename("f", "d", EXCHANGE), OK)],
        upper: &[U::File("d", "f"), U::Dir("f"), U::HasX("f", REDIRECT)],
        view: &[
            V::Reads("d", "f"),
            V::Reads("f/x", "x"),
            V::Lists("f", &["x"]),
        ],
        not_kernel: None,
    },
    Case {
        name: "RENAME_EXCHANGE of a lower directory and one made in the view",
        lowers: &[&[L::Dir("a", 0o755), L::File("a/x", 0o644, "x")]],
        ops: &[
            (Op::Mkdir("b", 0o755), OK),
            (Op::Create("b/y", 0o644, "y"), OK),
            (Op::Rename("a", "b", EXCHANGE), OK),
        ],
        upper: &[
            U::Dir("a"),
            U::X("a", OPAQUE, Some(b"y")),
            U::File("a/y", "y"),
            U::Dir("b"),
            U::HasX("b", REDIRECT),
        ],
        view: &[
            V::Lists("a", &["y"]),
            V::Lists("b", &["x"]),
            V::Reads("b/x", "x"),
        ],
        not_kernel: None,
    },
    Case {
        name: "a setgid directory: new entries take its group, new directories its setgid",
        lowers: &[&[
            L::Dir("g", 0o755),
            L::Own("g", 0, 100),
            L::Mode("g", 0o2775),
        ]],
        ops: &[
            (Op::Mkdir("g/sub", 0o755), OK),
            (Op::Create("g/f", 0o644, ""), OK),
            (Op::Mkdir("g/sub/deeper", 0o755), OK),
        ],
        upper: &[
            U::Dir("g"),
            U::Mode("g", 0o2775),
            U::Own("g", 0, 100),
            U::Dir("g/sub"),
            U::Own("g/sub", 0, 100),
            U::Mode("g/sub", 0o2755),
            U::Dir("g/sub/deeper"),
            U::Own("g/sub/deeper", 0, 100),
            U::Mode("g/sub/deeper", 0o2755),
            U::File("g/f", ""),
            U::Own("g/f", 0, 100),
            U::Mode("g/f", 0o644),
        ],
        view: &[
            V::Own("g/f", 0, 100),
            V::Mode("g/sub", 0o2755),
            V::Own("g/sub/deeper", 0, 100),
        ],
        not_kernel: None,
    },
    Case {
        name: "a setgid directory made in the view passes its group and setgid on",
        lowers: &[&[L::Dir("d", 0o755), L::Own("d", 0, 100)]],
        ops: &[
            (Op::Mkdir("d/g", 0o755), OK),
            (Op::Chown("d/g", 0, 200), OK),
            (Op::Chmod("d/g", 0o2775), OK),
            (Op::Mkdir("d/g/sub", 0o755), OK),
            (Op::Create("d/g/f", 0o644, "f"), OK),
        ],
        upper: &[
            U::Dir("d"),
            U::Own("d", 0, 100),
            U::Dir("d/g"),
            U::Mode("d/g", 0o2775),
            U::Own("d/g", 0, 200),
            U::Dir("d/g/sub"),
            U::Mode("d/g/sub", 0o2755),
            U::Own("d/g/sub", 0, 200),
            U::File("d/g/f", "f"),
            U::Own("d/g/f", 0, 200),
        ],
        view: &[V::Mode("d/g/sub", 0o2755), V::Own("d/g/f", 0, 200)],
        not_kernel: None,
    },
];

#[test]
fn table_cases_on_the_core_and_on_kernel_overlayfs() {
    if !require_root("table_cases_on_the_core_and_on_kernel_overlayfs") {
        return;
    }
    let _fds = shared();
    let mut names = std::collections::HashSet::new();
    for case in CASES {
        assert!(names.insert(case.name), "two cases named {}", case.name);
        run_case(case);
    }
    eprintln!("{} table cases", CASES.len());
}

/// `list_plus` enters each entry it hands out, once: the kernel holds one
/// lookup of each and gives it back with `forget`. Entries not taken (a
/// full reply) are not entered.
#[test]
fn list_plus_enters_each_entry_taken_once() {
    if !require_root("list_plus_enters_each_entry_taken_once") {
        return;
    }
    let _fds = shared();
    let layers = Layers::new(|lower| {
        fs::create_dir(lower.join("d")).unwrap();
        for name in ["a", "b", "c", "e", "f"] {
            fs::write(lower.join("d").join(name), name).unwrap();
        }
        fs::create_dir(lower.join("d/sub")).unwrap();
    });
    let ov = layers.overlay();
    let d = ov.lookup(ROOT_ID, OsStr::new("d")).unwrap().attr.id;
    // One more in the upper layer, one removed (a whiteout).
    ov.make(d, OsStr::new("u"), Make::File { mode: 0o644 }, 0, ME)
        .unwrap();
    ov.forget(ov.lookup(d, OsStr::new("u")).unwrap().attr.id, 2);
    ov.unlink(d, OsStr::new("f")).unwrap();
    let before = ov.node_count();
    let take = |limit: usize| {
        let mut taken = Vec::new();
        ov.list_plus(d, 0, |item, entry| {
            if taken.len() == limit {
                return false;
            }
            taken.push((item.name.to_string_lossy().into_owned(), entry.attr.id));
            true
        })
        .unwrap();
        taken
    };
    let three = take(3);
    assert_eq!(three.len(), 3);
    assert_eq!(ov.node_count(), before + 3, "three taken, three entered");
    let all = take(usize::MAX);
    let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c", "e", "sub", "u"]);
    assert_eq!(ov.node_count(), before + all.len());
    // The first three were entered twice: one forget leaves them.
    for (_, id) in &all {
        ov.forget(*id, 1);
    }
    assert_eq!(ov.node_count(), before + 3);
    for (_, id) in &three {
        assert!(ov.getattr(*id).is_ok(), "still held once");
        ov.forget(*id, 1);
    }
    assert_eq!(ov.node_count(), before, "every lookup given back");
    // A node the kernel holds by lookup is the same node readdirplus hands out.
    let a = ov.lookup(d, OsStr::new("a")).unwrap().attr.id;
    let again = take(usize::MAX);
    assert!(again.iter().any(|(n, id)| n == "a" && *id == a));
    for (_, id) in &again {
        ov.forget(*id, 1);
    }
    ov.forget(a, 1);
    assert_eq!(ov.node_count(), before);
}
