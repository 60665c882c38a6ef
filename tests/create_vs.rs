//! `build-skel` and `create-vs` on real temporary trees: hard links, copies,
//! symlinks, tokens, config files, context IDs, scripts, removal and
//! protection, checked on the filesystem itself.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{Setup, dev_ino, require_root, snapshot, xattrs};
use predicates::str::contains;

/// Every non-directory entry below `dir`, relative.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_iter()
        .filter(|(_, e)| e.kind != "dir")
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn skel_has_the_vskel_layout() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    for rel in [
        "global/bin/hello",
        "global/usr/bin/tool",
        "global/lib64",
        "local/usr/local/bin/site-tool",
        "local/etc/motd",
        "local/var/lib/demo/state",
        "static/etc/passwd",
        "static/etc/shadow",
        "static/etc/group",
        "static/etc/gshadow",
        "static/etc/hosts",
        "static/etc/hostname",
        "local/dev/null",
        "local/dev/pts",
        "local/dev/fd",
        "configfile",
        "scripts/post-create-vs",
    ] {
        assert!(
            skel.join(rel).symlink_metadata().is_ok(),
            "{rel} missing in the skel"
        );
    }
    for rel in [
        "global/usr/local",
        "local/etc/passwd",
        "local/etc/hosts",
        "local/proc",
        "local/home/user",
        "local/root/.bashrc",
        "local/tmp/junk",
        "local/lost+found",
        "local/dev/null-ish",
    ] {
        assert!(
            skel.join(rel).symlink_metadata().is_err(),
            "{rel} must not be in the skel"
        );
    }
    let tmp = fs::metadata(skel.join("local/tmp")).unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777);
    let null = fs::metadata(skel.join("local/dev/null")).unwrap();
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    let hosts = fs::read_to_string(skel.join("static/etc/hosts")).unwrap();
    assert!(
        hosts.contains("%%VS_IP%%\t%%VS_FQDN%%\t%%VS_NAME%%"),
        "{hosts}"
    );
}

#[test]
fn global_entries_share_the_skel_inodes_and_link_groups() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    let vs = setup.create("base", "web1", "10.0.0.2");
    let global = skel.join("global");
    let files = files_below(&global);
    assert!(files.len() >= 8, "{files:?}");
    for rel in &files {
        assert_eq!(
            dev_ino(&global.join(rel)),
            dev_ino(&vs.join(rel)),
            "{} is not the skel's inode",
            rel.display()
        );
    }
    assert_eq!(
        dev_ino(&vs.join("bin/hello")),
        dev_ino(&vs.join("bin/hello-again"))
    );
    // One skel inode with two names in the skel and two in the vserver.
    let nlink = fs::metadata(vs.join("bin/hello")).unwrap().nlink();
    assert_eq!(nlink, 4, "skel's 2 names + the vserver's 2");
}

#[test]
fn local_entries_are_separate_copies_with_metadata_and_link_groups() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    let vs = setup.create("base", "web1", "10.0.0.2");
    let local = skel.join("local");
    let skel_tree = snapshot(&local);
    let vs_tree = snapshot(&vs);
    let mut checked = 0;
    for (rel, want) in &skel_tree {
        if rel.as_os_str().is_empty() {
            continue;
        }
        let got = vs_tree
            .get(rel)
            .unwrap_or_else(|| panic!("{} missing", rel.display()));
        assert_eq!(got.kind, want.kind, "{}", rel.display());
        assert_eq!(got.content, want.content, "{}", rel.display());
        assert_eq!(got.link, want.link, "{}", rel.display());
        assert_eq!(
            (got.uid, got.gid),
            (want.uid, want.gid),
            "{}",
            rel.display()
        );
        if want.kind != "symlink" {
            assert_eq!(got.mode, want.mode, "{}", rel.display());
        }
        // Directories shared with global/ take their times from the top
        // layer, which is the same source directory.
        assert_eq!(got.mtime, want.mtime, "{}", rel.display());
        if want.kind != "dir" {
            assert_ne!(got.ino, want.ino, "{} shares the skel inode", rel.display());
            assert_eq!(
                xattrs(&vs.join(rel)),
                xattrs(&local.join(rel)),
                "{}",
                rel.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} local entries");
    let a = dev_ino(&vs.join("etc/ssl/certs/a.pem"));
    assert_eq!(
        a,
        dev_ino(&vs.join("etc/ssl/certs/b.pem")),
        "link group lost"
    );
    assert_ne!(a, dev_ino(&local.join("etc/ssl/certs/a.pem")));
    if rustix::process::geteuid().is_root() {
        let state = fs::metadata(vs.join("var/lib/demo/state")).unwrap();
        assert_eq!((state.uid(), state.gid()), (1000, 1000));
        assert_eq!(
            fs::metadata(vs.join("dev/null")).unwrap().rdev(),
            rustix::fs::makedev(1, 3)
        );
    }
}

#[test]
fn copies_keep_setuid_capabilities_and_xattrs_from_the_source() {
    if !require_root("copies_keep_setuid_capabilities_and_xattrs_from_the_source") {
        return;
    }
    let setup = Setup::new("");
    let src = setup.example_source();
    let skel = setup.build_example_skel("base");
    let vs = setup.create("base", "web1", "10.0.0.2");
    let tool = fs::metadata(vs.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    let cap = xattr::get(vs.join("usr/bin/ping"), "security.capability").unwrap();
    assert_eq!(cap.as_deref(), Some(&vskel::example::CAP_NET_RAW_EP[..]));
    for rel in ["usr/bin/ping", "usr/share/doc/demo/README", "etc/shadow"] {
        let in_skel = ["global", "local", "static"]
            .iter()
            .map(|part| skel.join(part).join(rel))
            .find(|p| p.exists())
            .unwrap();
        assert_eq!(xattrs(&in_skel), xattrs(&src.join(rel)), "{rel}");
        let s = fs::metadata(src.join(rel)).unwrap();
        let k = fs::metadata(&in_skel).unwrap();
        assert_eq!(
            (s.mode(), s.uid(), s.gid(), s.mtime(), s.mtime_nsec()),
            (k.mode(), k.uid(), k.gid(), k.mtime(), k.mtime_nsec()),
            "{rel}"
        );
    }
    let shadow = fs::metadata(vs.join("etc/shadow")).unwrap();
    assert_eq!((shadow.mode() & 0o7777, shadow.gid()), (0o640, 42));
}

#[test]
fn symlinks_are_copied_never_followed() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    // A hostile skel: links pointing out of the tree, to a file and a dir.
    let outside = setup.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "host secret").unwrap();
    std::os::unix::fs::symlink(&outside, skel.join("local/var/evil-dir")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), skel.join("static/etc/evil")).unwrap();
    let before = snapshot(&outside);
    let vs = setup.create("base", "web1", "10.0.0.2");
    assert_eq!(
        fs::read_link(vs.join("etc/alternatives/editor")).unwrap(),
        Path::new("/usr/bin/tool")
    );
    assert_eq!(
        fs::read_link(vs.join("usr/bin/hello-link")).unwrap(),
        Path::new("../../bin/hello")
    );
    assert_eq!(fs::read_link(vs.join("var/evil-dir")).unwrap(), outside);
    assert_eq!(
        fs::read_link(vs.join("etc/evil")).unwrap(),
        outside.join("secret")
    );
    assert_eq!(snapshot(&outside), before, "vskel wrote outside the tree");
}

#[test]
fn static_files_are_rendered_and_unknown_tokens_warned() {
    let setup = Setup::new("[tokens]\nSITE = \"example-site\"\n");
    let skel = setup.build_example_skel("base");
    fs::write(
        skel.join("static/etc/motd"),
        "%%VS_NAME%% at %%SITE%% in context %%VS_CONTEXT%%, %%NOT_DEFINED%%\n",
    )
    .unwrap();
    setup
        .vskel()
        .args(["create-vs", "base", "web1", "web1.example.org", "10.0.0.2"])
        .assert()
        .success()
        .stderr(contains("%%NOT_DEFINED%%"));
    let vs = setup.root.join("web1");
    assert_eq!(
        fs::read_to_string(vs.join("etc/motd")).unwrap(),
        "web1 at example-site in context 50, %%NOT_DEFINED%%\n"
    );
    assert_eq!(
        fs::read_to_string(vs.join("etc/hostname")).unwrap(),
        "web1\n"
    );
    let hosts = fs::read_to_string(vs.join("etc/hosts")).unwrap();
    assert!(
        hosts.contains("10.0.0.2\tweb1.example.org\tweb1\n"),
        "{hosts}"
    );
    let passwd = fs::read_to_string(vs.join("etc/passwd")).unwrap();
    assert_eq!(
        passwd,
        fs::read_to_string(setup.example_source().join("etc/passwd")).unwrap()
    );
    // The skel itself is untouched by rendering.
    assert!(
        fs::read_to_string(skel.join("static/etc/hosts"))
            .unwrap()
            .contains("%%VS_IP%%")
    );
}

#[test]
fn config_file_context_link_and_nextid() {
    let setup = Setup::new("context_start = 300\n");
    setup.build_example_skel("base");
    let web1 = setup.create("base", "web1", "10.0.0.2");
    let conf = fs::read_to_string(setup.etc.join("web1.conf")).unwrap();
    assert!(conf.contains("S_CONTEXT=300\n"), "{conf}");
    assert!(conf.contains("IPROOT=10.0.0.2\n"), "{conf}");
    assert!(conf.contains("S_HOSTNAME=web1.example.org\n"), "{conf}");
    assert!(!conf.contains("%%"), "{conf}");
    let contexts = setup.etc.join("contexts");
    assert_eq!(fs::read_link(contexts.join("300")).unwrap(), web1);
    assert_eq!(
        fs::read_to_string(contexts.join("nextid")).unwrap().trim(),
        "301"
    );
    // A taken ID is skipped.
    std::os::unix::fs::symlink("/nowhere", contexts.join("301")).unwrap();
    let web2 = setup.create("base", "web2", "10.0.0.3");
    assert_eq!(fs::read_link(contexts.join("302")).unwrap(), web2);
    assert_eq!(
        fs::read_to_string(contexts.join("nextid")).unwrap().trim(),
        "303"
    );
    assert!(fs::metadata(web1.join("proc")).unwrap().is_dir());
}

#[test]
fn a_run_killed_half_way_leaves_nothing_that_blocks_the_next() {
    let setup = Setup::new("");
    setup.build_example_skel("base");
    // What `kill -9` of create-vs leaves: its staging tree (a pid that no
    // longer runs) and its context reservation, pointing at a missing tree.
    let staging = setup.root.join(".vskel/staging");
    fs::create_dir_all(staging.join("vs-ghost.999999999/etc")).unwrap();
    let contexts = setup.etc.join("contexts");
    fs::create_dir_all(&contexts).unwrap();
    std::os::unix::fs::symlink(setup.root.join("ghost"), contexts.join("50")).unwrap();
    // A run still going (it holds the vserver's lock, as this test does
    // here) keeps its reservation, and a link to a tree outside the
    // vservers root is never taken over.
    let me = std::process::id();
    fs::create_dir_all(staging.join(format!("vs-busy.{me}"))).unwrap();
    let locks = setup.root.join(".vskel/sync");
    fs::create_dir_all(&locks).unwrap();
    let busy_lock = fs::File::create(locks.join("busy.lock")).unwrap();
    rustix::fs::flock(&busy_lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    std::os::unix::fs::symlink(setup.root.join("busy"), contexts.join("51")).unwrap();
    std::os::unix::fs::symlink("/elsewhere/vs", contexts.join("52")).unwrap();
    fs::write(contexts.join("nextid"), "50\n").unwrap();

    setup
        .vskel()
        .args(["create-vs", "base", "web1", "web1.example.org", "10.0.0.2"])
        .assert()
        .success()
        .stderr(contains("taking it back"));
    assert_eq!(
        fs::read_link(contexts.join("50")).unwrap(),
        setup.root.join("web1")
    );
    assert!(!staging.join("vs-ghost.999999999").exists());
    assert!(staging.join(format!("vs-busy.{me}")).exists());
    let web2 = setup.create("base", "web2", "10.0.0.3");
    assert_eq!(fs::read_link(contexts.join("53")).unwrap(), web2);
    assert_eq!(
        fs::read_link(contexts.join("51")).unwrap(),
        setup.root.join("busy")
    );
    drop(busy_lock);
}

#[test]
fn concurrent_creates_get_distinct_context_ids() {
    const RUNS: usize = 8;
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let children: Vec<_> = (0..RUNS)
        .map(|i| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vskel"));
            cmd.arg("-q")
                .arg("--config")
                .arg(&setup.config)
                .args([
                    "create-vs",
                    "base",
                    &format!("vs{i}"),
                    &format!("vs{i}.example.org"),
                    &format!("10.0.1.{i}"),
                ])
                .env("CI", "true")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let contexts = setup.etc.join("contexts");
    let mut ids = BTreeSet::new();
    for i in 0..RUNS {
        let root = setup.root.join(format!("vs{i}"));
        let conf = fs::read_to_string(setup.etc.join(format!("vs{i}.conf"))).unwrap();
        let id: u32 = conf
            .lines()
            .find_map(|l| l.strip_prefix("S_CONTEXT="))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(fs::read_link(contexts.join(id.to_string())).unwrap(), root);
        ids.insert(id);
    }
    assert_eq!(ids, (50..50 + RUNS as u32).collect());
    assert_eq!(
        fs::read_to_string(contexts.join("nextid")).unwrap().trim(),
        (50 + RUNS).to_string()
    );
}

#[test]
fn post_create_scripts_run_in_order_with_the_vservers_values() {
    let setup = Setup::new("");
    let scripts = setup.defaults.join("scripts");
    fs::create_dir_all(&scripts).unwrap();
    let record = setup.dir.path().join("script-log");
    let script = format!(
        "#!/bin/sh\necho \"$(basename \"$0\") $1 $VS_NAME $VS_IP $VS_FQDN $VS_CONTEXT $VS_ROOT $VS_SKEL\" >> {}\n",
        record.display()
    );
    for name in ["20-second", "10-first"] {
        fs::write(scripts.join(name), &script).unwrap();
        fs::set_permissions(scripts.join(name), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(scripts.join("30-not-executable"), "#!/bin/sh\nexit 1\n").unwrap();
    setup.build_example_skel("base");
    let vs = setup.create("base", "web1", "10.0.0.2");
    let log = fs::read_to_string(&record).unwrap();
    let want = format!(
        "10-first web1 web1 10.0.0.2 web1.example.org 50 {0} base\n\
         20-second web1 web1 10.0.0.2 web1.example.org 50 {0} base\n",
        vs.display()
    );
    assert_eq!(log, want);
}

#[test]
fn a_failing_post_create_script_is_reported() {
    let setup = Setup::new("");
    let scripts = setup.defaults.join("scripts");
    fs::create_dir_all(&scripts).unwrap();
    fs::write(
        scripts.join("50-fails"),
        "#!/bin/sh\necho starting >&2\necho 'cannot reach the package mirror' >&2\nexit 3\n",
    )
    .unwrap();
    fs::set_permissions(scripts.join("50-fails"), fs::Permissions::from_mode(0o755)).unwrap();
    setup.build_example_skel("base");
    setup
        .vskel()
        .args(["create-vs", "base", "web1", "web1.example.org", "10.0.0.2"])
        .assert()
        .code(1)
        .stderr(contains("50-fails"))
        .stderr(contains("exit status: 3"))
        .stderr(contains("cannot reach the package mirror"))
        .stderr(contains("left in place"))
        .stderr(contains("remove-vs web1"));
    // What it says was left in place is there, whole.
    assert!(setup.root.join("web1/bin/hello").exists());
    assert!(setup.etc.join("web1.conf").exists());
}

#[test]
fn remove_vs_removes_everything_of_the_vserver_and_nothing_of_the_skel() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    let skel_before = snapshot(&skel);
    setup.create("base", "web1", "10.0.0.2");
    let web2 = setup.create("base", "web2", "10.0.0.3");
    setup.vskel().args(["remove-vs", "web1"]).assert().success();
    assert!(!setup.root.join("web1").exists());
    assert!(!setup.etc.join("web1.conf").exists());
    assert!(fs::symlink_metadata(setup.etc.join("contexts/50")).is_err());
    assert_eq!(fs::read_link(setup.etc.join("contexts/51")).unwrap(), web2);
    // The skel is as it was: same inodes, contents and link counts
    // (web2 still holds one name of each global inode).
    let skel_now = snapshot(&skel);
    for (rel, before) in &skel_before {
        let now = &skel_now[rel];
        assert_eq!(
            (now.ino, &now.content, now.mode, now.mtime),
            (before.ino, &before.content, before.mode, before.mtime),
            "{}",
            rel.display()
        );
    }
    let hello = fs::metadata(skel.join("global/bin/hello")).unwrap();
    assert_eq!(hello.nlink(), 4, "skel's 2 names + web2's 2");
    let list = setup
        .vskel()
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = list["vservers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web2"]);
}

#[test]
fn list_shows_vservers_and_skels() {
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.build_example_skel("other");
    setup.create("base", "web1", "10.0.0.2");
    fs::create_dir(setup.root.join("legacy")).unwrap();
    let out = setup
        .vskel()
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["vservers"][0]["name"], "legacy");
    assert_eq!(list["vservers"][0]["kind"], "unregistered");
    assert_eq!(list["vservers"][1]["name"], "web1");
    assert_eq!(list["vservers"][1]["kind"], "tree");
    assert_eq!(list["vservers"][1]["skel"], "base");
    assert_eq!(list["vservers"][1]["context"], 50);
    assert_eq!(list["vservers"][1]["ip"], "10.0.0.2");
    setup.vskel().args(["list"]).assert().success().stdout(
        "NAME    CONTEXT  KIND          STATE  SKEL  GEN  FQDN              IP\n\
             legacy  -        unregistered  -      -     -    -                 -\n\
             web1    50       tree          -      base  1    web1.example.org  10.0.0.2\n",
    );
    let out = setup.vskel().args(["list", "--skels"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("base  generation 1: "), "{text}");
    assert!(lines[0].ends_with(" bytes; generation 1: web1"), "{text}");
    assert!(lines[1].starts_with("other  generation 1: "), "{text}");
    assert!(lines[1].ends_with(" bytes"), "{text}");
}

#[test]
fn vskel_spellings_still_work() {
    let setup = Setup::new("");
    let src = setup.example_source();
    setup
        .vskel()
        .arg("--build-skel")
        .arg("base")
        .arg("--from")
        .arg(&src)
        .assert()
        .success();
    setup
        .vskel()
        .args([
            "--create-vs",
            "base",
            "web1",
            "web1.example.org",
            "10.0.0.2",
        ])
        .assert()
        .success();
    assert!(setup.root.join("web1/bin/hello").exists());
}

#[test]
fn immutable_protection_locks_the_skel_yet_create_and_remove_work() {
    if !require_root("immutable_protection_locks_the_skel_yet_create_and_remove_work") {
        return;
    }
    let setup = Setup::new("protect = \"immutable\"\n");
    let skel = setup.build_example_skel("base");
    let guard = UnlockOnDrop(skel.join("global"));
    let hello = skel.join("global/bin/hello");
    assert!(is_immutable(&hello), "global files must be chattr +i");
    assert!(
        fs::write(&hello, "changed").is_err(),
        "an immutable file was written"
    );
    let vs = setup.create("base", "web1", "10.0.0.2");
    assert_eq!(dev_ino(&vs.join("bin/hello")), dev_ino(&hello));
    setup.create("base", "web2", "10.0.0.3");
    setup.vskel().args(["remove-vs", "web1"]).assert().success();
    assert!(!vs.exists());
    assert!(is_immutable(&hello), "removing a vserver unlocked the skel");
    assert_eq!(fs::metadata(&hello).unwrap().nlink(), 4);
    drop(guard);
}

#[test]
fn iunlink_protection_is_refused_without_a_vserver_kernel() {
    if Path::new("/proc/virtual").exists() {
        return; // a Linux-VServer kernel: iunlink is supported
    }
    let setup = Setup::new("protect = \"iunlink\"\n");
    let src = setup.example_source();
    setup
        .vskel()
        .args(["build-skel", "base", "--from"])
        .arg(&src)
        .assert()
        .code(1)
        .stderr(contains("Linux-VServer kernel"));
    assert!(!setup.root.join(".skel/base").exists());
}

#[test]
fn a_skel_on_another_filesystem_is_refused_up_front() {
    if !require_root("a_skel_on_another_filesystem_is_refused_up_front") {
        return;
    }
    let setup = Setup::new("");
    let skels = setup.root.join(".skel");
    fs::create_dir_all(&skels).unwrap();
    let _mount = TmpfsMount::new(&skels);
    let src = setup.example_source();
    setup
        .vskel()
        .args(["build-skel", "base", "--from"])
        .arg(&src)
        .assert()
        .code(1)
        .stderr(contains("different filesystems"));
    assert_eq!(fs::read_dir(&skels).unwrap().count(), 0);
    // A skel copied there by hand: create-vs refuses before writing.
    let other = Setup::new("");
    let built = other.build_example_skel("base");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&built)
        .arg(&skels)
        .status()
        .unwrap();
    assert!(status.success());
    setup
        .vskel()
        .args(["create-vs", "base", "web1", "web1.example.org", "10.0.0.2"])
        .assert()
        .code(1)
        .stderr(contains("different filesystems"));
    assert!(!setup.root.join("web1").exists());
    assert!(!setup.etc.join("web1.conf").exists());
}

fn is_immutable(path: &Path) -> bool {
    let file = fs::File::open(path).unwrap();
    rustix::fs::ioctl_getflags(&file)
        .unwrap()
        .contains(rustix::fs::IFlags::IMMUTABLE)
}

/// Clears `chattr +i` below a directory on drop, so the temp dir can go.
struct UnlockOnDrop(PathBuf);

impl Drop for UnlockOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .args(["-R", "-i"])
            .arg(&self.0)
            .status();
    }
}

/// A tmpfs mounted for a test, unmounted on drop (even when the test fails).
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn new(at: &Path) -> Self {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "vskel-test"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs");
        TmpfsMount(at.to_path_buf())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn missing_values_are_asked_for_on_a_terminal() {
    use std::io::Write;
    let setup = Setup::new("");
    setup.build_example_skel("base");
    // `script` runs the command on a real pseudo-terminal and feeds it our
    // stdin, as a person typing the answers would.
    let command = format!(
        "{} --config {} create-vs base",
        env!("CARGO_BIN_EXE_vskel"),
        setup.config.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CI", "true")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"web1\nweb1.example.org\n10.0.0.2\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("Name of the new vserver"), "{screen}");
    assert!(screen.contains("IP address"), "{screen}");
    let hosts = fs::read_to_string(setup.root.join("web1/etc/hosts")).unwrap();
    assert!(
        hosts.contains("10.0.0.2\tweb1.example.org\tweb1"),
        "{hosts}"
    );
}

/// What a killed run left in the staging area (a tree half built, a view
/// directory half removed by `materialize`) is removed by the next vskel
/// command, whichever it is: here a `list`, which stages nothing itself.
#[test]
fn any_next_command_removes_what_killed_runs_left_in_staging() {
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let staging = setup.root.join(".vskel/staging");
    fs::create_dir_all(staging.join("rm-view-web.999999999/view/upper/etc")).unwrap();
    let me = std::process::id();
    fs::create_dir_all(staging.join(format!("vs-busy.{me}"))).unwrap();
    setup.vskel().arg("list").assert().success();
    assert!(!staging.join("rm-view-web.999999999").exists());
    assert!(
        staging.join(format!("vs-busy.{me}")).exists(),
        "a live run's is kept"
    );
}
