//! `split-skel`'s journal: the list of steps a committed split still has
//! to do (or do again), as text: `R|D|P <part> <hex path> [N]` lines
//! between a header and an `end` line (a file without it was cut short).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One step of a split; each can be done again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Remove the entry (a directory with all it holds) if present.
    Remove(usize, PathBuf),
    /// Make the directory if missing (replacing a non-directory).
    MakeDir(usize, PathBuf),
    /// Rename `split.new/N` over the entry, if `N` is still there.
    Put(usize, PathBuf, u64),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = String::from("vskel split journal 1\n");
    for op in ops {
        let line = match op {
            Op::Remove(p, rel) => format!("R\t{p}\t{}\n", hex(rel.as_os_str().as_bytes())),
            Op::MakeDir(p, rel) => format!("D\t{p}\t{}\n", hex(rel.as_os_str().as_bytes())),
            Op::Put(p, rel, n) => format!("P\t{p}\t{}\t{n}\n", hex(rel.as_os_str().as_bytes())),
        };
        out.push_str(&line);
    }
    out.push_str("end\n");
    out.into_bytes()
}

pub fn decode(text: &[u8]) -> Option<Vec<Op>> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "vskel split journal 1" {
        return None;
    }
    let mut ops = Vec::new();
    for line in lines {
        if line == "end" {
            return Some(ops);
        }
        let f: Vec<&str> = line.split('\t').collect();
        let p: usize = f.get(1)?.parse().ok().filter(|p| *p < 2)?;
        let rel = PathBuf::from(OsStr::from_bytes(&unhex(f.get(2)?)?));
        ops.push(match *f.first()? {
            "R" => Op::Remove(p, rel),
            "D" => Op::MakeDir(p, rel),
            "P" => Op::Put(p, rel, f.get(3)?.parse().ok()?),
            _ => return None,
        });
    }
    None // no end line: cut short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trips() {
        let ops = vec![
            Op::Remove(1, PathBuf::from("var/a\tb")),
            Op::MakeDir(0, PathBuf::from("usr/share/x")),
            Op::Put(0, PathBuf::from("usr/bin/x\ny"), 7),
        ];
        assert_eq!(decode(&encode(&ops)), Some(ops.clone()));
        let cut = encode(&ops);
        assert_eq!(decode(&cut[..cut.len() - 4]), None);
    }
}
