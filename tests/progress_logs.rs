//! Warnings and the progress display on a real terminal (a pty from
//! `script`): a warning logged while the spinner shows gets a line of its
//! own (the spinner makes room and comes back below it), and `NO_COLOR`
//! takes the colours out of the log.

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::Setup;

/// `build-skel base` of the example tree, on a terminal, with a script in
/// `<defaults>/scripts/` that is not executable: its warning comes while
/// the spinner shows. Everything the terminal got.
fn build_on_a_terminal(no_color: bool) -> Vec<u8> {
    let setup = Setup::new("");
    let scripts = setup.defaults.join("scripts");
    fs::create_dir_all(&scripts).unwrap();
    fs::write(scripts.join("not-executable"), "echo hi\n").unwrap();
    let source = setup.example_source();
    let command = format!(
        "{} --config {} build-skel base --from {}",
        env!("CARGO_BIN_EXE_vskel"),
        setup.config.display(),
        source.display()
    );
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
        .env_remove("CI")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .env("VSKEL_LOG", "warn")
        .stdin(Stdio::null());
    if no_color {
        script.env("NO_COLOR", "1");
    }
    let out = script.output().unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// The lines a terminal shows after `output`: text overwrites at the
/// cursor; `\r`, `\n` and the CSI sequences indicatif and the logger use
/// (cursor up/down/column, erase line/below, colours) are followed.
fn screen(output: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(output);
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
                if lines.len() <= row {
                    lines.push(Vec::new());
                }
            }
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut params = String::new();
                let mut last = ' ';
                for p in chars.by_ref() {
                    if p.is_ascii_alphabetic() || p == '~' {
                        last = p;
                        break;
                    }
                    params.push(p);
                }
                let n = params
                    .trim_start_matches('?')
                    .split(';')
                    .next()
                    .and_then(|p| p.parse::<usize>().ok());
                let line = &mut lines[row];
                match last {
                    'A' => row = row.saturating_sub(n.unwrap_or(1).max(1)),
                    'B' => {
                        row += n.unwrap_or(1).max(1);
                        while lines.len() <= row {
                            lines.push(Vec::new());
                        }
                    }
                    'G' => col = n.unwrap_or(1).max(1) - 1,
                    'K' => match n.unwrap_or(0) {
                        0 => line.truncate(col),
                        1 => line.iter_mut().take(col + 1).for_each(|c| *c = ' '),
                        _ => line.clear(),
                    },
                    'J' => {
                        line.truncate(col);
                        lines.truncate(row + 1);
                    }
                    _ => {} // colours, cursor shown or hidden
                }
            }
            c if c.is_control() => {}
            c => {
                let line = &mut lines[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    lines
        .into_iter()
        .map(|l| l.into_iter().collect::<String>().trim_end().to_string())
        .collect()
}

/// Does `output` have an SGR (colour) sequence, `ESC [ ... m`?
fn has_colours(output: &[u8]) -> bool {
    let text = String::from_utf8_lossy(output);
    text.match_indices("\x1b[").any(|(at, _)| {
        text[at + 2..]
            .chars()
            .find(|c| !c.is_ascii_digit() && *c != ';')
            == Some('m')
    })
}

#[test]
fn a_warning_gets_its_own_line_while_the_spinner_shows() {
    let output = build_on_a_terminal(false);
    let raw = String::from_utf8_lossy(&output);
    // The spinner showed, and the warning came while it did.
    let drawn = raw.find("entries").expect("the spinner was never drawn");
    let warned = raw
        .find("is not executable")
        .unwrap_or_else(|| panic!("no warning: {raw:?}"));
    assert!(drawn < warned, "{raw:?}");
    let shown = screen(&output);
    let warning = shown
        .iter()
        .find(|l| l.contains("is not executable"))
        .unwrap_or_else(|| panic!("{shown:#?}"));
    assert!(
        warning.trim_start().starts_with("WARN"),
        "the warning shares a line with the spinner: {shown:#?}"
    );
    assert!(
        !shown.iter().any(|l| l.contains("entries")),
        "the spinner is left on the screen: {shown:#?}"
    );
    // On a terminal the log is in colour, unless NO_COLOR says.
    assert!(has_colours(&output), "{raw:?}");
}

#[test]
fn no_color_takes_the_colours_out_of_the_log() {
    let output = build_on_a_terminal(true);
    let shown = screen(&output);
    assert!(
        shown.iter().any(|l| l.contains("is not executable")),
        "{shown:#?}"
    );
    assert!(
        !has_colours(&output),
        "{:?}",
        String::from_utf8_lossy(&output)
    );
}
