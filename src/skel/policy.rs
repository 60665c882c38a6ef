//! Which part of a skel each entry of a source root goes to.
//!
//! Global paths (config `global`) go to `global/`; `etc/passwd`, `shadow`,
//! `group` and `gshadow` to `static/`; everything else to `local/`. Left
//! out: `proc`, `sys`, `dev`, `run` (made fresh), the contents of `tmp`,
//! `home` and `root`, every `lost+found`, the vservers root and vserver
//! config dir when they sit inside the source, the paths of config
//! `exclude` (by default apt's downloaded package lists and caches), and the
//! contents of other mounted filesystems (their mount points stay, empty).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::Component;

use rustix::fs::FileType;

use crate::config::GlobalRules;
use crate::tree::copy::{EntryInfo, Place, Policy};

/// Target index of `global/` in a build.
pub const TO_GLOBAL: usize = 0;
/// Target index of `local/` in a build.
pub const TO_LOCAL: usize = 1;
/// Target index of `static/` in a build.
pub const TO_STATIC: usize = 2;

/// Top-level directories never copied: a skel gets its own.
const MADE_FRESH: &[&str] = &["proc", "dev"];
/// Top-level directories kept empty (mount points at run time).
const KEPT_EMPTY: &[&str] = &["sys", "run", "tmp", "home", "root"];
/// Files of `etc/` that move to `static/` (per-vserver accounts).
pub const STATIC_ETC_FILES: &[&str] = &["passwd", "shadow", "group", "gshadow"];
/// Files of `etc/` that vskel writes itself, tokenised, into `static/`.
pub const WRITTEN_ETC_FILES: &[&str] = &["hosts", "hostname"];

/// The build's placement rules.
#[derive(Debug)]
pub struct BuildPolicy<'a> {
    /// Which paths are global.
    pub rules: &'a GlobalRules,
    /// Which paths are left out (config `exclude`).
    pub exclude: &'a GlobalRules,
    /// The source's filesystem: directories on another one are mounts.
    pub source_dev: u64,
    /// Directories (device, inode) never copied (vservers root, etc dir).
    pub excluded_dirs: HashSet<(u64, u64)>,
}

impl Policy for BuildPolicy<'_> {
    fn place(&self, entry: &EntryInfo<'_>) -> Place {
        let rel = entry.rel;
        let is_dir = entry.file_type == FileType::Directory;
        let components: Vec<&OsStr> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let name = components.last().copied().unwrap_or_default();
        if (is_dir && name == "lost+found") || self.exclude.matches(rel) {
            return Place::Skip;
        }
        if let Some(dev_ino) = entry.dev_ino
            && self.excluded_dirs.contains(&dev_ino)
        {
            return Place::Skip;
        }
        let class = if self.rules.is_global(rel) {
            TO_GLOBAL
        } else {
            TO_LOCAL
        };
        if components.len() == 1 {
            if MADE_FRESH.iter().any(|n| name == *n) {
                return Place::Skip;
            }
            if is_dir && KEPT_EMPTY.iter().any(|n| name == *n) {
                return Place::EmptyDir(class);
            }
        }
        if components.len() == 2 && components[0] == "etc" {
            if entry.file_type == FileType::RegularFile
                && STATIC_ETC_FILES.iter().any(|n| name == *n)
            {
                return Place::Into(TO_STATIC);
            }
            if WRITTEN_ETC_FILES.iter().any(|n| name == *n) {
                return Place::Skip;
            }
        }
        if let Some((dev, _)) = entry.dev_ino
            && dev != self.source_dev
        {
            return Place::EmptyDir(class);
        }
        Place::Into(class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// (path, type, device and inode of a directory, expected placement)
    type Case = (&'static str, FileType, Option<(u64, u64)>, Place);

    fn place(rel: &str, file_type: FileType, dev: Option<(u64, u64)>) -> Place {
        let rules = GlobalRules::parse(&GlobalRules::default_rules()).unwrap();
        let exclude = GlobalRules::parse(&GlobalRules::default_exclude()).unwrap();
        let mut excluded = HashSet::new();
        excluded.insert((1, 99));
        let policy = BuildPolicy {
            rules: &rules,
            exclude: &exclude,
            source_dev: 1,
            excluded_dirs: excluded,
        };
        policy.place(&EntryInfo {
            rel: Path::new(rel),
            file_type,
            dev_ino: dev,
            parent_target: 0,
        })
    }

    #[test]
    fn places_entries_like_vskel() {
        use FileType::{Directory as D, RegularFile as F, Symlink as L};
        let same = Some((1, 5));
        let cases: &[Case] = &[
            ("bin", D, same, Place::Into(TO_GLOBAL)),
            ("bin/ls", F, None, Place::Into(TO_GLOBAL)),
            ("lib64", L, None, Place::Into(TO_GLOBAL)),
            ("usr", D, same, Place::Into(TO_GLOBAL)),
            ("usr/bin/env", F, None, Place::Into(TO_GLOBAL)),
            ("usr/local", D, same, Place::Into(TO_LOCAL)),
            ("usr/local/bin/x", F, None, Place::Into(TO_LOCAL)),
            ("etc", D, same, Place::Into(TO_LOCAL)),
            ("etc/fstab", F, None, Place::Into(TO_LOCAL)),
            ("etc/passwd", F, None, Place::Into(TO_STATIC)),
            ("etc/gshadow", F, None, Place::Into(TO_STATIC)),
            ("etc/passwd", L, None, Place::Into(TO_LOCAL)),
            ("etc/hosts", F, None, Place::Skip),
            ("etc/hostname", F, None, Place::Skip),
            ("etc/default/passwd", F, None, Place::Into(TO_LOCAL)),
            ("var/lib/dpkg/status", F, None, Place::Into(TO_LOCAL)),
            ("var/lib/apt/lists", D, same, Place::Into(TO_LOCAL)),
            ("var/lib/apt/lists/partial", D, same, Place::Into(TO_LOCAL)),
            ("var/lib/apt/lists/lock", F, None, Place::Into(TO_LOCAL)),
            (
                "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
                F,
                None,
                Place::Skip,
            ),
            ("var/cache/apt/pkgcache.bin", F, None, Place::Skip),
            (
                "var/cache/apt/archives/hello_2.10-3_amd64.deb",
                F,
                None,
                Place::Skip,
            ),
            ("proc", D, same, Place::Skip),
            ("dev", D, same, Place::Skip),
            ("sys", D, same, Place::EmptyDir(TO_LOCAL)),
            ("run", D, same, Place::EmptyDir(TO_LOCAL)),
            ("tmp", D, same, Place::EmptyDir(TO_LOCAL)),
            ("home", D, same, Place::EmptyDir(TO_LOCAL)),
            ("root", D, same, Place::EmptyDir(TO_LOCAL)),
            ("var/tmp", D, same, Place::Into(TO_LOCAL)),
            ("lost+found", D, same, Place::Skip),
            ("var/lost+found", D, same, Place::Skip),
            ("srv/vservers", D, Some((1, 99)), Place::Skip),
            ("boot", D, Some((2, 7)), Place::EmptyDir(TO_LOCAL)),
            ("usr/share", D, Some((2, 7)), Place::EmptyDir(TO_GLOBAL)),
        ];
        for (rel, ft, dev, want) in cases {
            assert_eq!(place(rel, *ft, *dev), *want, "{rel}");
        }
    }
}
