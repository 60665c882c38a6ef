//! Validators for user input: skel and vserver names, IP addresses (and
//! which of them a vserver may have), host names, context IDs, token keys
//! and the vservers root.
//!
//! Every validator is pure and returns an [`InvalidInput`] whose message is
//! phrased for the user: it says what was wrong and quotes the value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Component, Path};

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

/// Whether a vserver may have a loopback address (`127.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loopback {
    /// No: a loopback address is almost always a typing error.
    Refuse,
    /// Yes, asked for explicitly (a vserver only the host talks to).
    Allow,
}

/// Parses the IP address of a vserver: an IPv4 or IPv6 address that one
/// host can have. Refused: the unspecified addresses (`0.0.0.0/8`, `::`),
/// the limited broadcast `255.255.255.255` and the rest of the reserved
/// `240.0.0.0/4`, multicast (`224.0.0.0/4`, `ff00::/8`), and loopback
/// addresses unless `loopback` allows them. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) is judged as its IPv4 address.
pub fn parse_vserver_ip(ip: &str, loopback: Loopback) -> Result<IpAddr, InvalidInput> {
    let addr = parse_ip(ip)?;
    let why = match addr {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => refused_v4(v4),
            None => refused_v6(v6),
        },
    };
    let why = match why {
        Some(Refused::Loopback) if loopback == Loopback::Allow => None,
        Some(Refused::Loopback) => Some(
            "is a loopback address, reachable only from the host itself \
             (give --allow-loopback if that is meant)",
        ),
        Some(Refused::Never(why)) => Some(why),
        None => None,
    };
    match why {
        Some(why) => Err(InvalidInput(format!(
            "invalid IP address {ip:?}: {why}; a vserver needs an address of its own"
        ))),
        None => Ok(addr),
    }
}

/// Is `addr` a loopback address (also as an IPv4-mapped IPv6 address)?
pub fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

/// Why an address cannot be a vserver's.
enum Refused {
    /// Loopback: refused unless asked for.
    Loopback,
    /// Never a host's address.
    Never(&'static str),
}

fn refused_v4(v4: Ipv4Addr) -> Option<Refused> {
    let first = v4.octets()[0];
    if v4.is_unspecified() {
        Some(Refused::Never("is the unspecified address"))
    } else if first == 0 {
        Some(Refused::Never("is in 0.0.0.0/8 (\"this network\")"))
    } else if v4.is_broadcast() {
        Some(Refused::Never("is the broadcast address"))
    } else if first >= 240 {
        Some(Refused::Never("is in the reserved 240.0.0.0/4"))
    } else if v4.is_multicast() {
        Some(Refused::Never("is a multicast address"))
    } else if v4.is_loopback() {
        Some(Refused::Loopback)
    } else {
        None
    }
}

fn refused_v6(v6: Ipv6Addr) -> Option<Refused> {
    if v6.is_unspecified() {
        Some(Refused::Never("is the unspecified address"))
    } else if v6.is_multicast() {
        Some(Refused::Never("is a multicast address"))
    } else if v6.is_loopback() {
        Some(Refused::Loopback)
    } else {
        None
    }
}

/// Checks a DNS host name: one or more labels of 1 to [`MAX_LABEL_LEN`]
/// letters, digits and `-`, no label starting or ending with `-`, at most
/// [`MAX_FQDN_LEN`] bytes in all (not counting one optional trailing dot),
/// the last label not all digits (no top-level domain is, RFC 3696 2) and
/// the whole not an IPv4 address in any form `inet_aton` reads (`1.2.3.4`,
/// `0x7f.1`). A single label such as "localhost" is accepted.
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
    if looks_like_ipv4(name) {
        return bad("is an IP address, not a host name".to_owned());
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return bad(format!(
            "the last label {last:?} is all digits; no top-level domain is"
        ));
    }
    Ok(())
}

/// Would `inet_aton` (and so many resolvers) read `name` as an IPv4
/// address: one to four parts, each a decimal, octal (`0...`) or hex
/// (`0x...`) number?
fn looks_like_ipv4(name: &str) -> bool {
    let number = |part: &str| {
        let (digits, radix) = match part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            Some(hex) => (hex, 16),
            None => (part, 10),
        };
        // "0x" alone is 0 to inet_aton; octal digits are decimal digits.
        digits.bytes().all(|b| (b as char).is_digit(radix)) && (!digits.is_empty() || radix == 16)
    };
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 4 && parts.iter().all(|p| number(p))
}

/// Top-level directories of a Linux system (and, below, those of `/usr`
/// and `/var`) that can never be the vservers root: vskel closes its root
/// to every user but root and removes directories inside it.
const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lost+found",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
];

/// Directories below `/usr` and `/var` that are the system's.
const SYSTEM_SUBDIRS: &[(&str, &[&str])] = &[
    (
        "/usr",
        &[
            "bin", "games", "include", "lib", "libexec", "local", "sbin", "share", "src",
        ],
    ),
    (
        "/var",
        &[
            "backups", "cache", "crash", "lib", "local", "lock", "log", "mail", "opt", "run",
            "spool", "tmp",
        ],
    ),
];

/// Checks the vservers root: an absolute path (already resolved by the
/// caller as far as it exists) that is neither `/` nor a system directory
/// such as `/usr`, `/home` or `/var/lib` (`/lib*` and `/usr/lib*` in every
/// spelling). `.` and `..` are resolved here, by the path's text.
pub fn validate_root(root: &Path) -> Result<(), InvalidInput> {
    let mut parts: Vec<&str> = Vec::new();
    for component in root.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(name) => match name.to_str() {
                Some(name) => parts.push(name),
                // Not UTF-8: no system directory is named so.
                None => return Ok(()),
            },
        }
    }
    let normal = format!("/{}", parts.join("/"));
    let bad = |why: &str| {
        Err(InvalidInput(format!(
            "{} cannot be the vservers root: {why}; vskel closes its root to every user \
             but root and removes directories in it, so it needs a directory of its own \
             (such as /vservers)",
            root.display()
        )))
    };
    let is_lib = |name: &str| name.starts_with("lib");
    match parts.as_slice() {
        [] => bad("it is the root directory /"),
        [top] if SYSTEM_DIRS.contains(&normal.as_str()) || is_lib(top) => {
            bad(&format!("{normal} is a system directory"))
        }
        [top, sub]
            if SYSTEM_SUBDIRS.iter().any(|(dir, subs)| {
                dir[1..] == **top && (subs.contains(sub) || (*top == "usr" && is_lib(sub)))
            }) =>
        {
            bad(&format!("{normal} is a system directory"))
        }
        _ => Ok(()),
    }
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
    fn vserver_ips() {
        use Loopback::{Allow, Refuse};
        let cases: &[(&str, Loopback, Expect)] = &[
            ("10.0.0.1", Refuse, Ok(())),
            ("192.0.2.255", Refuse, Ok(())),
            ("169.254.1.1", Refuse, Ok(())),
            ("223.255.255.254", Refuse, Ok(())),
            ("2001:db8::1", Refuse, Ok(())),
            ("fe80::1:2", Refuse, Ok(())),
            ("::ffff:10.0.0.1", Refuse, Ok(())),
            ("0.0.0.0", Refuse, Err("is the unspecified address")),
            ("0.1.2.3", Refuse, Err("0.0.0.0/8")),
            ("255.255.255.255", Refuse, Err("is the broadcast address")),
            ("240.0.0.1", Refuse, Err("reserved 240.0.0.0/4")),
            ("224.0.0.1", Refuse, Err("is a multicast address")),
            ("239.255.255.250", Refuse, Err("is a multicast address")),
            ("127.0.0.1", Refuse, Err("is a loopback address")),
            ("127.1.2.3", Refuse, Err("--allow-loopback")),
            ("127.0.0.1", Allow, Ok(())),
            ("::", Refuse, Err("is the unspecified address")),
            ("::1", Refuse, Err("is a loopback address")),
            ("::1", Allow, Ok(())),
            ("ff02::1", Refuse, Err("is a multicast address")),
            ("ff02::1", Allow, Err("is a multicast address")),
            ("::ffff:0.0.0.0", Refuse, Err("unspecified")),
            ("::ffff:127.0.0.1", Refuse, Err("loopback")),
            ("::ffff:255.255.255.255", Refuse, Err("broadcast")),
            ("0.0.0.0", Allow, Err("unspecified")),
            (
                "300.1.2.3",
                Refuse,
                Err(r#"invalid IP address "300.1.2.3""#),
            ),
        ];
        for (input, loopback, want) in cases {
            let got = parse_vserver_ip(input, *loopback).map(|_| ());
            check(got.clone(), *want, input);
            if let Err(e) = got {
                assert!(
                    e.0.starts_with(&format!("invalid IP address {input:?}")),
                    "{e}"
                );
            }
        }
        for (ip, loopback) in [
            ("127.0.0.2", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
        ] {
            assert_eq!(is_loopback(ip.parse().unwrap()), loopback, "{ip}");
        }
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn roots() {
        let cases: &[(&str, Expect)] = &[
            ("/vservers", Ok(())),
            ("/srv/vservers", Ok(())),
            ("/var/lib/vservers", Ok(())),
            ("/usr/local/vservers", Ok(())),
            ("/home/admin/vs", Ok(())),
            ("/libertine", Err("/libertine is a system directory")),
            ("/", Err("it is the root directory /")),
            ("/..", Err("it is the root directory /")),
            ("/./", Err("it is the root directory /")),
            ("/vservers/..", Err("root directory /")),
            ("/usr", Err("/usr is a system directory")),
            ("/usr/", Err("/usr is a system directory")),
            ("/usr/lib64", Err("/usr/lib64 is a system directory")),
            ("/usr/libexec", Err("/usr/libexec is a system directory")),
            ("/usr/local", Err("/usr/local is a system directory")),
            ("/var/tmp", Err("/var/tmp is a system directory")),
            ("/var/lib/../log", Err("/var/log is a system directory")),
            ("/lib", Err("/lib is a system directory")),
            ("/lib32", Err("/lib32 is a system directory")),
            ("/home", Err("/home is a system directory")),
            ("/root", Err("/root is a system directory")),
            ("/proc", Err("/proc is")),
            ("/sys", Err("/sys is")),
            ("/dev", Err("/dev is")),
            ("/run", Err("/run is")),
            ("/etc", Err("/etc is")),
            ("/boot", Err("/boot is")),
            ("/tmp", Err("/tmp is")),
            ("/mnt", Err("/mnt is")),
        ];
        for (input, want) in cases {
            check(validate_root(Path::new(input)), *want, input);
        }
        let e = validate_root(Path::new("/usr/")).unwrap_err();
        assert!(e.0.starts_with("/usr/ cannot be the vservers root"), "{e}");
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
            ("EXAMPLE.org", Ok(())),
            ("web1.example.c0m", Ok(())),
            ("1.2.3.example", Ok(())),
            ("0xcafe.example.org", Ok(())),
            ("1password.com", Ok(())),
            (
                "1.2.3.4",
                Err(r#"invalid FQDN "1.2.3.4": is an IP address, not a host name"#),
            ),
            ("1.2.3.4.", Err("is an IP address")),
            ("10.0.0.010", Err("is an IP address")),
            ("0x7f.1", Err("is an IP address")),
            ("0x7f.0.0.0x1", Err("is an IP address")),
            ("2130706433", Err("is an IP address")),
            ("1.2.3.4.5", Err(r#"the last label "5" is all digits"#)),
            ("web1.example.123", Err("all digits")),
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
