//! Durable delivery: replay after a disconnect and after kill -9, purge,
//! resume by position, auto_delete, live stream updates, and the
//! replay/live handover under a concurrent writer.

use crate::common::*;
use crate::world::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[test]
fn reconnect_delivers_what_was_missed_once_and_in_order() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    let p1 = f.post("one");
    let (ids, first) = posts(&mut ws, 1);
    assert_eq!(ids, [p1]);
    close(ws);
    let away: Vec<String> = (2..=6).map(|i| f.post(&format!("away {i}"))).collect();
    let mut ws = f.connect("k", "");
    let (ids, ps) = posts(&mut ws, 5);
    assert_eq!(ids, away, "exactly the missed posts, in order, p1 not again");
    assert!(ps[0] > first[0]);
    // Then live, with nothing repeated in between.
    let p7 = f.post("live");
    let (ids, live) = posts(&mut ws, 1);
    assert_eq!(ids, [p7]);
    assert!(live[0] > ps[4]);
    // A second disconnect with nothing missed replays nothing.
    close(ws);
    let mut ws = f.connect("k", "");
    let p8 = f.post("after");
    assert_eq!(posts(&mut ws, 1).0, [p8]);
}

#[test]
fn events_missed_before_a_kill_arrive_after_restart() {
    let mut f = fx();
    f.s.create_stream(&f.tok, "k", &["post", "user"]);
    let mut ws = f.connect("k", "");
    let p1 = f.post("before");
    assert_eq!(posts(&mut ws, 1).0, [p1]);
    close(ws);
    let away: Vec<String> = (0..4).map(|i| f.post(&format!("away {i}"))).collect();
    f.s.restart();
    let mut ws = f.connect("k", "");
    let (ids, ps) = posts(&mut ws, 4);
    assert_eq!(ids, away);
    let p = f.post("after restart");
    let (ids, live) = posts(&mut ws, 1);
    assert_eq!(ids, [p]);
    assert!(live[0] > ps[3]);
}

#[test]
fn kill_while_connected_then_resume_by_position_loses_nothing() {
    let mut f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    let sent: Vec<String> = (0..3).map(|i| f.post(&format!("p{i}"))).collect();
    let (ids, ps) = posts(&mut ws, 3);
    assert_eq!(ids, sent);
    // The server dies with the client connected; more happens after.
    f.s.restart();
    let more: Vec<String> = (0..2).map(|i| f.post(&format!("q{i}"))).collect();
    // Resuming from the last position seen: exactly what follows it.
    let mut ws = f.connect("k", &format!("&position={}", ps[2]));
    assert_eq!(posts(&mut ws, 2).0, more);
    close(ws);
    // Without a position the stream's own cursor is used: at least once,
    // so it may repeat, but it never skips and keeps order.
    let last = f.post("r");
    let mut ws = f.connect("k", "");
    let ev = event(&mut ws);
    assert_eq!(post_id(&ev), last, "the cursor saved at the last close is exact: {ev}");
}

#[test]
fn purge_skips_the_queue_and_goes_live() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let ws = f.connect("k", "");
    close(ws);
    for i in 0..3 {
        f.post(&format!("queued {i}"));
    }
    let mut ws = f.connect("k", "&purge=1");
    let p = f.post("live");
    assert_eq!(posts(&mut ws, 1).0, [p], "queued posts were purged");
    close(ws);
    // The purge moved the cursor: the purged posts never come back.
    let mut ws = f.connect("k", "");
    let q = f.post("later");
    assert_eq!(posts(&mut ws, 1).0, [q]);
}

#[test]
fn position_resumes_exactly_after_it_and_wins_over_the_cursor() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    let sent: Vec<String> = (0..5).map(|i| f.post(&format!("p{i}"))).collect();
    let (ids, ps) = posts(&mut ws, 5);
    assert_eq!(ids, sent);
    close(ws);
    // The stream's cursor is after the fifth; position 2 asks for 3..5 again.
    let mut ws = f.connect("k", &format!("&position={}", ps[1]));
    let (ids, again) = posts(&mut ws, 3);
    assert_eq!(ids, sent[2..].to_vec());
    assert_eq!(again, ps[2..].to_vec(), "the same positions as the first time");
    let p = f.post("live");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    close(ws);
    // position=0 replays everything still in the log for this stream.
    let mut ws = f.connect("k", "&position=0");
    assert_eq!(posts(&mut ws, 5).0, sent);
}

#[test]
fn auto_delete_removes_the_stream_when_the_connection_ends() {
    let f = fx();
    f.s.create_stream(&f.tok, "gone", &["post"]);
    f.s.create_stream(&f.tok, "kept", &["post"]);
    let mut ws = f.connect("gone", "&auto_delete=1");
    let kept = f.connect("kept", "");
    let p = f.post("x");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    assert_eq!(f.s.get("/v1/streams/gone", Some(&f.tok)).status, 200, "still there while connected");
    close(ws);
    let start = Instant::now();
    loop {
        let r = f.s.get("/v1/streams/gone", Some(&f.tok));
        if r.status == 404 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(start.elapsed() < DEADLINE, "the auto_delete stream was never deleted");
        std::thread::sleep(Duration::from_millis(20));
    }
    close(kept);
    assert_eq!(f.s.get("/v1/streams/kept", Some(&f.tok)).status, 200, "only the auto_delete one goes");
}

#[test]
fn two_live_connections_on_one_stream_both_get_everything() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut a = f.connect("k", "");
    let mut b = f.connect("k", "");
    let sent: Vec<String> = (0..6).map(|i| f.post(&format!("p{i}"))).collect();
    let (ia, pa) = posts(&mut a, 6);
    let (ib, pb) = posts(&mut b, 6);
    assert_eq!(ia, sent);
    assert_eq!(ib, sent);
    assert_eq!(pa, pb);
}

#[test]
fn object_types_change_reaches_an_open_connection_at_once() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    let p = f.post("before");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    let r = f.s.json("PUT", "/v1/streams/k", Some(&f.tok), json!({"object_types": ["user"]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let c = control(&mut ws, "stream_updated");
    assert_eq!(c["object_types"], json!(["user"]), "{c}");
    // A post no longer arrives; a profile change does, next.
    f.post("not for this stream any more");
    f.set_name(&f.alice, "Alice");
    let ev = event(&mut ws);
    assert_eq!(ev["meta"]["type"], "user", "{ev}");
    assert_eq!(ev["data"]["name"], "Alice");
}

#[test]
fn deleting_the_stream_sends_a_control_message_before_closing() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    assert_eq!(f.s.call("DELETE", "/v1/streams/k", Some(&f.tok), None).status, 200);
    let c = control(&mut ws, "stream_deleted");
    assert!(c["message"].is_string(), "{c}");
    match ws.next() {
        WsNext::Closed(Some((code, reason))) => {
            assert_eq!(code, 1000);
            assert!(reason.contains("deleted"), "{reason}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// A writer posts continuously while a client connects (and reconnects):
/// everything the stream should get arrives exactly once, with consecutive
/// positions (the log holds only posts after the stream was created).
#[test]
fn no_gap_and_no_duplicate_across_the_replay_live_handover() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    const N: usize = 300;
    let api = f.s.api.clone();
    let alice = f.alice.clone();
    let writer = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut ids = Vec::new();
        for i in 0..N {
            let r = agent
                .post(format!("{api}/v1/posts"))
                .header("Authorization", format!("Bearer {alice}"))
                .header("Content-Type", "application/json")
                .send(json!({ "text": format!("w{i}") }).to_string())
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let v: Value = serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap();
            ids.push(v["data"]["id"].as_str().unwrap().to_string());
        }
        ids
    });
    let mut got: Vec<(i64, String)> = Vec::new();
    // Several connections while the writer runs, each reading a few events
    // then closing; the last one reads to the end. Events the server had
    // already written when a client hung up count as delivered, so each new
    // connection resumes after the last position this client processed.
    let start = Instant::now();
    for round in 0.. {
        assert!(start.elapsed() < Duration::from_secs(60), "writer too slow");
        let resume = got.last().map(|(p, _)| format!("&position={p}")).unwrap_or_default();
        let mut ws = f.connect("k", &resume);
        let last_round = round >= 6 || got.len() >= N * 2 / 3;
        let want = if last_round { N - got.len() } else { 15 };
        for _ in 0..want {
            let ev = event(&mut ws);
            got.push((pos(&ev), post_id(&ev)));
        }
        close(ws);
        if last_round {
            break;
        }
    }
    let ids = writer.join().unwrap();
    let positions: Vec<i64> = got.iter().map(|g| g.0).collect();
    for w in positions.windows(2) {
        assert_eq!(w[1], w[0] + 1, "consecutive positions, no gap, no duplicate: {positions:?}");
    }
    let got_ids: Vec<String> = got.into_iter().map(|g| g.1).collect();
    assert_eq!(got_ids, ids, "every post once, in order");
}

/// A client that vanishes while its replay is still queued on the server:
/// what was never written to its socket must be replayed on the next
/// connect (the cursor only counts what was written).
#[test]
fn replayed_events_still_queued_when_the_client_vanishes_are_not_lost() {
    // The server's kernel send buffer is 256 KiB, which Linux doubles, and
    // the client's receive buffer is 4 KiB: the kernel can take at most
    // about 530 KB of the replay. 160 posts of 8 KB (about 1.3 MB) leave
    // about 90 of them queued on the server when the client vanishes (the
    // test asks for 40, room for the kernel's accounting), and stay under
    // half of a 4 MiB backlog, so the replay goes live at once with most
    // of it still queued.
    let f = fx_with(&["--max-conns-per-app", "1", "--conn-backlog-bytes", "4194304"]);
    f.s.create_stream(&f.tok, "k", &["post"]);
    let filler = "x".repeat(8000);
    let n = 160;
    let sent: Vec<String> = (0..n)
        .map(|i| {
            f.post_as(
                &f.alice,
                json!({"text": format!("p{i}"), "raw": {"com.example.fill": [{"f": filler}]}}),
            )
        })
        .collect();
    let mut ws = small_buffer_ws(&f.s.stream_addr, &format!("access_token={}&key=k&include_raw=1", f.tok));
    let hello = ws.next_json().unwrap();
    assert!(hello["meta"]["connection_id"].is_string(), "{hello}");
    // Read a few, then crash (no close handshake).
    let (ids, _) = posts(&mut ws, 10);
    assert_eq!(ids, sent[..10].to_vec());
    drop(ws);
    // Whatever was never written to the socket must come again. With one
    // connection per app, the reconnect succeeds once the server has
    // noticed the crash.
    let start = Instant::now();
    let mut ws = loop {
        let url = format!("ws://{}/v1/app?access_token={}&key=k", f.s.stream_addr, f.tok);
        match tungstenite::connect(url) {
            Ok((sock, _)) => {
                let mut ws = Ws(sock);
                ws.set_timeout(DEADLINE);
                ws.next_json().unwrap();
                break ws;
            }
            Err(_) if start.elapsed() < DEADLINE => std::thread::yield_now(),
            Err(e) => panic!("reconnect: {e}"),
        }
    };
    let marker = f.post("marker");
    let mut got = Vec::new();
    loop {
        let id = post_id(&event(&mut ws));
        if id == marker {
            break;
        }
        got.push(id);
    }
    assert!(
        got.len() >= 40 && got.last() == sent.last(),
        "only {} of the last {} posts came again: {got:?}",
        got.len(),
        n - 10
    );
    let first = sent.iter().position(|s| *s == got[0]).unwrap();
    assert_eq!(got, sent[first..].to_vec(), "consecutive, in order");
}

/// A stream update that lands while the connection is still replaying (the
/// client reads slowly, so the replay waits on its backlog) and live events
/// that overflow the hold meanwhile: the control message must still arrive,
/// and an event of the newly added type must not be lost.
#[test]
fn a_stream_update_during_a_slow_replay_is_not_lost() {
    let f = fx_with(&["--conn-backlog-bytes", "65536"]);
    f.s.create_stream(&f.tok, "k", &["post"]);
    let filler = "x".repeat(8000);
    let big = |i: usize| json!({"text": format!("p{i}"), "raw": {"com.example.fill": [{"f": filler}]}});
    // ~800 KB queued: more than the kernel buffers plus half the backlog, so
    // the replay cannot finish while the client reads nothing.
    let queued: Vec<String> = (0..100).map(|i| f.post_as(&f.alice, big(i))).collect();
    let mut ws = small_buffer_ws(&f.s.stream_addr, &format!("access_token={}&key=k&include_raw=1", f.tok));
    let hello = ws.next_json().unwrap();
    assert!(hello["meta"]["connection_id"].is_string(), "{hello}");
    let r = f.s.json("PUT", "/v1/streams/k", Some(&f.tok), json!({"object_types": ["post", "user"]}));
    assert_eq!(r.status, 200, "{}", r.body);
    f.set_name(&f.alice, "New Alice");
    // Live posts worth more than the backlog while the replay waits.
    let live: Vec<String> = (100..110).map(|i| f.post_as(&f.alice, big(i))).collect();
    let mut marker = f.post("marker");
    let (mut got, mut controls, mut users) = (Vec::new(), Vec::new(), Vec::new());
    let mut markers = 0;
    loop {
        let v = ws.next_json().unwrap();
        if v["meta"].get("control").is_some() {
            controls.push(v["meta"]["control"]["type"].as_str().unwrap_or("").to_string());
            continue;
        }
        if v["meta"]["type"] == "user" {
            users.push(v["data"]["name"].as_str().unwrap_or("").to_string());
            continue;
        }
        let id = post_id(&v);
        if id == marker {
            if markers == 1 {
                break;
            }
            // A second marker, so a control message held until the replay
            // went live is read too.
            marker = f.post("marker 2");
            markers = 1;
            continue;
        }
        got.push(id);
    }
    let all: Vec<String> = queued.into_iter().chain(live).collect();
    assert_eq!(got, all, "every post once, in order");
    assert_eq!(controls, ["stream_updated"], "the update's control message arrived");
    assert_eq!(users, ["New Alice"], "the user event made after the update arrived");
}

/// Replay follows the stream as it is now: a type removed while the client
/// was away is not replayed; one still wanted is.
#[test]
fn replay_uses_the_object_types_the_stream_has_now() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post", "user"]);
    let ws = f.connect("k", "");
    close(ws);
    f.post("a post while away");
    f.set_name(&f.alice, "Away Alice");
    let r = f.s.json("PUT", "/v1/streams/k", Some(&f.tok), json!({"object_types": ["user"]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut ws = f.connect("k", "");
    let ev = event(&mut ws);
    assert_eq!(ev["meta"]["type"], "user", "{ev}");
    assert_eq!(ev["data"]["name"], "Away Alice");
    f.post("live post");
    f.set_name(&f.alice, "Live Alice");
    let ev = event(&mut ws);
    assert_eq!(ev["data"]["name"], "Live Alice", "{ev}");
}

/// The chunked (App.net) transport replays the same way.
#[test]
fn chunked_transport_replays_what_was_missed() {
    use std::io::{BufRead, BufReader, Read, Write};
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let ws = f.connect("k", "");
    close(ws);
    let away: Vec<String> = (0..3).map(|i| f.post(&format!("away {i}"))).collect();
    let mut sock = std::net::TcpStream::connect(&f.s.stream_addr).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(sock, "GET /v1/app?key=k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n", f.tok).unwrap();
    let mut r = BufReader::new(sock);
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "head");
        if line == "\r\n" {
            break;
        }
    }
    let mut next = || loop {
        let mut size = String::new();
        r.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        assert!(n > 0, "the stream ended");
        let mut buf = vec![0u8; n + 2];
        r.read_exact(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap().trim_end().to_string();
        if !text.is_empty() {
            return serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert!(next()["meta"]["connection_id"].is_string());
    let mut last = 0;
    for id in &away {
        let ev = next();
        assert_eq!(&post_id(&ev), id);
        assert!(pos(&ev) > last);
        last = pos(&ev);
    }
    let p = f.post("live");
    assert_eq!(post_id(&next()), p);
}

/// A position beyond the end of the log (a client's stale state from
/// another database, a typo) must not poison the stream: events missed
/// after that connection ends are still replayed on the next one.
#[test]
fn a_position_past_the_end_does_not_poison_the_stream_cursor() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "&position=1000000");
    let p = f.post("live");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    close(ws);
    let away = f.post("away");
    let mut ws = f.connect("k", "");
    let ev = match ws.next() {
        WsNext::Json(v) => v,
        other => panic!("no replay ({other:?})"),
    };
    assert_eq!(post_id(&ev), away, "the post made while away is replayed: {ev}");
}

/// `?purge=1` skips what was queued before the connection, never an event
/// made after the client got its connection message (repeated, since the
/// old failure depended on timing).
#[test]
fn purge_never_skips_events_made_after_the_connection_message() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    for i in 0..15 {
        f.post(&format!("queued {i}"));
        let mut ws = f.connect("k", "&purge=1");
        let p = f.post(&format!("live {i}"));
        assert_eq!(posts(&mut ws, 1).0, [p], "round {i}");
        close(ws);
    }
}

/// An auto_delete stream whose server died with the connection open is
/// gone after the restart too (the connection ended).
#[test]
fn auto_delete_survives_a_kill() {
    let mut f = fx();
    f.s.create_stream(&f.tok, "gone", &["post"]);
    let ws = f.connect("gone", "&auto_delete=1");
    f.s.restart();
    drop(ws);
    assert_eq!(
        f.s.get("/v1/streams/gone", Some(&f.tok)).status,
        404,
        "the auto_delete stream outlived its connection"
    );
}
