//! Every `--format json` document, checked against its description: each
//! command runs on a real setup (the built-in example skel, a tree vserver
//! and a view, the view mounted where the command needs it, a second skel
//! generation made through merge-skel / split-skel) and its stdout must be
//! valid against `docs/json/<command>.schema.json` (checked with the
//! `jsonschema` crate), start with `"version": 1`, and be refused by the
//! schema once any key of any object in it is renamed: no key goes
//! undocumented, and a renamed one is caught. Every key is snake_case.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{MountGuard, Setup, require_root};
use serde_json::Value;

/// `docs/json/` in the checkout.
fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json")
}

/// The schema of `command`'s document, itself checked against the JSON
/// Schema meta-schema.
fn schema(command: &str) -> Value {
    let path = schema_dir().join(format!("{command}.schema.json"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("{} is not a valid JSON Schema: {e}", path.display());
    }
    schema
}

/// Collects each document checked, and what was wrong with it.
#[derive(Default)]
struct Checks {
    /// The schemas used.
    used: BTreeSet<String>,
    problems: Vec<String>,
}

impl Checks {
    /// Check `stdout` of `vskel ARGS` against the schema of `command`.
    fn check(&mut self, command: &str, args: &[&str], stdout: &str) -> Value {
        self.used.insert(command.to_string());
        let doc: Value = match serde_json::from_str(stdout) {
            Ok(doc) => doc,
            Err(e) => {
                self.problems
                    .push(format!("vskel {args:?}: not JSON ({e}): {stdout}"));
                return Value::Null;
            }
        };
        eprintln!("vskel {args:?}:\n{doc:#}");
        // serde_json's maps sort their keys: the order is the text's.
        if !stdout.starts_with("{\n  \"version\": 1,\n") {
            self.problems.push(format!(
                "vskel {args:?}: the first key is not \"version\": 1: {doc}"
            ));
        }
        let validator = jsonschema::validator_for(&schema(command))
            .unwrap_or_else(|e| panic!("{command}.schema.json: {e}"));
        for error in validator.iter_errors(&doc) {
            self.problems.push(format!(
                "vskel {args:?} against {command}.schema.json: {error} at {}",
                error.instance_path()
            ));
        }
        // One naming style: every key is snake_case.
        walk(&doc, "", &mut |pointer, value| {
            for key in value.as_object().into_iter().flat_map(|o| o.keys()) {
                if !is_snake_case(key) {
                    self.problems.push(format!(
                        "vskel {args:?}: the key {pointer}/{key} is not snake_case"
                    ));
                }
            }
        });
        // Each key of each object, renamed, must be refused.
        for (pointer, renamed) in renamings(&doc) {
            if validator.is_valid(&renamed) {
                self.problems.push(format!(
                    "vskel {args:?}: {command}.schema.json accepts the key {pointer} renamed"
                ));
            }
        }
        if !validator.is_valid(&without_version(&doc)) {
            return doc;
        }
        self.problems.push(format!(
            "vskel {args:?}: {command}.schema.json accepts the document without \"version\""
        ));
        doc
    }

    /// `vskel ARGS --format json`, which must succeed: checked as `command`.
    fn run(&mut self, setup: &Setup, command: &str, args: &[&str]) -> Value {
        let out = json_output(setup, args);
        if !out.status.success() {
            self.problems.push(format!(
                "vskel {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        self.check(command, args, &String::from_utf8_lossy(&out.stdout))
    }

    /// Like [`Checks::run`] for a command that exits 1 (it reports problems).
    fn run_failing(&mut self, setup: &Setup, command: &str, args: &[&str]) -> Value {
        let out = json_output(setup, args);
        if out.status.code() != Some(1) {
            self.problems.push(format!(
                "vskel {args:?}: exit status {:?}, not 1: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        self.check(command, args, &String::from_utf8_lossy(&out.stdout))
    }
}

fn json_output(setup: &Setup, args: &[&str]) -> std::process::Output {
    setup
        .vskel()
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap()
}

/// Every copy of `doc` with one key of one object renamed (`KEY_renamed`),
/// with where that key is.
fn renamings(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    walk(doc, "", &mut |pointer, _| {
        let Some(object) = doc.pointer(pointer).and_then(Value::as_object) else {
            return;
        };
        for key in object.keys() {
            let mut copy = doc.clone();
            let target = copy.pointer_mut(pointer).unwrap().as_object_mut().unwrap();
            let value = target.remove(key).unwrap();
            target.insert(format!("{key}_renamed"), value);
            out.push((format!("{pointer}/{key}"), copy));
        }
    });
    out
}

/// Call `f` with the JSON pointer of `value` and of everything in it.
fn walk(value: &Value, pointer: &str, f: &mut impl FnMut(&str, &Value)) {
    f(pointer, value);
    match value {
        Value::Object(o) => {
            for (k, v) in o {
                walk(
                    v,
                    &format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")),
                    f,
                );
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                walk(v, &format!("{pointer}/{i}"), f);
            }
        }
        _ => {}
    }
}

/// `lower_case_with_underscores`, as every key of every document is.
fn is_snake_case(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn without_version(doc: &Value) -> Value {
    let mut copy = doc.clone();
    if let Some(o) = copy.as_object_mut() {
        o.remove("version");
    }
    copy
}

/// A copy renamed over `rel` in `root`, as an editor makes one (`cp -p`:
/// no xattrs).
fn copy_over(root: &Path, rel: &str) {
    copy_over_path(&root.join(rel));
}

fn copy_over_path(f: &Path) {
    let tmp = f.with_extension("tmp");
    let cp = Command::new("cp").arg("-p").arg(f).arg(&tmp).status();
    assert!(cp.unwrap().success());
    fs::rename(&tmp, f).unwrap();
}

#[test]
fn every_json_document_matches_its_schema() {
    if !require_root("every_json_document_matches_its_schema") {
        return;
    }
    let setup = Setup::new("");
    let mut c = Checks::default();
    let example = setup.example_source();
    // A name that is not UTF-8 (a vserver's root may make any): every
    // document that lists it must still encode.
    let odd = OsStr::from_bytes(b"odd-\xff-name");
    fs::write(example.join("usr/bin").join(odd), "odd\n").unwrap();
    let example = example.to_str().unwrap();

    c.run(
        &setup,
        "build-skel",
        &["build-skel", "base", "--from", example],
    );
    c.run(
        &setup,
        "create-vs",
        &["create-vs", "base", "t1", "t1.example.org", "10.0.0.1"],
    );
    let created = c.run(
        &setup,
        "create-vs",
        &[
            "create-vs",
            "--view",
            "base",
            "v1",
            "v1.example.org",
            "10.0.0.2",
        ],
    );
    assert_eq!(created["kind"], "view", "{created}");
    let listed = c.run(&setup, "list", &["list"]);
    assert_eq!(listed["vservers"][0]["name"], "t1", "{listed}");
    c.run(&setup, "list-skels", &["list", "--skels"]);

    let merged = setup.root.join(".views/v1/merged");
    let guard = MountGuard(merged.clone());
    c.run(&setup, "mount", &["mount", "v1"]);
    fs::write(merged.join("etc/motd"), "changed in the view\n").unwrap();
    fs::write(merged.join("new-file"), "new\n").unwrap();
    fs::remove_file(merged.join("etc/fstab")).unwrap();
    fs::write(setup.root.join("t1/etc/motd"), "changed in the tree\n").unwrap();
    c.run(&setup, "status", &["status"]);
    c.run(&setup, "diff", &["diff", "v1"]);
    c.run(&setup, "diff", &["diff", "t1"]);
    c.run(&setup, "diff", &["diff", "--stat", "v1"]);
    c.run(&setup, "du", &["du"]);
    c.run(&setup, "du", &["du", "v1"]);
    c.run(&setup, "sync", &["sync", "--dry-run", "v1"]);
    c.run(&setup, "sync", &["sync", "v1"]);
    fs::write(merged.join("etc/motd"), "changed again\n").unwrap();
    c.run(&setup, "sync", &["sync", "--dry-run", "v1"]);
    c.run(&setup, "sync", &["sync", "v1"]);
    c.run(&setup, "unmount", &["unmount", "v1"]);
    guard.unmount().unwrap();

    // A broken-off copy (mended) and a replaced file (remains).
    let t1 = setup.root.join("t1");
    copy_over(&t1, "usr/bin/tool");
    copy_over(&t1, "usr/bin/ping");
    copy_over_path(&t1.join("usr/bin").join(odd));
    let verified = c.run_failing(&setup, "verify", &["verify", "t1"]);
    assert!(
        verified["vservers"][0]["findings"]
            .as_array()
            .is_some_and(|f| f.len() == 3),
        "{verified}"
    );
    c.run_failing(&setup, "verify", &["verify", "--all"]);
    c.run_failing(&setup, "repair", &["repair", "t1"]);
    c.run(&setup, "unify", &["unify", "--dry-run", "t1"]);
    c.run(&setup, "detach", &["detach", "t1", "/usr/bin/tool"]);
    c.run(
        &setup,
        "revert",
        &["revert", "t1", "/usr/bin/tool", "/etc/motd"],
    );

    // A second generation: upgrade-vs has decisions to plan.
    c.run(&setup, "merge-skel", &["merge-skel", "base"]);
    let temp = setup.root.join("tmp_skel_base");
    fs::write(temp.join("usr/bin/added-by-v2"), "v2\n").unwrap();
    fs::write(temp.join("etc/motd"), "motd v2\n").unwrap();
    fs::write(temp.join("usr/bin").join(odd), "odd v2\n").unwrap();
    c.run(&setup, "split-skel", &["split-skel", "base"]);
    let planned = c.run(&setup, "upgrade-vs", &["upgrade-vs", "--plan", "--all"]);
    assert_eq!(
        planned["vservers"].as_array().map(Vec::len),
        Some(2),
        "{planned}\n{}",
        c.problems.join("\n")
    );
    c.run(&setup, "upgrade-vs", &["upgrade-vs", "t1"]);
    // Back to generation 1's parts, as generation 3, and t1 with them.
    c.run(&setup, "rollback-skel", &["rollback-skel", "base"]);
    c.run(&setup, "upgrade-vs", &["upgrade-vs", "t1"]);

    // A mounted view is unmounted first by materialize.
    let guard = MountGuard(merged.clone());
    c.run(&setup, "mount", &["mount", "v1"]);
    c.run(&setup, "materialize", &["materialize", "v1"]);
    guard.unmount().unwrap();

    // OCI images: the skel, and t1 moved to a second skel and vserver.
    let image = setup.dir.path().join("image");
    let skel_ref = format!("oci:{}:skel", image.display());
    let vs_ref = format!("oci:{}:t1", image.display());
    c.run(&setup, "export-skel", &["export-skel", "base", &skel_ref]);
    c.run(&setup, "import-skel", &["import-skel", &skel_ref, "base2"]);
    c.run(&setup, "export-vs", &["export-vs", "t1", &vs_ref]);
    c.run(
        &setup,
        "import-vs",
        &["import-vs", &vs_ref, "t2", "--ip", "10.0.0.42"],
    );
    c.run(&setup, "remove-vs", &["remove-vs", "t2"]);

    c.run(&setup, "remove-vs", &["remove-vs", "t1"]);
    c.run(&setup, "remove-vs", &["remove-vs", "v1"]);
    c.run(&setup, "remove-skel", &["remove-skel", "--force", "base"]);

    // overlay: fuse-overlayfs' command line.
    let dir = setup.dir.path().join("overlay");
    for d in ["lower", "upper", "work", "mnt"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        dir.join("lower").display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let mnt = dir.join("mnt");
    let guard = MountGuard(mnt.clone());
    c.run(
        &setup,
        "overlay",
        &["overlay", "-o", &options, mnt.to_str().unwrap()],
    );
    c.run(&setup, "unmount", &["unmount", mnt.to_str().unwrap()]);
    guard.unmount().unwrap();

    // Every schema in docs/json/ was used.
    let files: BTreeSet<String> = fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".schema.json").map(str::to_string))
        .collect();
    assert_eq!(files, c.used, "schemas in docs/json/ against those checked");
    assert!(c.problems.is_empty(), "{}", c.problems.join("\n"));
}
