//! The tools around the command line: `vskel completions SHELL` gives a
//! script the shell loads (bash then completes vskel), and
//! `vskel manpages DIR` writes pages `man -l` renders, one per
//! sub-command, hidden ones left out.

use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

fn vskel() -> Command {
    let mut cmd = Command::cargo_bin("vskel").unwrap();
    cmd.env_remove("VSKEL_CONFIG");
    cmd
}

#[test]
fn bash_loads_the_completion_script_for_vskel() {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_vskel"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let bash = |script: &str| {
        let out = Command::new("bash")
            .args(["-c", script])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = bash("source <(vskel completions bash) && complete -p vskel");
    assert!(shown.trim_end().ends_with(" vskel"), "{shown}");
    // What bash offers after `vskel mo<TAB>`.
    let offered = bash(
        "source <(vskel completions bash) && COMP_WORDS=(vskel mo) COMP_CWORD=1 \
         COMP_LINE='vskel mo' COMP_POINT=8 && _vskel vskel mo vskel && echo \"${COMPREPLY[@]}\"",
    );
    assert_eq!(offered, "mount\n");
}

#[test]
fn every_shell_gets_a_script_naming_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = vskel().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in ["build-skel", "create-vs", "mount", "enter", "exec"] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
    }
    let out = vskel().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn manpages_writes_a_page_per_subcommand_that_man_renders() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = vskel().arg("manpages").arg(&pages).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "vskel.1",
        "vskel-build-skel.1",
        "vskel-mount.1",
        "vskel-enter.1",
        "vskel-exec.1",
    ] {
        assert!(pages.join(page).is_file(), "{page} missing");
    }
    assert!(!pages.join("vskel-enter-inside.1").exists());
    assert!(!pages.join("vskel-daemon-protocol-test.1").exists());
    assert!(!pages.join("vskel-help.1").exists());

    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("SKIPPED: man is not installed (man-db); the pages were not rendered");
        return;
    }
    for (page, want) in [
        ("vskel.1", "build-skel"),
        ("vskel-exec.1", "Run a command inside a vserver"),
    ] {
        let out = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(pages.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "man -l {page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(want), "{page}: no {want:?} in\n{text}");
    }
}
