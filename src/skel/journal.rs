//! `split-skel`'s journal, `split.new/COMMIT`: written once the new
//! global/ and local/ are complete in `split.new/`, it says which
//! generation they replace and which directories (by inode number) they
//! are, so that a re-run can tell a part already swapped in from one not
//! yet swapped. As text: a header, `from G`, one `PART INO` line per part
//! and an `end` line (a file without it was cut short).

/// What a committed split still has to do: swap the new parts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The generation the skel had (its parts go to its kept tree).
    pub from: u64,
    /// The inode number of each new part's root directory, in part order
    /// (global, local).
    pub parts: [u64; 2],
}

const HEADER: &str = "vskel split commit 2";

/// The journal's text.
pub fn encode(commit: &Commit) -> Vec<u8> {
    format!(
        "{HEADER}\nfrom {}\nglobal {}\nlocal {}\nend\n",
        commit.from, commit.parts[0], commit.parts[1]
    )
    .into_bytes()
}

/// The commit `text` says; `None` if it is not a complete journal.
pub fn decode(text: &[u8]) -> Option<Commit> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut field = |name: &str| -> Option<u64> {
        lines
            .next()?
            .strip_prefix(name)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    };
    let commit = Commit {
        from: field("from")?,
        parts: [field("global")?, field("local")?],
    };
    (lines.next()? == "end").then_some(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trips_and_a_cut_one_is_refused() {
        let commit = Commit {
            from: 7,
            parts: [123_456, 42],
        };
        let text = encode(&commit);
        assert_eq!(decode(&text), Some(commit));
        assert_eq!(decode(&text[..text.len() - 4]), None);
        assert_eq!(decode(b"vskel split journal 1\nend\n"), None);
    }
}
