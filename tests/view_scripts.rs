//! A view's post-create scripts run against the view, mounted for them at
//! creation: what they write is in its upper layer, so the view shows it
//! and every later sync keeps it; they run once (not again at the first
//! sync), and the view is unmounted again afterwards.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::mount::is_mounted;
use common::{MountGuard, Setup, require_root};
use serde_json::Value;

#[test]
fn a_views_post_create_scripts_run_in_the_view() {
    if !require_root("a_views_post_create_scripts_run_in_the_view") {
        return;
    }
    let setup = Setup::new("");
    let scripts = setup.defaults.join("scripts");
    fs::create_dir_all(&scripts).unwrap();
    let runs = setup.dir.path().join("runs");
    // Sets a "password" in a file of the skel's static part and adds one.
    let script = format!(
        "#!/bin/sh\nset -e\necho \"$1\" >> {}\n\
         echo 'root:set-by-script' > \"$VS_ROOT/etc/shadow-marker\"\n\
         echo '10.9.9.9 added-by-script' >> \"$VS_ROOT/etc/hosts\"\n",
        runs.display()
    );
    fs::write(scripts.join("10-password"), script).unwrap();
    fs::set_permissions(
        scripts.join("10-password"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    setup.build_example_skel("base");
    let view = setup.root.join(".views/web1");
    let merged = view.join("merged");
    let _guard = MountGuard(merged.clone());
    let out = setup
        .vskel()
        .args([
            "create-vs",
            "--view",
            "base",
            "web1",
            "web1.example.org",
            "10.1.2.3",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["scripts"], serde_json::json!(["10-password"]));
    assert!(created.get("pending_scripts").is_none(), "{created}");
    assert_eq!(fs::read_to_string(&runs).unwrap(), "web1\n");
    // Unmounted again; the writes are in the upper layer.
    assert!(!is_mounted(&merged));
    let upper = view.join("upper");
    assert_eq!(
        fs::read_to_string(upper.join("etc/shadow-marker")).unwrap(),
        "root:set-by-script\n"
    );
    let hosts = fs::read_to_string(upper.join("etc/hosts")).unwrap();
    assert!(
        hosts.contains("10.1.2.3") && hosts.contains("added-by-script"),
        "{hosts}"
    );
    let record = fs::read_to_string(setup.root.join(".vskel/vservers/web1.toml")).unwrap();
    assert!(!record.contains("post_create_pending = true"), "{record}");

    // The view shows them; a later change in the view keeps them.
    setup.vskel().args(["mount", "web1"]).assert().success();
    assert!(
        fs::read_to_string(merged.join("etc/hosts"))
            .unwrap()
            .contains("added-by-script")
    );
    fs::write(merged.join("etc/motd"), "changed in the view\n").unwrap();
    setup.vskel().args(["unmount", "web1"]).assert().success();
    // The first sync writes them into the tree and runs nothing again.
    setup.vskel().args(["sync", "web1"]).assert().success();
    let tree = setup.root.join("web1");
    assert_eq!(
        fs::read_to_string(tree.join("etc/shadow-marker")).unwrap(),
        "root:set-by-script\n"
    );
    assert!(
        fs::read_to_string(tree.join("etc/hosts"))
            .unwrap()
            .contains("added-by-script")
    );
    assert_eq!(
        fs::read_to_string(tree.join("etc/motd")).unwrap(),
        "changed in the view\n"
    );
    assert_eq!(fs::read_to_string(&runs).unwrap(), "web1\n");
}
