//! Authorization at delivery time and final deletion (issue 16, points 4,
//! 5, 10 and the scope and file parts of 11): what an app or a user sees
//! after a revocation, an ACL change or a deletion, on every path.

use crate::common::*;
use serde_json::{json, Value};

const PW: &str = "pw";

/// One server; app A (alice authorized it with `messages`), app X (bob and
/// carol write through it).
#[allow(dead_code)] // filled in by the later steps of this file
struct Fx {
    s: Server,
    /// App A's app token.
    tok: String,
    alice: String,
    bob: String,
    carol: String,
    alice_id: String,
    bob_id: String,
}

impl Drop for Fx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.s.kill_log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- server log (last 40 lines) ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

fn fx_with(flags: &[&str]) -> Fx {
    let s = Server::start_with(flags);
    let alice_id = s.add_user("alice", PW);
    let bob_id = s.add_user("bob", PW);
    s.add_user("carol", PW);
    let app = s.add_app("A");
    let other = s.add_app("X");
    let tok = s.app_token(&app);
    let scopes = "stream,write_post,messages,files,polls";
    let alice = s.user_token(&app, "alice", PW, scopes);
    let bob = s.user_token(&other, "bob", PW, scopes);
    let carol = s.user_token(&other, "carol", PW, scopes);
    Fx { s, tok, alice, bob, carol, alice_id, bob_id }
}

impl Fx {
    fn ok(&self, method: &str, path: &str, tok: &str, body: Value) -> Value {
        let r = self.s.json(method, path, Some(tok), body);
        assert!(r.status == 200 || r.status == 201, "{method} {path}: {} {}", r.status, r.body);
        r.body["data"].clone()
    }

    fn post(&self, tok: &str, body: Value) -> String {
        self.ok("POST", "/v1/posts", tok, body)["id"].as_str().unwrap().to_string()
    }

    /// A PM from the holder of `tok` to `to`; returns (channel id, message id).
    fn pm(&self, tok: &str, to: &str, text: &str) -> (String, String) {
        let m = self.ok("POST", "/v1/channels/pm/messages", tok, json!({"destinations": [to], "text": text}));
        (m["channel_id"].as_str().unwrap().to_string(), m["id"].as_str().unwrap().to_string())
    }
}

/// A websocket client whose socket has a tiny receive buffer, so the
/// server's queue (and with it the replay) waits while it does not read.
fn small_buffer_ws(addr: &str, query: &str) -> Ws {
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

/// Reads events until a post whose text is `marker`; returns the events
/// before it (control messages skipped). Bounded by the harness deadline
/// per read and by `max` events.
fn events_until(ws: &mut Ws, marker: &str, max: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..max {
        let v = ws.next_json().unwrap();
        if v["meta"].get("control").is_some() {
            continue;
        }
        if v["meta"]["type"] == "post" && v["data"][0]["content"]["text"] == marker {
            return out;
        }
        out.push(v);
    }
    panic!("no marker {marker:?} within {max} events");
}

/// Issue 16 point 4: an app that keeps itself in replay (it reads slowly)
/// gets none of the PMs sent to a user after that user revoked it. Before,
/// the replay checked a copy of the grants loaded when the connection
/// opened, and delivered every one of them.
#[test]
fn a_revocation_applies_to_the_replay_of_a_slow_reader() {
    let f = fx_with(&["--conn-backlog-bytes", "65536"]);
    f.s.create_stream(&f.tok, "k", &["post", "message"]);
    let filler = "x".repeat(8000);
    let big = |i: usize| json!({"text": format!("p{i}"), "raw": {"com.example.fill": [{"f": filler}]}});
    // ~800 KB queued: more than the kernel buffers and half the backlog,
    // so the replay cannot finish while the client reads nothing.
    for i in 0..100 {
        f.post(&f.alice, big(i));
    }
    let mut ws = small_buffer_ws(&f.s.stream_addr, &format!("access_token={}&key=k&include_raw=1", f.tok));
    assert!(ws.next_json().unwrap()["meta"]["connection_id"].is_string());
    // Alice revokes app A while its stream is still replaying.
    assert_eq!(f.s.call("DELETE", "/v1/token", Some(&f.alice), None).status, 200);
    for i in 0..20 {
        f.pm(&f.bob, "@alice", &format!("secret {i}"));
    }
    // Live posts worth more than the backlog: the held live events
    // overflow, so the replay takes another round over the log, PMs
    // included.
    for i in 100..110 {
        f.post(&f.bob, big(i));
    }
    f.post(&f.bob, json!({"text": "marker"}));
    let got = events_until(&mut ws, "marker", 1000);
    let messages: Vec<&Value> = got.iter().filter(|v| v["meta"]["type"] == "message").collect();
    assert!(
        messages.is_empty(),
        "{} PMs reached the app after the revocation: {}",
        messages.len(),
        messages[0]
    );
    assert_eq!(got.iter().filter(|v| v["meta"]["type"] == "post").count(), 110, "every post arrived");
}
