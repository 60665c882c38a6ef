//! VSkel's own spellings (`vskel --build-skel NAME`, `vskel --create-vs
//! SKEL NAME FQDN IP`, ...), rewritten to subcommands so old scripts keep
//! working.

use std::ffi::OsString;

/// VSkel's mode options and the subcommands they become.
const LEGACY_MODES: &[(&str, &str)] = &[
    ("--build-skel", "build-skel"),
    ("--create-vs", "create-vs"),
    ("--merge-skel", "merge-skel"),
    ("--split-skel", "split-skel"),
    ("--remove-vs", "remove-vs"),
    ("--list", "list"),
];

/// Global options that take a value (skipped when looking for the mode).
const VALUE_OPTIONS: &[&str] = &["--config", "-c"];

/// Replace the first VSkel mode option before any subcommand by its
/// subcommand; everything else is left as it is.
pub fn rewrite(mut args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while i < args.len() {
        let Some(arg) = args[i].to_str() else { break };
        if let Some((_, sub)) = LEGACY_MODES.iter().find(|(opt, _)| *opt == arg) {
            args[i] = OsString::from(sub);
            break;
        }
        if VALUE_OPTIONS.contains(&arg) {
            i += 2;
            continue;
        }
        if !arg.starts_with('-') {
            break; // a subcommand: nothing to rewrite
        }
        i += 1;
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn rewrites_vskel_modes() {
        let cases = [
            ("vskel --build-skel base", "vskel build-skel base"),
            (
                "vskel --create-vs base web1 web1.example.org 10.0.0.2",
                "vskel create-vs base web1 web1.example.org 10.0.0.2",
            ),
            (
                "vskel -c /x.toml --build-skel b",
                "vskel -c /x.toml build-skel b",
            ),
            (
                "vskel --config --build-skel list",
                "vskel --config --build-skel list",
            ),
            ("vskel -q --list", "vskel -q list"),
            (
                "vskel build-skel --build-skel",
                "vskel build-skel --build-skel",
            ),
            ("vskel --help", "vskel --help"),
        ];
        for (input, want) in cases {
            assert_eq!(rewrite(words(input)), words(want), "{input}");
        }
    }
}
