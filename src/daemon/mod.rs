//! `vskel daemon`: one service that mounts and supervises the views
//! (`service`: start, signals, systemd, reload; `views`: the set of views
//! and the commands on them; `supervisor`: one view's restart loop;
//! `child`: one view's server process), and its control socket: the
//! messages (`protocol`), the socket file and peer credentials
//! (`socket`), the server that serves each connection on a thread of its
//! own (`server`, `connection`), the daemon's answers (`handler`) and the
//! client the command line uses (`client`, `route`); `status_handler`
//! answers `status` alone, for the protocol tests.
//!
//! An op, on the floor of `vserver` (which it uses, with the engines);
//! nothing but `cli` uses it.

pub mod child;
pub mod client;
mod connection;
pub mod handler;
pub mod protocol;
pub mod route;
pub mod server;
pub mod service;
pub mod socket;
pub mod supervisor;
pub mod views;

use serde_json::{Map, Value};

pub use protocol::Handler;
pub use server::{Listening, Server};

use crate::config::Config;
use crate::vserver::status::{StatusReport, status};

/// A handler answering `status` (optional `"vs"`: a name or a list of
/// names) with what `vskel status --format json` prints, and nothing
/// else: what the protocol tests serve until the daemon has its own.
pub fn status_handler(config: Config) -> impl Handler {
    move |cmd: &str, args: &Map<String, Value>| -> Result<Value, String> {
        if cmd != "status" {
            return Err(protocol::unknown_command(cmd));
        }
        let names: Vec<String> = match args.get("vs") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(name)) => vec![name.clone()],
            Some(Value::Array(names)) => names
                .iter()
                .map(|n| n.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or("\"vs\" must be a name or a list of names")?,
            Some(_) => return Err("\"vs\" must be a name or a list of names".to_string()),
        };
        let vservers = status(&config, &names).map_err(|e| e.to_string())?;
        serde_json::to_value(StatusReport { vservers }).map_err(|e| e.to_string())
    }
}
