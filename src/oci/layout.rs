//! An OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/`): blobs written once under their digest (an existing
//! blob is reused, which is what makes a later generation's export cheap),
//! manifests tagged in the index, and blobs read back with their digest
//! and size checked.
//!
//! Every file of the layout is reached through the layout's directory
//! descriptor, never following a symlink; a blob is named only by a
//! digest that is `sha256:` and 64 lowercase hex digits. Blobs and
//! `index.json` are written to a temporary name, flushed to disk, and
//! renamed into place. The JSON documents are written with their keys
//! sorted, so the same image gives the same digests.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ocidir::oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, Digest, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder,
    MediaType, OciLayout, OciLayoutBuilder, Os, RootFsBuilder,
};
use rustix::fs::FileType;
use sha2::{Digest as _, Sha256};

use super::annotations::REF_NAME;
use crate::error::{Error, Result};
use crate::sys;

/// The image layout version this engine writes and reads.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// The layout's marker file.
const OCI_LAYOUT_FILE: &str = "oci-layout";
/// The layout's index.
const INDEX_FILE: &str = "index.json";
/// Largest manifest, config or index read into memory.
const MAX_DOCUMENT: u64 = 8 << 20;

/// An image layout on disk.
pub struct ImageLayout {
    /// The layout's path (for messages).
    dir: PathBuf,
    /// The layout's directory.
    fd: OwnedFd,
    /// Its `blobs/sha256/`.
    blobs: OwnedFd,
}

/// One image read from a layout: its manifest and config, both checked
/// against their digests.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest's digest (`sha256:...`).
    pub digest: String,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The image configuration.
    pub config: ImageConfiguration,
}

/// What an image is made of, to be written as a manifest.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// The layers, bottom first (from [`super::write_layer`]).
    pub layers: Vec<super::WrittenLayer>,
    /// Manifest annotations (`org.vskel.*`).
    pub annotations: Vec<(String, String)>,
    /// Labels of the image configuration.
    pub labels: Vec<(String, String)>,
    /// The configuration's `created` time, seconds since the epoch (kept
    /// from the content so the same content gives the same digests).
    pub created: u64,
    /// The default command of the configuration (`/bin/sh`), if any.
    pub cmd: Option<Vec<String>>,
}

/// What [`ImageLayout::write_image`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    /// The manifest's digest.
    pub digest: String,
    /// Bytes of blobs that were not in the layout before (what a push of
    /// this tag would upload after the previous one).
    pub new_bytes: u64,
    /// Bytes of all blobs of the image.
    pub total_bytes: u64,
}

/// A blob that was stored: its digest (`sha256:...`), size, and whether
/// it was new to the layout.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    /// `sha256:` and the hex digest.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// False when the layout held the same bytes already.
    pub new: bool,
}

impl ImageLayout {
    /// Open the layout at `dir`, making it (and `oci-layout`,
    /// `index.json`) if it does not exist. A directory that exists, is
    /// not empty and has no `oci-layout` is refused, not turned into one.
    pub fn create(dir: &Path) -> Result<ImageLayout> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("make directory", dir, e))?;
        let fd = sys::open_root(dir).map_err(|e| Error::io("open directory", dir, e))?;
        let marker = c"oci-layout";
        if sys::absent_as_none(sys::stat_at(fd.as_fd(), marker))
            .map_err(|e| Error::io("stat", dir.join(OCI_LAYOUT_FILE), e))?
            .is_none()
        {
            let entries =
                sys::read_dir(fd.as_fd()).map_err(|e| Error::io("read directory", dir, e))?;
            if !entries.is_empty() {
                return Err(Error::Failed(format!(
                    "{}: not an OCI image layout (no oci-layout file) and not empty; \
                     refusing to make a layout there",
                    dir.display()
                )));
            }
            let layout = OciLayoutBuilder::default()
                .image_layout_version(LAYOUT_VERSION.to_string())
                .build()
                .map_err(|e| Error::Failed(format!("build oci-layout: {e}")))?;
            write_atomic(&fd, dir, OCI_LAYOUT_FILE, &canonical_json(&layout)?)?;
        }
        for sub in ["blobs", "blobs/sha256"] {
            match std::fs::create_dir(dir.join(sub)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("make directory", dir.join(sub), e)),
            }
        }
        if sys::absent_as_none(sys::stat_at(fd.as_fd(), c"index.json"))
            .map_err(|e| Error::io("stat", dir.join(INDEX_FILE), e))?
            .is_none()
        {
            let index = ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(Vec::<Descriptor>::new())
                .build()
                .map_err(|e| Error::Failed(format!("build an empty index: {e}")))?;
            write_atomic(&fd, dir, INDEX_FILE, &canonical_json(&index)?)?;
        }
        drop(fd);
        ImageLayout::open(dir)
    }

    /// Open an existing layout; refuses a directory that is not one
    /// (no `oci-layout`, an unknown layout version, a broken index).
    pub fn open(dir: &Path) -> Result<ImageLayout> {
        let not_layout = |why: String| {
            Error::Failed(format!("{}: not an OCI image layout: {why}", dir.display()))
        };
        let fd = sys::open_root(dir).map_err(|e| Error::io("open image layout", dir, e))?;
        let marker = match read_small(&fd, OCI_LAYOUT_FILE) {
            Ok(bytes) => bytes,
            Err(e) if sys::is_absent(&e) => return Err(not_layout("no oci-layout file".into())),
            Err(e) => return Err(Error::io("read", dir.join(OCI_LAYOUT_FILE), e)),
        };
        let marker = OciLayout::from_reader(&marker[..])
            .map_err(|e| not_layout(format!("oci-layout: {e}")))?;
        if marker.image_layout_version() != LAYOUT_VERSION {
            return Err(not_layout(format!(
                "image layout version {} (only {LAYOUT_VERSION} is known)",
                marker.image_layout_version()
            )));
        }
        let blobs = sys::open_dir_beneath(fd.as_fd(), Path::new("blobs/sha256"))
            .map_err(|e| not_layout(format!("blobs/sha256: {e}")))?;
        let layout = ImageLayout {
            dir: dir.to_path_buf(),
            fd,
            blobs,
        };
        layout.read_index()?;
        Ok(layout)
    }

    /// The layout's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The layout's index, parsed.
    pub fn read_index(&self) -> Result<ImageIndex> {
        let bytes = read_small(&self.fd, INDEX_FILE)
            .map_err(|e| Error::io("read", self.dir.join(INDEX_FILE), e))?;
        ImageIndex::from_reader(&bytes[..]).map_err(|e| {
            Error::Failed(format!(
                "{}: not an OCI image layout: broken index.json: {e}",
                self.dir.display()
            ))
        })
    }

    /// The tags of the index, in its order (untagged manifests left out).
    pub fn tags(&self) -> Result<Vec<String>> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .filter_map(tag_of)
            .collect())
    }

    /// Write the image's config and manifest and tag it `tag` in the
    /// index (replacing an older manifest of that tag, keeping others).
    pub fn write_image(&self, image: &NewImage, tag: &str) -> Result<WrittenImage> {
        if !super::reference::valid_tag(tag) {
            return Err(Error::Usage(format!("\"{tag}\" is not a valid image tag")));
        }
        let failed = |what: &str, e: ocidir::oci_spec::OciSpecError| {
            Error::Failed(format!("{}: {what}: {e}", self.dir.display()))
        };
        let mut config = ConfigBuilder::default();
        if !image.labels.is_empty() {
            config = config.labels(sorted_map(&image.labels));
        }
        if let Some(cmd) = &image.cmd {
            config = config.cmd(cmd.clone());
        }
        let history = image
            .layers
            .iter()
            .map(|layer| {
                let mut h = HistoryBuilder::default().created_by("vskel".to_string());
                if let Some(part) = layer
                    .descriptor
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(super::annotations::PART))
                {
                    h = h.comment(format!("vskel {part} layer"));
                }
                h.build().map_err(|e| failed("build history", e))
            })
            .collect::<Result<Vec<_>>>()?;
        let rootfs = RootFsBuilder::default()
            .typ("layers".to_string())
            .diff_ids(
                image
                    .layers
                    .iter()
                    .map(|l| l.diff_id.clone())
                    .collect::<Vec<_>>(),
            )
            .build()
            .map_err(|e| failed("build rootfs", e))?;
        let config = ImageConfigurationBuilder::default()
            .created(rfc3339(image.created))
            .architecture(host_arch())
            .os(Os::Linux)
            .config(config.build().map_err(|e| failed("build config", e))?)
            .rootfs(rootfs)
            .history(history)
            .build()
            .map_err(|e| failed("build image configuration", e))?;
        let config_blob = self.store_bytes(&canonical_json(&config)?)?;
        let config_desc = Descriptor::new(
            MediaType::ImageConfig,
            config_blob.size,
            parse_digest(&config_blob.digest)?,
        );

        let mut manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(
                image
                    .layers
                    .iter()
                    .map(|l| l.descriptor.clone())
                    .collect::<Vec<_>>(),
            );
        if !image.annotations.is_empty() {
            manifest = manifest.annotations(sorted_map(&image.annotations));
        }
        let manifest = manifest.build().map_err(|e| failed("build manifest", e))?;
        let manifest_blob = self.store_bytes(&canonical_json(&manifest)?)?;

        let mut new_bytes = 0;
        let mut total_bytes = config_blob.size + manifest_blob.size;
        for layer in &image.layers {
            total_bytes += layer.descriptor.size();
            if layer.new {
                new_bytes += layer.descriptor.size();
            }
        }
        for blob in [&config_blob, &manifest_blob] {
            if blob.new {
                new_bytes += blob.size;
            }
        }

        let mut desc = Descriptor::new(
            MediaType::ImageManifest,
            manifest_blob.size,
            parse_digest(&manifest_blob.digest)?,
        );
        desc.set_annotations(Some(HashMap::from([(
            REF_NAME.to_string(),
            tag.to_string(),
        )])));
        // The index is read, changed and replaced under a lock on the
        // layout's directory, so two vskel runs tagging images in one
        // layout at once both keep their tag.
        sys::lock_exclusive(self.fd.as_fd()).map_err(|e| Error::io("lock", &self.dir, e))?;
        let mut index = self.read_index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| tag_of(d).as_deref() != Some(tag))
            .cloned()
            .collect();
        manifests.push(desc);
        index.set_manifests(manifests);
        write_atomic(&self.fd, &self.dir, INDEX_FILE, &canonical_json(&index)?)?;
        Ok(WrittenImage {
            digest: manifest_blob.digest,
            new_bytes,
            total_bytes,
        })
    }

    /// The image tagged `tag`, or with no tag the layout's only image (an
    /// error listing the tags when there are several).
    pub fn read_image(&self, tag: Option<&str>) -> Result<Image> {
        let index = self.read_index()?;
        let manifests = index.manifests();
        let list = || {
            let tags: Vec<String> = manifests.iter().filter_map(tag_of).collect();
            if tags.is_empty() {
                "none".to_string()
            } else {
                tags.join(", ")
            }
        };
        let desc = match tag {
            Some(tag) => manifests
                .iter()
                .find(|d| tag_of(d).as_deref() == Some(tag))
                .ok_or_else(|| {
                    Error::Failed(format!(
                        "{}: no image tagged \"{tag}\" (tags: {})",
                        self.dir.display(),
                        list()
                    ))
                })?,
            None => match manifests.as_slice() {
                [only] => only,
                [] => {
                    return Err(Error::Failed(format!(
                        "{}: the image layout holds no image",
                        self.dir.display()
                    )));
                }
                _ => {
                    return Err(Error::Failed(format!(
                        "{}: the image layout holds several images; name one by its tag \
                         (tags: {})",
                        self.dir.display(),
                        list()
                    )));
                }
            },
        };
        if *desc.media_type() != MediaType::ImageManifest {
            return Err(Error::Failed(format!(
                "{}: {} is a {}, not an image manifest",
                self.dir.display(),
                desc.digest(),
                desc.media_type()
            )));
        }
        let bytes = self.read_document(desc)?;
        let manifest = ImageManifest::from_reader(&bytes[..]).map_err(|e| {
            Error::Failed(format!(
                "{}: manifest {}: {e}",
                self.dir.display(),
                desc.digest()
            ))
        })?;
        let bytes = self.read_document(manifest.config())?;
        let config = ImageConfiguration::from_reader(&bytes[..]).map_err(|e| {
            Error::Failed(format!(
                "{}: config {}: {e}",
                self.dir.display(),
                manifest.config().digest()
            ))
        })?;
        Ok(Image {
            digest: desc.digest().to_string(),
            manifest,
            config,
        })
    }

    /// A reader of the blob `desc` names that fails (with an error naming
    /// the blob) when the data ends at another size or has another digest.
    /// The caller must read to the end before trusting what it read.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let digest = desc.digest().to_string();
        let hex = blob_hex(&digest).ok_or_else(|| {
            Error::Failed(format!(
                "{}: blob digest \"{digest}\" is not sha256 and 64 lowercase hex digits",
                self.dir.display()
            ))
        })?;
        let path = self.blob_path(hex);
        let name =
            CString::new(hex).map_err(|e| Error::io("open blob", &path, io::Error::other(e)))?;
        let fd = sys::open_file_read(self.blobs.as_fd(), &name)
            .map_err(|e| Error::io("open blob", &path, e))?;
        let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io("stat", &path, e))?;
        if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
            return Err(Error::Failed(format!(
                "{}: blob {digest} is not a regular file",
                self.dir.display()
            )));
        }
        Ok(Box::new(VerifyingReader {
            file: io::BufReader::with_capacity(1 << 17, File::from(fd)),
            hasher: Sha256::new(),
            digest,
            expected: desc.size(),
            read: 0,
            verified: None,
        }))
    }

    /// Read a small blob (a manifest or config) whole, checked.
    fn read_document(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        if desc.size() > MAX_DOCUMENT {
            return Err(Error::Failed(format!(
                "{}: {} is {} bytes, too large for a manifest or config",
                self.dir.display(),
                desc.digest(),
                desc.size()
            )));
        }
        let mut bytes = Vec::new();
        self.open_blob(desc)?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read blob", self.dir.join("blobs/sha256"), e))?;
        Ok(bytes)
    }

    /// The path of a blob (for messages).
    fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex)
    }

    /// Store `bytes` as a blob.
    pub fn store_bytes(&self, bytes: &[u8]) -> Result<StoredBlob> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(|e| Error::io("write blob", self.dir.join("blobs/sha256"), e))?;
        w.finish()
    }

    /// A writer of a new blob, stored under its digest by
    /// [`BlobWriter::finish`] (dropped unfinished, it leaves nothing).
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        let tmp = sys::random_name(".tmp-blob-")
            .map_err(|e| Error::io("name a blob", self.dir.join("blobs/sha256"), e))?;
        let fd = sys::create_file(self.blobs.as_fd(), &tmp, 0o644)
            .map_err(|e| Error::io("create blob", self.dir.join("blobs/sha256"), e))?;
        Ok(BlobWriter {
            layout: self,
            tmp: Some(tmp),
            out: BufWriter::with_capacity(1 << 17, File::from(fd)),
            hasher: Sha256::new(),
            size: 0,
        })
    }
}

/// A blob being written: hashed and counted, in a temporary file of
/// `blobs/sha256/` until [`BlobWriter::finish`] names it by its digest.
pub struct BlobWriter<'a> {
    layout: &'a ImageLayout,
    tmp: Option<CString>,
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter<'_> {
    /// Flush the blob to disk and name it by its digest; when the layout
    /// has that blob already, keep the old one and drop this copy.
    pub fn finish(mut self) -> Result<StoredBlob> {
        let dir = self.layout.dir.join("blobs/sha256");
        self.out
            .flush()
            .map_err(|e| Error::io("write blob", &dir, e))?;
        sys::fsync(self.out.get_ref().as_fd()).map_err(|e| Error::io("flush blob", &dir, e))?;
        let hex = hex(&std::mem::take(&mut self.hasher).finalize());
        let name = CString::new(hex.clone()).expect("hex has no NUL");
        let tmp = self.tmp.take().expect("finished once");
        let blobs = self.layout.blobs.as_fd();
        let new = match sys::rename_noreplace(blobs, &tmp, blobs, &name) {
            Ok(()) => {
                sys::fsync(blobs).map_err(|e| Error::io("flush directory", &dir, e))?;
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let _ = sys::unlink_at(blobs, &tmp);
                false
            }
            Err(e) => {
                let _ = sys::unlink_at(blobs, &tmp);
                return Err(Error::io("store blob", dir.join(&hex), e));
            }
        };
        Ok(StoredBlob {
            digest: format!("sha256:{hex}"),
            size: self.size,
            new,
        })
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = sys::unlink_at(self.layout.blobs.as_fd(), &tmp);
        }
    }
}

/// Reads a blob, hashing it; at its end (or past its size) fails unless
/// size and digest are what the descriptor said.
struct VerifyingReader {
    file: io::BufReader<File>,
    hasher: Sha256,
    digest: String,
    expected: u64,
    read: u64,
    /// The outcome at the end, repeated to later reads.
    verified: Option<std::result::Result<(), String>>,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(outcome) = &self.verified {
            return match outcome {
                Ok(()) => Ok(0),
                Err(why) => Err(io::Error::new(io::ErrorKind::InvalidData, why.clone())),
            };
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // Never ask for more than one byte past the expected size, so a
        // longer blob is noticed at once.
        let room = (self.expected - self.read).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.expected {
            let why = format!(
                "blob {}: more than the {} bytes its descriptor says",
                self.digest, self.expected
            );
            self.verified = Some(Err(why.clone()));
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        if n > 0 {
            self.hasher.update(&buf[..n]);
            return Ok(n);
        }
        let outcome = if self.read != self.expected {
            Err(format!(
                "blob {}: {} bytes, its descriptor says {}",
                self.digest, self.read, self.expected
            ))
        } else {
            let got = format!(
                "sha256:{}",
                hex(&std::mem::take(&mut self.hasher).finalize())
            );
            if got == self.digest {
                Ok(())
            } else {
                Err(format!(
                    "blob {}: its content has digest {got}",
                    self.digest
                ))
            }
        };
        self.verified = Some(outcome);
        self.read(buf)
    }
}

/// The hex part of a `sha256:` digest of 64 lowercase hex digits; `None`
/// for anything else (which must never become a file name).
pub fn blob_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parse a digest we computed.
pub(crate) fn parse_digest(digest: &str) -> Result<Digest> {
    Digest::from_str(digest).map_err(|e| Error::Failed(format!("digest {digest}: {e}")))
}

/// The tag of an index entry.
fn tag_of(desc: &Descriptor) -> Option<String> {
    desc.annotations().as_ref()?.get(REF_NAME).cloned()
}

fn sorted_map(pairs: &[(String, String)]) -> HashMap<String, String> {
    pairs.iter().cloned().collect()
}

/// JSON with every object's keys sorted (oci-spec keeps maps in
/// `HashMap`s, whose order changes from run to run).
pub(crate) fn canonical_json<T: serde::Serialize>(doc: &T) -> Result<Vec<u8>> {
    fn sort(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    let value =
        serde_json::to_value(doc).map_err(|e| Error::Failed(format!("encode JSON: {e}")))?;
    serde_json::to_vec(&sort(value)).map_err(|e| Error::Failed(format!("encode JSON: {e}")))
}

/// The host's architecture as OCI (GOARCH) names it.
fn host_arch() -> Arch {
    Arch::from(match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    })
}

/// RFC 3339 (UTC, `Z`) of seconds since the epoch.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Read a small file of the layout directory (no symlink followed).
fn read_small(dir: &OwnedFd, name: &str) -> io::Result<Vec<u8>> {
    let cname = CString::new(name).map_err(io::Error::other)?;
    let fd = sys::open_file_read(dir.as_fd(), &cname)?;
    let st = sys::fstat(fd.as_fd())?;
    if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name} is not a regular file"),
        ));
    }
    let mut bytes = Vec::new();
    File::from(fd).take(MAX_DOCUMENT).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Replace `name` in the layout directory atomically: a temporary file,
/// flushed, renamed over it, the directory flushed.
fn write_atomic(dir: &OwnedFd, path: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let full = path.join(name);
    let tmp =
        sys::random_name(&format!(".tmp-{name}-")).map_err(|e| Error::io("name", &full, e))?;
    let fd =
        sys::create_file(dir.as_fd(), &tmp, 0o644).map_err(|e| Error::io("create", &full, e))?;
    let mut file = File::from(fd);
    let result = file
        .write_all(bytes)
        .and_then(|()| sys::fsync(file.as_fd()))
        .and_then(|()| {
            let cname = CString::new(name).map_err(io::Error::other)?;
            sys::rename_replace(dir.as_fd(), &tmp, dir.as_fd(), &cname)
        })
        .and_then(|()| sys::fsync(dir.as_fd()));
    if let Err(e) = result {
        let _ = sys::unlink_at(dir.as_fd(), &tmp);
        return Err(Error::io("write", &full, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn blob_names_are_only_sha256_hex() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(blob_hex(&good), Some("a".repeat(64).as_str()));
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}/", "a".repeat(63)),
        ] {
            assert_eq!(blob_hex(&bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let map: HashMap<String, u32> = (0..20).map(|i| (format!("k{i:02}"), i)).collect();
        let json = String::from_utf8(canonical_json(&map).unwrap()).unwrap();
        assert!(json.starts_with("{\"k00\":0,\"k01\":1,"), "{json}");
    }
}
