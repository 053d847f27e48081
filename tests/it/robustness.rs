//! Hostile and broken input: every request gets a clear 4xx envelope or a
//! close frame with a reason, nothing crashes, and no secret reaches the
//! logs or the database in clear.

use crate::common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use tungstenite::Message;

#[test]
fn no_secret_in_logs_or_database() {
    let mut s = Server::start_with(&[]);
    s.add_user("alice", "very secret password 123");
    let app = s.add_app("a");
    let ut = s.user_token(&app, "alice", "very secret password 123", "stream,update_profile");
    let at = s.app_token(&app);
    // Use the secrets in every place they can appear: headers, query, bodies.
    assert_eq!(s.get(&format!("/v1/users/me?access_token={ut}"), None).status, 200);
    assert_eq!(s.get("/v1/token", Some(&at)).status, 200);
    let _ = s.form(
        "/v1/oauth/access_token",
        &[
            ("grant_type", "password"),
            ("client_id", &app.0),
            ("client_secret", &app.1),
            ("username", "alice"),
            ("password", "wrong password here"),
        ],
    );
    s.create_stream(&at, "k", &["user"]);
    let (_ws, _) = s.ws(&format!("access_token={at}&key=k"));
    let log = s.kill();
    let mut db = Vec::new();
    for f in ["spout.db", "spout.db-wal"] {
        if let Ok(mut file) = std::fs::File::open(s.dir.0.join(f)) {
            file.read_to_end(&mut db).unwrap();
        }
    }
    let db = String::from_utf8_lossy(&db);
    for secret in
        [ut.as_str(), at.as_str(), app.1.as_str(), "very secret password 123", "wrong password here"]
    {
        assert!(!log.contains(secret), "a secret is in the log: {secret}");
        assert!(!db.contains(secret), "a secret is in the database in clear: {secret}");
    }
    assert!(log.contains("migrated"), "the log was captured: {log}");
}

#[test]
fn malformed_bodies_and_parameters_get_clear_400s() {
    let s = Server::start();
    s.add_user("alice", "pw");
    let app = s.add_app("a");
    let t = s.user_token(&app, "alice", "pw", "update_profile,write_post");
    let at = s.app_token(&app);
    let bodies = [
        "{",
        "[1,2",
        "\"just a string\"",
        "{\"name\": \"\\ud800\"}",
        "{\"name\": 1e999999}",
        "{\"name\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "{\"locale\": {\"a\": 1}}",
        "\u{0}\u{1}\u{2}",
    ];
    for b in bodies {
        let r = s.call("PATCH", "/v1/users/me", Some(&t), Some(("application/json", b)));
        assert_eq!(r.status, 400, "{b:?} → {}", r.body);
        assert!(r.body["meta"]["error_message"].as_str().unwrap().len() > 5);
    }
    for b in [
        json!({"text": 12}),
        json!({"text": ["x"]}),
        json!({"text": "ok", "reply_to": "abc"}),
        json!({"text": "x".repeat(257)}),
    ] {
        let r = s.json("POST", "/v1/posts", Some(&t), b.clone());
        assert_eq!(r.status, 400, "{b} → {}", r.body);
    }
    for b in [
        json!({"type": "long_poll", "object_types": [1, 2]}),
        json!({"type": "long_poll", "object_types": ["post"], "key": "é"}),
        json!({"type": "long_poll", "object_types": ["post"], "filter_id": 99999999999999999999u128.to_string()}),
        json!({"type": 7, "object_types": ["post"]}),
    ] {
        let r = s.json("POST", "/v1/streams", Some(&at), b.clone());
        assert_eq!(r.status, 400, "{b} → {}", r.body);
    }
    // Huge, negative and repeated ids and parameters.
    for p in ["/v1/users/99999999999999999999999", "/v1/users/-1", "/v1/users/0", "/v1/posts/1e3"] {
        let r = s.get(p, None);
        assert_eq!(r.status, 400, "{p} → {}", r.body);
    }
    let r = s.get("/v1/users?ids=1&ids=2&ids=3", None);
    assert_eq!(r.status, 200, "the first of repeated parameters counts: {}", r.body);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    // Unicode edge cases in text are kept exactly.
    let text = "e\u{301} 👩‍👩‍👧 \u{202e}rtl \u{feff}";
    let r = s.json("POST", "/v1/posts", Some(&t), json!({"text": text}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["data"]["content"]["text"], text);
    // The server is still fine.
    assert_eq!(s.get("/health", None).status, 200);
}

#[test]
fn broken_http_and_websocket_clients_are_refused_or_closed_with_a_reason() {
    let s = Server::start();
    let app = s.add_app("a");
    let t = s.app_token(&app);
    s.create_stream(&t, "k", &["user"]);
    // Garbage instead of HTTP on the stream listener, and a head without end.
    for junk in [&b"\x16\x03\x01\x00\xa5garbage\r\n\r\n"[..], b"GET\r\n\r\n", b"NOT HTTP AT ALL\r\n\r\n"] {
        let mut c = TcpStream::connect(&s.stream_addr).unwrap();
        c.set_read_timeout(Some(DEADLINE)).unwrap();
        c.write_all(junk).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 4"), "{junk:?} → {out}");
    }
    let mut endless = TcpStream::connect(&s.stream_addr).unwrap();
    endless.write_all(b"GET /v1/app?key=k HTTP/1.1\r\nX: ").unwrap();
    endless.write_all(&vec![b'a'; 10_000]).unwrap();
    endless.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = String::new();
    let _ = endless.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 431 "), "an oversized head gets 431: {out}");
    assert!(
        out.ends_with(
            r#"{"meta":{"code":431,"error_message":"The request head is longer than 8192 bytes"}}"#
        ),
        "{out}"
    );
    // Binary frames, oversized frames and floods of pings.
    let (mut ws, _) = s.ws(&format!("access_token={t}&key=k"));
    ws.0.send(Message::Binary(vec![0xff, 0xfe, 0x00].into())).unwrap();
    for _ in 0..2000 {
        ws.0.write(Message::Ping(b"p".to_vec().into())).unwrap();
    }
    ws.0.flush().unwrap();
    // The connection still answers: a text message gets its pong.
    ws.send_text(".");
    let mut pongs = 0;
    while pongs == 0 {
        if let Message::Pong(_) = ws.0.read().unwrap() {
            pongs += 1;
        }
    }
    let huge = "x".repeat(200 * 1024);
    ws.0.send(Message::Text(huge.into())).unwrap();
    match ws.next() {
        WsNext::Closed(Some((code, reason))) => {
            assert_eq!(code, 1009, "{reason}");
            assert!(reason.contains("too big"), "{reason}");
        }
        other => panic!("expected a close for an oversized message, got {other:?}"),
    }
    // 200 connection attempts with bad tokens, then a good one still works.
    for i in 0..200 {
        let (code, _) = s.stream_http(&format!("/v1/app?key=k&access_token=bad{i}"), &[]);
        assert_eq!(code, 401);
    }
    let (_ok, hello) = s.ws(&format!("access_token={t}&key=k"));
    assert!(hello["meta"]["connection_id"].is_string());
}

/// Crash safety: writers post while the server is killed with SIGKILL at an
/// arbitrary moment. After a restart on the same database, every post that
/// got its 201 is there, and a stream that was created before the writes
/// receives every post event, in order, each once.
#[test]
fn kill_9_under_write_load_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut s = Server::start();
    s.add_user("alice", "pw");
    let app = s.add_app("a");
    let ut = s.user_token(&app, "alice", "pw", "write_post");
    let at = s.app_token(&app);
    s.create_stream(&at, "k", &["post"]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (api, ut, stop) = (s.api.clone(), ut.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent =
                    ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = agent
                        .post(format!("{api}/v1/posts"))
                        .header("Authorization", format!("Bearer {ut}"))
                        .header("Content-Type", "application/json")
                        .send(json!({"text": format!("w{w} n{i}")}).to_string());
                    match r {
                        Ok(resp) if resp.status().as_u16() == 201 => {
                            // Only a complete reply is an acknowledgement.
                            let Ok(text) = resp.into_body().read_to_string() else { break };
                            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                            acked.push(v["data"]["id"].as_str().unwrap().parse::<i64>().unwrap());
                        }
                        _ => break, // the server died mid-request
                    }
                }
                acked
            })
        })
        .collect();
    // Kill once a pseudo-random number of posts (20..120) were acknowledged.
    let target = 20 + (std::process::id() as u64 % 100);
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let r = s.get("/v1/posts/streams/global?count=1", None);
        let newest = r.body["data"][0]["id"].as_str().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        if newest >= target || std::time::Instant::now() > deadline {
            break;
        }
    }
    s.kill();
    stop.store(true, Ordering::Relaxed);
    let mut acked: Vec<i64> = writers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    acked.sort_unstable();
    assert!(acked.len() >= 10, "the writers got going before the kill: {}", acked.len());
    s.launch();
    for chunk in acked.chunks(100) {
        let ids: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
        let r = s.get(&format!("/v1/posts?ids={}", ids.join(",")), None);
        let found: Vec<i64> = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(found.len(), chunk.len(), "an acknowledged post was lost");
    }
    // The stream gets every committed post (acknowledged or not) once, in order.
    let newest: i64 = s.get("/v1/posts/streams/global?count=1", None).body["data"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (mut ws, _) = s.ws(&format!("access_token={at}&key=k"));
    let mut seen = Vec::new();
    while seen.last() != Some(&newest) {
        let ev = ws.next_event();
        seen.push(ev["data"][0]["id"].as_str().unwrap().parse::<i64>().unwrap());
    }
    let expected: Vec<i64> = (1..=newest).collect();
    assert_eq!(seen, expected, "every post event once, in order");
    for id in &acked {
        assert!(seen.contains(id));
    }
}

/// The isolation matrix: three apps (A authorized by alice with every
/// scope, B authorized by bob with `basic` only, C by nobody), each with a
/// stream of every object type. alice acts in every way that makes an event;
/// each app must receive exactly the event types the visibility rules allow,
/// and a leak anywhere names the app and the event.
#[test]
fn isolation_matrix_every_event_reaches_exactly_the_allowed_apps() {
    use std::collections::BTreeSet;
    let s = Server::start();
    s.add_user("alice", "pw");
    let bob_id = s.add_user("bob", "pw");
    let carol_id = s.add_user("carol", "pw");
    let (a, b, c) = (s.add_app("A"), s.add_app("B"), s.add_app("C"));
    let all = "basic,files,follow,messages,polls,presence,stream,update_profile,write_post";
    let types = [
        "post",
        "bookmark",
        "follow",
        "mute",
        "block",
        "message",
        "channel",
        "channel_subscription",
        "token",
        "file",
        "poll",
        "user_presence",
        "user_channel_presence",
        "user",
    ];
    let mut streams = Vec::new();
    for app in [&a, &b, &c] {
        let t = s.app_token(app);
        s.create_stream(&t, "all", &types);
        streams.push(s.ws(&format!("access_token={t}&key=all")).0);
    }
    let alice = s.user_token(&a, "alice", "pw", all); // token event → A only
    let _bob = s.user_token(&b, "bob", "pw", "basic"); // token event → B only
    let carol_c = s.user_token(&c, "carol", "pw", "messages"); // token event → C only; carol now authorized C
    let ok = |r: Resp, what: &str| assert!(r.status < 300, "{what}: {} {}", r.status, r.body);
    ok(s.json("PATCH", "/v1/users/me", Some(&alice), json!({"name": "Alice"})), "profile");
    let post = s.json("POST", "/v1/posts", Some(&alice), json!({"text": "hello"}));
    let pid = post.body["data"]["id"].as_str().unwrap().to_string();
    ok(post, "post");
    ok(s.call("PUT", &format!("/v1/posts/{pid}/bookmark"), Some(&alice), None), "bookmark");
    ok(s.call("PUT", &format!("/v1/users/{bob_id}/follow"), Some(&alice), None), "follow");
    ok(s.call("PUT", &format!("/v1/users/{carol_id}/mute"), Some(&alice), None), "mute");
    ok(s.call("PUT", &format!("/v1/users/{bob_id}/block"), Some(&alice), None), "block");
    ok(s.json("PUT", "/v1/users/me/presence", Some(&alice), json!({"presence": "here"})), "presence");
    // A private channel alice shares with carol only; carol authorized C
    // with messages, so C may see it too; B may not.
    let ch = s.json(
        "POST",
        "/v1/channels",
        Some(&alice),
        json!({"type": "com.example.room", "acl": {"write": {"user_ids": [carol_id.clone()]}}}),
    );
    let cid = ch.body["data"]["id"].as_str().unwrap().to_string();
    ok(ch, "channel");
    ok(
        s.json("POST", &format!("/v1/channels/{cid}/messages"), Some(&alice), json!({"text": "psst"})),
        "message",
    );
    ok(s.call("PUT", &format!("/v1/channels/{cid}/subscribe"), Some(&carol_c), None), "subscribe");
    ok(
        s.json(
            "PUT",
            &format!("/v1/users/me/presence/channels/{cid}"),
            Some(&alice),
            json!({"presence": "in"}),
        ),
        "channel presence",
    );
    ok(
        s.json(
            "POST",
            "/v1/polls",
            Some(&alice),
            json!({"type": "com.example.poll", "prompt": "?", "options": [{"text": "a"}, {"text": "b"}], "duration": 60}),
        ),
        "poll",
    );
    ok(s.json("POST", "/v1/files", Some(&alice), json!({"type": "com.example.f", "name": "f.txt"})), "file");
    let end = s.json("POST", "/v1/posts", Some(&alice), json!({"text": "END"}));
    let end_id = end.body["data"]["id"].as_str().unwrap().to_string();
    let expected: [BTreeSet<&str>; 3] = [
        // A: alice authorized it with every scope.
        types.into_iter().collect(),
        // B: public types and its own token only.
        ["post", "bookmark", "follow", "token", "user_presence"].into(),
        // C: public types, its own token, and the channel carol may read
        // (its subscription is carol's; carol authorized C with messages).
        [
            "post",
            "bookmark",
            "follow",
            "token",
            "user_presence",
            "channel",
            "message",
            "channel_subscription",
        ]
        .into(),
    ];
    for (i, ws) in streams.iter_mut().enumerate() {
        let mut got = BTreeSet::new();
        loop {
            let ev = ws.next_event();
            let t = ev["meta"]["type"].as_str().unwrap().to_string();
            if t == "post" && ev["data"][0]["id"] == end_id.as_str() {
                break;
            }
            assert!(
                expected[i].contains(t.as_str()),
                "LEAK: app {} received a {t} event it must not see: {ev}",
                ["A", "B", "C"][i]
            );
            got.insert(t);
        }
        let missing: Vec<_> = expected[i].iter().filter(|t| !got.contains(**t)).collect();
        assert!(missing.is_empty(), "app {} missed {missing:?}", ["A", "B", "C"][i]);
    }
}

/// Raw websocket client frames (masked, as clients must send them).
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    assert!(payload.len() < 126);
    f.push(0x80 | payload.len() as u8);
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Opens a websocket by hand and returns the socket after the 101 head.
fn raw_ws(s: &Server, token: &str) -> TcpStream {
    let mut c = TcpStream::connect(&s.stream_addr).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        c,
        "GET /v1/app?access_token={token}&key=k HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    c
}

/// Reads one server frame: (opcode, payload).
fn read_frame(c: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    c.read_exact(&mut h).unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            c.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            c.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    c.read_exact(&mut p).unwrap();
    (h[0] & 0x0f, p)
}

/// Reads frames until a close frame; returns its code and reason.
fn read_close(c: &mut TcpStream) -> (u16, String) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    let mut at = 0;
    while at + 2 <= all.len() {
        let (op, len) = (all[at] & 0x0f, (all[at + 1] & 0x7f) as usize);
        let (hl, len) = match len {
            126 => (4, u16::from_be_bytes([all[at + 2], all[at + 3]]) as usize),
            127 => (10, u64::from_be_bytes(all[at + 2..at + 10].try_into().unwrap()) as usize),
            n => (2, n),
        };
        let p = &all[at + hl..(at + hl + len).min(all.len())];
        if op == 0x8 {
            return (u16::from_be_bytes([p[0], p[1]]), String::from_utf8_lossy(&p[2..]).into_owned());
        }
        at += hl + len;
    }
    panic!("no close frame in {} bytes", all.len());
}

#[test]
fn invalid_utf8_fragments_and_stalled_handshakes() {
    let s = Server::start_with(&["--head-timeout-secs", "1"]);
    let app = s.add_app("a");
    let t = s.app_token(&app);
    s.create_stream(&t, "k", &["user"]);
    // Invalid UTF-8 in a text frame: close 1007 with a reason.
    let mut c = raw_ws(&s, &t);
    c.write_all(&client_frame(true, 0x1, &[0xff, 0xfe, b'a'])).unwrap();
    let (code, reason) = read_close(&mut c);
    assert_eq!(code, 1007, "{reason}");
    assert!(reason.contains("UTF-8"), "{reason}");
    // A message in fragments is a message like any other: it gets its pong.
    let mut c = raw_ws(&s, &t);
    c.write_all(&client_frame(false, 0x1, b"ke")).unwrap();
    c.write_all(&client_frame(false, 0x0, b"ep")).unwrap();
    c.write_all(&client_frame(true, 0x0, b"alive")).unwrap();
    // (The first frame is the connection message.)
    while read_frame(&mut c).0 != 0xa {}
    // A continuation without a start is a protocol error: close 1002.
    let mut c = raw_ws(&s, &t);
    c.write_all(&client_frame(true, 0x0, b"orphan")).unwrap();
    let (code, _) = read_close(&mut c);
    assert_eq!(code, 1002);
    // A handshake that never completes gets a 408 after --head-timeout-secs.
    let mut stalled = TcpStream::connect(&s.stream_addr).unwrap();
    stalled.write_all(b"GET /v1/app?key=k HTTP/1.1\r\nHost: x\r\n").unwrap();
    stalled.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = String::new();
    let r = stalled.read_to_string(&mut out);
    assert!(
        r.is_ok() && out.starts_with("HTTP/1.1 408 "),
        "the server closed the stalled handshake: {r:?} {out}"
    );
    assert!(out.ends_with(r#""error_message":"The request head did not arrive within 1 s"}}"#), "{out}");
    // 1,000 attempts with bad tokens, then the server still serves.
    for i in 0..1000 {
        let (code, _) = s.stream_http(&format!("/v1/app?key=k&access_token=bad{i}"), &[]);
        assert_eq!(code, 401);
    }
    let (_ok, hello) = s.ws(&format!("access_token={t}&key=k"));
    assert!(hello["meta"]["connection_id"].is_string());
}

/// Clients that stall while sending a body hold their own connection's
/// thread, not one of the server's `--http-threads` places: with a single
/// place, other requests are still answered.
#[test]
fn stalled_request_bodies_do_not_block_other_requests() {
    let s = Server::start_with(&["--http-threads", "1"]);
    let addr = s.api.trim_start_matches("http://").to_string();
    // Each announces a body and never sends it.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(&addr).unwrap();
        write!(c, "POST /v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{").unwrap();
        stalled.push(c);
    }
    let started = std::time::Instant::now();
    for i in 0..5 {
        let r = s.get("/health", None);
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    assert!(started.elapsed() < DEADLINE, "other requests waited {:?}", started.elapsed());
    drop(stalled);
}

/// Point 6: a client that floods pings and empty messages and never reads
/// costs one queued pong, not one per frame (it used to cost 10-14 GiB in
/// 40 s), and everyone else is served meanwhile.
#[test]
fn a_ping_flood_that_never_reads_queues_one_pong() {
    let s = Server::start_with(&["--conn-backlog-bytes", "65536"]);
    let app = s.add_app("a");
    let t = s.app_token(&app);
    s.create_stream(&t, "k", &["post"]);
    let mut c = raw_ws(&s, &t);
    c.set_write_timeout(Some(DEADLINE)).unwrap();
    let rss_before = s.rss_kib();
    let mut batch = client_frame(true, 0x9, &[b'p'; 125]).repeat(500);
    batch.extend(client_frame(true, 0x1, b"").repeat(500));
    let began = std::time::Instant::now();
    let mut frames = 0;
    // 400,000 frames (about 40 MiB), or 10 s.
    while frames < 400_000 && began.elapsed() < DEADLINE {
        if c.write_all(&batch).is_err() {
            break;
        }
        frames += 1000;
    }
    assert_eq!(frames, 400_000, "the server stopped reading a client that only sent pings");
    let grown = s.rss_kib().saturating_sub(rss_before);
    assert!(grown < 16 * 1024, "the server grew by {grown} KiB for {frames} unread pongs");
    // Another connection of the app is served meanwhile.
    let (_other, hello) = s.ws(&format!("access_token={t}&key=k"));
    assert!(hello["meta"]["connection_id"].is_string());
    // The flooder still gets its (coalesced) pong once it reads.
    while read_frame(&mut c).0 != 0xa {}
}
