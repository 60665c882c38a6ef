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

/// The version every `--format json` document carries as its first key,
/// `"version"`. docs/json.md says what raises it: a key removed or
/// renamed, or a value's type or meaning changed (a key added does not).
pub const JSON_VERSION: u32 = 1;

/// Print `value` (a struct: a JSON object) as one JSON document with
/// `"version"` first, or `text` for people.
pub fn print<T: Serialize>(format: Format, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    emit(format, || document(value, None), text)
}

/// Print `items` (a list) as one JSON document `{"version": 1, key: [...]}`,
/// or `text` for people.
pub fn print_list<T: Serialize>(
    format: Format,
    key: &str,
    items: &[T],
    text: impl FnOnce() -> String,
) -> Result<()> {
    emit(format, || document(&items, Some(key)), text)
}

fn emit(
    format: Format,
    json: impl FnOnce() -> Result<String>,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let rendered = match format {
        Format::Json => json()?,
        Format::Text => text(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", rendered.trim_end())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write", "stdout", e))
}

/// The JSON document of `value`: an object with `"version"` added first,
/// or (with `key`) a list under `key` beside `"version"`.
fn document<T: Serialize>(value: &T, key: Option<&str>) -> Result<String> {
    let encode_error =
        |e: serde_json::Error| Error::Failed(format!("cannot encode the result as JSON: {e}"));
    let shape = serde_json::to_value(value).map_err(encode_error)?;
    let rendered = match (key, &shape) {
        (None, serde_json::Value::Object(fields)) if !fields.contains_key("version") => {
            serde_json::to_string_pretty(&Versioned {
                version: JSON_VERSION,
                body: value,
            })
        }
        (Some(key), serde_json::Value::Array(_)) if key != "version" => {
            serde_json::to_string_pretty(&Keyed { key, items: value })
        }
        _ => {
            return Err(Error::Failed(format!(
                "cannot encode the result as a versioned JSON document: it is {} \
                 (a bug in vskel)",
                match (key, &shape) {
                    (None, serde_json::Value::Object(_)) => "an object with a key \"version\"",
                    (None, _) => "not an object",
                    (Some(_), serde_json::Value::Array(_)) => "a list under the key \"version\"",
                    (Some(_), _) => "not a list",
                }
            )));
        }
    };
    rendered.map_err(encode_error)
}

/// An object with `"version"` before its own keys.
#[derive(Serialize)]
struct Versioned<'a, T> {
    version: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// `{"version": N, key: items}`.
struct Keyed<'a, T> {
    key: &'a str,
    items: &'a T,
}

impl<T: Serialize> Serialize for Keyed<'_, T> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("version", &JSON_VERSION)?;
        map.serialize_entry(self.key, self.items)?;
        map.end()
    }
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
