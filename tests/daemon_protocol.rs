//! The daemon's control protocol against the real binary: `vskel daemon
//! --socket SOCKET` (with no views to serve) in a child process, on a real
//! socket in a temporary directory. Hello, status, 100
//! concurrent clients, garbage, truncated JSON, a 10 MiB line, an unknown
//! command, a silent client, too many clients, a client running as
//! `nobody`, a stale socket file, a second server and SIGTERM.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{Setup, require_root};
use serde_json::{Value, json};
use vskel::daemon::client;

/// How long a test waits for the server to listen or exit.
const WAIT: Duration = Duration::from_secs(20);
/// The idle timeout the servers of these tests get (milliseconds).
const IDLE_MS: u64 = 1000;
/// How long a client waits for any reply.
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// A protocol server child; killed (SIGKILL) if still running on drop.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Start `vskel daemon --socket SOCKET EXTRA...` and wait until it
    /// answers.
    fn start(setup: &Setup, socket: &Path, extra: &[&str]) -> ServerProcess {
        let child = setup
            .vskel_process()
            .args(["daemon", "--socket"])
            .arg(socket)
            .args(["--idle-timeout-ms", &IDLE_MS.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = ServerProcess { child };
        let start = Instant::now();
        while UnixStream::connect(socket).is_err() {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "the server exited before it listened"
            );
            assert!(start.elapsed() < WAIT, "the server does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then its exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        self.wait()
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < WAIT, "the server does not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its peak resident memory (`VmHWM`), in KiB.
    fn peak_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A setup with a skel, a view and a tree, and a directory for the socket
/// (`<dir>/run/vskel.sock`; `run/` made by the server).
fn setup() -> (Setup, PathBuf) {
    // The daemon serves no view here: only its socket is tested.
    let setup = Setup::new("[daemon]\nviews = []");
    setup.build_example_skel("base");
    setup.create_view("base", "web1", "10.0.0.1");
    setup.create("base", "plain", "10.0.0.2");
    let socket = setup.dir.path().join("run").join("vskel.sock");
    (setup, socket)
}

/// A raw client connection, its reads bounded by [`REPLY_WAIT`].
fn connect(socket: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

/// The next reply line, parsed; None at the end of the connection.
fn reply(reader: &mut BufReader<UnixStream>) -> Option<Value> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => None,
        Ok(_) => {
            assert!(line.ends_with('\n'), "a whole line: {line:?}");
            Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        }
        Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
        Err(e) => panic!("reading a reply: {e}"),
    }
}

/// The connection is closed by the server: nothing more comes.
fn assert_closed(reader: &mut BufReader<UnixStream>) {
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest)),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
}

fn assert_error(reply: &Option<Value>, part: &str) {
    let reply = reply.as_ref().expect("an error reply");
    assert_eq!(reply["ok"], false, "{reply}");
    let message = reply["error"].as_str().expect("an error message");
    assert!(message.contains(part), "{message:?} should say {part:?}");
}

fn hello(socket: &Path) -> Value {
    client::request(socket, &json!({"cmd": "hello"})).unwrap()
}

fn assert_hello(reply: &Value) {
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["protocol"], 1, "{reply}");
    assert_eq!(reply["version"], env!("CARGO_PKG_VERSION"), "{reply}");
}

#[test]
fn hello_and_status_answer_and_sigterm_removes_the_socket() {
    if !require_root("hello_and_status_answer_and_sigterm_removes_the_socket") {
        return;
    }
    let (setup, socket) = setup();
    let mut server = ServerProcess::start(&setup, &socket, &[]);
    assert_hello(&hello(&socket));
    // status: what `vskel status --format json` prints, next to "ok".
    let mut expected: Value =
        serde_json::from_str(&setup.run_ok(&["status", "--format", "json"])).unwrap();
    // The protocol has its own version (hello): the reply has no "version".
    expected.as_object_mut().unwrap().remove("version");
    expected["ok"] = json!(true);
    assert_eq!(
        client::request(&socket, &json!({"cmd": "status"})).unwrap(),
        expected
    );
    let one = client::request(&socket, &json!({"cmd": "status", "vs": "plain"})).unwrap();
    assert_eq!(one["vservers"][0]["kind"], "tree", "{one}");
    assert_eq!(one["vservers"].as_array().unwrap().len(), 1, "{one}");
    let err = client::request(&socket, &json!({"cmd": "status", "vs": "nosuch"})).unwrap_err();
    assert!(err.to_string().contains("no vserver named"), "{err}");
    // Several requests on one connection.
    let mut conn = client::connect(&socket)
        .unwrap()
        .expect("a listening server");
    for _ in 0..3 {
        assert_hello(&conn.ask(&json!({"cmd": "hello"}), REPLY_WAIT).unwrap());
    }
    drop(conn);
    assert!(server.terminate().success());
    assert!(!socket.exists(), "the socket file is removed on SIGTERM");
    assert!(client::connect(&socket).unwrap().is_none());
}

#[test]
fn a_hundred_concurrent_clients_each_get_their_reply() {
    if !require_root("a_hundred_concurrent_clients_each_get_their_reply") {
        return;
    }
    let (setup, socket) = setup();
    let _server = ServerProcess::start(&setup, &socket, &[]);
    const CLIENTS: usize = 100;
    // All connected before any asks, all asking at once, none leaving
    // before all have their replies: 100 connections served together.
    let connected = Arc::new(Barrier::new(CLIENTS));
    let answered = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (socket, connected, answered) =
                (socket.clone(), connected.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut conn = client::connect(&socket).unwrap().expect("listening");
                connected.wait();
                let request = if i % 2 == 0 {
                    json!({"cmd": "hello"})
                } else {
                    json!({"cmd": "status", "vs": ["web1", "plain"]})
                };
                let reply = conn.ask(&request, REPLY_WAIT).unwrap();
                answered.wait();
                (i, reply)
            })
        })
        .collect();
    for thread in threads {
        let (i, reply) = thread.join().unwrap();
        if i % 2 == 0 {
            assert_hello(&reply);
        } else {
            assert_eq!(reply["ok"], true, "{reply}");
            let names: Vec<&Value> = reply["vservers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| &v["name"])
                .collect();
            assert_eq!(names, [&json!("web1"), &json!("plain")], "{reply}");
        }
    }
}

#[test]
fn bad_requests_get_errors_while_others_are_served() {
    if !require_root("bad_requests_get_errors_while_others_are_served") {
        return;
    }
    let (setup, socket) = setup();
    let server = ServerProcess::start(&setup, &socket, &[]);

    // Garbage, a JSON non-object, a request without or with an unknown
    // command: an error each, and the connection stays usable.
    let (mut stream, mut reader) = connect(&socket);
    for (line, part) in [
        ("garbage\n", "not JSON"),
        ("[1,2,3]\n", "one JSON object"),
        ("{\"vs\":\"web1\"}\n", "no \"cmd\""),
        ("{\"cmd\":\"frobnicate\"}\n", "unknown command"),
        ("{\"cmd\":\"hel\n", "not JSON"),
    ] {
        stream.write_all(line.as_bytes()).unwrap();
        assert_error(&reply(&mut reader), part);
    }
    stream.write_all(b"{\"cmd\":\"hello\"}\n").unwrap();
    assert_hello(&reply(&mut reader).expect("hello after errors"));

    // A silent client: closed after the idle timeout, with an error;
    // meanwhile another client is answered (and the silent one is still
    // open when that answer comes).
    let (_silent, mut silent_reader) = connect(&socket);
    assert_hello(&hello(&socket));
    silent_reader.get_ref().set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = silent_reader.get_mut().read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the silent client is still connected while others are served: {early:?}"
    );
    silent_reader.get_ref().set_nonblocking(false).unwrap();
    assert_error(&reply(&mut silent_reader), "no request within");
    assert_closed(&mut silent_reader);

    // Truncated JSON, then the end of the connection: an error reply.
    let (mut stream, mut reader) = connect(&socket);
    stream.write_all(b"{\"cmd\":\"hel").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_error(&reply(&mut reader), "middle of a request");
    assert_closed(&mut reader);

    // A 10 MiB line: an error reply and the end of the connection, and
    // the server never holds the line in memory.
    let peak_before = server.peak_kib();
    let (stream, mut reader) = connect(&socket);
    let writer = std::thread::spawn(move || {
        let mut stream = stream;
        let chunk = vec![b'a'; 1 << 16];
        let mut sent = 0usize;
        while sent < 10 << 20 {
            match stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => return sent, // the server closed: EPIPE / reset
            }
        }
        sent
    });
    assert_error(&reply(&mut reader), "longer than");
    assert_closed(&mut reader);
    let sent = writer.join().unwrap();
    assert!(
        sent > 1 << 20,
        "the server read past 1 MiB before refusing: {sent}"
    );
    let grown = server.peak_kib().saturating_sub(peak_before);
    assert!(
        grown < 4 << 10,
        "the server's peak memory grew by {grown} KiB"
    );

    // And it still answers.
    assert_hello(&hello(&socket));
    let status = client::request(&socket, &json!({"cmd": "status"})).unwrap();
    assert_eq!(status["vservers"].as_array().unwrap().len(), 2, "{status}");
}

#[test]
fn connections_beyond_the_bound_are_told_busy() {
    if !require_root("connections_beyond_the_bound_are_told_busy") {
        return;
    }
    let (setup, socket) = setup();
    let _server = ServerProcess::start(&setup, &socket, &["--max-connections", "2"]);
    // Two connections served (each answered once, then silent) fill it;
    // a third is told busy.
    let (_a, mut a) = served_connection(&socket);
    let (_b, mut b) = served_connection(&socket);
    let (_c, mut c) = connect(&socket);
    assert_error(&reply(&mut c), "busy");
    assert_closed(&mut c);
    // The silent two time out; then there is room again.
    assert_error(&reply(&mut a), "no request within");
    assert_error(&reply(&mut b), "no request within");
    served_connection(&socket);
}

/// A connection the server serves: connected and answered `hello`
/// (retried while the server is busy, as with the connections of
/// earlier tests whose threads may not have ended yet).
fn served_connection(socket: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let start = Instant::now();
    loop {
        let (mut stream, mut reader) = connect(socket);
        // A busy server may have closed the connection already (EPIPE);
        // its refusal is still there to read.
        let _ = stream.write_all(b"{\"cmd\":\"hello\"}\n");
        let answer = reply(&mut reader).expect("a reply");
        if answer["ok"] == true {
            assert_hello(&answer);
            return (stream, reader);
        }
        assert_error(&Some(answer), "busy");
        assert!(start.elapsed() < WAIT, "still busy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run a Python client as `nobody` that connects to `socket` and reads
/// everything: "EACCES" when it cannot connect, else what it read.
fn as_nobody(socket: &Path) -> String {
    const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
data = b""
while True:
    try:
        chunk = s.recv(4096)
    except ConnectionResetError:
        break
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"#;
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/usr/bin/python3", "-c", CLIENT])
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_client_that_is_not_root_is_refused() {
    if !require_root("a_client_that_is_not_root_is_refused") {
        return;
    }
    let (setup, socket) = setup();
    let _server = ServerProcess::start(&setup, &socket, &[]);
    let run = socket.parent().unwrap();
    assert_eq!(fs::metadata(run).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(
        fs::symlink_metadata(&socket).unwrap().mode() & 0o7777,
        0o600
    );
    // The setup's own directory is 0700 too: open the way to run/.
    fs::set_permissions(setup.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(as_nobody(&socket).trim(), "EACCES", "run/ is 0700");
    fs::set_permissions(run, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(as_nobody(&socket).trim(), "EACCES", "the socket is 0600");
    // Opened up entirely, the peer credentials still refuse it.
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
    let said = as_nobody(&socket);
    let refusal: Value =
        serde_json::from_str(said.trim()).unwrap_or_else(|e| panic!("{e}: {said:?}"));
    assert_eq!(refusal["ok"], false, "{said}");
    assert!(
        refusal["error"].as_str().unwrap().contains("root only"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "one line, then closed: {said}");
    // Root is still served.
    assert_hello(&hello(&socket));
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    if !require_root("a_stale_socket_is_replaced_and_a_live_one_refused") {
        return;
    }
    let (setup, socket) = setup();
    let mut first = ServerProcess::start(&setup, &socket, &[]);
    // A second server at the same path is refused: the first listens.
    let second = setup
        .vskel()
        .args(["daemon", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another server listens"),
        "{second:?}"
    );
    assert_hello(&hello(&socket));
    // Killed, the first leaves its socket file: the next server replaces it.
    first.child.kill().unwrap();
    first.wait();
    assert!(socket.exists(), "a killed server leaves its socket file");
    assert!(
        client::connect(&socket).unwrap().is_none(),
        "nothing listens"
    );
    let _next = ServerProcess::start(&setup, &socket, &[]);
    assert_hello(&hello(&socket));
    // Any other file at the socket's path is left alone.
    let other = setup.dir.path().join("run").join("not-a-socket");
    fs::write(&other, "x").unwrap();
    let out = setup
        .vskel()
        .args(["daemon", "--socket"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(fs::read_to_string(&other).unwrap(), "x");
}
