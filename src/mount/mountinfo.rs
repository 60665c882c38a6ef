//! The mount table: `/proc/self/mountinfo` parsed into [`MountEntry`]s,
//! the mounts at or below a path, and paths spelled the way the table
//! spells them ([`normalize`]).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use tracing::debug;

use crate::error::{Error, Result};
use crate::view::SUBTYPE;

/// Where the kernel lists this process's mounts.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's ID.
    pub id: u32,
    /// The parent mount's ID.
    pub parent: u32,
    /// The filesystem's device (major, minor).
    pub dev: (u32, u32),
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type, with subtype (`fuse.vskel`, `ext4`).
    pub fstype: String,
    /// The mount's source (for a vskel view: `SKEL:NAME`).
    pub source: String,
}

impl MountEntry {
    /// Is this a FUSE mount (of any server)?
    pub fn is_fuse(&self) -> bool {
        is_fuse_type(&self.fstype)
    }

    /// Is this a vskel mount (a view or an overlay) by its type?
    pub fn is_vskel(&self) -> bool {
        self.fstype == vskel_fstype()
    }

    /// Could this be a vskel mount? Its type is `fuse.vskel`, or plain
    /// `fuse`: a server mounting with `mount(2)` directly (as root) may not
    /// pass the subtype on, and then only the source tells.
    pub fn may_be_vskel(&self) -> bool {
        self.is_vskel() || self.fstype == PLAIN_FUSE
    }

    /// `fuse.vskel from SKEL:NAME`, for messages.
    pub fn describe(&self) -> String {
        format!("{} from {}", self.fstype, self.source)
    }
}

/// The type of a FUSE mount made without a subtype.
pub const PLAIN_FUSE: &str = "fuse";

/// The filesystem type vskel's mounts show: `fuse.vskel`.
pub fn vskel_fstype() -> String {
    format!("fuse.{SUBTYPE}")
}

/// Is `fstype` a FUSE filesystem type (`fuse`, `fuse.*`, `fuseblk`)?
pub fn is_fuse_type(fstype: &str) -> bool {
    fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.")
}

/// Parse the text of a mountinfo file; lines that do not parse are left
/// out (with a debug message).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let entry = parse_line(line);
            if entry.is_none() {
                debug!("unreadable mountinfo line: {line}");
            }
            entry
        })
        .collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount_point options [optional...] - fstype source super_options
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let id = fields.next()?.parse().ok()?;
    let parent = fields.next()?.parse().ok()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let dev = (major.parse().ok()?, minor.parse().ok()?);
    let _root = fields.next()?;
    let mount_point = PathBuf::from(OsString::from_vec(unescape_octal(fields.next()?)));
    let mut rest = after.split(' ');
    let fstype = String::from_utf8_lossy(&unescape_octal(rest.next()?)).into_owned();
    let source = String::from_utf8_lossy(&unescape_octal(rest.next()?)).into_owned();
    Some(MountEntry {
        id,
        parent,
        dev,
        mount_point,
        fstype,
        source,
    })
}

/// Undo the kernel's `\ooo` octal escapes (space, tab, newline, backslash).
fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Every mount of this mount namespace, in mount order.
pub fn mounts() -> Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string(MOUNTINFO).map_err(|e| Error::io("read", MOUNTINFO, e))?;
    Ok(parse_mountinfo(&text))
}

/// The mount on top at `path` (already [`normalize`]d), if `path` is a
/// mount point.
pub fn mount_at(path: &Path) -> Result<Option<MountEntry>> {
    Ok(mounts()?.into_iter().rfind(|m| m.mount_point == path))
}

/// The mounts at or below `dir` (already [`normalize`]d).
pub fn mounts_below(dir: &Path) -> Result<Vec<MountEntry>> {
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect())
}

/// `path` made absolute the way the mount table spells it: its parent
/// resolved (symlinks, `..`), its last component left as it is, so that a
/// dead mount at `path` itself is never touched.
pub fn normalize(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))?;
    let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        // "/" or a path ending in "..": nothing to keep unresolved.
        return absolute
            .canonicalize()
            .map_err(|e| Error::io("resolve", path, e));
    };
    let parent = parent
        .canonicalize()
        .map_err(|e| Error::io("resolve the directory holding the mount point", parent, e))?;
    Ok(parent.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 0:45 / /vservers/.views/web1/merged rw,nosuid,nodev,relatime shared:7 - fuse.vskel base:web1 rw,user_id=0,group_id=0,allow_other
37 22 0:46 / /mnt/with\\040space rw - fuse.fuse-overlayfs fuse-overlayfs rw
38 22 0:47 /sub /mnt/back\\134slash rw master:3 shared:9 - tmpfs tmp\\040fs rw
garbage line
";
        let entries = parse_mountinfo(text);
        let expected = [
            (22, 1, (8, 1), "/", "ext4", "/dev/sda1"),
            (
                36,
                22,
                (0, 45),
                "/vservers/.views/web1/merged",
                "fuse.vskel",
                "base:web1",
            ),
            (
                37,
                22,
                (0, 46),
                "/mnt/with space",
                "fuse.fuse-overlayfs",
                "fuse-overlayfs",
            ),
            (38, 22, (0, 47), "/mnt/back\\slash", "tmpfs", "tmp fs"),
        ];
        assert_eq!(entries.len(), expected.len(), "{entries:#?}");
        for (entry, (id, parent, dev, mp, fstype, source)) in entries.iter().zip(expected) {
            assert_eq!(entry.id, id);
            assert_eq!(entry.parent, parent);
            assert_eq!(entry.dev, dev);
            assert_eq!(entry.mount_point, Path::new(mp));
            assert_eq!(entry.fstype, fstype);
            assert_eq!(entry.source, source);
        }
    }

    #[test]
    fn unescapes_octal() {
        let cases: &[(&str, &[u8])] = &[
            ("plain", b"plain"),
            ("a\\040b", b"a b"),
            ("tab\\011", b"tab\t"),
            ("nl\\012x", b"nl\nx"),
            ("bs\\134", b"bs\\"),
            ("short\\04", b"short\\04"),
            ("notoctal\\089", b"notoctal\\089"),
            ("toolarge\\777", b"toolarge\\777"),
        ];
        for (input, expected) in cases {
            assert_eq!(unescape_octal(input), *expected, "{input}");
        }
    }

    #[test]
    fn fuse_types() {
        let cases = [
            ("fuse", true),
            ("fuseblk", true),
            ("fuse.vskel", true),
            ("fuse.fuse-overlayfs", true),
            ("fusectl", false),
            ("overlay", false),
            ("ext4", false),
        ];
        for (fstype, expected) in cases {
            assert_eq!(is_fuse_type(fstype), expected, "{fstype}");
        }
    }

    #[test]
    fn normalize_keeps_the_last_component() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(&real, real.join("link")).unwrap();
        let got = normalize(&real.join("link").join("missing")).unwrap();
        assert_eq!(got, real.join("missing"));
        assert!(normalize(&real.join("no-such-dir/x")).is_err());
    }
}
