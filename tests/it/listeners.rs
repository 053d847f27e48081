//! Both listeners under clients with no account at all (issue 16, points 1
//! to 3 and the framing of point 11): request heads bounded in size and in
//! time, admission below what the process can hold, accept loops that
//! outlive running out of descriptors.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Sends `bytes`, closes the sending side, and reads the whole answer.
fn exchange(addr: &str, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.write_all(bytes).unwrap();
    let _ = c.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Asserts an answer's status line and that its body is exactly the pnut
/// envelope with `message`.
fn assert_envelope(out: &str, status: u16, message: &str) {
    assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "expected {status}: {out}");
    let body = format!(r#"{{"meta":{{"code":{status},"error_message":"{message}"}}}}"#);
    assert!(out.ends_with(&body), "expected the body {body}: {out}");
}

/// Point 1: an endless header line is cut off after a bounded number of
/// bytes (it used to be read into memory without end: 270 MiB/s), and the
/// server's memory does not follow it.
#[test]
fn an_endless_header_line_is_cut_off_and_costs_no_memory() {
    let s = Server::start();
    let rss_before = s.rss_kib();
    let attackers: Vec<_> = (0..2)
        .map(|_| {
            let addr = s.api_addr();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(&addr).unwrap();
                c.set_write_timeout(Some(DEADLINE)).unwrap();
                c.write_all(b"GET /health HTTP/1.1\r\nX-A: ").unwrap();
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0usize;
                while sent < 64 << 20 {
                    match c.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                sent
            })
        })
        .collect();
    for a in attackers {
        let sent = a.join().unwrap();
        assert!(sent < 16 << 20, "the server read {sent} bytes of one header line");
    }
    let grown = s.rss_kib().saturating_sub(rss_before);
    assert!(grown < 16 * 1024, "the server grew by {grown} KiB");
    // What such a client hears when it stops to listen: 431, closed.
    let mut long = b"GET /health HTTP/1.1\r\nX-A: ".to_vec();
    long.extend(vec![b'a'; 9000]);
    assert_envelope(&exchange(&s.api_addr(), &long), 431, "A header line is longer than 8192 bytes");
    assert_eq!(s.get("/health", None).status, 200);
}

/// The other bounds of a request head on the API listener, and the body's
/// framing per RFC 9112: each a clear answer in the envelope, then close.
#[test]
fn request_heads_and_framing_are_bounded_and_unambiguous() {
    let s = Server::start();
    let api = s.api_addr();
    let line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    assert_envelope(&exchange(&api, line.as_bytes()), 414, "The request line is longer than 8192 bytes");
    let many: String = (0..101).map(|i| format!("X-{i}: y\r\n")).collect();
    let head = format!("GET /health HTTP/1.1\r\n{many}\r\n");
    assert_envelope(&exchange(&api, head.as_bytes()), 431, "More than 100 header lines");
    let big: String = (0..5).map(|i| format!("X-{i}: {}\r\n", "y".repeat(8000))).collect();
    let head = format!("GET /health HTTP/1.1\r\n{big}\r\n");
    assert_envelope(&exchange(&api, head.as_bytes()), 431, "The request head is longer than 32768 bytes");
    // 100 headers of a normal size are fine.
    let ok: String = (0..99).map(|i| format!("X-{i}: y\r\n")).collect();
    let head = format!("GET /health HTTP/1.1\r\nConnection: close\r\n{ok}\r\n");
    assert!(exchange(&api, head.as_bytes()).starts_with("HTTP/1.1 200 "));

    let post = |headers: &str| {
        format!("POST /v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}\r\n{{}}")
    };
    for (headers, message) in [
        ("Content-Length: 2\r\nContent-Length: 3\r\n", "Content-Length: given twice with different values"),
        ("Content-Length: 2, 3\r\n", "Content-Length: given twice with different values"),
        (
            "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
            "Content-Length and Transfer-Encoding must not both be given",
        ),
        ("Content-Length: +2\r\n", "Content-Length: not a whole number"),
        ("Transfer-Encoding: gzip\r\n", "Transfer-Encoding: a request body must be chunked last"),
    ] {
        let out = exchange(&api, post(headers).as_bytes());
        assert_envelope(&out, 400, message);
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "the connection closed after the 400: {out}");
    }
    // The same length twice is one length (RFC 9112 allows it): no 400.
    let out = exchange(&api, post("Content-Length: 2\r\nContent-Length: 2\r\n").as_bytes());
    assert!(out.starts_with("HTTP/1.1 401 "), "{out}");
}

/// Point 3 (and its API twin): a head dribbled a byte at a time runs out of
/// time after --head-timeout-secs however often bytes come, and a body
/// after --body-timeout-secs. (The timeout used to apply per read.)
#[test]
fn dribbled_heads_and_bodies_run_out_of_time() {
    let s = Server::start_with(&["--head-timeout-secs", "1", "--body-timeout-secs", "1"]);
    let dribble = |addr: String, start: &'static [u8]| {
        std::thread::spawn(move || {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.write_all(start).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let began = Instant::now();
            let mut out = Vec::new();
            // A byte every 200 ms for at most 5 s, until the server answers.
            while began.elapsed() < Duration::from_secs(5) {
                let mut b = [0u8; 1024];
                match c.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => out.extend_from_slice(&b[..n]),
                    Err(_) if out.is_empty() => {
                        if c.write_all(b"a").is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            (began.elapsed(), String::from_utf8_lossy(&out).into_owned())
        })
    };
    let api = dribble(s.api_addr(), b"GET /health HTTP/1.1\r\nX-A: ");
    let stream = dribble(s.stream_addr.clone(), b"GET /v1/app?key=k HTTP/1.1\r\nX-A: ");
    let body = dribble(
        s.api_addr(),
        b"POST /v1/posts HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    );
    for (t, who, message) in [
        (api, "API head", "The request head did not arrive within 1 s"),
        (stream, "stream head", "The request head did not arrive within 1 s"),
        (body, "API body", "The request body did not arrive in time"),
    ] {
        let (took, out) = t.join().unwrap();
        assert_envelope(&out, 408, message);
        assert!(took < Duration::from_secs(4), "{who}: answered after {took:?}");
    }
}

/// Points 2 and 3: under an open-files limit of 128 the server works out
/// how many connections it can hold and refuses the rest with a fast 503,
/// on both listeners; once they leave, it serves again. (It used to run
/// into EMFILE, and its API accept loop ended for good.)
#[test]
fn connections_past_the_ceiling_get_503_and_the_server_goes_on() {
    let mut s =
        Server::start_limited(Some(128), &["--max-pending", "100000", "--max-pending-per-ip", "100000"]);
    s.agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_idle_connections(0).build().into();
    let app = s.add_app("a");
    let t = s.app_token(&app);
    s.create_stream(&t, "k", &["post"]);
    let api = s.api_addr();
    let mut held = Vec::new();
    let (mut ok, mut refused, mut limit) = (0, 0, 0);
    for _ in 0..150 {
        let mut c = TcpStream::connect(&api).unwrap();
        c.set_read_timeout(Some(DEADLINE)).unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut b = [0u8; 4096];
        let n = c.read(&mut b).unwrap_or(0);
        let out = String::from_utf8_lossy(&b[..n]).into_owned();
        if out.starts_with("HTTP/1.1 200 ") {
            ok += 1;
            held.push(c);
        } else {
            let mut rest = String::new();
            let _ = c.read_to_string(&mut rest);
            let out = out + &rest;
            assert!(out.contains("Retry-After: 5\r\n"), "{out}");
            let n: usize = out
                .split("The server is at its limit of ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{out}"));
            assert_envelope(
                &out,
                503,
                &format!("The server is at its limit of {n} connections; try again later"),
            );
            // (The harness's last request may not have been counted out yet.)
            assert!(ok == n || ok + 1 == n, "{ok} connections answered under a limit of {n}");
            limit = n;
            refused += 1;
            if refused == 10 {
                break;
            }
        }
    }
    assert_eq!(refused, 10, "{ok} connections answered, none refused");
    assert!(ok < 128 - 64, "{ok} connections under a limit of 128 descriptors");
    // The stream listener shares the count.
    let out =
        exchange(&s.stream_addr, format!("GET /v1/app?key=k&access_token={t} HTTP/1.1\r\n\r\n").as_bytes());
    assert_envelope(
        &out,
        503,
        &format!("The server is at its limit of {limit} connections; try again later"),
    );
    drop(held);
    let began = Instant::now();
    loop {
        let out = exchange(&api, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        if out.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(began.elapsed() < DEADLINE, "the API did not come back: {out}");
        std::thread::yield_now();
    }
    let (_ws, hello) = s.ws(&format!("access_token={t}&key=k"));
    assert!(hello["meta"]["connection_id"].is_string());
    let log = s.kill();
    assert!(
        log.contains(&format!("at most {limit} connections: the open-files limit (ulimit -n) is 128")),
        "{log}"
    );
}

/// Point 2: when descriptors run out anyway (here: the limit lowered under
/// the running server), both accept loops wait and go on; every connection
/// that waited meanwhile is answered once descriptors are back.
#[test]
fn accept_loops_outlive_running_out_of_descriptors() {
    use rustix::process::{prlimit, Pid, Resource, Rlimit};
    let s = Server::start();
    let app = s.add_app("a");
    let t = s.app_token(&app);
    s.create_stream(&t, "k", &["post"]);
    let pid = Pid::from_raw(s.pid() as i32).unwrap();
    let open = std::fs::read_dir(format!("/proc/{}/fd", s.pid())).unwrap().count() as u64;
    let old = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let hard: u64 = old
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .expect("a hard open-files limit");
    // Only the soft limit: raising a hard one back takes privileges.
    let set =
        |soft: u64| prlimit(Some(pid), Resource::Nofile, Rlimit { current: Some(soft), maximum: Some(hard) });
    let old = set(open + 4).unwrap();
    let mut waiting = Vec::new();
    for i in 0..30 {
        let (addr, request) = if i % 2 == 0 {
            (s.api_addr(), "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string())
        } else {
            (s.stream_addr.clone(), format!("GET /v1/app?key=k&access_token=bad{i} HTTP/1.1\r\n\r\n"))
        };
        let mut c = TcpStream::connect(&addr).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        waiting.push((i, c));
    }
    // Let both loops run into EMFILE for a while, then give descriptors back.
    let mut probe = TcpStream::connect(s.api_addr()).unwrap();
    probe.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let _ = probe.read(&mut [0u8; 16]);
    set(old.current.unwrap_or(hard)).unwrap();
    for (i, mut c) in waiting {
        c.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        // One handled while descriptors were short may be told so (503).
        let want = if i % 2 == 0 { "HTTP/1.1 200 " } else { "HTTP/1.1 401 " };
        let busy = out.starts_with("HTTP/1.1 503 ") && out.contains("out of resources");
        assert!(out.starts_with(want) || busy, "connection {i} was never answered: {out:?}");
    }
    assert_eq!(s.get("/health", None).status, 200);
}

/// Waits 200 ms for an answer on an idle connection: none means the server
/// admitted it and is waiting for its head.
fn admitted(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut b = [0u8; 64];
    matches!(c.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
}

/// Connections that are not an authorized stream are capped per address:
/// past --max-pending-per-ip a 503; a stream that authorized no longer
/// counts against it.
#[test]
fn strangers_are_capped_per_address_and_authorized_streams_are_not() {
    let mut s = Server::start_with(&["--max-pending-per-ip", "3"]);
    // The harness's own API connections must not linger and count.
    s.agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_idle_connections(0).build().into();
    let app = s.add_app("a");
    let t = s.app_token(&app);
    s.create_stream(&t, "k", &["post"]);
    s.add_user("u", "pw-pw-pw-1");
    let ut = s.user_token(&app, "u", "pw-pw-pw-1", "basic,stream,write_post");
    let strangers = |n: usize| -> Vec<TcpStream> {
        (0..n)
            .map(|i| {
                // (A connection of the step before may still be closing.)
                let began = Instant::now();
                loop {
                    let mut c = TcpStream::connect(&s.stream_addr).unwrap();
                    if admitted(&mut c) {
                        break c;
                    }
                    assert!(began.elapsed() < DEADLINE, "stranger {i} was refused");
                }
            })
            .collect()
    };
    let full = |addr: &str| {
        let out = exchange(addr, b"GET /health HTTP/1.1\r\n\r\n");
        assert_envelope(&out, 503, "Too many connections from your address (the limit is 3)");
    };
    let held = strangers(3);
    full(&s.api_addr());
    full(&s.stream_addr);
    drop(held);
    // Once the server saw them go, the places are free again.
    let began = Instant::now();
    while !exchange(&s.stream_addr, b"GET /v1/app?key=k HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 401 ") {
        assert!(began.elapsed() < DEADLINE, "the places were never given back");
    }
    // Two authorized streams settle; three strangers still fit beside them.
    let (mut a, _) = s.ws(&format!("access_token={t}&key=k"));
    let (mut b, _) = s.ws(&format!("access_token={t}&key=k"));
    let _strangers = strangers(3);
    full(&s.stream_addr);
    full(&s.api_addr());
    // The streams still work (once the server saw the strangers go).
    drop(_strangers);
    let began = Instant::now();
    while !exchange(&s.stream_addr, b"GET /v1/app?key=k HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 401 ") {
        assert!(began.elapsed() < DEADLINE, "the places were never given back");
    }
    // (On a loaded machine a stranger's socket may still be closing: wait
    // until the API port has room too, or the post below meets a 503 and
    // its connection is reset under the body.)
    while !exchange(&s.api_addr(), b"GET /health HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 ") {
        assert!(began.elapsed() < DEADLINE, "the API never had room again");
    }
    let r = s.json("POST", "/v1/posts", Some(&ut), serde_json::json!({"text": "hi"}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(a.next_event()["data"][0]["content"]["text"], "hi");
    assert_eq!(b.next_event()["data"][0]["content"]["text"], "hi");
}
