//! Bad input writes nothing (DESIGN.md section 8): bad skel and vserver
//! names, FQDNs and IPs, an existing vserver or skel, a missing skel, a
//! missing argument without a terminal, and bad config files each give the
//! right exit code (2 for usage errors, 1 for operational failures), a
//! message naming what was wrong, and leave every entry below the setup
//! directory exactly as it was: no lock file, no staging directory, no
//! changed time stamp.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{Entry, Setup, snapshot};

/// Exit code of an operational failure.
const FAILURE: i32 = 1;
/// Exit code of a usage error.
const USAGE: i32 = 2;

/// A 65-byte name: one byte over the limit.
fn name65() -> String {
    "a".repeat(65)
}

/// A setup with skel "base" built from the example tree and vserver "web1"
/// created from it.
fn populated() -> Setup {
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create("base", "web1", "10.0.0.2");
    setup
}

/// `vskel` with the test environment of `Setup::vskel` but without any
/// `--config`, so a case can name its own config file or none at all.
fn bare_vskel() -> Command {
    let mut cmd = Command::cargo_bin("vskel").expect("vskel binary");
    cmd.env("CI", "true")
        .env("VSKEL_LOG", "warn")
        .env_remove("VSKEL_CONFIG");
    cmd
}

/// What differs between two snapshots, one line per path.
fn differences(before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => out.push(format!("removed {}", path.display())),
            Some(new) if new != old => {
                out.push(format!("changed {}: {old:?} -> {new:?}", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("added {}", path.display()));
    }
    out
}

/// One bad command and what it must do.
struct Case {
    /// Shown when the case fails.
    label: String,
    /// The command, ready to run.
    cmd: Command,
    /// The exit code it must give.
    code: i32,
    /// Strings stderr must contain.
    stderr_has: Vec<String>,
}

/// Run `case` with `dir` as the tree that must not change; returns what went
/// wrong (nothing when the case passed).
fn check(dir: &Path, mut case: Case) -> Vec<String> {
    let before = snapshot(dir);
    let out = case.cmd.output().expect("run vskel");
    let after = snapshot(dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let label = &case.label;
    let mut failures = Vec::new();
    if out.status.code() != Some(case.code) {
        failures.push(format!(
            "{label}: exit {:?}, want {}; stderr: {stderr}",
            out.status.code(),
            case.code
        ));
    }
    for part in &case.stderr_has {
        if !stderr.contains(part.as_str()) {
            failures.push(format!("{label}: stderr lacks {part:?}: {stderr}"));
        }
    }
    if !out.stdout.is_empty() {
        failures.push(format!(
            "{label}: printed a result on stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    for diff in differences(&before, &after) {
        failures.push(format!("{label}: wrote something: {diff}"));
    }
    failures
}

/// Placeholder in a case's arguments and expected stderr for the setup
/// directory.
const DIR: &str = "{dir}";

/// Run every case (label, arguments, exit code, strings stderr must
/// contain) against a fresh populated setup; fail listing every case that
/// went wrong.
fn run_cases(cases: Vec<(&str, Vec<String>, i32, Vec<String>)>) {
    let mut failures = Vec::new();
    for (label, args, code, stderr_has) in cases {
        let setup = populated();
        let dir = setup.dir.path().display().to_string();
        let fill = |items: Vec<String>| -> Vec<String> {
            items.into_iter().map(|s| s.replace(DIR, &dir)).collect()
        };
        let (args, stderr_has) = (fill(args), fill(stderr_has));
        let mut cmd = setup.vskel();
        cmd.args(&args);
        failures.extend(check(
            setup.dir.path(),
            Case {
                label: format!("{label} (vskel {args:?})"),
                cmd,
                code,
                stderr_has,
            },
        ));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `create-vs base NAME FQDN IP`, with `--` so a name starting with '-' is
/// a positional argument.
fn create_args(name: &str, fqdn: &str, ip: &str) -> Vec<String> {
    strings(&["create-vs", "--", "base", name, fqdn, ip])
}

#[test]
fn create_vs_rejects_bad_names() {
    let long = name65();
    let names: &[(&str, &str)] = &[
        ("../x", "only letters"),
        ("a/b", "only letters"),
        (".hidden", "must not start with '.'"),
        ("-x", "must not start with '-'"),
        (&long, "is 65 bytes long; the limit is 64"),
        ("", "must not be empty"),
    ];
    let cases = names
        .iter()
        .map(|(name, why)| {
            (
                "bad vserver name",
                create_args(name, "x.example.org", "10.0.0.9"),
                USAGE,
                vec![format!("invalid vserver name {name:?}"), (*why).to_owned()],
            )
        })
        .collect();
    run_cases(cases);
}

#[test]
fn create_vs_rejects_an_option_like_name_without_dashes() {
    // Without `--`, "-x" is an unknown option to the argument parser.
    run_cases(vec![(
        "name -x as an option",
        strings(&["create-vs", "base", "-x", "x.example.org", "10.0.0.9"]),
        USAGE,
        strings(&["'-x'"]),
    )]);
}

#[test]
fn create_vs_rejects_bad_fqdns() {
    let fqdns: &[(&str, &str)] = &[
        ("bad_name.example.org", r#"label "bad_name""#),
        ("bang!.example.org", r#"label "bang!""#),
        ("a..b", "empty label"),
        ("1.2.3.4", "is an IP address, not a host name"),
        ("10.0.0.9", "is an IP address"),
        ("0x7f.1", "is an IP address"),
        ("web1.example.123", r#"the last label "123" is all digits"#),
    ];
    let cases = fqdns
        .iter()
        .map(|(fqdn, why)| {
            (
                "bad FQDN",
                create_args("x", fqdn, "10.0.0.9"),
                USAGE,
                vec![format!("invalid FQDN {fqdn:?}"), (*why).to_owned()],
            )
        })
        .collect();
    run_cases(cases);
}

#[test]
fn create_vs_rejects_bad_ips() {
    let cases = ["300.1.2.3", "1.2.3", "not-an-ip"]
        .iter()
        .map(|ip| {
            (
                "bad IP",
                create_args("x", "x.example.org", ip),
                USAGE,
                vec![format!("invalid IP address {ip:?}")],
            )
        })
        .collect();
    run_cases(cases);
}

#[test]
fn create_vs_rejects_addresses_no_vserver_can_have() {
    let ips: &[(&str, &str)] = &[
        ("0.0.0.0", "is the unspecified address"),
        ("0.1.2.3", "0.0.0.0/8"),
        ("255.255.255.255", "is the broadcast address"),
        ("240.0.0.1", "reserved 240.0.0.0/4"),
        ("224.0.0.1", "is a multicast address"),
        ("239.1.2.3", "is a multicast address"),
        ("127.0.0.1", "is a loopback address"),
        ("127.8.9.10", "--allow-loopback"),
        ("::", "is the unspecified address"),
        ("::1", "is a loopback address"),
        ("ff02::1", "is a multicast address"),
        ("::ffff:127.0.0.1", "is a loopback address"),
        ("::ffff:255.255.255.255", "is the broadcast address"),
    ];
    let mut cases: Vec<_> = ips
        .iter()
        .map(|(ip, why)| {
            (
                "IP no vserver can have",
                create_args("x", "x.example.org", ip),
                USAGE,
                vec![format!("invalid IP address {ip:?}"), (*why).to_owned()],
            )
        })
        .collect();
    // --allow-loopback allows loopback, nothing else.
    for ip in ["0.0.0.0", "255.255.255.255", "ff02::1"] {
        cases.push((
            "IP no vserver can have, with --allow-loopback",
            strings(&[
                "create-vs",
                "--allow-loopback",
                "base",
                "x",
                "x.example.org",
                ip,
            ]),
            USAGE,
            vec![format!("invalid IP address {ip:?}")],
        ));
    }
    run_cases(cases);
}

#[test]
fn a_loopback_address_needs_allow_loopback_and_is_warned_about() {
    let setup = populated();
    for (name, ip) in [("lo4", "127.0.0.2"), ("lo6", "::1")] {
        setup
            .vskel()
            .args([
                "create-vs",
                "--allow-loopback",
                "base",
                name,
                "lo.example.org",
                ip,
            ])
            .assert()
            .success()
            .stderr(predicates::str::contains(format!(
                "{ip} is a loopback address"
            )));
        assert!(setup.root.join(name).join("proc").is_dir());
    }
}

#[test]
fn create_vs_rejects_existing_vserver_and_missing_skel() {
    run_cases(vec![
        (
            "existing vserver",
            create_args("web1", "web1.example.org", "10.0.0.9"),
            FAILURE,
            strings(&[r#""web1""#, "exists already"]),
        ),
        (
            "missing skel",
            strings(&["create-vs", "nosuch", "x", "x.example.org", "10.0.0.9"]),
            USAGE,
            strings(&[r#"no skel named "nosuch""#]),
        ),
        (
            "bad skel name",
            strings(&["create-vs", "../x", "x", "x.example.org", "10.0.0.9"]),
            USAGE,
            strings(&[r#"invalid skel name "../x""#]),
        ),
    ]);
}

#[test]
fn create_vs_without_a_terminal_does_not_ask() {
    let cases = [
        (
            vec!["create-vs", "base", "x", "x.example.org"],
            "missing IP",
        ),
        (vec!["create-vs", "base", "x"], "missing FQDN"),
        (vec!["create-vs", "base"], "missing NAME"),
        (vec!["create-vs"], "missing SKEL"),
    ];
    let mut failures = Vec::new();
    for (args, want) in cases {
        // Once with stdin closed, once with an answer waiting on a pipe: a
        // pipe is not a terminal, so it is not read either.
        for stdin in [None, Some("10.0.0.9\n")] {
            let setup = populated();
            let mut cmd = setup.vskel();
            cmd.args(&args);
            if let Some(text) = stdin {
                cmd.write_stdin(text);
            }
            failures.extend(check(
                setup.dir.path(),
                Case {
                    label: format!("missing argument (vskel {args:?}, stdin {stdin:?})"),
                    cmd,
                    code: USAGE,
                    stderr_has: strings(&[want, "no terminal"]),
                },
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn oci_commands_reject_bad_input() {
    run_cases(vec![
        (
            "import-skel: bad skel name",
            strings(&["import-skel", "oci:{dir}/none", "../x"]),
            USAGE,
            strings(&[r#"invalid skel name "../x""#]),
        ),
        (
            "import-skel: another transport",
            strings(&["import-skel", "docker://example.org/x", "new"]),
            USAGE,
            strings(&["only OCI image layouts"]),
        ),
        (
            "import-skel: no such layout",
            strings(&["import-skel", "oci:{dir}/none", "new"]),
            USAGE,
            strings(&["{dir}/none does not exist"]),
        ),
        (
            "import-skel: a bad tag",
            strings(&["import-skel", "oci:{dir}/none:-x", "new"]),
            USAGE,
            strings(&["not a valid tag"]),
        ),
        (
            "export-skel: no such skel",
            strings(&["export-skel", "nosuch", "oci:{dir}/image"]),
            USAGE,
            strings(&[r#"no skel named "nosuch""#]),
        ),
        (
            "export-skel: another transport",
            strings(&["export-skel", "base", "docker://example.org/x"]),
            USAGE,
            strings(&["only OCI image layouts"]),
        ),
        (
            "export-vs: no such vserver",
            strings(&["export-vs", "nosuch", "oci:{dir}/image"]),
            USAGE,
            strings(&[r#"no vserver named "nosuch""#]),
        ),
        (
            "import-vs: the name is taken",
            strings(&["import-vs", "oci:{dir}/none", "web1"]),
            USAGE,
            strings(&[r#""web1" exists already"#]),
        ),
        (
            "import-vs: no such layout",
            strings(&["import-vs", "oci:{dir}/none", "web2"]),
            USAGE,
            strings(&["{dir}/none does not exist"]),
        ),
    ]);
}

#[test]
fn build_skel_rejects_bad_input() {
    run_cases(vec![
        (
            "bad skel name",
            strings(&["build-skel", "../x", "--from", "/nonexistent"]),
            USAGE,
            strings(&[r#"invalid skel name "../x""#]),
        ),
        (
            "hidden skel name",
            strings(&["build-skel", ".hidden", "--from", "/nonexistent"]),
            USAGE,
            strings(&[r#"invalid skel name ".hidden""#]),
        ),
        (
            "existing skel",
            strings(&["build-skel", "base", "--from", "/nonexistent"]),
            FAILURE,
            strings(&[r#""base""#, "exists already"]),
        ),
        (
            "--from does not exist",
            strings(&["build-skel", "new", "--from", "{dir}/no-such-root"]),
            USAGE,
            strings(&["{dir}/no-such-root"]),
        ),
        (
            "--from is a file",
            strings(&["build-skel", "new", "--from", "{dir}/vskel.toml"]),
            USAGE,
            strings(&["{dir}/vskel.toml", "not a directory"]),
        ),
        (
            "build-skel without a name",
            strings(&["build-skel"]),
            USAGE,
            strings(&["NAME"]),
        ),
        (
            "--from is the vservers root",
            strings(&["build-skel", "new", "--from", "{dir}/vservers"]),
            USAGE,
            strings(&["{dir}/vservers", "inside the vservers root"]),
        ),
        (
            "--from is a vserver's tree",
            strings(&["build-skel", "new", "--from", "{dir}/vservers/web1"]),
            USAGE,
            strings(&["inside the vservers root"]),
        ),
        (
            "--from is inside a skel",
            strings(&[
                "build-skel",
                "new",
                "--from",
                "{dir}/vservers/.skel/base/local",
            ]),
            USAGE,
            strings(&["inside the vservers root"]),
        ),
        (
            "--from reaches the root through ..",
            strings(&[
                "build-skel",
                "new",
                "--from",
                "{dir}/etc-vskel/../vservers/web1/..",
            ]),
            USAGE,
            strings(&["inside the vservers root"]),
        ),
    ]);
}

#[test]
fn build_skel_from_a_directory_holding_the_root_leaves_it_out() {
    let setup = populated();
    setup.create_view("base", "view1", "10.0.0.3");
    let dir = setup.dir.path();
    fs::write(dir.join("site-file"), "copied\n").unwrap();
    setup
        .vskel()
        .args(["build-skel", "fromdir", "--from"])
        .arg(dir)
        .assert()
        .success();
    let skel = setup.root.join(".skel/fromdir");
    let mut found = Vec::new();
    for part in ["global", "local", "static"] {
        for (rel, _) in snapshot(&skel.join(part)) {
            let text = rel.to_string_lossy().into_owned();
            if [
                "vservers",
                "etc-vservers",
                ".skel",
                ".views",
                ".vskel",
                "web1",
                "view1",
            ]
            .iter()
            .any(|bad| text.split('/').any(|c| c == *bad))
            {
                found.push(format!("{part}/{text}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the skel holds vskel's own trees: {found:?}"
    );
    assert_eq!(
        fs::read_to_string(skel.join("local/site-file")).unwrap(),
        "copied\n",
        "the rest of the source is copied"
    );
}

#[test]
fn remove_vs_rejects_bad_input() {
    run_cases(vec![
        (
            "bad vserver name",
            strings(&["remove-vs", "../x"]),
            USAGE,
            strings(&[r#"invalid vserver name "../x""#]),
        ),
        (
            "slash in vserver name",
            strings(&["remove-vs", "a/b"]),
            USAGE,
            strings(&[r#"invalid vserver name "a/b""#]),
        ),
        (
            "no such vserver",
            strings(&["remove-vs", "nosuch"]),
            USAGE,
            strings(&[r#"no vserver named "nosuch""#]),
        ),
        (
            "the skel is not a vserver",
            strings(&["remove-vs", ".skel"]),
            USAGE,
            strings(&[r#"invalid vserver name ".skel""#]),
        ),
    ]);
}

#[test]
fn bad_config_files_are_rejected() {
    // (file name, line 4 of the file, strings stderr must contain besides
    // the file name and line)
    let configs: &[(&str, &str, &[&str])] = &[
        (
            "bad.toml",
            "colour = \"blue\"",
            &["`colour`", "unknown key"],
        ),
        (
            "protect.toml",
            "protect = \"sometimes\"",
            &["`protect`", r#"invalid value "sometimes""#],
        ),
        (
            "context.toml",
            "context_start = 1",
            &["`context_start`", "invalid context ID 1"],
        ),
    ];
    let commands: &[&[&str]] = &[
        &["list"],
        &["list", "--skels"],
        &["create-vs", "base", "x", "x.example.org", "10.0.0.9"],
        &["remove-vs", "web1"],
    ];
    let mut failures = Vec::new();
    for (file, line4, parts) in configs {
        for args in commands {
            let setup = populated();
            let bad = setup.dir.path().join(file);
            let valid = fs::read_to_string(&setup.config).expect("read config");
            let paths: String = valid.lines().take(3).map(|l| format!("{l}\n")).collect();
            assert_eq!(paths.lines().count(), 3, "the setup config has 3 path keys");
            fs::write(&bad, format!("{paths}{line4}\n")).expect("write config");
            let mut cmd = bare_vskel();
            cmd.arg("--config").arg(&bad).args(*args);
            let mut stderr_has = vec![format!("{}:4:", bad.display())];
            stderr_has.extend(parts.iter().map(|p| (*p).to_owned()));
            failures.extend(check(
                setup.dir.path(),
                Case {
                    label: format!("config {file} with {line4:?} (vskel {args:?})"),
                    cmd,
                    code: USAGE,
                    stderr_has,
                },
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn bad_config_paths_are_rejected() {
    // (label, key, value as TOML text, strings stderr must contain besides
    // the file, line and key); `{dir}` is the setup directory.
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "root is /",
            "root",
            r#""/""#,
            &["it is the root directory /"],
        ),
        (
            "root is /usr",
            "root",
            r#""/usr""#,
            &["/usr is a system directory"],
        ),
        (
            "root is /var/lib",
            "root",
            r#""/var/lib/""#,
            &["/var/lib is a system"],
        ),
        (
            "root is / by ..",
            "root",
            r#""{dir}/../../../../../../../../../../../../..""#,
            &["it is the root directory /"],
        ),
        (
            "root is / by a symlink",
            "root",
            r#""{dir}/slash""#,
            &["it is the root directory /"],
        ),
        (
            "root is /etc by a symlink",
            "root",
            r#""{dir}/slash/etc""#,
            &["/etc is a system directory"],
        ),
        (
            "NUL in root",
            "root",
            r#""{dir}/vs\u0000ervers""#,
            &["NUL byte"],
        ),
        ("NUL in etc", "etc", r#""{dir}/etc\u0000""#, &["NUL byte"]),
        ("NUL in defaults", "defaults", r#""\u0000""#, &["NUL byte"]),
    ];
    let commands: &[&[&str]] = &[
        &["list"],
        &["create-vs", "base", "x", "x.example.org", "10.0.0.9"],
        &["remove-vs", "nosuch"],
    ];
    let mut failures = Vec::new();
    for (label, key, value, parts) in cases {
        for args in commands {
            let setup = populated();
            let dir = setup.dir.path().display().to_string();
            std::os::unix::fs::symlink("/", setup.dir.path().join("slash")).unwrap();
            let bad = setup.dir.path().join("paths.toml");
            let valid = fs::read_to_string(&setup.config).expect("read config");
            // The setup's three path lines, with `key` given the bad value.
            let mut line_of_key = 0;
            let text: String = valid
                .lines()
                .take(3)
                .enumerate()
                .map(|(i, line)| {
                    if line.starts_with(&format!("{key} =")) {
                        line_of_key = i + 1;
                        format!("{key} = {}\n", value.replace(DIR, &dir))
                    } else {
                        format!("{line}\n")
                    }
                })
                .collect();
            assert_ne!(line_of_key, 0, "the setup config sets {key}");
            fs::write(&bad, text).expect("write config");
            let mut cmd = bare_vskel();
            cmd.arg("--config").arg(&bad).args(*args);
            let mut stderr_has = vec![
                format!("{}:{line_of_key}:", bad.display()),
                format!("`{key}`"),
            ];
            stderr_has.extend(parts.iter().map(|p| (*p).to_owned()));
            failures.extend(check(
                setup.dir.path(),
                Case {
                    label: format!("{label} (vskel {args:?})"),
                    cmd,
                    code: USAGE,
                    stderr_has,
                },
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn bad_dropin_is_rejected() {
    let setup = populated();
    let dropin = setup.dir.path().join("conf.d").join("50-local.toml");
    fs::create_dir_all(dropin.parent().expect("parent")).expect("mkdir conf.d");
    fs::write(&dropin, "# local settings\n\ncolour = \"blue\"\n").expect("write drop-in");
    let mut cmd = setup.vskel();
    cmd.args(["create-vs", "base", "x", "x.example.org", "10.0.0.9"]);
    let failures = check(
        setup.dir.path(),
        Case {
            label: "drop-in with an unknown key".into(),
            cmd,
            code: USAGE,
            stderr_has: vec![format!("{}:3:", dropin.display()), "`colour`".into()],
        },
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn missing_config_file_is_rejected() {
    let mut failures = Vec::new();
    for via_env in [true, false] {
        for args in [
            &["list"][..],
            &["create-vs", "base", "x", "x.example.org", "10.0.0.9"],
        ] {
            let setup = populated();
            let missing = setup.dir.path().join("missing.toml");
            let mut cmd = bare_vskel();
            if via_env {
                cmd.env("VSKEL_CONFIG", &missing);
            } else {
                cmd.arg("--config").arg(&missing);
            }
            cmd.args(args);
            failures.extend(check(
                setup.dir.path(),
                Case {
                    label: format!(
                        "missing config via {} (vskel {args:?})",
                        if via_env { "VSKEL_CONFIG" } else { "--config" }
                    ),
                    cmd,
                    code: USAGE,
                    stderr_has: vec![missing.display().to_string(), "cannot read".into()],
                },
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn unknown_or_missing_subcommand_is_a_usage_error() {
    run_cases(vec![
        (
            "unknown subcommand",
            strings(&["frobnicate"]),
            USAGE,
            strings(&["frobnicate"]),
        ),
        ("no subcommand", vec![], USAGE, strings(&["Usage"])),
        (
            "unknown option",
            strings(&["list", "--colour"]),
            USAGE,
            strings(&["--colour"]),
        ),
        (
            "bad --format",
            strings(&["list", "--format", "xml"]),
            USAGE,
            strings(&["xml"]),
        ),
    ]);

    // No arguments at all (not even --config).
    let setup = populated();
    let failures = check(
        setup.dir.path(),
        Case {
            label: "no arguments".into(),
            cmd: bare_vskel(),
            code: USAGE,
            stderr_has: strings(&["Usage"]),
        },
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn name_limit_is_exactly_64_bytes() {
    let setup = populated();
    let over = name65();
    let mut cmd = setup.vskel();
    cmd.args(["create-vs", "base", &over, "long.example.org", "10.0.0.9"]);
    let failures = check(
        setup.dir.path(),
        Case {
            label: "65-byte name".into(),
            cmd,
            code: USAGE,
            stderr_has: vec![format!("{over:?}"), "is 65 bytes long".into()],
        },
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    let name = "a".repeat(64);
    setup
        .vskel()
        .args(["create-vs", "base", &name, "long.example.org", "10.0.0.9"])
        .assert()
        .success();
    assert!(setup.root.join(&name).join("proc").is_dir());
    assert!(setup.etc.join(format!("{name}.conf")).is_file());
}
