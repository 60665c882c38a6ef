//! `vskel status` on a real setup: a view mounted by `vskel mount`, one
//! left unmounted, one whose server was killed with SIGKILL (a stale
//! mount) and a tree, in JSON and as text; an unknown name is a usage
//! error. Every mount is undone by a [`MountGuard`], also when a test
//! fails.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{MountGuard, Setup, disk_usage, require_root};
use serde_json::{Value, json};

/// Exit code of a usage error.
const USAGE: i32 = 2;
/// How long a test waits for a server to die.
const WAIT: Duration = Duration::from_secs(10);

/// Is process `pid` still there? (A killed multi-threaded server is
/// alive until every thread is a zombie: its threads hold its locks.)
fn is_alive(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .flatten()
        .any(|task| fs::read_to_string(task.path().join("stat")).is_ok_and(|s| !s.contains(") Z ")))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `vskel status ARGS --format json`: its vservers by name.
fn status_json(setup: &Setup, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["status", "--format", "json"];
    all.extend_from_slice(args);
    let out = setup.run_ok(&all);
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    doc["vservers"].as_array().expect("a vservers list").clone()
}

fn by_name<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:?}"))
}

fn merged(setup: &Setup, name: &str) -> PathBuf {
    setup.root.join(".views").join(name).join("merged")
}

fn upper(setup: &Setup, name: &str) -> PathBuf {
    setup.root.join(".views").join(name).join("upper")
}

/// The pid a view's mount.pid names.
fn server_pid(setup: &Setup, name: &str) -> u32 {
    let pid_file = setup.root.join(".views").join(name).join("mount.pid");
    let text = fs::read_to_string(pid_file).unwrap();
    text.lines().next().unwrap().parse().unwrap()
}

/// Skel "base"; views "live" (mounted, a file written through it),
/// "idle" (never mounted) and "dead" (mounted, then its server killed
/// with SIGKILL); tree "plain". The guards unmount "live" and "dead".
fn four_vservers() -> (Setup, [MountGuard; 2]) {
    let setup = Setup::new("");
    fs::set_permissions(setup.dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    setup.build_example_skel("base");
    for (name, ip) in [
        ("live", "10.0.0.1"),
        ("idle", "10.0.0.2"),
        ("dead", "10.0.0.3"),
    ] {
        setup.create_view("base", name, ip);
    }
    setup.create("base", "plain", "10.0.0.4");
    let guards = [
        MountGuard(merged(&setup, "live")),
        MountGuard(merged(&setup, "dead")),
    ];
    setup.run_ok(&["mount", "live"]);
    setup.run_ok(&["mount", "dead"]);
    fs::write(merged(&setup, "live").join("new-file"), vec![7u8; 100_000]).unwrap();
    let pid = server_pid(&setup, "dead");
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("the killed server to die", || !is_alive(pid));
    (setup, guards)
}

#[test]
fn status_reports_each_kind_of_vserver() {
    if !require_root("status_reports_each_kind_of_vserver") {
        return;
    }
    let (setup, _guards) = four_vservers();
    let live_pid = server_pid(&setup, "live");
    let list = status_json(&setup, &[]);
    assert_eq!(list.len(), 4, "{list:#?}");
    let canonical = |p: PathBuf| json!(p.canonicalize().unwrap());

    let live = by_name(&list, "live");
    assert_eq!(live["kind"], "view");
    assert_eq!(live["skel"], "base");
    assert_eq!(live["mounted"], true);
    assert_eq!(live["mountpoint"], canonical(merged(&setup, "live")));
    assert_eq!(live["served_by"], "lone");
    assert_eq!(live["pid"], live_pid);
    assert_eq!(live["stale"], false);
    assert_eq!(live["error"], Value::Null);
    let live_upper = disk_usage(&[&upper(&setup, "live")]);
    assert!(live_upper >= 100_000, "{live_upper}");
    assert_eq!(live["upper_bytes"], live_upper);

    let idle = by_name(&list, "idle");
    assert_eq!(idle["kind"], "view");
    assert_eq!(idle["mounted"], false);
    assert_eq!(idle["mountpoint"], Value::Null);
    assert_eq!(idle["served_by"], Value::Null);
    assert_eq!(idle["pid"], Value::Null);
    assert_eq!(idle["stale"], false);
    assert_eq!(idle["upper_bytes"], disk_usage(&[&upper(&setup, "idle")]));
    assert_eq!(idle["error"], Value::Null);

    let dead = by_name(&list, "dead");
    assert_eq!(dead["kind"], "view");
    assert_eq!(dead["mounted"], true);
    assert_eq!(dead["mountpoint"], json!(merged(&setup, "dead")));
    assert_eq!(dead["served_by"], Value::Null);
    assert_eq!(dead["pid"], Value::Null);
    assert_eq!(dead["stale"], true);
    assert_eq!(dead["error"], Value::Null);

    let plain = by_name(&list, "plain");
    assert_eq!(plain["kind"], "tree");
    assert_eq!(plain["skel"], "base");
    for field in [
        "mounted",
        "mountpoint",
        "served_by",
        "pid",
        "stale",
        "upper_bytes",
    ] {
        assert_eq!(plain[field], Value::Null, "{field}: {plain}");
    }

    // Named ones only, in the order given.
    let named = status_json(&setup, &["plain", "idle"]);
    let names: Vec<&Value> = named.iter().map(|v| &v["name"]).collect();
    assert_eq!(names, [&json!("plain"), &json!("idle")]);

    // Text: a header and one line per vserver, in aligned columns.
    let text = setup.run_ok(&["status"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    let kind_at = lines[0].find("KIND").unwrap();
    for (line, state) in [
        ("live", "mounted"),
        ("idle", "unmounted"),
        ("dead", "stale"),
        ("plain", "-"),
    ] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{line} ")))
            .unwrap_or_else(|| panic!("no {line} in {text}"));
        assert!(
            row[kind_at..].starts_with("view") || row[kind_at..].starts_with("tree"),
            "{text}"
        );
        let state_at = lines[0].find("STATE").unwrap();
        assert!(row[state_at..].starts_with(state), "{line}: {text}");
    }
    assert!(text.contains(&format!("lone {live_pid}")), "{text}");

    // `vskel unmount --lazy` clears the stale mount: then it is unmounted.
    setup.run_ok(&["unmount", "--lazy", "dead"]);
    let dead = status_json(&setup, &["dead"]);
    assert_eq!(dead[0]["mounted"], false);
    assert_eq!(dead[0]["stale"], false);
}

#[test]
fn status_of_an_unknown_name_is_a_usage_error() {
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create("base", "plain", "10.0.0.4");
    for args in [
        &["status", "nosuch"][..],
        &["status", "plain", "nosuch"],
        &["status", "../x"],
    ] {
        let out = setup.vskel().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(USAGE), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?}: says why");
    }
}

/// The upper layer's size counts a hard-linked file once and never
/// follows a symlink (here: one to a big file outside the layer).
#[test]
fn upper_size_counts_links_once_and_follows_no_symlink() {
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create_view("base", "idle", "10.0.0.2");
    let dir = upper(&setup, "idle");
    let outside = setup.dir.path().join("big-outside");
    fs::write(&outside, vec![1u8; 4 << 20]).unwrap();
    fs::create_dir_all(dir.join("etc/deep")).unwrap();
    fs::write(dir.join("etc/deep/data"), vec![2u8; 1 << 20]).unwrap();
    fs::hard_link(dir.join("etc/deep/data"), dir.join("etc/data-again")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("etc/link")).unwrap();
    std::os::unix::fs::symlink(setup.dir.path(), dir.join("dirlink")).unwrap();
    let bytes = status_json(&setup, &["idle"])[0]["upper_bytes"]
        .as_u64()
        .expect("a size");
    assert_eq!(bytes, disk_usage(&[Path::new(&dir)]));
    assert!((1 << 20..2 << 20).contains(&bytes), "{bytes}");
}
