//! The daemon's control socket (the daemon itself comes next): its
//! messages (`protocol`), the socket file and peer credentials
//! (`socket`), the server that serves each connection on a thread of its
//! own (`server`, `connection`) and the client the command line uses
//! (`client`); `status_handler` answers `status` as `vskel status` does.
//!
//! An op, on the floor of `vserver` (which it uses, with the engines);
//! nothing but `cli` uses it.

pub mod client;
mod connection;
pub mod protocol;
pub mod server;
pub mod socket;

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
