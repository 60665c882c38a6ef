//! Path rules: which relative paths of a tree a rule set selects (config
//! `global`, which paths go to a skel's `global/`, and `exclude`, which
//! paths `build-skel` leaves out).
//!
//! A rule is a relative path whose components may be glob patterns
//! (`lib*`, `usr/*/doc`), matched one component at a time; a leading '!'
//! excludes. The rule with the most components that matches a path or one
//! of its ancestors decides; on a tie exclusion wins; no rule: not
//! selected.

use std::borrow::Cow;
use std::path::{Component, Path};

/// One rule of [`GlobalRules`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    /// The rule as written.
    text: String,
    /// A leading '!': matching paths are not global.
    exclude: bool,
    /// One pattern per path component.
    components: Vec<glob::Pattern>,
}

/// How rule components match path components: `*` and `?` never match a
/// leading '.', as in the shell.
const MATCH_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

impl Rule {
    /// Parse one rule (see [`GlobalRules::parse`]).
    pub(crate) fn parse(text: &str) -> Result<Rule, String> {
        let (exclude, body) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if body.is_empty() {
            return Err(format!("rule {text:?} is empty"));
        }
        if body.starts_with('/') {
            return Err(format!(
                "rule {text:?} is absolute; rules are relative to the tree's top"
            ));
        }
        let mut components = Vec::new();
        for part in body.split('/') {
            match part {
                "" => return Err(format!("rule {text:?} has an empty path component")),
                ".." => return Err(format!("rule {text:?} must not contain '..'")),
                "." => return Err(format!("rule {text:?} must not contain '.' components")),
                _ => {}
            }
            let pattern = glob::Pattern::new(part)
                .map_err(|e| format!("rule {text:?} is not a valid glob pattern: {e}"))?;
            components.push(pattern);
        }
        Ok(Rule {
            text: text.to_owned(),
            exclude,
            components,
        })
    }

    /// Do the first `min(len, path.len())` components match?
    fn matches_prefix_of(&self, path: &[Cow<'_, str>]) -> bool {
        self.components
            .iter()
            .zip(path)
            .all(|(pattern, part)| pattern.matches_with(part, MATCH_OPTIONS))
    }
}

/// The normal components of a relative path (a leading '/' or '.' is
/// ignored; non-UTF-8 components are converted lossily).
fn path_components(rel: &Path) -> Vec<Cow<'_, str>> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy()),
            Component::ParentDir => Some(Cow::Borrowed("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Decides which relative paths of a source tree go to the skel's global/.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalRules {
    rules: Vec<Rule>,
}

impl Default for GlobalRules {
    /// The rules of [`GlobalRules::default_rules`].
    fn default() -> Self {
        GlobalRules::parse(&GlobalRules::default_rules())
            .expect("the default global rules are valid")
    }
}

impl GlobalRules {
    /// Parse rule strings: "usr", "lib*", "!usr/local". Components may hold
    /// glob patterns (glob::Pattern, matched per component). A leading '!'
    /// excludes. Rules must be relative, non-empty, without empty, `.` or
    /// `..` components.
    pub fn parse(rules: &[String]) -> Result<GlobalRules, String> {
        let rules = rules
            .iter()
            .map(|r| Rule::parse(r))
            .collect::<Result<_, _>>()?;
        Ok(GlobalRules { rules })
    }

    /// The default rules: ["bin", "lib*", "sbin", "usr", "!usr/local"].
    pub fn default_rules() -> Vec<String> {
        ["bin", "lib*", "sbin", "usr", "!usr/local"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// The default `exclude` rules: apt's downloaded lists and caches.
    pub fn default_exclude() -> Vec<String> {
        [
            "var/lib/apt/lists/*_*",
            "var/cache/apt/*.bin",
            "var/cache/apt/archives/*.deb",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    /// Does a rule select this path (the same as [`GlobalRules::is_global`],
    /// for rule sets that say something else than "global")?
    pub fn matches(&self, rel: &Path) -> bool {
        self.is_global(rel)
    }

    /// Is this relative path (no leading '/') global? The rule with the most
    /// components that matches the path or one of its ancestors decides (a
    /// rule of k components matches path p when p has at least k components
    /// and the first k match); ties: exclusion wins; no rule: not global.
    pub fn is_global(&self, rel: &Path) -> bool {
        let path = path_components(rel);
        let mut best: Option<(usize, bool)> = None;
        for rule in &self.rules {
            let len = rule.components.len();
            if len > path.len() || !rule.matches_prefix_of(&path) {
                continue;
            }
            let better = match best {
                None => true,
                Some((best_len, best_exclude)) => {
                    len > best_len || (len == best_len && rule.exclude && !best_exclude)
                }
            };
            if better {
                best = Some((len, rule.exclude));
            }
        }
        matches!(best, Some((_, false)))
    }

    /// Could anything at or below `rel` be global, or anything below it be
    /// not global? i.e. does any rule have more components than `rel` and
    /// match rel's components as a prefix? Used by the walker to know a
    /// directory's children may be classified differently from the
    /// directory itself.
    pub fn has_rules_below(&self, rel: &Path) -> bool {
        let path = path_components(rel);
        self.rules
            .iter()
            .any(|rule| rule.components.len() > path.len() && rule.matches_prefix_of(&path))
    }

    /// The rules as written, in order.
    pub fn as_strings(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.text.clone()).collect()
    }
}

impl From<Vec<Rule>> for GlobalRules {
    fn from(rules: Vec<Rule>) -> Self {
        GlobalRules { rules }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn global_defaults() {
        let rules = GlobalRules::default();
        assert_eq!(rules.as_strings(), GlobalRules::default_rules());
        let cases: &[(&str, bool)] = &[
            ("bin", true),
            ("bin/ls", true),
            ("lib", true),
            ("lib64", true),
            ("lib/x86_64-linux-gnu/libc.so.6", true),
            ("libexec", true),
            ("sbin", true),
            ("usr", true),
            ("usr/bin/env", true),
            ("usr/share/doc", true),
            ("./usr/bin", true),
            ("usr/local", false),
            ("usr/local/bin/x", false),
            ("usr/locale", true),
            ("etc", false),
            ("etc/passwd", false),
            ("var", false),
            ("home", false),
            ("", false),
            ("Bin", false),
            ("xbin", false),
            (".lib", false),
        ];
        for (path, want) in cases {
            assert_eq!(rules.is_global(Path::new(path)), *want, "{path:?}");
        }
    }

    #[test]
    fn global_has_rules_below() {
        let rules = GlobalRules::default();
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("usr", true),
            ("usr/local", false),
            ("usr/local/bin", false),
            ("usr/bin", false),
            ("etc", false),
            ("bin", false),
        ];
        for (path, want) in cases {
            assert_eq!(rules.has_rules_below(Path::new(path)), *want, "{path:?}");
        }
    }

    #[test]
    fn global_custom_rules() {
        // (rules, path, is_global)
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], "usr", false),
            (&["usr", "!usr"], "usr", false),
            (&["!usr", "usr"], "usr/bin", false),
            (&["!usr", "usr/bin"], "usr/bin/x", true),
            (&["!usr", "usr/bin"], "usr/sbin", false),
            (&["*/lib"], "opt/lib/x", true),
            (&["*/lib"], "opt", false),
            (&["usr", "!usr/*", "usr/share"], "usr/share/doc", false),
            (&["usr", "!usr/*", "usr/share/doc"], "usr/share/doc/x", true),
            (&["usr", "!usr/*", "usr/share"], "usr/lib", false),
            (&["usr", "!usr/*", "usr/share"], "usr", true),
            (&["lib?"], "lib6", true),
            (&["lib?"], "lib64", false),
            (&["lib[0-9]*"], "lib64", true),
            (&["*"], ".hidden", false),
            (&[".hidden"], ".hidden/x", true),
        ];
        for (rules, path, want) in cases {
            let parsed = GlobalRules::parse(&strings(rules)).expect("valid rules");
            assert_eq!(
                parsed.is_global(Path::new(path)),
                *want,
                "{rules:?} {path:?}"
            );
        }
    }

    #[test]
    fn global_parse_errors() {
        let cases: &[(&str, &str)] = &[
            ("", r#"rule "" is empty"#),
            ("!", r#"rule "!" is empty"#),
            ("/usr", r#"rule "/usr" is absolute"#),
            ("!/usr", "is absolute"),
            ("usr/../etc", "must not contain '..'"),
            ("..", "must not contain '..'"),
            ("usr//bin", "empty path component"),
            ("usr/", "empty path component"),
            ("./usr", "'.' components"),
            ("lib[", r#"rule "lib[" is not a valid glob pattern"#),
            ("a/***", "not a valid glob pattern"),
        ];
        for (rule, want) in cases {
            let err = GlobalRules::parse(&strings(&["bin", rule])).unwrap_err();
            assert!(err.contains(want), "{rule:?}: {err}");
        }
    }
}
