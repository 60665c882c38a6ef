//! The view's POSIX semantics on a real FUSE mount: one test per behaviour
//! users rely on (DESIGN.md section 5). Each test mounts its own view over
//! fresh layers (served by a thread of the test) and unmounts it in `Drop`
//! with `common::MountGuard`, also when it fails.

mod common;

use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{MountGuard, require_root, snapshot};
use vskel::view::{LayerSpec, ServeOptions};

/// How long a mount may take to come up.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);

/// A view served by a thread of this test process.
struct View {
    dir: tempfile::TempDir,
    mnt: PathBuf,
    guard: Option<MountGuard>,
    server: Option<JoinHandle<vskel::Result<()>>>,
}

impl View {
    /// Layers made by `make_lowers(lower1, lower2)` (top first), an empty
    /// upper, mounted.
    fn new(make_lowers: impl FnOnce(&Path, &Path)) -> View {
        let dir = tempfile::Builder::new()
            .prefix("vskel-view-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let d = dir.path();
        for sub in ["lower1", "lower2", "upper", "work", "mnt"] {
            fs::create_dir(d.join(sub)).unwrap();
        }
        make_lowers(&d.join("lower1"), &d.join("lower2"));
        View::mount(dir)
    }

    fn mount(dir: tempfile::TempDir) -> View {
        let d = dir.path();
        let spec = LayerSpec {
            upper: d.join("upper"),
            work: d.join("work"),
            lowers: vec![d.join("lower1"), d.join("lower2")],
        };
        let mnt = d.join("mnt");
        let (tx, rx) = mpsc::channel();
        let at = mnt.clone();
        let server = std::thread::spawn(move || {
            let options = ServeOptions {
                fsname: "test:view".into(),
                ..ServeOptions::default()
            };
            vskel::view::serve::serve(&spec, &at, &options, || {
                let _ = tx.send(());
            })
        });
        if rx.recv_timeout(MOUNT_TIMEOUT).is_err() {
            let result = server.join();
            panic!("the view did not come up: {result:?}");
        }
        View {
            dir,
            guard: Some(MountGuard(mnt.clone())),
            mnt,
            server: Some(server),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    fn layer(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Unmount and mount the same layers again.
    fn remount(mut self) -> View {
        self.unmount();
        let dir = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let old = std::mem::replace(&mut self.dir, dir);
        drop(self);
        View::mount(old)
    }

    fn unmount(&mut self) {
        // The server ends when its mount is gone.
        drop(self.guard.take());
        if let Some(server) = self.server.take() {
            match server.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("the view's server failed: {e}"),
                Err(_) => eprintln!("the view's server panicked"),
            }
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, text).unwrap();
}

/// A lower tree with a bit of everything.
fn standard(l1: &Path, l2: &Path) {
    write(&l2.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
    write(&l2.join("etc/motd"), "from lower2\n");
    write(&l1.join("etc/motd"), "from lower1\n");
    write(&l2.join("usr/bin/tool"), "#!/bin/sh\necho tool\n");
    fs::set_permissions(l2.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(l2.join("usr/bin/tool"), l2.join("usr/bin/tool-again")).unwrap();
    write(&l2.join("usr/share/doc/a/README"), "doc a\n");
    write(&l2.join("usr/share/doc/b/README"), "doc b\n");
    symlink("/usr/bin/tool", l2.join("usr/bin/link")).unwrap();
    fs::create_dir_all(l2.join("var/empty")).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn layers_merge_top_first() {
    if !require_root("layers_merge_top_first") {
        return;
    }
    let view = View::new(standard);
    assert_eq!(
        fs::read_to_string(view.path("etc/motd")).unwrap(),
        "from lower1\n"
    );
    assert_eq!(names(&view.path("etc")), ["motd", "passwd"]);
    assert_eq!(names(&view.path("")), ["etc", "usr", "var"]);
    assert_eq!(
        fs::read_link(view.path("usr/bin/link")).unwrap(),
        Path::new("/usr/bin/tool")
    );
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.contains(view.mnt.to_str().unwrap()))
        .unwrap();
    assert!(line.starts_with("test:view "), "{line}");
    assert!(line.contains(" fuse.vskel "), "{line}");
}

#[test]
fn writes_copy_up_and_never_touch_the_lowers() {
    if !require_root("writes_copy_up_and_never_touch_the_lowers") {
        return;
    }
    let view = View::new(standard);
    let before = snapshot(&view.layer("lower2"));
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(view.path("etc/passwd"))
        .unwrap();
    f.write_all(b"user:x:1000:1000::/home/user:/bin/sh\n")
        .unwrap();
    drop(f);
    let text = fs::read_to_string(view.path("etc/passwd")).unwrap();
    assert!(
        text.ends_with("user:x:1000:1000::/home/user:/bin/sh\n"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(view.layer("upper/etc/passwd")).unwrap(),
        text
    );
    assert_eq!(snapshot(&view.layer("lower2")), before, "a lower changed");
}

#[test]
fn copy_up_keeps_mode_owner_times_xattrs_and_capabilities() {
    if !require_root("copy_up_keeps_mode_owner_times_xattrs_and_capabilities") {
        return;
    }
    let view = View::new(|l1, l2| {
        standard(l1, l2);
        let f = l2.join("usr/bin/ping");
        write(&f, "ping\n");
        std::os::unix::fs::chown(&f, Some(123), Some(45)).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o751)).unwrap();
        xattr::set(&f, "user.note", b"kept").unwrap();
        xattr::set(&f, "security.capability", &vskel::example::CAP_NET_RAW_EP).unwrap();
        let t = filetime::FileTime::from_unix_time(1_500_000_000, 123);
        filetime::set_file_times(&f, t, t).unwrap();
    });
    let f = view.path("usr/bin/ping");
    let ino_before = fs::metadata(&f).unwrap().ino();
    // Copy-up by changing an xattr, which must not touch anything else.
    xattr::set(&f, "user.other", b"new").unwrap();
    let m = fs::metadata(&f).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o751);
    assert_eq!((m.uid(), m.gid()), (123, 45));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 123));
    assert_eq!(m.ino(), ino_before, "st_ino changed across copy-up");
    assert_eq!(xattr::get(&f, "user.note").unwrap().unwrap(), b"kept");
    assert_eq!(
        xattr::get(&f, "security.capability").unwrap().unwrap(),
        vskel::example::CAP_NET_RAW_EP
    );
    assert!(view.layer("upper/usr/bin/ping").exists(), "no copy-up");
    // Copying up is no change to the directories: their times stay the
    // lower ones (as kernel overlayfs keeps them), in the upper layer too.
    for dir in ["usr", "usr/bin"] {
        let lower = fs::metadata(view.layer(&format!("lower2/{dir}"))).unwrap();
        let upper = fs::metadata(view.layer(&format!("upper/{dir}"))).unwrap();
        assert_eq!(
            (upper.mtime(), upper.mtime_nsec()),
            (lower.mtime(), lower.mtime_nsec()),
            "{dir}: copy-up moved its mtime"
        );
    }
    // Overlay-private xattrs never show.
    let listed: Vec<String> = xattr::list(&f)
        .unwrap()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert!(
        listed.iter().all(|n| !n.starts_with("trusted.overlay.")),
        "{listed:?}"
    );
}

#[test]
fn unlink_and_rmdir_of_lower_entries_leave_whiteouts() {
    if !require_root("unlink_and_rmdir_of_lower_entries_leave_whiteouts") {
        return;
    }
    let view = View::new(standard);
    fs::remove_file(view.path("etc/motd")).unwrap();
    assert!(
        !view.path("etc/motd").exists(),
        "lower2's motd shows through"
    );
    fs::remove_dir(view.path("var/empty")).unwrap();
    assert!(!view.path("var/empty").exists());
    assert_eq!(
        fs::remove_dir(view.path("usr/share"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    let wh = fs::symlink_metadata(view.layer("upper/etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device_like() && wh.rdev() == 0);
    // A new file over the whiteout is a plain file again.
    fs::write(view.path("etc/motd"), "new\n").unwrap();
    assert_eq!(fs::read_to_string(view.path("etc/motd")).unwrap(), "new\n");
    // A new directory over a removed lower one is empty (opaque).
    fs::remove_dir_all(view.path("usr/share/doc")).unwrap();
    fs::create_dir(view.path("usr/share/doc")).unwrap();
    assert!(names(&view.path("usr/share/doc")).is_empty());
}

#[test]
fn whiteouts_and_opaque_dirs_survive_a_remount() {
    if !require_root("whiteouts_and_opaque_dirs_survive_a_remount") {
        return;
    }
    let view = View::new(standard);
    fs::remove_file(view.path("etc/passwd")).unwrap();
    fs::remove_dir_all(view.path("usr/share/doc")).unwrap();
    fs::create_dir(view.path("usr/share/doc")).unwrap();
    fs::write(view.path("usr/share/doc/new"), "x").unwrap();
    let view = view.remount();
    assert!(!view.path("etc/passwd").exists());
    assert_eq!(names(&view.path("usr/share/doc")), ["new"]);
}

#[test]
fn renaming_a_directory_with_lower_content_works() {
    if !require_root("renaming_a_directory_with_lower_content_works") {
        return;
    }
    let view = View::new(standard);
    fs::rename(view.path("usr/share/doc"), view.path("usr/doc-moved")).unwrap();
    assert!(!view.path("usr/share/doc").exists());
    assert_eq!(names(&view.path("usr/doc-moved")), ["a", "b"]);
    assert_eq!(
        fs::read_to_string(view.path("usr/doc-moved/a/README")).unwrap(),
        "doc a\n"
    );
    // And again, into a new directory, then back.
    fs::create_dir(view.path("new")).unwrap();
    fs::rename(view.path("usr/doc-moved"), view.path("new/doc")).unwrap();
    assert_eq!(names(&view.path("new/doc/b")), ["README"]);
    let view = view.remount();
    assert_eq!(names(&view.path("new/doc")), ["a", "b"]);
    assert!(!view.path("usr/doc-moved").exists());
    assert!(!view.path("usr/share/doc").exists());
}

#[test]
fn rename_noreplace_and_exchange() {
    if !require_root("rename_noreplace_and_exchange") {
        return;
    }
    let view = View::new(standard);
    let a = CString::new(view.path("etc/motd").into_os_string().into_encoded_bytes()).unwrap();
    let b = CString::new(
        view.path("etc/passwd")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    let err = rustix::fs::renameat_with(
        rustix::fs::CWD,
        &a,
        rustix::fs::CWD,
        &b,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .unwrap_err();
    assert_eq!(err, rustix::io::Errno::EXIST);
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        &a,
        rustix::fs::CWD,
        &b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(view.path("etc/passwd")).unwrap(),
        "from lower1\n"
    );
    assert!(
        fs::read_to_string(view.path("etc/motd"))
            .unwrap()
            .starts_with("root:")
    );
}

#[test]
fn hard_links_in_the_lower_are_one_inode() {
    if !require_root("hard_links_in_the_lower_are_one_inode") {
        return;
    }
    let view = View::new(standard);
    let a = fs::metadata(view.path("usr/bin/tool")).unwrap();
    let b = fs::metadata(view.path("usr/bin/tool-again")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    // A new hard link in the view.
    fs::hard_link(view.path("etc/passwd"), view.path("etc/passwd-link")).unwrap();
    let p = fs::metadata(view.path("etc/passwd")).unwrap();
    let l = fs::metadata(view.path("etc/passwd-link")).unwrap();
    assert_eq!(p.ino(), l.ino());
    assert_eq!(l.nlink(), 2);
    fs::write(view.path("etc/passwd-link"), "changed\n").unwrap();
    assert_eq!(
        fs::read_to_string(view.path("etc/passwd")).unwrap(),
        "changed\n"
    );
}

#[test]
fn hard_links_stay_one_inode_after_copy_up() {
    if !require_root("hard_links_stay_one_inode_after_copy_up") {
        return;
    }
    let view = View::new(standard);
    let ino = fs::metadata(view.path("usr/bin/tool")).unwrap().ino();
    // Copy up through one name: the other follows.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(view.path("usr/bin/tool-again"))
        .unwrap();
    f.write_all(b"# appended\n").unwrap();
    drop(f);
    let a = fs::metadata(view.path("usr/bin/tool")).unwrap();
    let b = fs::metadata(view.path("usr/bin/tool-again")).unwrap();
    assert_eq!((a.ino(), b.ino()), (ino, ino));
    assert_eq!((a.nlink(), b.nlink()), (2, 2));
    assert!(
        fs::read_to_string(view.path("usr/bin/tool"))
            .unwrap()
            .ends_with("# appended\n")
    );
    // In the upper layer itself the two names are one inode too.
    let ua = fs::metadata(view.layer("upper/usr/bin/tool")).unwrap();
    let ub = fs::metadata(view.layer("upper/usr/bin/tool-again")).unwrap();
    assert_eq!(ua.ino(), ub.ino());
    assert_eq!(ua.mode() & 0o7777, 0o4755);
    // And after a remount.
    let view = view.remount();
    let a = fs::metadata(view.path("usr/bin/tool")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (ino, 2));
}

#[test]
fn removing_a_name_of_a_lower_hard_link_lowers_the_others_nlink() {
    if !require_root("removing_a_name_of_a_lower_hard_link_lowers_the_others_nlink") {
        return;
    }
    let view = View::new(|l1, l2| {
        standard(l1, l2);
        fs::write(l2.join("usr/bin/trio"), "three names\n").unwrap();
        fs::hard_link(l2.join("usr/bin/trio"), l2.join("usr/bin/trio-2")).unwrap();
        fs::hard_link(l2.join("usr/bin/trio"), l2.join("usr/bin/trio-3")).unwrap();
    });
    let ino = fs::metadata(view.path("usr/bin/tool")).unwrap().ino();
    // Unlink one of two names: the other is now the only one.
    fs::remove_file(view.path("usr/bin/tool-again")).unwrap();
    let a = fs::metadata(view.path("usr/bin/tool")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (ino, 1));
    // Rename a file over one of three names: two remain, still one inode.
    let trio = fs::metadata(view.path("usr/bin/trio")).unwrap().ino();
    fs::rename(view.path("etc/passwd"), view.path("usr/bin/trio-3")).unwrap();
    let t1 = fs::metadata(view.path("usr/bin/trio")).unwrap();
    let t2 = fs::metadata(view.path("usr/bin/trio-2")).unwrap();
    assert_eq!((t1.ino(), t2.ino()), (trio, trio));
    assert_eq!((t1.nlink(), t2.nlink()), (2, 2));
    assert_eq!(
        fs::read_to_string(view.path("usr/bin/trio-2")).unwrap(),
        "three names\n"
    );
    // The upper layer says the same, so a remount (and sync) agrees.
    let view = view.remount();
    let a = fs::metadata(view.path("usr/bin/tool")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (ino, 1));
    let t2 = fs::metadata(view.path("usr/bin/trio-2")).unwrap();
    assert_eq!((t2.ino(), t2.nlink()), (trio, 2));
    assert!(!view.path("usr/bin/tool-again").exists());
}

#[test]
fn symlinks_keep_their_inode_number_across_copy_up() {
    if !require_root("symlinks_keep_their_inode_number_across_copy_up") {
        return;
    }
    let view = View::new(standard);
    let link = view.path("usr/bin/link");
    let ino = fs::symlink_metadata(&link).unwrap().ino();
    // A hard link to the symlink copies it up.
    fs::hard_link(&link, view.path("usr/bin/link2")).unwrap();
    // The copy-up happened: the upper layer holds the symlink itself.
    assert!(
        fs::symlink_metadata(view.layer("upper/usr/bin/link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::symlink_metadata(&link).unwrap().ino(), ino);
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("/usr/bin/tool"));
    fs::rename(&link, view.path("usr/bin/renamed")).unwrap();
    assert_eq!(
        fs::read_link(view.path("usr/bin/renamed")).unwrap(),
        Path::new("/usr/bin/tool")
    );
    assert_eq!(
        fs::symlink_metadata(view.path("usr/bin/renamed"))
            .unwrap()
            .ino(),
        ino
    );
}

#[test]
fn inode_numbers_are_stable_across_copy_up_and_remount() {
    if !require_root("inode_numbers_are_stable_across_copy_up_and_remount") {
        return;
    }
    let view = View::new(standard);
    let ino = fs::metadata(view.path("etc/passwd")).unwrap().ino();
    let dir_ino = fs::metadata(view.path("usr/share")).unwrap().ino();
    fs::write(view.path("etc/passwd"), "new\n").unwrap();
    fs::write(view.path("usr/share/new"), "x").unwrap();
    assert_eq!(fs::metadata(view.path("etc/passwd")).unwrap().ino(), ino);
    let view = view.remount();
    assert_eq!(fs::metadata(view.path("etc/passwd")).unwrap().ino(), ino);
    assert_eq!(fs::metadata(view.path("usr/share")).unwrap().ino(), dir_ino);
}

#[test]
fn an_open_file_has_nlink_zero_after_its_last_unlink() {
    if !require_root("an_open_file_has_nlink_zero_after_its_last_unlink") {
        return;
    }
    let view = View::new(standard);
    let path = view.path("etc/scratch");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    f.write_all(b"data").unwrap();
    fs::remove_file(&path).unwrap();
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    assert!(!path.exists());
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "data", "an unlinked open file keeps its data");
}

#[test]
fn names_over_255_bytes_are_refused() {
    if !require_root("names_over_255_bytes_are_refused") {
        return;
    }
    let view = View::new(standard);
    let long = "x".repeat(256);
    let err = fs::write(view.path(&long), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
    let ok = "y".repeat(255);
    fs::write(view.path(&ok), "x").unwrap();
}

#[test]
fn the_callers_umask_and_ownership_apply() {
    if !require_root("the_callers_umask_and_ownership_apply") {
        return;
    }
    let view = View::new(standard);
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c"])
        .arg(format!(
            "umask 027; mkdir {0}/tmpdir && touch {0}/tmpdir/f",
            view.path("var").display()
        ))
        .output()
        .unwrap();
    // var/ belongs to root: the unprivileged user is refused.
    assert!(
        !out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::set_permissions(view.path("var"), fs::Permissions::from_mode(0o1777)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c"])
        .arg(format!(
            "umask 027; mkdir {0}/tmpdir && touch {0}/tmpdir/f",
            view.path("var").display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = fs::metadata(view.path("var/tmpdir")).unwrap();
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o750, 1000, 1000));
    let f = fs::metadata(view.path("var/tmpdir/f")).unwrap();
    assert_eq!((f.mode() & 0o7777, f.uid()), (0o640, 1000));
}

/// `is_char_device` for `std::fs::FileType` without importing FileTypeExt
/// at every use.
trait CharDeviceLike {
    fn is_char_device_like(&self) -> bool;
}

impl CharDeviceLike for fs::FileType {
    fn is_char_device_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_char_device(self)
    }
}

#[test]
fn a_write_by_a_non_owner_clears_setuid_and_setgid() {
    if !require_root("a_write_by_a_non_owner_clears_setuid_and_setgid") {
        return;
    }
    let view = View::new(|l1, l2| {
        standard(l1, l2);
        let f = l2.join("usr/bin/shared");
        write(&f, "#!/bin/sh\n");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o6777)).unwrap();
        fs::set_permissions(l2.join("usr/bin"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(l2.join("usr"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(l2, fs::Permissions::from_mode(0o755)).unwrap();
    });
    // Let uid 1000 reach the mount point.
    for dir in [view.dir.path(), view.mnt.as_path()] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let f = view.path("usr/bin/shared");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c"])
        .arg(format!("echo more >> {}", f.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = fs::metadata(&f).unwrap().mode() & 0o7777;
    assert_eq!(mode & 0o6000, 0, "setuid/setgid kept: {mode:o}");
    assert_eq!(mode & 0o777, 0o777);
}

#[test]
fn xattrs_can_be_set_read_listed_and_removed() {
    if !require_root("xattrs_can_be_set_read_listed_and_removed") {
        return;
    }
    let view = View::new(standard);
    let f = view.path("etc/passwd");
    xattr::set(&f, "user.one", b"1").unwrap();
    xattr::set(&f, "trusted.two", b"2").unwrap();
    assert_eq!(xattr::get(&f, "user.one").unwrap().unwrap(), b"1");
    let mut names: Vec<String> = xattr::list(&f)
        .unwrap()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"user.one".to_string()), "{names:?}");
    assert!(names.contains(&"trusted.two".to_string()), "{names:?}");
    assert!(
        names.iter().all(|n| !n.starts_with("trusted.overlay.")),
        "{names:?}"
    );
    xattr::remove(&f, "user.one").unwrap();
    assert_eq!(xattr::get(&f, "user.one").unwrap(), None);
    // The overlay's own attributes are neither readable nor settable.
    let err = xattr::set(&f, "trusted.overlay.opaque", b"y").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    assert_eq!(
        xattr::get(&f, "trusted.overlay.vskel.origin").unwrap(),
        None
    );
    // Directories too (a copied-up lower dir).
    xattr::set(view.path("usr/share"), "user.dir", b"d").unwrap();
    assert_eq!(
        xattr::get(view.path("usr/share"), "user.dir")
            .unwrap()
            .unwrap(),
        b"d"
    );
}

#[test]
fn symlinks_fifos_devices_fallocate_fsync_statfs_and_access() {
    if !require_root("symlinks_fifos_devices_fallocate_fsync_statfs_and_access") {
        return;
    }
    let view = View::new(standard);
    symlink("../etc/passwd", view.path("var/pw")).unwrap();
    assert_eq!(
        fs::read_link(view.path("var/pw")).unwrap(),
        Path::new("../etc/passwd")
    );
    assert!(
        fs::read_to_string(view.path("var/pw"))
            .unwrap()
            .starts_with("root:")
    );
    let fifo = CString::new(view.path("var/fifo").into_os_string().into_encoded_bytes()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let dev = CString::new(view.path("var/null").into_os_string().into_encoded_bytes()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &dev,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let m = fs::symlink_metadata(view.path("var/fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
    assert_eq!(m.mode() & 0o777, 0o640);
    assert_eq!(
        fs::metadata(view.path("var/null")).unwrap().rdev(),
        rustix::fs::makedev(1, 3)
    );
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(view.path("var/alloc"))
        .unwrap();
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, 1 << 20).unwrap();
    f.sync_all().unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    let vfs = rustix::fs::statvfs(&view.mnt).unwrap();
    let real = rustix::fs::statvfs(view.dir.path()).unwrap();
    assert_eq!(vfs.f_blocks, real.f_blocks);
    assert_eq!(vfs.f_namemax, 255);
    assert!(rustix::fs::access(view.path("usr/bin/tool"), rustix::fs::Access::EXEC_OK).is_ok());
}

#[test]
fn readdir_agrees_with_lookup_while_the_directory_changes() {
    if !require_root("readdir_agrees_with_lookup_while_the_directory_changes") {
        return;
    }
    const ROUNDS: usize = 200;
    let view = View::new(|l1, l2| {
        standard(l1, l2);
        for i in 0..50 {
            write(&l2.join(format!("churn/stable-{i}")), "s");
        }
    });
    let dir = view.path("churn");
    let writer_dir = dir.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_writer = stop.clone();
    // Returns how many of its changes took effect (a removal may find
    // the name gone, a write never fails).
    let writer = std::thread::spawn(move || {
        let mut i = 0u64;
        let mut done = 0u64;
        while !stop_writer.load(std::sync::atomic::Ordering::Relaxed) {
            let p = writer_dir.join(format!("tmp-{}", i % 20));
            let result = if i % 2 == 0 {
                fs::write(&p, "t")
            } else {
                fs::remove_file(&p)
            };
            match result {
                Ok(()) => done += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("{}: {e}", p.display()),
            }
            i += 1;
        }
        done
    });
    for _ in 0..ROUNDS {
        let listed = names(&dir);
        let stable = listed.iter().filter(|n| n.starts_with("stable-")).count();
        assert_eq!(stable, 50, "a stable name went missing from readdir");
        for name in listed {
            match fs::symlink_metadata(dir.join(&name)) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    assert!(name.starts_with("tmp-"), "{name} listed but not found")
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changes = writer.join().unwrap();
    assert!(changes > 0, "the directory never changed during the test");
}

#[test]
fn paths_longer_than_path_max_work_relative_to_a_directory() {
    if !require_root("paths_longer_than_path_max_work_relative_to_a_directory") {
        return;
    }
    const LEVELS: usize = 40;
    let view = View::new(standard);
    let name = "d".repeat(200);
    // Descend with *at() calls: the total path (8 KB) is over PATH_MAX.
    let mut dir = rustix::fs::open(
        &view.mnt,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    for _ in 0..LEVELS {
        rustix::fs::mkdirat(&dir, name.as_str(), rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(
            &dir,
            name.as_str(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
    }
    let f = rustix::fs::openat(
        &dir,
        "leaf",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE,
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    rustix::io::write(&f, b"deep").unwrap();
    let st = rustix::fs::statat(&dir, "leaf", rustix::fs::AtFlags::empty()).unwrap();
    assert_eq!(st.st_size, 4);
}

/// Read all of `f` from the start.
fn read_from_start(f: &mut fs::File) -> String {
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_lower_file_held_open_for_reading_can_be_opened_for_writing() {
    if !require_root("a_lower_file_held_open_for_reading_can_be_opened_for_writing") {
        return;
    }
    let view = View::new(standard);
    let path = view.path("etc/passwd");
    let old = "root:x:0:0::/root:/bin/sh\n";
    // The reader holds the lower file (a passthrough open).
    let mut reader = fs::File::open(&path).unwrap();
    assert_eq!(read_from_start(&mut reader), old);
    for (i, rw) in [false, true].into_iter().enumerate() {
        // A writable open copies up while the reader is open.
        let mut writer = fs::OpenOptions::new()
            .read(rw)
            .write(true)
            .open(&path)
            .unwrap();
        writer.seek(SeekFrom::End(0)).unwrap();
        let line = format!("user{i}:x:100{i}:100{i}::/home:/bin/sh\n");
        writer.write_all(line.as_bytes()).unwrap();
        if rw {
            assert!(read_from_start(&mut writer).ends_with(&line));
        }
        writer.sync_all().unwrap();
        // A new open sees the writer's data, the upper file has it.
        let now = fs::read_to_string(&path).unwrap();
        assert!(now.starts_with(old) && now.ends_with(&line), "{now:?}");
        assert_eq!(
            fs::read_to_string(view.layer("upper/etc/passwd")).unwrap(),
            now
        );
        // A second reader opened now works too.
        let mut late = fs::File::open(&path).unwrap();
        assert_eq!(read_from_start(&mut late), now);
    }
    // The first reader still reads (the file it opened, as on kernel
    // overlayfs: the lower file, which never changes).
    assert_eq!(read_from_start(&mut reader), old);
    assert_eq!(
        fs::read_to_string(view.layer("lower2/etc/passwd")).unwrap(),
        old,
        "the lower changed"
    );
    drop(reader);
    // With every handle closed, opens of the upper file go on working.
    let text = fs::read_to_string(&path).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"end\n")
        .unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{text}end\n"));
}

#[test]
fn an_upper_file_serves_two_readers_and_a_writer_at_once() {
    if !require_root("an_upper_file_serves_two_readers_and_a_writer_at_once") {
        return;
    }
    let view = View::new(standard);
    let path = view.path("etc/new");
    fs::write(&path, "one\n").unwrap();
    let mut r1 = fs::File::open(&path).unwrap();
    let mut r2 = fs::File::open(&path).unwrap();
    assert_eq!(read_from_start(&mut r1), "one\n");
    let mut rw = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    rw.seek(SeekFrom::End(0)).unwrap();
    rw.write_all(b"two\n").unwrap();
    assert_eq!(read_from_start(&mut rw), "one\ntwo\n");
    assert_eq!(read_from_start(&mut r1), "one\ntwo\n");
    assert_eq!(read_from_start(&mut r2), "one\ntwo\n");
    assert_eq!(
        fs::read_to_string(view.layer("upper/etc/new")).unwrap(),
        "one\ntwo\n"
    );
    drop((r1, r2, rw));
    assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\n");
}

#[test]
fn names_looked_up_while_missing_show_once_made() {
    if !require_root("names_looked_up_while_missing_show_once_made") {
        return;
    }
    // The kernel keeps negative entries: every way of making a name must
    // replace them, in a lower directory and in a new one.
    let view = View::new(standard);
    fs::create_dir(view.path("new")).unwrap();
    for dir in ["etc", "new"] {
        let p = |name: &str| view.path(&format!("{dir}/{name}"));
        let made = ["file", "dir", "fifo", "sym", "hard", "renamed", "moved-dir"];
        for name in made {
            assert!(p(name).symlink_metadata().is_err(), "{dir}/{name}");
        }
        fs::write(p("file"), "x").unwrap();
        fs::create_dir(p("dir")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        symlink("file", p("sym")).unwrap();
        fs::hard_link(p("file"), p("hard")).unwrap();
        fs::write(p("tmp"), "y").unwrap();
        fs::rename(p("tmp"), p("renamed")).unwrap();
        fs::rename(p("dir"), p("moved-dir")).unwrap();
        for name in ["file", "fifo", "sym", "hard", "renamed", "moved-dir"] {
            assert!(p(name).symlink_metadata().is_ok(), "{dir}/{name}");
        }
        assert!(p("dir").symlink_metadata().is_err());
        assert!(p("tmp").symlink_metadata().is_err());
        // Removed again, then made once more.
        fs::remove_file(p("file")).unwrap();
        assert!(p("file").symlink_metadata().is_err());
        fs::write(p("file"), "z").unwrap();
        assert_eq!(fs::read_to_string(p("file")).unwrap(), "z");
    }
    // Lower names that were removed and are made again.
    fs::remove_file(view.path("etc/motd")).unwrap();
    assert!(view.path("etc/motd").symlink_metadata().is_err());
    fs::write(view.path("etc/motd"), "new\n").unwrap();
    assert_eq!(fs::read_to_string(view.path("etc/motd")).unwrap(), "new\n");
}

#[test]
fn a_symlink_made_again_shows_its_new_target() {
    if !require_root("a_symlink_made_again_shows_its_new_target") {
        return;
    }
    // The kernel caches link targets: a name that gets another link
    // (removed and made again, or renamed over) must show the new one.
    let view = View::new(standard);
    let link = view.path("usr/bin/link");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("/usr/bin/tool"));
    let mut open = Vec::new();
    for target in ["one", "two", "three"] {
        // An O_PATH descriptor keeps the old inode in the kernel.
        open.push(
            rustix::fs::open(
                &link,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW,
                rustix::fs::Mode::empty(),
            )
            .unwrap(),
        );
        fs::remove_file(&link).unwrap();
        symlink(target, &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new(target));
    }
    symlink("four", view.path("usr/bin/other")).unwrap();
    fs::rename(view.path("usr/bin/other"), &link).unwrap();
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("four"));
}

/// Runs `script` with perl (Debian's essential perl-base) in `dir` as the
/// user `uid`; returns its stdout, panicking with its stderr on failure.
fn perl_as(uid: u32, dir: &Path, script: &str, args: &[&Path]) -> String {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("perl")
        .arg("-e")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("perl runs");
    assert!(
        out.status.success(),
        "perl as {uid} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A file outside every layer, as the server must never change it.
fn decoy_in(dir: &Path) -> (PathBuf, (u32, u32, u64, i64, Vec<u8>)) {
    let decoy = dir.join("decoy");
    fs::write(&decoy, b"host file\n").unwrap();
    fs::set_permissions(&decoy, fs::Permissions::from_mode(0o644)).unwrap();
    let state = decoy_state(&decoy);
    (decoy, state)
}

fn decoy_state(decoy: &Path) -> (u32, u32, u64, i64, Vec<u8>) {
    let md = fs::symlink_metadata(decoy).unwrap();
    (
        md.mode(),
        md.uid(),
        md.size(),
        md.mtime(),
        fs::read(decoy).unwrap(),
    )
}

/// Security issue, finding 1: after a rename puts a symlink (to a host
/// file) in place of an open file's name, changes made through the open
/// descriptor (fchmod, futimens, ftruncate, a reopen through
/// `/proc/self/fd`) reach that file, which lives on nameless, and never
/// the symlink's target. Done as an unprivileged user of the view.
#[test]
fn changes_through_an_open_file_renamed_over_by_a_symlink_stay_on_that_file() {
    if !require_root("changes_through_an_open_file_renamed_over_by_a_symlink_stay_on_that_file") {
        return;
    }
    let view = View::new(standard);
    let (decoy, before) = decoy_in(view.dir.path());
    fs::set_permissions(view.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(view.path(""), fs::Permissions::from_mode(0o1777)).unwrap();
    let script = r#"
        use Fcntl;
        my $decoy = $ARGV[0];
        sysopen(my $f, "f", O_CREAT | O_RDWR, 0644) or die "open f: $!";
        syswrite($f, "mine\n");
        symlink($decoy, "s") or die "symlink: $!";
        rename("s", "f") or die "rename: $!";
        my @failed;
        chmod(04777, $f) or push @failed, "fchmod: $!";
        truncate($f, 2) or push @failed, "ftruncate: $!";
        my $fd = fileno($f);
        sysopen(my $again, "/proc/self/fd/$fd", O_RDWR) or push @failed, "reopen: $!";
        syswrite($again, "X");
        # A write clears setuid: set it (and the times) again.
        chmod(04777, $f) or push @failed, "fchmod: $!";
        utime(1, 1, $f) or push @failed, "futimens: $!";
        print "failed: @failed\n" if @failed;
        my @st = stat($f);
        sysseek($f, 0, 0);
        sysread($f, my $data, 100);
        printf "%o %d %d %s\n", $st[2] & 07777, $st[9], $st[7], $data;
    "#;
    let out = perl_as(65534, &view.path(""), script, &[&decoy]);
    assert_eq!(decoy_state(&decoy), before, "the host file changed");
    assert_eq!(
        out.trim(),
        "4777 1 2 Xi",
        "the changes land on the open (now nameless) file"
    );
    let link = fs::read_link(view.path("f")).unwrap();
    assert_eq!(link, decoy, "the symlink is what the name shows");
}

/// Finding 1 for a file of a lower layer, opened read-only by the
/// vserver's root and renamed over: nothing reaches the host file, nor
/// the lower file (the skel's).
#[test]
fn a_lower_file_renamed_over_by_a_symlink_is_never_reached_by_name() {
    if !require_root("a_lower_file_renamed_over_by_a_symlink_is_never_reached_by_name") {
        return;
    }
    let view = View::new(standard);
    let (decoy, before) = decoy_in(view.dir.path());
    let tool = view.layer("lower2/usr/bin/tool");
    let tool_before = decoy_state(&tool);
    let script = r#"
        use Fcntl;
        my $decoy = $ARGV[0];
        sysopen(my $f, "usr/bin/tool", O_RDONLY) or die "open: $!";
        symlink($decoy, "usr/bin/s") or die "symlink: $!";
        rename("usr/bin/s", "usr/bin/tool") or die "rename: $!";
        my $chmod = chmod(04777, $f) ? "changed" : "refused";
        my $chown = chown(0, 0, $f) ? "changed" : "refused";
        my $utime = utime(1, 1, $f) ? "changed" : "refused";
        my $fd = fileno($f);
        my $reopen = sysopen(my $w, "/proc/self/fd/$fd", O_WRONLY) ? "opened" : "refused";
        print "$chmod $chown $utime $reopen\n";
    "#;
    let out = perl_as(0, &view.path(""), script, &[&decoy]);
    println!("as root through the stale descriptor: {out}");
    assert_eq!(decoy_state(&decoy), before, "the host file changed: {out}");
    assert_eq!(
        decoy_state(&tool),
        tool_before,
        "the lower file changed: {out}"
    );
    assert_eq!(fs::read_link(view.path("usr/bin/tool")).unwrap(), decoy);
}

/// House issue, defect 3: files of the upper layer open with `O_DIRECT`
/// for reading and writing (databases and VM images reopen files so).
#[test]
fn o_direct_reads_and_writes_an_upper_file() {
    if !require_root("o_direct_reads_and_writes_an_upper_file") {
        return;
    }
    let view = View::new(standard);
    let f = view.path("f");
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&f, &data).unwrap();
    let dd = |args: &[&str]| {
        let out = std::process::Command::new("dd")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let of = format!("of={}", f.display());
    let iff = format!("if={}", f.display());
    dd(&[
        "if=/dev/zero",
        &of,
        "bs=4096",
        "count=1",
        "oflag=direct",
        "conv=notrunc",
    ]);
    let copy = view.dir.path().join("copy");
    dd(&[
        &iff,
        &format!("of={}", copy.display()),
        "bs=4096",
        "iflag=direct",
    ]);
    let mut want = data.clone();
    want[..4096].fill(0);
    assert_eq!(fs::read(&copy).unwrap(), want);
    assert_eq!(fs::read(view.layer("upper/f")).unwrap(), want);
}

/// House issue, defect 4: a 0/0 character device would be a whiteout in
/// the upper layer, hiding itself: refused with EPERM, as kernel
/// overlayfs does, and nothing is left behind.
#[test]
fn a_whiteout_device_cannot_be_made() {
    if !require_root("a_whiteout_device_cannot_be_made") {
        return;
    }
    let view = View::new(standard);
    fs::create_dir(view.path("d")).unwrap();
    let out = std::process::Command::new("mknod")
        .arg(view.path("d/c"))
        .args(["c", "0", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "mknod c 0 0 succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(names(&view.path("d")).is_empty());
    assert!(names(&view.layer("upper/d")).is_empty());
    fs::remove_dir(view.path("d")).unwrap();
}
