//! The command line's way to the daemon: whether one runs for this
//! setup (it listens on `[daemon] socket` and serves the same vservers
//! root), and sending it a command. `vskel mount`, `unmount`, `sync`,
//! `materialize` and `status` go through it when it runs, so a view has
//! one server.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tracing::{debug, warn};

use super::client::{Connection, connect};
use super::protocol::{HELLO, PROTOCOL_VERSION};
use crate::config::Config;
use crate::error::{Error, Result};

/// How long a `hello` may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a command may take: a sync of a large view, a mount that
/// waits for its server.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3600);

/// A running daemon of this setup.
#[derive(Debug)]
pub struct Daemon {
    connection: Connection,
    /// Its pid.
    pub pid: Option<u32>,
}

/// The daemon serving `config`'s vservers root, if one runs. A daemon of
/// another root on the same socket is not ours (a warning says so); one
/// that does not answer `hello` is an error.
pub fn running(config: &Config) -> Result<Option<Daemon>> {
    let socket = &config.daemon.socket;
    let Some(mut connection) = connect(socket)? else {
        debug!("no daemon at {}", socket.display());
        return Ok(None);
    };
    let hello = connection.ask(&json!({ "cmd": HELLO }), HELLO_TIMEOUT)?;
    if hello["ok"] != json!(true) || hello["protocol"] != json!(PROTOCOL_VERSION) {
        return Err(Error::Failed(format!(
            "the daemon at {} speaks another protocol ({hello}); restart it with this vskel",
            socket.display()
        )));
    }
    let root = hello["root"].as_str().map(PathBuf::from);
    if root.as_deref() != Some(config.root.as_path()) {
        warn!(
            "the daemon at {} serves {} and this command {}: not asking it",
            socket.display(),
            root.map(|r| r.display().to_string())
                .unwrap_or_else(|| "no vservers root".into()),
            config.root.display()
        );
        return Ok(None);
    }
    let pid = hello["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
    Ok(Some(Daemon { connection, pid }))
}

impl Daemon {
    /// Send `request`; the data of its `"ok": true` reply, or its error.
    pub fn ask(&mut self, request: Value) -> Result<Value> {
        let reply = self.connection.ask(&request, COMMAND_TIMEOUT)?;
        match reply.get("ok") {
            Some(Value::Bool(true)) => Ok(reply),
            _ => Err(Error::Failed(
                reply["error"]
                    .as_str()
                    .unwrap_or("the daemon sent an error reply without a message")
                    .to_string(),
            )),
        }
    }

    /// Send `request` and decode the reply's `"report"`.
    pub fn report<T: serde::de::DeserializeOwned>(&mut self, request: Value) -> Result<(T, Value)> {
        let reply = self.ask(request)?;
        let report = serde_json::from_value(reply["report"].clone()).map_err(|e| {
            Error::Failed(format!(
                "the daemon's reply is not the report expected: {e}"
            ))
        })?;
        Ok((report, reply))
    }
}
