//! The guards of everyday use (issue 15, item 7): without root a command
//! says so first; with no config file at all a warning names the defaults
//! in use; `create-vs` refuses an IP another vserver has unless
//! `--shared-ip`; `remove-vs` of a directory no vserver is registered for
//! refuses unless `--force`; `list` shows each view's mount state and
//! each vserver's skel generation.

mod common;

use std::path::Path;
use std::process::Command;

use common::{MountGuard, Setup, require_root};
use serde_json::Value;

#[test]
fn without_root_a_command_says_it_needs_root() {
    if !require_root("without_root_a_command_says_it_needs_root") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    for args in [
        &["list"][..],
        &["create-vs", "base", "w", "w.example.org", "10.0.0.9"],
    ] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_vskel"))
            .arg("--config")
            .arg(&setup.config)
            .args(args)
            .env("VSKEL_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("must run as root"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("no skel"),
            "the first word is about root: {stderr}"
        );
    }
    assert!(!setup.root.join("w").exists());
}

#[test]
fn with_no_config_file_a_warning_names_the_defaults() {
    if !require_root("with_no_config_file_a_warning_names_the_defaults") {
        return;
    }
    // Only where running with the defaults touches nothing of the host.
    let default_config = Path::new(vskel::config::DEFAULT_CONFIG_PATH);
    let default_root = Path::new(vskel::config::DEFAULT_ROOT);
    if default_config.exists() || default_root.exists() {
        eprintln!(
            "SKIPPED with_no_config_file_a_warning_names_the_defaults: this host has {} or {}",
            default_config.display(),
            default_root.display()
        );
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vskel"))
        .arg("list")
        .env_remove("VSKEL_CONFIG")
        .env("VSKEL_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no configuration file") && stderr.contains("root /vservers"),
        "{stderr}"
    );
    assert!(!default_root.exists(), "the defaults' root was not made");
}

#[test]
fn an_ip_another_vserver_has_is_refused_unless_shared() {
    if !require_root("an_ip_another_vserver_has_is_refused_unless_shared") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create("base", "web1", "10.0.0.1");
    let out = setup
        .vskel()
        .args([
            "create-vs",
            "--view",
            "base",
            "web2",
            "web2.example.org",
            "10.0.0.1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("10.0.0.1") && stderr.contains("web1") && stderr.contains("--shared-ip"),
        "{stderr}"
    );
    assert!(!setup.root.join(".views/web2").exists(), "nothing written");
    // The same address spelt differently is the same address.
    let out = setup
        .vskel()
        .args(["create-vs", "base", "web3", "web3.example.org", "10.0.0.01"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    setup
        .vskel()
        .args([
            "create-vs",
            "--shared-ip",
            "base",
            "web2",
            "web2.example.org",
            "10.0.0.1",
        ])
        .assert()
        .success();
}

#[test]
fn remove_vs_of_an_unregistered_directory_needs_force() {
    if !require_root("remove_vs_of_an_unregistered_directory_needs_force") {
        return;
    }
    let setup = Setup::new("");
    let tree = setup.root.join("legacy");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "legacy\n").unwrap();
    let out = setup
        .vskel()
        .args(["remove-vs", "legacy"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{out:?}"
    );
    assert!(tree.join("etc/hostname").exists());
    setup
        .vskel()
        .args(["remove-vs", "--force", "legacy"])
        .assert()
        .success();
    assert!(!tree.exists());
}

#[test]
fn list_shows_mount_state_and_generation() {
    if !require_root("list_shows_mount_state_and_generation") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create("base", "tree1", "10.0.0.1");
    let view = setup.create_view("base", "view1", "10.0.0.2");
    let merged = view.join("merged");
    let guard = MountGuard(merged.clone());
    let listed = |setup: &Setup| -> Vec<Value> {
        let out = setup.run_ok(&["list", "--format", "json"]);
        let doc: Value = serde_json::from_str(&out).unwrap();
        doc["vservers"].as_array().unwrap().clone()
    };
    let find = |all: &[Value], name: &str| all.iter().find(|v| v["name"] == name).cloned().unwrap();
    let all = listed(&setup);
    assert_eq!(find(&all, "tree1")["generation"], 1);
    assert_eq!(
        find(&all, "tree1").get("mounted"),
        None,
        "a tree has no mount"
    );
    assert_eq!(find(&all, "view1")["mounted"], false);
    setup.run_ok(&["mount", "view1"]);
    let all = listed(&setup);
    assert_eq!(find(&all, "view1")["mounted"], true);
    assert_eq!(find(&all, "view1")["stale"], false);
    let text = setup.run_ok(&["list"]);
    let line = text.lines().find(|l| l.starts_with("view1")).unwrap();
    assert!(line.contains(" mounted ") && line.contains(" 1 "), "{text}");
    // Its server killed: stale.
    let pid: u32 = std::fs::read_to_string(view.join("mount.pid"))
        .unwrap()
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the pid file's pid");
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let start = std::time::Instant::now();
    loop {
        let all = listed(&setup);
        if find(&all, "view1")["stale"] == true {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{all:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(setup.run_ok(&["list"]).contains(" stale "));
    drop(guard);
}
