//! Asking for a missing value on a terminal; without one, a usage error.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::{Error, Result};

/// `given`, or the answer to `question` when stdin is a terminal.
pub fn value_or_ask(given: Option<&str>, what: &str, question: &str) -> Result<String> {
    if let Some(value) = given {
        return Ok(value.to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "missing {what}: give it on the command line (there is no terminal to ask on)"
        )));
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "{question}: ").map_err(|e| Error::io("write", "stderr", e))?;
    stderr
        .flush()
        .map_err(|e| Error::io("write", "stderr", e))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("read", "stdin", e))?;
    let answer = line.trim().to_string();
    if answer.is_empty() {
        return Err(Error::Usage(format!("no {what} given")));
    }
    Ok(answer)
}
