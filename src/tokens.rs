//! The token renderer: replaces `%%KEY%%` tokens in file contents.
//!
//! A token is `%%`, a non-empty key of `A`-`Z`, `0`-`9` and `_`, and `%%`.
//! Rendering is a single left-to-right pass over arbitrary bytes: values are
//! never re-expanded, unknown tokens are left as they are and reported, and
//! a `%%` that does not open a valid token is copied unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::validate::is_token_key_byte;

/// The token delimiter, both opening and closing.
const DELIM: &[u8] = b"%%";
/// The byte the delimiter is made of.
const DELIM_BYTE: u8 = b'%';

/// Key of the vserver's name.
pub const VS_NAME: &str = "VS_NAME";
/// Key of the vserver's IP address.
pub const VS_IP: &str = "VS_IP";
/// Key of the vserver's fully qualified host name.
pub const VS_FQDN: &str = "VS_FQDN";
/// Key of the vserver's context ID.
pub const VS_CONTEXT: &str = "VS_CONTEXT";
/// Key of the vserver's root directory.
pub const VS_ROOT: &str = "VS_ROOT";
/// Key of the skel the vserver is made from.
pub const VS_SKEL: &str = "VS_SKEL";

/// A set of token values, e.g. VS_NAME -> "web1".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    values: BTreeMap<String, String>,
}

impl Tokens {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing any earlier value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.values.insert(key.into(), value.into());
    }

    /// The value of `key`, if it is set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The standard vserver set: VS_NAME, VS_IP, VS_FQDN, VS_CONTEXT,
    /// VS_ROOT, VS_SKEL, then `extra` (user-defined keys from config; they
    /// never override the VS_* ones). A non-UTF-8 `root` is converted lossily.
    pub fn for_vserver(
        name: &str,
        ip: &str,
        fqdn: &str,
        context: u32,
        root: &Path,
        skel: &str,
        extra: &BTreeMap<String, String>,
    ) -> Self {
        let mut tokens = Self::new();
        tokens.insert(VS_NAME, name);
        tokens.insert(VS_IP, ip);
        tokens.insert(VS_FQDN, fqdn);
        tokens.insert(VS_CONTEXT, context.to_string());
        tokens.insert(VS_ROOT, root.to_string_lossy());
        tokens.insert(VS_SKEL, skel);
        for (key, value) in extra {
            tokens
                .values
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        tokens
    }

    /// (key, value) pairs in key order, for putting in a child's environment.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Result of rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The rendered bytes.
    pub bytes: Vec<u8>,
    /// unknown token keys found, sorted, deduplicated
    pub unknown: Vec<String>,
}

/// Replace every known %%KEY%% in `input` (arbitrary bytes, may be
/// non-UTF-8); unknown tokens are left as they are and reported.
///
/// Single pass: a value that itself contains %%X%% is NOT re-expanded. `%%`
/// not followed by a valid key and closing `%%` is left alone, so
/// "100%% sure %%VS_NAME%%" still renders VS_NAME and "%%%%VS_NAME%%"
/// renders to "%%web1". When several `%` precede a key, the last two open
/// the token ("%%%VS_NAME%%" renders to "%web1"). Runs in O(n).
pub fn render(input: &[u8], tokens: &Tokens) -> Rendered {
    let mut out = Vec::with_capacity(input.len());
    let mut unknown = BTreeSet::new();
    let mut i = 0;
    while i < input.len() {
        // Copy everything up to the next '%' in one go.
        let Some(offset) = input[i..].iter().position(|&b| b == DELIM_BYTE) else {
            out.extend_from_slice(&input[i..]);
            break;
        };
        out.extend_from_slice(&input[i..i + offset]);
        i += offset;
        if !input[i..].starts_with(DELIM) {
            out.push(DELIM_BYTE);
            i += 1;
            continue;
        }
        let key_start = i + DELIM.len();
        let key_len = input[key_start..]
            .iter()
            .take_while(|&&b| is_token_key_byte(b))
            .count();
        let key_end = key_start + key_len;
        if key_len == 0 {
            // "%%" followed by something that is no key: this '%' is text,
            // the next one may still open a token.
            out.push(DELIM_BYTE);
            i += 1;
            continue;
        }
        if !input[key_end..].starts_with(DELIM) {
            // "%%KEY" not closed: no '%' lies inside the key, so nothing
            // before `key_end` can open a token.
            out.extend_from_slice(&input[i..key_end]);
            i = key_end;
            continue;
        }
        let token_end = key_end + DELIM.len();
        // Key bytes are ASCII, so this conversion cannot fail.
        let key = std::str::from_utf8(&input[key_start..key_end]).ok();
        match key.and_then(|k| tokens.get(k).map(|v| (k, v))) {
            Some((_, value)) => out.extend_from_slice(value.as_bytes()),
            None => {
                if let Some(k) = key {
                    unknown.insert(k.to_owned());
                }
                out.extend_from_slice(&input[i..token_end]);
            }
        }
        i = token_end;
    }
    Rendered {
        bytes: out,
        unknown: unknown.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tokens {
        let mut extra = BTreeMap::new();
        extra.insert("ADMIN".to_owned(), "root@example.com".to_owned());
        extra.insert("LOOP".to_owned(), "%%VS_IP%%".to_owned());
        extra.insert(VS_NAME.to_owned(), "overridden".to_owned());
        Tokens::for_vserver(
            "web1",
            "10.0.0.1",
            "web1.example.com",
            50,
            Path::new("/vservers/web1"),
            "debian",
            &extra,
        )
    }

    #[test]
    fn render_table() {
        let cases: &[(&[u8], &[u8], &[&str])] = &[
            (b"", b"", &[]),
            (b"plain text\n", b"plain text\n", &[]),
            (b"%%VS_NAME%%", b"web1", &[]),
            (b"%%VS_IP%%", b"10.0.0.1", &[]),
            (b"%%VS_FQDN%%", b"web1.example.com", &[]),
            (b"%%VS_CONTEXT%%", b"50", &[]),
            (b"%%VS_ROOT%%", b"/vservers/web1", &[]),
            (b"%%VS_SKEL%%", b"debian", &[]),
            (b"%%ADMIN%%", b"root@example.com", &[]),
            (
                b"host %%VS_NAME%% at %%VS_IP%% (%%VS_FQDN%%)\n",
                b"host web1 at 10.0.0.1 (web1.example.com)\n",
                &[],
            ),
            (b"%%VS_NAME%%%%VS_IP%%", b"web110.0.0.1", &[]),
            (b"%%NOPE%%", b"%%NOPE%%", &["NOPE"]),
            (
                b"%%NOPE%% %%VS_NAME%% %%NOPE%% %%ALSO%%",
                b"%%NOPE%% web1 %%NOPE%% %%ALSO%%",
                &["ALSO", "NOPE"],
            ),
            (b"%%vs_name%%", b"%%vs_name%%", &[]),
            (b"%%VS_name%%", b"%%VS_name%%", &[]),
            (b"%%VS_NAME", b"%%VS_NAME", &[]),
            (b"%%VS_NAME%", b"%%VS_NAME%", &[]),
            (b"x %%VS_NAME\n%%VS_IP%%", b"x %%VS_NAME\n10.0.0.1", &[]),
            (b"%%%%", b"%%%%", &[]),
            (b"%%", b"%%", &[]),
            (b"%", b"%", &[]),
            (b"%%%", b"%%%", &[]),
            (b"%%%%VS_NAME%%", b"%%web1", &[]),
            (b"%%%VS_NAME%%", b"%web1", &[]),
            (b"100%% sure %%VS_NAME%%", b"100%% sure web1", &[]),
            (b"50% %%VS_SKEL%%", b"50% debian", &[]),
            (b"%%LOOP%%", b"%%VS_IP%%", &[]),
            (b"%%LOOP%%%%VS_IP%%", b"%%VS_IP%%10.0.0.1", &[]),
            (
                b"\xff\xfe%%VS_NAME%%\x00\x80%%VS_CONTEXT%%\xc3",
                b"\xff\xfeweb1\x00\x8050\xc3",
                &[],
            ),
            (b"%%NOPE%%VS_NAME%%", b"%%NOPE%%VS_NAME%%", &["NOPE"]),
            (b"%% VS_NAME %%", b"%% VS_NAME %%", &[]),
        ];
        let tokens = sample();
        for (input, want, unknown) in cases {
            let got = render(input, &tokens);
            assert_eq!(
                got.bytes,
                *want,
                "{}: got {}",
                input.escape_ascii(),
                got.bytes.escape_ascii()
            );
            assert_eq!(got.unknown, *unknown, "{}", input.escape_ascii());
        }
    }

    #[test]
    fn render_is_linear_on_pathological_input() {
        let size = 1 << 20;
        let mut input = b"%%".repeat(size / 2);
        input.extend(b"A".repeat(size));
        let got = render(&input, &Tokens::new());
        assert_eq!(got.bytes, input);
        assert!(got.unknown.is_empty());
    }

    #[test]
    fn for_vserver_values() {
        let tokens = sample();
        let want: &[(&str, &str)] = &[
            ("ADMIN", "root@example.com"),
            ("LOOP", "%%VS_IP%%"),
            (VS_CONTEXT, "50"),
            (VS_FQDN, "web1.example.com"),
            (VS_IP, "10.0.0.1"),
            (VS_NAME, "web1"),
            (VS_ROOT, "/vservers/web1"),
            (VS_SKEL, "debian"),
        ];
        assert_eq!(tokens.iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn insert_and_get() {
        // (inserts in order, key looked up, value found)
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Pairs<'_>, &str, Option<&str>)] = &[
            (&[], "A", None),
            (&[("A", "1")], "A", Some("1")),
            (&[("A", "1"), ("A", "2")], "A", Some("2")),
            (&[("A", "1")], "B", None),
        ];
        for (inserts, key, want) in cases {
            let mut tokens = Tokens::new();
            for (k, v) in *inserts {
                tokens.insert(*k, *v);
            }
            assert_eq!(tokens.get(key), *want, "{inserts:?} {key}");
        }
    }
}
