//! How reports show paths: serde serializers for the `Path` fields of
//! what commands print (`--format json`) and the daemon replies. serde's
//! own refuses a path that is not UTF-8, and a vserver's root can name a
//! file anything, so one such name would make a whole report fail to
//! encode; these write bytes that are not UTF-8 as U+FFFD, as the text
//! output does. Records that are read back (the registry) keep serde's
//! exact form instead.

use std::path::{Path, PathBuf};

use serde::Serializer;

/// A path, as a string.
pub fn path<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// A path or `null`.
pub fn option<S: Serializer>(path: &Option<PathBuf>, serializer: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => serializer.serialize_some(&path.to_string_lossy()),
        None => serializer.serialize_none(),
    }
}

/// A list of paths, as a list of strings.
pub fn list<S: Serializer>(paths: &[PathBuf], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Report {
        #[serde(serialize_with = "path")]
        one: PathBuf,
        #[serde(serialize_with = "option")]
        maybe: Option<PathBuf>,
        #[serde(serialize_with = "option")]
        none: Option<PathBuf>,
        #[serde(serialize_with = "list")]
        many: Vec<PathBuf>,
    }

    #[test]
    fn a_name_that_is_not_utf8_is_shown_with_a_replacement_character() {
        let odd = PathBuf::from(OsStr::from_bytes(b"/srv/odd-\xff-name"));
        let report = Report {
            one: odd.clone(),
            maybe: Some(odd.clone()),
            none: None,
            many: vec![odd.clone(), PathBuf::from("/etc/motd")],
        };
        assert!(
            serde_json::to_string(&odd).is_err(),
            "serde's own refuses it"
        );
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"one":"/srv/odd-\u{fffd}-name","maybe":"/srv/odd-\u{fffd}-name","none":null,"many":["/srv/odd-\u{fffd}-name","/etc/motd"]}"#
                .replace("\\u{fffd}", "\u{fffd}")
        );
    }
}
