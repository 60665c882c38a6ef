//! OCI whiteouts (image-spec `layer.md`): `.wh.NAME` removes NAME of the
//! layers below; `.wh..wh..opq` in a directory removes everything the
//! layers below had in it. The kernel overlayfs form of the same two
//! things is in `view::format`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The prefix of a whiteout's name.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name of an opaque marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// What a layer entry's last name component says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name<'a> {
    /// An ordinary entry.
    Plain,
    /// A whiteout of the sibling `NAME`.
    Whiteout(&'a OsStr),
    /// The directory's lower content is hidden.
    Opaque,
}

/// Classify a name component.
pub fn classify(name: &OsStr) -> Name<'_> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE_MARKER {
        Name::Opaque
    } else if let Some(rest) = bytes.strip_prefix(WHITEOUT_PREFIX) {
        Name::Whiteout(OsStr::from_bytes(rest))
    } else {
        Name::Plain
    }
}

/// The whiteout name of `name`.
pub fn whiteout_name(name: &OsStr) -> std::ffi::OsString {
    let mut out = WHITEOUT_PREFIX.to_vec();
    out.extend_from_slice(name.as_bytes());
    std::ffi::OsString::from(std::ffi::OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        assert_eq!(classify(OsStr::new("a")), Name::Plain);
        assert_eq!(
            classify(OsStr::new(".wh.a")),
            Name::Whiteout(OsStr::new("a"))
        );
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Name::Opaque);
        assert_eq!(whiteout_name(OsStr::new("x")), OsStr::new(".wh.x"));
    }
}
