//! Writing results to stdout, as text or JSON (`--format`).

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// Print `value` as JSON, or `text` for people.
pub fn print<T: Serialize>(format: Format, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    let rendered = match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map_err(|e| Error::Failed(format!("cannot encode the result as JSON: {e}")))?,
        Format::Text => text(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", rendered.trim_end())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write", "stdout", e))
}

/// `header` and `rows` as lines of columns aligned by padding, two
/// spaces apart (trailing blanks trimmed).
pub fn aligned<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    std::iter::once(&header)
        .chain(rows)
        .map(|row| {
            row.iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Exit status 1 (after the report was printed) when any vserver of
/// `names` is left with problems: "`what` in NAME, NAME".
pub fn fail_if_any(names: Vec<&str>, what: &str) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    Err(Error::Failed(format!("{what} in {}", names.join(", "))))
}

/// Is this error a closed stdout (e.g. `vskel list | head -1`)?
pub fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}
