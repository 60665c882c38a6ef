//! `vskel overlay` never deletes what it did not make (issue 9, finding 4):
//! a layer stack whose work directory is the upper, a lower, or a directory
//! above or inside them (`lowerdir=P/low,upperdir=P/up,workdir=P`) is
//! refused with a clear error before anything is touched, and a work
//! directory holding someone else's files keeps them.
//!
//! Each layout is also tried with kernel overlayfs (the reference): vskel
//! refuses everything the kernel refuses, and a little more (a work or
//! upper directory inside a lower, or a lower above the upper, which the
//! kernel only catches on lookup).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{MountGuard, Setup, require_root, snapshot};

/// Exit code of a usage error.
const USAGE: i32 = 2;

/// Every layer directory a case may name, below the case's directory `P`
/// (`Q` is a sibling of `P`).
const DIRS: &[&str] = &[
    "P/low/inner",
    "P/low2",
    "P/up/inner",
    "P/wk",
    "Q/up",
    "Q/wk",
    "mnt",
];

/// A layout: its name, the -o option string (paths relative to the case
/// directory), whether kernel overlayfs refuses it at mount time, and what
/// vskel's message must say.
struct Layout {
    name: &'static str,
    options: &'static str,
    kernel_refuses: bool,
    message: &'static str,
}

const SEPARATE: &str = "must be separate directories";

const BAD: &[Layout] = &[
    Layout {
        name: "workdir is the parent of upper and lower",
        options: "lowerdir=P/low,upperdir=P/up,workdir=P",
        kernel_refuses: true,
        message: SEPARATE,
    },
    Layout {
        name: "workdir is the upper",
        options: "lowerdir=P/low,upperdir=P/up,workdir=P/up",
        kernel_refuses: true,
        message: "are the same directory",
    },
    Layout {
        name: "workdir is a lower",
        options: "lowerdir=P/low,upperdir=P/up,workdir=P/low",
        kernel_refuses: true,
        message: "are the same directory",
    },
    Layout {
        name: "workdir inside the upper",
        options: "lowerdir=P/low,upperdir=P/up,workdir=P/up/inner",
        kernel_refuses: true,
        message: "is inside upperdir=",
    },
    Layout {
        name: "workdir inside a lower",
        options: "lowerdir=P/low,upperdir=P/up,workdir=P/low/inner",
        kernel_refuses: false,
        message: "is inside lowerdir=",
    },
    Layout {
        name: "workdir above a lower only",
        options: "lowerdir=P/low,upperdir=Q/up,workdir=P",
        kernel_refuses: true,
        message: SEPARATE,
    },
    Layout {
        name: "workdir is the parent, named with ..",
        options: "lowerdir=P/low,upperdir=P/up,workdir=P/up/..",
        kernel_refuses: true,
        message: SEPARATE,
    },
    Layout {
        name: "upper is a lower",
        options: "lowerdir=P/low,upperdir=P/low,workdir=P/wk",
        kernel_refuses: true,
        message: "are the same directory",
    },
    Layout {
        name: "upper inside a lower",
        options: "lowerdir=P/low,upperdir=P/low/inner,workdir=P/wk",
        kernel_refuses: false,
        message: "is inside lowerdir=",
    },
    Layout {
        name: "upper above a lower",
        options: "lowerdir=P/low,upperdir=P,workdir=Q/wk",
        kernel_refuses: true,
        message: SEPARATE,
    },
    Layout {
        name: "a lower inside the upper",
        options: "lowerdir=P/up/inner,upperdir=P/up,workdir=P/wk",
        kernel_refuses: true,
        message: "is inside upperdir=",
    },
    Layout {
        name: "a lower above upper and work",
        options: "lowerdir=Q,upperdir=Q/up,workdir=Q/wk",
        kernel_refuses: false,
        message: SEPARATE,
    },
    Layout {
        name: "the same lower twice",
        options: "lowerdir=P/low:P/low,upperdir=P/up,workdir=P/wk",
        kernel_refuses: true,
        message: "are the same directory",
    },
    Layout {
        name: "a lower inside another",
        options: "lowerdir=P/low:P/low/inner,upperdir=P/up,workdir=P/wk",
        kernel_refuses: true,
        message: "is inside lowerdir=",
    },
    Layout {
        name: "workdir on another filesystem",
        options: "lowerdir=P/low,upperdir=P/up,workdir=/dev/shm/{case}",
        kernel_refuses: true,
        message: "different filesystems",
    },
];

/// Make the case directory's layers, each with a file in it.
fn populate(case: &Path) {
    for dir in DIRS {
        fs::create_dir_all(case.join(dir)).unwrap();
        fs::write(case.join(dir).join("precious"), dir).unwrap();
    }
    fs::remove_file(case.join("mnt/precious")).unwrap();
}

/// The option string of `layout` for the case directory `case`.
fn options(layout: &Layout, case: &Path) -> String {
    let name = case.file_name().unwrap().to_str().unwrap();
    layout
        .options
        .replace("{case}", name)
        .split(',')
        .map(|opt| match opt.split_once('=') {
            Some((key, value)) => {
                let paths: Vec<String> = value
                    .split(':')
                    .map(|p| {
                        if p.starts_with('/') {
                            p.to_string()
                        } else {
                            case.join(p).display().to_string()
                        }
                    })
                    .collect();
                format!("{key}={}", paths.join(":"))
            }
            None => opt.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Does kernel overlayfs mount `options` at `mnt`? (Unmounted again.)
fn kernel_accepts(options: &str, mnt: &Path) -> bool {
    let _guard = MountGuard(mnt.to_path_buf());
    Command::new("mount")
        .args(["-t", "overlay", "vskel-layout-test", "-o", options])
        .arg(mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn is_mounted(mnt: &Path) -> bool {
    let wanted = mnt.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(wanted))
}

#[test]
fn overlapping_layers_are_refused_and_nothing_is_deleted() {
    if !require_root("overlapping_layers_are_refused_and_nothing_is_deleted") {
        return;
    }
    let setup = Setup::new("");
    let mut failures = Vec::new();
    for (i, layout) in BAD.iter().enumerate() {
        let case = setup.dir.path().join(format!("case{i}"));
        populate(&case);
        let shm = PathBuf::from(format!("/dev/shm/case{i}"));
        let on_shm = layout.options.contains("/dev/shm/");
        if on_shm {
            let _ = fs::remove_dir_all(&shm);
            fs::create_dir_all(&shm).unwrap();
            fs::write(shm.join("precious"), "shm").unwrap();
        }
        let opts = options(layout, &case);
        let mnt = case.join("mnt");
        if kernel_accepts(&opts, &mnt) == layout.kernel_refuses {
            failures.push(format!(
                "{}: kernel overlayfs {} it (the table says otherwise)",
                layout.name,
                if layout.kernel_refuses {
                    "accepts"
                } else {
                    "refuses"
                }
            ));
        }
        // The kernel leaves work/ and index/ in a work directory it used:
        // start vskel's run from a fresh copy of the layers.
        fs::remove_dir_all(&case).unwrap();
        populate(&case);
        if on_shm {
            fs::remove_dir_all(&shm).unwrap();
            fs::create_dir_all(&shm).unwrap();
            fs::write(shm.join("precious"), "shm").unwrap();
        }
        let before = snapshot(&case);
        let _guard = MountGuard(mnt.clone());
        for foreground in [false, true] {
            let mut cmd = setup.vskel();
            cmd.arg("overlay");
            if foreground {
                cmd.arg("-f");
            }
            let out = cmd
                .args(["-o", &opts])
                .arg(&mnt)
                .timeout(std::time::Duration::from_secs(60))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let label = format!("{} (-f: {foreground}, -o {opts})", layout.name);
            if out.status.code() != Some(USAGE) {
                failures.push(format!("{label}: exit {:?}: {stderr}", out.status.code()));
            }
            if !stderr.contains(layout.message) {
                failures.push(format!(
                    "{label}: stderr lacks {:?}: {stderr}",
                    layout.message
                ));
            }
            if is_mounted(&mnt) {
                failures.push(format!("{label}: mounted"));
            }
        }
        let after = snapshot(&case);
        if after != before {
            let lost: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
            let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
            failures.push(format!(
                "{}: the layers changed: lost {lost:?}, added {added:?}",
                layout.name
            ));
        }
        if on_shm {
            if !shm.join("precious").exists() {
                failures.push(format!("{}: the work directory was emptied", layout.name));
            }
            fs::remove_dir_all(&shm).unwrap();
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_work_directory_keeps_files_vskel_did_not_make() {
    if !require_root("a_work_directory_keeps_files_vskel_did_not_make") {
        return;
    }
    let setup = Setup::new("");
    let base = setup.dir.path().join("ov");
    for sub in ["low", "up", "wk/work/theirs", "mnt"] {
        fs::create_dir_all(base.join(sub)).unwrap();
    }
    fs::write(base.join("low/f"), "lower\n").unwrap();
    fs::write(base.join("wk/notes.txt"), "not vskel's\n").unwrap();
    fs::write(base.join("wk/work/theirs/data"), "not vskel's either\n").unwrap();
    fs::write(base.join("wk/work/#vskel-1-1"), "left by a killed server\n").unwrap();
    fs::write(base.join("wk/#vskel-2-2"), "left by an older vskel\n").unwrap();
    let mnt = base.join("mnt");
    let _guard = MountGuard(mnt.clone());
    let opts = format!(
        "lowerdir={0}/low,upperdir={0}/up,workdir={0}/wk",
        base.display()
    );
    setup
        .vskel()
        .args(["overlay", "-o", &opts])
        .arg(&mnt)
        .assert()
        .success();
    // Copy-ups and removals work through the scratch directory.
    fs::write(mnt.join("f"), "changed\n").unwrap();
    fs::remove_file(mnt.join("f")).unwrap();
    fs::create_dir(mnt.join("d")).unwrap();
    fs::remove_dir(mnt.join("d")).unwrap();
    // A second overlay on the same work directory would clean it under
    // the first: refused.
    let other = base.join("mnt2");
    fs::create_dir(&other).unwrap();
    let _guard2 = MountGuard(other.clone());
    setup
        .vskel()
        .args(["overlay", "-o", &opts])
        .arg(&other)
        .assert()
        .code(USAGE)
        .stderr(predicates::str::contains(
            "in use by another running overlay",
        ));
    assert!(!is_mounted(&other));
    setup.vskel().arg("unmount").arg(&mnt).assert().success();
    assert!(!is_mounted(&mnt));
    assert_eq!(
        fs::read_to_string(base.join("wk/notes.txt")).unwrap(),
        "not vskel's\n"
    );
    assert_eq!(
        fs::read_to_string(base.join("wk/work/theirs/data")).unwrap(),
        "not vskel's either\n"
    );
    assert!(!base.join("wk/work/#vskel-1-1").exists());
    assert!(!base.join("wk/#vskel-2-2").exists());
    let names: Vec<_> = fs::read_dir(base.join("wk/work"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["theirs"], "scratch entries left behind");
    assert_eq!(fs::read_to_string(base.join("low/f")).unwrap(), "lower\n");
}
