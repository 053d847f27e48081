//! The test harness: starts the real `spout` binary on port 0 with a fresh
//! temporary database, reads the two addresses it prints, and talks to it
//! over HTTP (ureq) and websockets (tungstenite). Every wait has a deadline.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub const BIN: &str = env!("CARGO_BIN_EXE_spout");
/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!(
            "spout-test-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            nanos
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server process.
pub struct Server {
    pub dir: TempDir,
    pub child: Option<Child>,
    pub api: String,
    /// `127.0.0.1:PORT` of the stream listener.
    pub stream_addr: String,
    pub agent: ureq::Agent,
    pub stderr: Option<std::thread::JoinHandle<String>>,
    pub extra: Vec<String>,
    /// The open-files limit to start the process under (`ulimit -n`).
    pub nofile: Option<u32>,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_limited(None, extra)
    }

    /// Starts the binary under an open-files limit of `nofile`, if given.
    pub fn start_limited(nofile: Option<u32>, extra: &[&str]) -> Server {
        let dir = TempDir::new();
        let mut s = Server {
            dir,
            child: None,
            api: String::new(),
            stream_addr: String::new(),
            agent: ureq::Agent::config_builder().http_status_as_error(false).build().into(),
            stderr: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            nofile,
        };
        s.launch();
        s
    }

    pub fn db(&self) -> String {
        self.dir.0.join("spout.db").to_string_lossy().into_owned()
    }

    /// Starts the binary (again) on the same database.
    pub fn launch(&mut self) {
        let mut cmd = match self.nofile {
            None => Command::new(BIN),
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
                c
            }
        };
        cmd.args(["serve", "--api-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0", "--db", &self.db()])
            .args(&self.extra)
            .env("RUST_LOG", std::env::var("SPOUT_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start spout");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        self.stderr = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        }));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let l1 = rx.recv_timeout(DEADLINE).expect("api line");
        let l2 = rx.recv_timeout(DEADLINE).expect("stream line");
        self.api = l1.strip_prefix("api listening on ").expect("api line format").to_string();
        self.stream_addr =
            l2.strip_prefix("stream listening on ws://").expect("stream line format").to_string();
        self.child = Some(child);
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// `host:port` of the API listener.
    pub fn api_addr(&self) -> String {
        self.api.trim_start_matches("http://").to_string()
    }

    /// Kills the process (SIGKILL) and returns what it logged.
    pub fn kill(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs `spout admin ARGS --db DB` with `stdin`; returns stdout.
    pub fn admin(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new(BIN)
            .arg("admin")
            .args(args)
            .args(["--db", &self.db()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "admin {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn add_user(&self, name: &str, password: &str) -> String {
        let v: Value = serde_json::from_str(&self.admin(&["user", "add", name], password)).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// Registers an app that may use the password grant (the tests' way to
    /// get user tokens); returns (client_id, client_secret).
    pub fn add_app(&self, name: &str) -> (String, String) {
        self.add_app_with(&["--password-grant", name])
    }

    /// `spout admin app add` with these arguments; (client_id, client_secret).
    pub fn add_app_with(&self, args: &[&str]) -> (String, String) {
        let all: Vec<&str> = ["app", "add"].iter().chain(args).copied().collect();
        let v: Value = serde_json::from_str(&self.admin(&all, "")).unwrap();
        (v["client_id"].as_str().unwrap().to_string(), v["client_secret"].as_str().unwrap().to_string())
    }

    /// A request; `body` is (content type, bytes).
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<(&str, &str)>) -> Resp {
        self.call_h(method, path, token, body, &[])
    }

    pub fn call_h(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &str)>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = ureq::http::Request::builder().method(method).uri(format!("{}{}", self.api, path));
        if let Some(t) = token {
            b = b.header("Authorization", format!("Bearer {t}"));
        }
        if let Some((ct, _)) = body {
            b = b.header("Content-Type", ct);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let data = body.map(|(_, d)| d.as_bytes().to_vec()).unwrap_or_default();
        let req = b.body(data).unwrap();
        let resp = self.agent.run(req).expect("request");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, body, headers }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("GET", path, token, None)
    }

    pub fn json(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(method, path, token, Some(("application/json", &body.to_string())))
    }

    pub fn form_with_token(&self, path: &str, token: &str, fields: &[(&str, &str)]) -> Resp {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        self.call("POST", path, Some(token), Some(("application/x-www-form-urlencoded", &body.join("&"))))
    }

    pub fn form(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        self.call("POST", path, None, Some(("application/x-www-form-urlencoded", &body.join("&"))))
    }

    pub fn app_token(&self, app: &(String, String)) -> String {
        let r = self.form(
            "/v1/oauth/access_token",
            &[("grant_type", "client_credentials"), ("client_id", &app.0), ("client_secret", &app.1)],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().unwrap().to_string()
    }

    pub fn user_token(&self, app: &(String, String), user: &str, password: &str, scopes: &str) -> String {
        let r = self.form(
            "/v1/oauth/access_token",
            &[
                ("grant_type", "password"),
                ("client_id", &app.0),
                ("password_grant_secret", &app.1),
                ("username", user),
                ("password", password),
                ("scope", scopes),
            ],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().unwrap().to_string()
    }

    /// Creates a stream; returns its key.
    pub fn create_stream(&self, app_token: &str, key: &str, types: &[&str]) -> String {
        let r = self.json(
            "POST",
            "/v1/streams",
            Some(app_token),
            json!({"type": "long_poll", "object_types": types, "key": key}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["data"]["key"].as_str().unwrap().to_string()
    }

    /// Opens a websocket on `/v1/app?QUERY`; returns it and the first message.
    pub fn ws(&self, query: &str) -> (Ws, Value) {
        let url = format!("ws://{}/v1/app?{}", self.stream_addr, query);
        let (sock, _) = tungstenite::connect(url).expect("websocket connect");
        let mut ws = Ws(sock);
        ws.set_timeout(DEADLINE);
        let hello = ws.next_json().expect("connection message");
        (ws, hello)
    }

    /// Sends a raw HTTP request to the stream listener; returns (status, body).
    pub fn stream_http(&self, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, String) {
        stream_get(&self.stream_addr, path_and_query, headers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw `GET` to the stream listener at `addr`; returns (status, body).
pub fn stream_get(addr: &str, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// An error reply: the status, the same `meta.code`, no `data`, and an
/// `error_message` mentioning `needle`.
pub fn assert_error(r: &Resp, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["meta"]["code"], status, "{}", r.body);
    assert!(r.body.get("data").is_none(), "an error has no data: {}", r.body);
    let msg = r.body["meta"]["error_message"].as_str().unwrap_or("");
    assert!(msg.contains(needle), "error_message {msg:?} should mention {needle:?}");
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A websocket client.
pub struct Ws(pub WebSocket<MaybeTlsStream<TcpStream>>);

/// How a wait for a websocket message ended.
#[derive(Debug)]
pub enum WsNext {
    Json(Value),
    Closed(Option<(u16, String)>),
    Timeout,
}

impl Ws {
    pub fn set_timeout(&mut self, d: Duration) {
        if let MaybeTlsStream::Plain(s) = self.0.get_mut() {
            s.set_read_timeout(Some(d)).unwrap();
        }
    }

    /// The next text message as JSON, skipping pings/pongs; close → Closed.
    pub fn next(&mut self) -> WsNext {
        let start = Instant::now();
        loop {
            if start.elapsed() > DEADLINE {
                return WsNext::Timeout;
            }
            match self.0.read() {
                Ok(Message::Text(t)) => return WsNext::Json(serde_json::from_str(&t).expect("JSON frame")),
                Ok(Message::Close(c)) => {
                    return WsNext::Closed(c.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Ok(_) => continue,
                // A signal interrupted the read (EINTR): read again.
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return WsNext::Timeout
                }
                Err(_) => return WsNext::Closed(None),
            }
        }
    }

    pub fn next_json(&mut self) -> Option<Value> {
        match self.next() {
            WsNext::Json(v) => Some(v),
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// The next message that is an event (has meta.type), skipping control.
    pub fn next_event(&mut self) -> Value {
        loop {
            let v = self.next_json().unwrap();
            if v["meta"].get("type").is_some() {
                return v;
            }
        }
    }

    pub fn send_text(&mut self, t: &str) {
        self.0.send(Message::Text(t.to_string().into())).unwrap();
    }
}

impl Server {
    /// While a test fails (a panic unwinds), kills the server and prints
    /// the last 40 lines of its log: they help tell why.
    pub fn print_log_if_panicking(&mut self) {
        if std::thread::panicking() {
            let log = self.kill_log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- server log (last 40 lines) ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }

    /// Kills the server and returns its log (for failure messages).
    pub fn kill_log(&mut self) -> String {
        self.kill()
    }
}

/// A websocket client whose socket has a tiny receive buffer.
pub fn small_buffer_ws(addr: &str, query: &str) -> Ws {
    use rustix::net::{connect, socket, sockopt, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, 4096).unwrap();
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    connect(&fd, &sa).unwrap();
    let s = std::net::TcpStream::from(fd);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let (ws, _) = tungstenite::client::client(
        format!("ws://{addr}/v1/app?{query}"),
        tungstenite::stream::MaybeTlsStream::Plain(s),
    )
    .expect("handshake");
    let mut ws = Ws(ws);
    ws.set_timeout(DEADLINE);
    ws
}

/// The setting of most REST tests: alice, bob and carol (ids 1, 2, 3,
/// password `pw`) with user tokens of one app that may use the password
/// grant, with `scopes`.
pub struct Trio {
    pub s: Server,
    pub alice: String,
    pub bob: String,
    pub carol: String,
}

pub fn trio(scopes: &str) -> Trio {
    let s = Server::start();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw");
    }
    let app = s.add_app("client");
    let token = |u: &str| s.user_token(&app, u, "pw", scopes);
    let (alice, bob, carol) = (token("alice"), token("bob"), token("carol"));
    Trio { s, alice, bob, carol }
}

impl Trio {
    /// A call that must succeed (status below 300); its `data`.
    pub fn ok(&self, method: &str, path: &str, tok: &str, body: Value) -> Value {
        let r = self.s.json(method, path, Some(tok), body);
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
        r.body["data"].clone()
    }

    /// Posts as the holder of `tok`; the new post's id.
    pub fn post(&self, tok: &str, body: Value) -> String {
        self.ok("POST", "/v1/posts", tok, body)["id"].as_str().unwrap().to_string()
    }
}
