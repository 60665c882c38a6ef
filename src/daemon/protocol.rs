//! The control protocol's messages: one JSON object per line each way.
//!
//! A request is an object with a string `"cmd"`; its other fields are the
//! command's arguments. Every reply is an object with `"ok": true` and the
//! command's data, or `"ok": false` and an `"error"` message.
//! `{"cmd":"hello"}` answers `{"ok":true,"protocol":1,"version":"..."}`
//! (the crate version). Pure functions on bytes and values: the socket
//! work is `server`'s and `client`'s.

use serde_json::{Map, Value, json};

/// The protocol's version, which `hello` reports.
pub const PROTOCOL_VERSION: u64 = 1;
/// The longest line either side sends, newline excluded (1 MiB).
pub const MAX_LINE: usize = 1 << 20;
/// The command every server answers itself.
pub const HELLO: &str = "hello";

/// One request: its command and arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `"cmd"`.
    pub cmd: String,
    /// Every other field.
    pub args: Map<String, Value>,
}

/// Parse one request line (without its newline); the error is the
/// message for the error reply.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("the request is not JSON: {e}"))?;
    let Value::Object(mut args) = value else {
        return Err("a request is one JSON object, e.g. {\"cmd\":\"hello\"}".to_string());
    };
    match args.remove("cmd") {
        Some(Value::String(cmd)) => Ok(Request { cmd, args }),
        Some(_) => Err("\"cmd\" must be a string".to_string()),
        None => Err("the request has no \"cmd\"".to_string()),
    }
}

/// The reply carrying `data`: its fields (an object's) or `"result"` (any
/// other value) next to `"ok": true`.
pub fn ok_reply(data: Value) -> Value {
    let mut reply = match data {
        Value::Object(fields) => fields,
        other => Map::from_iter([("result".to_string(), other)]),
    };
    reply.insert("ok".to_string(), Value::Bool(true));
    Value::Object(reply)
}

/// The reply saying `message` went wrong.
pub fn error_reply(message: &str) -> Value {
    json!({ "ok": false, "error": message })
}

/// The answer to `hello`, with the server's own `extra` fields.
pub fn hello_reply(extra: Map<String, Value>) -> Value {
    let mut fields = extra;
    fields.insert("protocol".to_string(), json!(PROTOCOL_VERSION));
    fields.insert("version".to_string(), json!(env!("CARGO_PKG_VERSION")));
    ok_reply(Value::Object(fields))
}

/// The message for a command nobody serves.
pub fn unknown_command(cmd: &str) -> String {
    format!("unknown command {cmd:?}")
}

/// `value` as one line, newline included.
pub fn encode(value: &Value) -> Vec<u8> {
    // A `Value` always serializes (its map keys are strings).
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Answers the commands other than `hello` (which the server answers):
/// the data of an `"ok": true` reply, or the message of an `"ok": false`
/// one (an unknown command included:
/// [`unknown_command`]).
pub trait Handler: Send + Sync {
    /// Answer `cmd` with `args` (the request's other fields).
    fn handle(&self, cmd: &str, args: &Map<String, Value>) -> std::result::Result<Value, String>;

    /// Fields the answer to `hello` carries besides the protocol and the
    /// version (none by default).
    fn hello(&self) -> Map<String, Value> {
        Map::new()
    }
}

impl<F> Handler for F
where
    F: Fn(&str, &Map<String, Value>) -> std::result::Result<Value, String> + Send + Sync,
{
    fn handle(&self, cmd: &str, args: &Map<String, Value>) -> std::result::Result<Value, String> {
        self(cmd, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request line, and its command and arguments or a part of its
    /// error message.
    type Case<'a> = (&'a [u8], Result<(&'a str, Value), &'a str>);

    #[test]
    fn parses_requests() {
        let cases: &[Case] = &[
            (br#"{"cmd":"hello"}"#, Ok(("hello", json!({})))),
            (
                br#"{"cmd":"status","vs":"web1"}"#,
                Ok(("status", json!({"vs": "web1"}))),
            ),
            (b"garbage", Err("not JSON")),
            (br#"{"cmd":"hel"#, Err("not JSON")),
            (b"[1,2]", Err("one JSON object")),
            (b"\"hello\"", Err("one JSON object")),
            (br#"{"vs":"web1"}"#, Err("no \"cmd\"")),
            (br#"{"cmd":7}"#, Err("must be a string")),
        ];
        for (line, expected) in cases {
            let got = parse_request(line);
            match (got, expected) {
                (Ok(req), Ok((cmd, args))) => {
                    assert_eq!(req.cmd, *cmd);
                    assert_eq!(Value::Object(req.args), *args);
                }
                (Err(e), Err(part)) => assert!(e.contains(part), "{e}"),
                (got, _) => panic!("{}: {got:?}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn replies_carry_ok() {
        assert_eq!(ok_reply(json!({"a": 1})), json!({"ok": true, "a": 1}));
        assert_eq!(ok_reply(json!([1])), json!({"ok": true, "result": [1]}));
        assert_eq!(error_reply("no"), json!({"ok": false, "error": "no"}));
        let hello = hello_reply(Map::new());
        assert_eq!(hello["protocol"], json!(PROTOCOL_VERSION));
        assert_eq!(hello["version"], json!(env!("CARGO_PKG_VERSION")));
        assert_eq!(encode(&json!({"ok": true})), b"{\"ok\":true}\n");
    }
}
