//! The on-disk text of a generation's files: one entry a line, fields
//! separated by tabs, bytes outside printable ASCII (and `%`, `,`, `=`)
//! written `%XX`.
//!
//! ```text
//! vskel-generation record 1           magic, file type, format version
//! {"generation":2,"follows":1,...}    the header (JSON)
//! g f 644 0 0 1234 SEC.NSEC SEC.NSEC RDEV DEV INO HASH XATTRS PATH
//! ...                                 entries, sorted by (part, path bytes)
//! end COUNT BLAKE3                    count of entry lines, hash of all above
//! ```
//!
//! A changes file is the same with `changes` as its type and each line
//! prefixed `o` (the entry in the generation before) or `n` (in this one);
//! a path's `o` line comes right before its `n` line. The trailer makes a
//! truncated or hand-edited file an error that names it.

use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::entry::{Entry, Hash, Kind, Part};

/// The first word of every generation file.
const MAGIC: &str = "vskel-generation";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The first word of the trailer line.
const END: &str = "end";

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A full record.
    Record,
    /// Changes against the generation before.
    Changes,
}

impl FileType {
    fn word(self) -> &'static str {
        match self {
            FileType::Record => "record",
            FileType::Changes => "changes",
        }
    }
}

/// What a generation's files say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Its number (1, 2, ...).
    pub generation: u64,
    /// The generation it follows (none for the first one recorded).
    pub follows: Option<u64>,
    /// When it was made (seconds since the epoch).
    pub made: u64,
    /// The command that made it (`build-skel`, `create-vs web1`, ...).
    pub made_by: String,
    /// Number of entries of the full record.
    pub entries: u64,
    /// Bytes of regular-file data of the full record.
    pub bytes: u64,
    /// Number of changed paths against `follows` (0 for the first).
    pub changes: u64,
}

/// A file's text did not parse: what was wrong (the caller names the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage(pub String);

fn damage(what: impl Into<String>) -> Damage {
    Damage(what.into())
}

/// Encode a whole file: the magic line, the header, `lines` and the trailer.
pub fn encode_file(file_type: FileType, header: &Header, lines: &[String]) -> Vec<u8> {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 256);
    let _ = writeln!(out, "{MAGIC} {} {FORMAT_VERSION}", file_type.word());
    // A header of plain fields always encodes.
    out.push_str(&serde_json::to_string(header).unwrap_or_default());
    out.push('\n');
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    let sum = blake3::hash(out.as_bytes());
    let _ = writeln!(out, "{END} {} {}", lines.len(), sum.to_hex());
    out.into_bytes()
}

/// Check a whole file and give its header and entry lines.
pub fn decode_file(file_type: FileType, text: &[u8]) -> Result<(Header, Vec<&[u8]>), Damage> {
    let body_end = text
        .strip_suffix(b"\n")
        .ok_or_else(|| damage("truncated (no final newline)"))?;
    let trailer_start = body_end
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let (body, trailer) = text.split_at(trailer_start);
    let trailer = std::str::from_utf8(&trailer[..trailer.len() - 1])
        .map_err(|_| damage("truncated (bad trailer)"))?;
    let mut words = trailer.split(' ');
    let (Some(END), Some(count), Some(sum), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(damage("truncated (no `end` trailer)"));
    };
    let sum = blake3::Hash::from_hex(sum).map_err(|_| damage("bad checksum in the trailer"))?;
    if blake3::hash(body) != sum {
        return Err(damage("checksum mismatch (edited or damaged)"));
    }
    let mut lines = body
        .strip_suffix(b"\n")
        .unwrap_or(body)
        .split(|&b| b == b'\n');
    let magic = lines.next().unwrap_or_default();
    let want = format!("{MAGIC} {} ", file_type.word());
    let version = magic
        .strip_prefix(want.as_bytes())
        .ok_or_else(|| damage(format!("not a generation {} file", file_type.word())))?;
    if version != FORMAT_VERSION.to_string().as_bytes() {
        return Err(damage(format!(
            "format version {} (this vskel reads version {FORMAT_VERSION})",
            String::from_utf8_lossy(version)
        )));
    }
    let header: Header = serde_json::from_slice(lines.next().unwrap_or_default())
        .map_err(|e| damage(format!("bad header: {e}")))?;
    let entries: Vec<&[u8]> = lines.collect();
    if count.parse::<usize>().ok() != Some(entries.len()) {
        return Err(damage(format!(
            "the trailer counts {count} lines, the file has {}",
            entries.len()
        )));
    }
    Ok((header, entries))
}

/// One entry as a line (no newline).
pub fn encode_entry(e: &Entry) -> String {
    let mut s = String::with_capacity(160 + e.path.as_os_str().len());
    let _ = write!(
        s,
        "{}\t{}\t{:o}\t{}\t{}\t{}\t{}.{:09}\t{}.{:09}\t{}\t{}\t{}\t",
        part_code(e.part),
        kind_code(e.kind),
        e.mode,
        e.uid,
        e.gid,
        e.size,
        e.mtime.0,
        e.mtime.1,
        e.ctime.0,
        e.ctime.1,
        e.rdev,
        e.dev,
        e.ino,
    );
    match &e.hash {
        Some(h) => s.push_str(blake3::Hash::from_bytes(*h).to_hex().as_str()),
        None => s.push('-'),
    }
    s.push('\t');
    if e.xattrs.is_empty() {
        s.push('-');
    }
    for (i, (name, value)) in e.xattrs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        escape_into(&mut s, name);
        s.push('=');
        for b in value {
            let _ = write!(s, "{b:02x}");
        }
    }
    s.push('\t');
    let path = e.path.as_os_str().as_bytes();
    if path.is_empty() {
        s.push('.');
    } else {
        escape_into(&mut s, path);
    }
    s
}

/// An entry from its line.
pub fn decode_entry(line: &[u8]) -> Result<Entry, Damage> {
    let bad = |what: &str| {
        damage(format!(
            "bad entry line ({what}): {}",
            String::from_utf8_lossy(line)
        ))
    };
    let mut f = line.split(|&b| b == b'\t');
    let mut next = |what: &str| f.next().ok_or_else(|| bad(what));
    let part = match next("part")? {
        b"g" => Part::Global,
        b"l" => Part::Local,
        b"s" => Part::Static,
        _ => return Err(bad("part")),
    };
    let kind = match next("kind")? {
        b"f" => Kind::File,
        b"d" => Kind::Dir,
        b"l" => Kind::Symlink,
        b"c" => Kind::Char,
        b"b" => Kind::Block,
        b"p" => Kind::Fifo,
        b"s" => Kind::Socket,
        _ => return Err(bad("kind")),
    };
    let mode = octal(next("mode")?).ok_or_else(|| bad("mode"))?;
    let uid = number(next("uid")?).ok_or_else(|| bad("uid"))?;
    let gid = number(next("gid")?).ok_or_else(|| bad("gid"))?;
    let size = number(next("size")?).ok_or_else(|| bad("size"))?;
    let mtime = time(next("mtime")?).ok_or_else(|| bad("mtime"))?;
    let ctime = time(next("ctime")?).ok_or_else(|| bad("ctime"))?;
    let rdev = number(next("rdev")?).ok_or_else(|| bad("rdev"))?;
    let dev = number(next("dev")?).ok_or_else(|| bad("dev"))?;
    let ino = number(next("ino")?).ok_or_else(|| bad("ino"))?;
    let hash = match next("hash")? {
        b"-" => None,
        h => Some(hash(h).ok_or_else(|| bad("hash"))?),
    };
    let xattrs = match next("xattrs")? {
        b"-" => Vec::new(),
        x => x
            .split(|&b| b == b',')
            .map(|pair| {
                let eq = pair.iter().position(|&b| b == b'=')?;
                Some((unescape(&pair[..eq])?, unhex(&pair[eq + 1..])?))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("xattrs"))?,
    };
    let path = match next("path")? {
        b"." => PathBuf::new(),
        p => PathBuf::from(std::ffi::OsString::from_vec(
            unescape(p).ok_or_else(|| bad("path"))?,
        )),
    };
    if f.next().is_some() {
        return Err(bad("extra fields"));
    }
    if !is_clean_relative(&path) {
        return Err(bad("path not a plain relative path"));
    }
    Ok(Entry {
        part,
        path,
        kind,
        mode,
        uid,
        gid,
        size,
        mtime,
        ctime,
        rdev,
        dev,
        ino,
        xattrs,
        hash,
    })
}

/// A path of normal components only (no `..`, `.`, root or empty ones).
fn is_clean_relative(path: &Path) -> bool {
    let bytes = path.as_os_str().as_bytes();
    bytes.is_empty()
        || (!bytes.starts_with(b"/")
            && !bytes.ends_with(b"/")
            && bytes
                .split(|&b| b == b'/')
                .all(|c| !c.is_empty() && c != b"." && c != b".."))
}

fn part_code(p: Part) -> char {
    match p {
        Part::Global => 'g',
        Part::Local => 'l',
        Part::Static => 's',
    }
}

fn kind_code(k: Kind) -> char {
    match k {
        Kind::File => 'f',
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::Char => 'c',
        Kind::Block => 'b',
        Kind::Fifo => 'p',
        Kind::Socket => 's',
    }
}

fn ascii(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

/// Permission bits in octal (at most `7777`).
fn octal(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 4 {
        return None;
    }
    b.iter().try_fold(0u32, |n, &c| {
        let digit = c.wrapping_sub(b'0');
        (digit < 8).then(|| n * 8 + u32::from(digit))
    })
}

/// A decimal number of plain digits (no sign), as the line has it.
fn number<T: TryFrom<u64>>(b: &[u8]) -> Option<T> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(digit))?;
    }
    T::try_from(n).ok()
}

fn time(b: &[u8]) -> Option<(i64, i64)> {
    let dot = b.iter().position(|&c| c == b'.')?;
    let (sec, nsec) = (&b[..dot], &b[dot + 1..]);
    let sec: i64 = match sec.strip_prefix(b"-") {
        Some(abs) => number::<i64>(abs)?.checked_neg()?,
        None => number(sec)?,
    };
    let nsec: i64 = number(nsec).filter(|n: &i64| (0..1_000_000_000).contains(n))?;
    Some((sec, nsec))
}

fn hash(b: &[u8]) -> Option<Hash> {
    let mut out = [0u8; 32];
    if b.len() != 64 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn unhex(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// The value of one lower-case hex digit.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Does byte `b` stand for itself in a field?
fn is_plain(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'%' | b',' | b'=')
}

fn escape_into(s: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if is_plain(b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
}

fn unescape(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let value = u8::from_str_radix(ascii(hex)?, 16).ok()?;
                if is_plain(value) {
                    return None; // one spelling per path
                }
                out.push(value);
                i += 3;
            }
            c if is_plain(c) => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            part: Part::Local,
            path: PathBuf::from(std::ffi::OsString::from_vec(
                b"etc/a b%c,=\t\n\xff".to_vec(),
            )),
            kind: Kind::File,
            mode: 0o4755,
            uid: 1000,
            gid: 7,
            size: 42,
            mtime: (-5, 123),
            ctime: (1_700_000_000, 999_999_999),
            rdev: 0,
            dev: 2049,
            ino: 77,
            xattrs: vec![(b"user.x y".to_vec(), vec![0, 255, 10])],
            hash: Some([7; 32]),
        }
    }

    #[test]
    fn entries_round_trip() {
        let mut root = sample();
        root.path = PathBuf::new();
        root.xattrs.clear();
        root.hash = None;
        for e in [sample(), root] {
            let line = encode_entry(&e);
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(decode_entry(line.as_bytes()), Ok(e));
        }
    }

    #[test]
    fn files_round_trip_and_damage_is_seen() {
        let header = Header {
            generation: 3,
            follows: Some(2),
            made: 1,
            made_by: "test".into(),
            entries: 1,
            bytes: 42,
            changes: 0,
        };
        let lines = vec![encode_entry(&sample())];
        let text = encode_file(FileType::Record, &header, &lines);
        let (h, got) = decode_file(FileType::Record, &text).unwrap();
        assert_eq!(h, header);
        assert_eq!(got, vec![lines[0].as_bytes()]);
        assert!(decode_file(FileType::Changes, &text).is_err());
        assert!(decode_file(FileType::Record, &text[..text.len() - 3]).is_err());
        let mut edited = text.clone();
        let at = edited.iter().position(|&b| b == b'\t').unwrap() - 1;
        edited[at] = b's';
        assert!(decode_file(FileType::Record, &edited).is_err());
    }

    #[test]
    fn bad_lines_are_refused() {
        for line in [
            "",
            "x\tf",
            "g\tf\t9\t0\t0\t0\t0.0\t0.0\t0\t0\t0\t-\t-\ta",
            "g\tf\t644\t0\t0\t0\t0.0\t0.0\t0\t0\t0\t-\t-\t../etc",
            "g\tf\t644\t0\t0\t0\t0.0\t0.0\t0\t0\t0\t-\t-\ta\textra",
            "g\tf\t644\t0\t0\t0\t0.5000000000\t0.0\t0\t0\t0\t-\t-\ta",
        ] {
            assert!(decode_entry(line.as_bytes()).is_err(), "{line:?}");
        }
    }
}
