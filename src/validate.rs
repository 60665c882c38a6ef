//! Validators for user input: skel and vserver names, IP addresses, host
//! names, context IDs and token keys.
//!
//! Every validator is pure and returns an [`InvalidInput`] whose message is
//! phrased for the user: it says what was wrong and quotes the value.

use std::net::IpAddr;

/// Bad user input, phrased for the user; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// The longest skel or vserver name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The smallest context ID a vserver may use.
pub const CONTEXT_MIN: u32 = 2;
/// The largest context ID a vserver may use.
pub const CONTEXT_MAX: u32 = 49151;

/// The longest DNS label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;
/// The longest DNS host name, in bytes, not counting one trailing dot.
pub const MAX_FQDN_LEN: usize = 253;

/// Checks a skel or vserver name: one path component made of ASCII letters,
/// digits, `.`, `_` and `-`, not empty, not starting with `.` or `-`, and at
/// most [`MAX_NAME_LEN`] bytes long.
///
/// `what` is "skel name" or "vserver name", used in the message.
pub fn validate_name(what: &str, name: &str) -> Result<(), InvalidInput> {
    let bad = |why: &str| Err(InvalidInput(format!("invalid {what} {name:?}: {why}")));
    if name.is_empty() {
        return bad("must not be empty");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!(
            "is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    if name.starts_with('-') {
        return bad("must not start with '-'");
    }
    Ok(())
}

/// Parses an IPv4 or IPv6 address.
pub fn parse_ip(ip: &str) -> Result<IpAddr, InvalidInput> {
    ip.parse::<IpAddr>()
        .map_err(|_| InvalidInput(format!("invalid IP address {ip:?}")))
}

/// Checks a DNS host name: one or more labels of 1 to [`MAX_LABEL_LEN`]
/// letters, digits and `-`, no label starting or ending with `-`, at most
/// [`MAX_FQDN_LEN`] bytes in all (not counting one optional trailing dot).
/// A single label such as "localhost" is accepted.
pub fn validate_fqdn(fqdn: &str) -> Result<(), InvalidInput> {
    let bad = |why: String| Err(InvalidInput(format!("invalid FQDN {fqdn:?}: {why}")));
    let name = fqdn.strip_suffix('.').unwrap_or(fqdn);
    if name.is_empty() {
        return bad("must not be empty".to_owned());
    }
    if name.len() > MAX_FQDN_LEN {
        return bad(format!(
            "is {} bytes long; the limit is {MAX_FQDN_LEN}",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return bad("contains an empty label".to_owned());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad(format!(
                "label {label:?} may only contain letters, digits and '-'"
            ));
        }
        if label.len() > MAX_LABEL_LEN {
            return bad(format!(
                "label {label:?} is {} bytes long; the limit is {MAX_LABEL_LEN}",
                label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad(format!("label {label:?} must not start or end with '-'"));
        }
    }
    Ok(())
}

/// Checks that a context ID is within [`CONTEXT_MIN`]..=[`CONTEXT_MAX`].
pub fn validate_context(id: u32) -> Result<(), InvalidInput> {
    if (CONTEXT_MIN..=CONTEXT_MAX).contains(&id) {
        Ok(())
    } else {
        Err(InvalidInput(format!(
            "invalid context ID {id}: must be between {CONTEXT_MIN} and {CONTEXT_MAX}"
        )))
    }
}

/// Is `b` allowed in a token key?
pub(crate) fn is_token_key_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
}

/// Checks a token key as used in `%%KEY%%`: one or more of `A`-`Z`, `0`-`9`
/// and `_`, starting with `A`-`Z` or `_`.
pub fn validate_token_key(key: &str) -> Result<(), InvalidInput> {
    let bad = |why: &str| Err(InvalidInput(format!("invalid token key {key:?}: {why}")));
    if key.is_empty() {
        return bad("must not be empty");
    }
    if !key.bytes().all(is_token_key_byte) {
        return bad("only 'A'-'Z', '0'-'9' and '_' are allowed");
    }
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        return bad("must start with 'A'-'Z' or '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(())` or the expected part of the error message.
    type Expect = Result<(), &'static str>;

    fn check(got: Result<(), InvalidInput>, want: Expect, input: &str) {
        match (got, want) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(part)) => assert!(
                e.0.contains(part),
                "{input:?}: message {:?} lacks {part:?}",
                e.0
            ),
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn names() {
        let max = "a".repeat(MAX_NAME_LEN);
        let over = "a".repeat(MAX_NAME_LEN + 1);
        let cases: &[(&str, Expect)] = &[
            ("web1", Ok(())),
            ("web-1.example_ok", Ok(())),
            ("a", Ok(())),
            ("A_0", Ok(())),
            ("_x", Ok(())),
            ("x.", Ok(())),
            (&max, Ok(())),
            (
                "../x",
                Err(
                    r#"invalid vserver name "../x": only letters, digits, '.', '_' and '-' are allowed"#,
                ),
            ),
            ("a/b", Err(r#""a/b": only letters"#)),
            (".hidden", Err(r#"".hidden": must not start with '.'"#)),
            (".", Err("must not start with '.'")),
            ("..", Err("must not start with '.'")),
            ("-x", Err(r#""-x": must not start with '-'"#)),
            ("", Err(r#"invalid vserver name "": must not be empty"#)),
            (&over, Err("is 65 bytes long; the limit is 64")),
            ("web 1", Err("only letters")),
            ("web\0", Err(r#""web\0": only letters"#)),
            ("wéb", Err("only letters")),
            ("web\n", Err("only letters")),
        ];
        for (name, want) in cases {
            check(validate_name("vserver name", name), *want, name);
        }
    }

    #[test]
    fn name_message_uses_what() {
        let e = validate_name("skel name", "a/b").unwrap_err();
        assert!(e.0.starts_with(r#"invalid skel name "a/b": "#), "{e}");
    }

    #[test]
    fn ips() {
        let cases: &[(&str, Option<&str>)] = &[
            ("10.0.0.1", Some("10.0.0.1")),
            ("0.0.0.0", Some("0.0.0.0")),
            ("::1", Some("::1")),
            ("fe80::1:2", Some("fe80::1:2")),
            ("2001:db8::ff00:42:8329", Some("2001:db8::ff00:42:8329")),
            ("300.1.2.3", None),
            ("1.2.3", None),
            ("", None),
            ("::g", None),
            (" 10.0.0.1", None),
            ("10.0.0.1/24", None),
        ];
        for (input, want) in cases {
            match (parse_ip(input), want) {
                (Ok(ip), Some(w)) => assert_eq!(ip.to_string(), *w, "{input:?}"),
                (Err(e), None) => {
                    assert_eq!(e.0, format!("invalid IP address {input:?}"));
                }
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn fqdns() {
        let label63 = "a".repeat(MAX_LABEL_LEN);
        let label64 = "a".repeat(MAX_LABEL_LEN + 1);
        let ok63 = format!("{label63}.example");
        let bad64 = format!("{label64}.example");
        // Three labels of 63 bytes and three dots leave 61 bytes to reach 253.
        let three = [label63.as_str(); 3].join(".");
        let len253 = format!("{three}.{}", "d".repeat(61));
        let len253_dot = format!("{len253}.");
        let len254 = format!("{three}.{}", "d".repeat(62));
        let cases: &[(&str, Expect)] = &[
            ("localhost", Ok(())),
            ("web1.example.com", Ok(())),
            ("web1.example.com.", Ok(())),
            ("a-b.c-d", Ok(())),
            ("1.2.3.4", Ok(())),
            ("EXAMPLE.org", Ok(())),
            (&ok63, Ok(())),
            (&len253, Ok(())),
            (&len253_dot, Ok(())),
            (&len254, Err("is 254 bytes long; the limit is 253")),
            (&bad64, Err("is 64 bytes long; the limit is 63")),
            ("_", Err(r#"invalid FQDN "_": label "_" may only contain"#)),
            ("!", Err(r#"label "!" may only"#)),
            ("web_1.example", Err(r#"label "web_1""#)),
            ("a..b", Err(r#""a..b": contains an empty label"#)),
            (".a", Err("empty label")),
            ("a.b..", Err("empty label")),
            ("", Err("must not be empty")),
            (".", Err("must not be empty")),
            (
                "-a.example",
                Err(r#"label "-a" must not start or end with '-'"#),
            ),
            ("a-.example", Err(r#"label "a-" must not"#)),
            ("exa mple", Err("may only contain")),
            ("ex\u{e9}.com", Err("may only contain")),
        ];
        assert_eq!(len253.len(), MAX_FQDN_LEN);
        for (input, want) in cases {
            check(validate_fqdn(input), *want, input);
        }
    }

    #[test]
    fn contexts() {
        let cases: &[(u32, bool)] = &[
            (0, false),
            (1, false),
            (CONTEXT_MIN, true),
            (50, true),
            (CONTEXT_MAX, true),
            (CONTEXT_MAX + 1, false),
            (50000, false),
            (u32::MAX, false),
        ];
        for &(id, ok) in cases {
            match validate_context(id) {
                Ok(()) => assert!(ok, "{id} accepted"),
                Err(e) => {
                    assert!(!ok, "{id} rejected: {e}");
                    assert_eq!(
                        e.0,
                        format!("invalid context ID {id}: must be between 2 and 49151")
                    );
                }
            }
        }
    }

    #[test]
    fn token_keys() {
        let cases: &[(&str, Expect)] = &[
            ("VS_NAME", Ok(())),
            ("A", Ok(())),
            ("_", Ok(())),
            ("_X1", Ok(())),
            ("MY_TOKEN_2", Ok(())),
            ("", Err(r#"invalid token key "": must not be empty"#)),
            (
                "lower",
                Err(r#""lower": only 'A'-'Z', '0'-'9' and '_' are allowed"#),
            ),
            ("Mixed", Err("only 'A'-'Z'")),
            ("A-B", Err("only 'A'-'Z'")),
            ("A B", Err("only 'A'-'Z'")),
            ("%%A%%", Err("only 'A'-'Z'")),
            ("1ABC", Err(r#""1ABC": must start with 'A'-'Z' or '_'"#)),
            ("\u{c4}", Err("only 'A'-'Z'")),
        ];
        for (key, want) in cases {
            check(validate_token_key(key), *want, key);
        }
    }
}
