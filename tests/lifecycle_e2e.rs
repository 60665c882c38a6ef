//! Issue 12's end-to-end test with real packages: two versions of a small
//! Debian package built with `dpkg-deb --build` (v2 changes a binary, adds
//! a file, removes one and changes a conffile under /etc); a skel from the
//! debootstrap fixture with v1 installed through `merge-skel`, `chroot
//! dpkg -i` and `split-skel`; a tree vserver u1 and a view w1 that edit the
//! conffile and `etc/motd`; v2 installed the same way while the skel's
//! `etc/issue` and `etc/motd` are edited; then `upgrade-vs` brings each to
//! the new generation: u1, then w1, both of the one skel and its one change
//! (`a_tree_and_a_view_follow_the_skel_through_dpkg`).
//!
//! Also: maintainer scripts work in the temporary vserver (`proc/` is
//! there, `adduser` finds static's accounts), and split-skel warns, naming
//! the file, when one of static's account files changed there.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::debs::{Package, build_deb};
use common::{Listing, MountGuard, Setup, canonical, dev_ino, diff, require_root, snapshot};

const SKEL: &str = "deb";
const PKG: &str = "vskel-e2e";
const BINARY: &str = "usr/bin/vskel-e2e";
const REMOVED: &str = "usr/share/vskel-e2e/old-file";
const ADDED: &str = "usr/share/vskel-e2e/new-file";
const CONFFILE: &str = "etc/vskel-e2e.conf";
const MOTD: &str = "etc/motd";
const ISSUE: &str = "etc/issue";

fn v1() -> Package<'static> {
    Package {
        name: PKG,
        version: "1.0",
        files: &[
            (BINARY, "#!/bin/sh\necho v1\n", 0o755),
            (REMOVED, "only in v1\n", 0o644),
            ("usr/share/vskel-e2e/kept", "in both\n", 0o644),
            (CONFFILE, "setting=1\n", 0o644),
        ],
        conffiles: &[CONFFILE],
        postinst: None,
    }
}

fn v2() -> Package<'static> {
    Package {
        name: PKG,
        version: "2.0",
        files: &[
            (BINARY, "#!/bin/sh\necho v2\n", 0o755),
            (ADDED, "new in v2\n", 0o644),
            ("usr/share/vskel-e2e/kept", "in both\n", 0o644),
            (CONFFILE, "setting=2\n", 0o644),
        ],
        conffiles: &[CONFFILE],
        postinst: None,
    }
}

/// `vskel ARGS`, which must succeed: (stdout, stderr).
fn vskel_ok(setup: &Setup, args: &[&str]) -> (String, String) {
    let out = setup.vskel().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "vskel {args:?}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// `chroot ROOT ARGS` with a clean environment: (success, stdout+stderr).
fn chroot(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn temp_vserver(setup: &Setup) -> PathBuf {
    setup.root.join(format!("tmp_skel_{SKEL}"))
}

/// `dpkg -i` of `deb` inside the temporary vserver.
fn install_in_temp(setup: &Setup, deb: &Path) {
    let temp = temp_vserver(setup);
    fs::copy(deb, temp.join("tmp/pkg.deb")).unwrap();
    let (ok, out) = chroot(&temp, &["dpkg", "-i", "/tmp/pkg.deb"]);
    assert!(ok, "chroot dpkg -i: {out}");
    fs::remove_file(temp.join("tmp/pkg.deb")).unwrap();
}

/// The package's version as `dpkg -s` in `root` says it.
fn dpkg_version(root: &Path) -> String {
    let (ok, out) = chroot(root, &["dpkg-query", "-W", "-f=${Version}", PKG]);
    assert!(ok, "dpkg-query in {}: {out}", root.display());
    let (ok, status) = chroot(root, &["dpkg", "-s", PKG]);
    assert!(ok, "dpkg -s in {}: {status}", root.display());
    assert!(status.contains(&format!("Version: {out}\n")), "{status}");
    out
}

/// A vserver's own edits: the conffile and `etc/motd`.
fn edit_vserver(root: &Path, name: &str) {
    fs::write(root.join(CONFFILE), format!("setting={name}\n")).unwrap();
    fs::write(root.join(MOTD), format!("{name}'s motd\n")).unwrap();
}

/// The skel's new `etc/issue` and `etc/motd`.
const NEW_ISSUE: &str = "vskel e2e issue, generation 3\n";
const NEW_MOTD: &str = "vskel e2e motd, generation 3\n";

/// The fixture skel with v1, the vservers made from it and edited, v2
/// installed in the skel and split back: everything before `upgrade-vs`.
struct World {
    /// Unmounts w1 (dropped before `setup`).
    mount: Option<MountGuard>,
    setup: Setup,
    skel: PathBuf,
}

/// The skel with package v1, the tree vserver u1 and the mounted view w1
/// (each with its own edits), then v2 installed through merge-skel and
/// split-skel: one skel and one change for both kinds of vserver.
fn world() -> World {
    let setup = Setup::new("");
    let skel = setup.build_debian_skel(SKEL);
    let debs = setup.dir.path().join("debs");
    fs::create_dir(&debs).unwrap();
    let (deb1, deb2) = (build_deb(&debs, &v1()), build_deb(&debs, &v2()));
    vskel_ok(&setup, &["merge-skel", SKEL]);
    install_in_temp(&setup, &deb1);
    vskel_ok(&setup, &["split-skel", SKEL]);
    let mut w = World {
        mount: None,
        setup,
        skel,
    };
    let u1 = w.setup.create(SKEL, "u1", "10.0.12.2");
    assert_eq!(dpkg_version(&u1), "1.0");
    edit_vserver(&u1, "u1");
    let view = w.setup.create_view(SKEL, "w1", "10.0.12.3");
    w.mount = Some(MountGuard(view.join("merged")));
    vskel_ok(&w.setup, &["mount", "w1"]);
    let merged = w.merged();
    assert_eq!(dpkg_version(&merged), "1.0");
    edit_vserver(&merged, "w1");
    vskel_ok(&w.setup, &["merge-skel", SKEL]);
    install_in_temp(&w.setup, &deb2);
    let temp = temp_vserver(&w.setup);
    fs::write(temp.join(ISSUE), NEW_ISSUE).unwrap();
    fs::write(temp.join(MOTD), NEW_MOTD).unwrap();
    let (_, stderr) = vskel_ok(&w.setup, &["split-skel", SKEL]);
    assert!(!stderr.contains("not taken back"), "{stderr}");
    assert!(!temp.exists());
    let g = w.skel.join("global");
    assert_eq!(
        fs::read_to_string(g.join(BINARY)).unwrap(),
        "#!/bin/sh\necho v2\n"
    );
    assert!(g.join(ADDED).is_file() && !g.join(REMOVED).exists());
    assert_eq!(
        fs::read_to_string(w.skel.join("local").join(CONFFILE)).unwrap(),
        "setting=2\n"
    );
    w
}

impl World {
    fn merged(&self) -> PathBuf {
        self.mount
            .as_ref()
            .expect("a mounted view")
            .path()
            .to_path_buf()
    }

    fn global(&self, rel: &str) -> PathBuf {
        self.skel.join("global").join(rel)
    }

    fn local(&self, rel: &str) -> String {
        fs::read_to_string(self.skel.join("local").join(rel)).unwrap()
    }

    fn upgrade_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["upgrade-vs", "--format", "json"];
        all.extend_from_slice(args);
        let (out, _) = vskel_ok(&self.setup, &all);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        report["vservers"][0].clone()
    }
}

fn paths(report: &serde_json::Value, what: &str) -> Vec<String> {
    report["paths"][what]
        .as_array()
        .unwrap_or_else(|| panic!("no paths.{what} in {report}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// The decisions both vservers must get: their conffile and motd edits
/// conflict with the skel's, the skel's issue, package files and dpkg
/// database (never touched by the vserver) are taken.
fn assert_decisions(report: &serde_json::Value) {
    assert_eq!(paths(report, "conflicting"), [MOTD, CONFFILE], "{report}");
    assert_eq!(report["counts"]["conflicting"], 2, "{report}");
    let taken = paths(report, "taken");
    for want in [ISSUE, BINARY, "var/lib/dpkg/status"] {
        assert!(
            taken.iter().any(|p| p == want),
            "{want} not taken: {report}"
        );
    }
    assert_eq!(paths(report, "removed"), [REMOVED], "{report}");
    assert!(
        paths(report, "added").iter().any(|p| p == ADDED),
        "{report}"
    );
    for (what, list) in [
        "taken",
        "kept",
        "converged",
        "added",
        "removed",
        "conflicting",
    ]
    .iter()
    .map(|w| (*w, paths(report, w)))
    {
        assert_eq!(report["counts"][what], list.len(), "{what}: {report}");
    }
}

/// What a vserver shows after its upgrade (`root`: its tree or mounted
/// view), as the skel now holds it except for its own two edits.
fn assert_upgraded_content(w: &World, root: &Path, name: &str) {
    assert_eq!(dpkg_version(root), "2.0");
    assert_eq!(chroot(root, &["vskel-e2e"]), (true, "v2\n".to_string()));
    assert!(!root.join(REMOVED).exists());
    assert_eq!(fs::read_to_string(root.join(ADDED)).unwrap(), "new in v2\n");
    assert_eq!(fs::read_to_string(root.join(ISSUE)).unwrap(), NEW_ISSUE);
    assert_eq!(
        fs::read_to_string(root.join(MOTD)).unwrap(),
        format!("{name}'s motd\n")
    );
    assert_eq!(
        fs::read_to_string(root.join(CONFFILE)).unwrap(),
        format!("setting={name}\n")
    );
    for rel in [MOTD, CONFFILE] {
        let new = root.join(format!("{rel}.vskel-new"));
        assert_eq!(fs::read_to_string(&new).unwrap(), w.local(rel), "{rel}");
    }
}

#[test]
fn a_tree_and_a_view_follow_the_skel_through_dpkg() {
    if !require_root("a_tree_and_a_view_follow_the_skel_through_dpkg") {
        return;
    }
    let w = world();
    tree_follows(&w);
    view_follows(&w);
}

/// The tree part: u1 upgraded to the new generation.
fn tree_follows(w: &World) {
    let u1 = w.setup.root.join("u1");
    let listing = || canonical(&u1, &w.skel);

    // --plan (text and JSON) lists the decisions and writes nothing.
    let before = listing();
    let (text, _) = vskel_ok(&w.setup, &["upgrade-vs", "--plan", "u1"]);
    for line in [
        format!("would conflict /{MOTD}"),
        format!("would conflict /{CONFFILE}"),
        format!("would take /{ISSUE}"),
        format!("would take /{BINARY}"),
        format!("would remove /{REMOVED}"),
        format!("would add /{ADDED}"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
    let plan = w.upgrade_json(&["--plan", "u1"]);
    assert_eq!(plan["plan"], true);
    assert_decisions(&plan);
    assert_eq!(diff(&before, &listing()), Vec::<String>::new());
    assert_eq!(dpkg_version(&u1), "1.0");

    let done = w.upgrade_json(&["u1"]);
    assert_eq!(done["plan"], false);
    assert_decisions(&done);
    assert_eq!(paths(&done, "conflicting"), paths(&plan, "conflicting"));
    assert_eq!(paths(&done, "taken"), paths(&plan, "taken"));
    assert_upgraded_content(w, &u1, "u1");
    // The package's global files are the new skel inodes.
    for rel in [BINARY, ADDED, "usr/share/vskel-e2e/kept"] {
        assert_eq!(dev_ino(&u1.join(rel)), dev_ino(&w.global(rel)), "{rel}");
    }
    assert_eq!(
        fs::read_to_string(u1.join(ISSUE)).unwrap(),
        w.local(ISSUE),
        "etc/issue is the skel's new one"
    );
    // Every other global entry is still the skel's inode.
    let mut shared = 0;
    for (rel, entry) in snapshot(&w.skel.join("global")) {
        if entry.kind == "dir" || rel.starts_with("usr/share/vskel-e2e") || rel == Path::new(BINARY)
        {
            continue;
        }
        assert_eq!(
            dev_ino(&u1.join(&rel)),
            dev_ino(&w.global(rel.to_str().unwrap())),
            "{} is no longer the skel's inode",
            rel.display()
        );
        shared += 1;
    }
    assert!(shared > 1000, "{shared} global entries shared");
    // Nothing left to do.
    let again = w.upgrade_json(&["u1"]);
    assert_eq!(again["counts"]["taken"], 0, "{again}");
}

/// The view part. A view stays on its generation until `upgrade-vs`,
/// which (mounted: remounting in the background at the same mount point)
/// brings it to the current one and writes `PATH.vskel-new` into its
/// upper layer for the upper files that shadow changed skel files.
fn view_follows(w: &World) {
    let merged = w.merged();
    // split-skel made generation 3; the mounted view still shows 2.
    assert_eq!(dpkg_version(&merged), "1.0");
    assert!(merged.join(REMOVED).is_file() && !merged.join(ADDED).exists());
    assert_ne!(fs::read_to_string(merged.join(ISSUE)).unwrap(), NEW_ISSUE);

    let plan = w.upgrade_json(&["--plan", "w1"]);
    assert_decisions(&plan);
    assert_eq!(dpkg_version(&merged), "1.0", "--plan changed the view");

    let done = w.upgrade_json(&["w1"]);
    assert_decisions(&done);
    assert_eq!(
        common::mount::mounted_fs_type(&merged)
            .as_deref()
            .map(|t| t.starts_with("fuse")),
        Some(true),
        "w1 is mounted again at {}",
        merged.display()
    );
    assert_upgraded_content(w, &merged, "w1");

    // sync makes the tree exactly what the view shows.
    vskel_ok(&w.setup, &["sync", "w1"]);
    let tree = w.setup.root.join("w1");
    let differences = diff(
        &without_identity(canonical(&merged, &w.skel)),
        &without_identity(canonical(&tree, &w.skel)),
    );
    assert!(
        differences.is_empty(),
        "{} differences (first: the view, second: the synced tree): {:#?}",
        differences.len(),
        &differences[..differences.len().min(10)]
    );
    assert_upgraded_content(w, &tree, "w1");
    assert_eq!(dev_ino(&tree.join(BINARY)), dev_ino(&w.global(BINARY)));
}

/// A listing without inode identity (a FUSE view has inodes of its own).
fn without_identity(listing: Listing) -> Listing {
    listing
        .into_iter()
        .map(|(rel, mut entry)| {
            entry.shares_skel = false;
            entry.group = None;
            (rel, entry)
        })
        .collect()
}

/// Maintainer scripts run in the temporary vserver: `proc/` is there (to
/// mount proc on) and static's account files are, so `adduser --system`
/// works; split-skel then warns that etc/passwd (and the others) changed
/// but were not taken back, and takes neither them nor anything of `dev/`
/// (the skel keeps build-skel's minimal dev).
#[test]
fn maintainer_scripts_can_add_users_in_the_merged_skel() {
    if !require_root("maintainer_scripts_can_add_users_in_the_merged_skel") {
        return;
    }
    let setup = Setup::new("");
    let skel = setup.build_debian_skel(SKEL);
    let statics = skel.join("static/etc");
    let static_before = snapshot(&statics);
    // Link counts grow with merge-skel's hard-linked local.bak/, and a
    // split may give the part's directories new inodes.
    let dev = || {
        let mut dev = snapshot(&skel.join("local/dev"));
        for entry in dev.values_mut() {
            entry.nlink = 0;
            if entry.kind == "dir" {
                entry.ino = 0;
            }
        }
        dev
    };
    let dev_before = dev();
    let deb = build_deb(
        setup.dir.path(),
        &Package {
            name: "vskel-daemon",
            version: "1.0",
            files: &[("usr/sbin/vskel-daemon", "#!/bin/sh\n", 0o755)],
            conffiles: &[],
            postinst: Some(
                "#!/bin/sh\nset -e\n\
                 adduser --system --group --no-create-home --quiet vskeld\n\
                 getent passwd vskeld\n",
            ),
        },
    );
    vskel_ok(&setup, &["merge-skel", SKEL]);
    let temp = temp_vserver(&setup);
    let proc = fs::symlink_metadata(temp.join("proc")).unwrap();
    assert!(proc.is_dir() && proc.mode() & 0o7777 == 0o555 && proc.uid() == 0);
    assert_eq!(fs::read_dir(temp.join("proc")).unwrap().count(), 0);
    for file in ["passwd", "group", "shadow", "gshadow"] {
        let (a, b) = (statics.join(file), temp.join("etc").join(file));
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "{file}");
        let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        assert_eq!(
            (ma.mode(), ma.uid(), ma.gid(), ma.mtime()),
            (mb.mode(), mb.uid(), mb.gid(), mb.mtime()),
            "{file}"
        );
    }
    install_in_temp(&setup, &deb);
    let (ok, out) = chroot(&temp, &["getent", "passwd", "vskeld"]);
    assert!(ok && out.starts_with("vskeld:"), "{out}");
    fs::write(
        temp.join("dev/vskel-stray"),
        "made in the temporary vserver\n",
    )
    .unwrap();

    let (_, stderr) = vskel_ok(&setup, &["split-skel", SKEL]);
    for file in ["passwd", "group"] {
        let says = format!(
            "etc/{file}: changed in the temporary vserver, not taken back: static/etc/{file} is \
             per-vserver and was not changed; to change it for new vservers, edit {}",
            statics.join(file).display()
        );
        assert!(stderr.contains(&says), "{says:?} not in:\n{stderr}");
    }
    assert_eq!(snapshot(&statics), static_before, "static/ changed");
    assert!(skel.join("global/usr/sbin/vskel-daemon").is_file());
    for part in ["global", "local"] {
        for rel in [
            "etc/passwd",
            "etc/shadow",
            "etc/group",
            "etc/gshadow",
            "proc",
        ] {
            let path = skel.join(part).join(rel);
            assert!(!path.exists(), "{} taken back", path.display());
        }
    }
    assert_eq!(dev(), dev_before, "local/dev changed");
}
