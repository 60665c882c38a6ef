//! `oci:DIR[:TAG]`: where an image is, as skopeo and podman name an OCI
//! image layout.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The transport prefix of an image layout reference.
const OCI_PREFIX: &str = "oci:";

/// An image in an OCI image layout on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The layout's directory.
    pub dir: PathBuf,
    /// The manifest's tag (`org.opencontainers.image.ref.name`), if given.
    pub tag: Option<String>,
}

impl ImageRef {
    /// Parse `oci:DIR[:TAG]`. A TAG is what OCI allows
    /// (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`); anything else, or another
    /// transport, is a usage error naming the reference.
    pub fn parse(text: &str) -> Result<ImageRef> {
        let Some(rest) = text.strip_prefix(OCI_PREFIX) else {
            return Err(Error::Usage(format!(
                "image reference \"{text}\": only OCI image layouts are supported, as \
                 oci:DIR[:TAG] (use `skopeo copy` to move images to and from a registry)"
            )));
        };
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) => (dir, Some(tag)),
            None => (rest, None),
        };
        if dir.is_empty() {
            return Err(Error::Usage(format!(
                "image reference \"{text}\": no directory after \"oci:\""
            )));
        }
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(Error::Usage(format!(
                    "image reference \"{text}\": \"{tag}\" is not a valid tag (letters, \
                     digits, '_', '.', '-', at most 128, not starting with '.' or '-')"
                )));
            }
        }
        Ok(ImageRef {
            dir: PathBuf::from(dir),
            tag: tag.map(str::to_string),
        })
    }

    /// The reference with `tag` when it names none.
    pub fn or_tag(mut self, tag: impl Into<String>) -> ImageRef {
        if self.tag.is_none() {
            self.tag = Some(tag.into());
        }
        self
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{OCI_PREFIX}{}", self.dir.display())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// Is `tag` a tag OCI allows?
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dir_and_tag() {
        let r = ImageRef::parse("oci:/srv/img:7").unwrap();
        assert_eq!(r.dir, PathBuf::from("/srv/img"));
        assert_eq!(r.tag.as_deref(), Some("7"));
        let r = ImageRef::parse("oci:rel/img").unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), "oci:rel/img");
    }

    #[test]
    fn refuses_other_transports_and_bad_tags() {
        for bad in [
            "docker://x",
            "/srv/img",
            "oci:",
            "oci:/x:-a",
            "oci:/x:a/b",
            "oci:/x:",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
