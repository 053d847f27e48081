//! Retention: by count and by age, what a stream is told it lost, and
//! that a live stream loses nothing.

use crate::common::*;
use crate::world::*;
use std::time::{Duration, Instant};

#[test]
fn retention_by_count_reports_what_was_dropped_first() {
    let mut f = fx_with(&["--retention-events", "3"]);
    f.s.create_stream(&f.tok, "k", &["post"]);
    let ws = f.connect("k", "");
    close(ws);
    let sent: Vec<String> = (0..10).map(|i| f.post(&format!("p{i}"))).collect();
    // Retention runs once at start.
    f.s.restart();
    let mut ws = f.connect("k", "");
    let c = control(&mut ws, "events_dropped");
    assert_eq!(c["dropped"], 7, "{c}");
    assert!(c["message"].is_string(), "{c}");
    assert_eq!(posts(&mut ws, 3).0, sent[7..].to_vec());
    let p = f.post("live");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    close(ws);
    // Reported once: the next connection gets no notice.
    let mut ws = f.connect("k", "");
    let q = f.post("again");
    assert_eq!(posts(&mut ws, 1).0, [q]);
}

/// The current Unix time in seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Waits (bounded) until the wall clock reaches `t` seconds.
fn wait_clock(t: i64) {
    let start = Instant::now();
    while unix_now() < t {
        assert!(start.elapsed() < DEADLINE, "clock");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Retention by age: events older than --retention-secs leave the log; the
/// stream that had not received them is told how many, both on a plain
/// reconnect and on a resume from a position before them.
#[test]
fn retention_by_age_reports_dropped_events() {
    let mut f = fx();
    f.s.create_stream(&f.tok, "a", &["post"]);
    f.s.create_stream(&f.tok, "b", &["post"]);
    let mut a = f.connect("a", "");
    let mut b = f.connect("b", "");
    let p0 = f.post("seen");
    assert_eq!(posts(&mut a, 1).0, std::slice::from_ref(&p0));
    let (_, ps) = posts(&mut b, 1);
    close(a);
    close(b);
    for i in 0..4 {
        f.post(&format!("old {i}"));
    }
    // Let the four posts age past one second, then restart with
    // --retention-secs 1 (retention runs at start).
    wait_clock(unix_now() + 2);
    f.s.kill();
    f.s.extra = strs(&["--retention-secs", "1"]);
    f.s.launch();
    // From the stream's cursor.
    let mut a = f.connect("a", "");
    let c = control(&mut a, "events_dropped");
    assert_eq!(c["dropped"], 4, "{c}");
    // From a position the client passes back.
    let mut b = f.connect("b", &format!("&position={}", ps[0]));
    let c = control(&mut b, "events_dropped");
    assert_eq!(c["dropped"], 4, "resuming after the last post seen lost the four old ones: {c}");
    let p = f.post("new");
    assert_eq!(posts(&mut a, 1).0, std::slice::from_ref(&p));
    assert_eq!(posts(&mut b, 1).0, [p]);
}

/// A stream that is live while retention runs loses nothing, so it must
/// never be told afterwards that events were dropped.
#[test]
fn a_live_stream_is_never_reported_as_having_dropped_events() {
    let f = fx_with(&["--retention-events", "3", "--prune-secs", "1"]);
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    // Post for a while (several retention passes), reading everything live.
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(3500) {
        let p = f.post(&format!("p{n}"));
        n += 1;
        assert_eq!(posts(&mut ws, 1).0, [p]);
    }
    close(ws);
    let mut ws = f.connect("k", "");
    let p = f.post("marker");
    let v = ws.next_json().unwrap();
    assert!(
        v["meta"].get("control").is_none(),
        "a stream that received all {n} events live was told it lost some: {v}"
    );
    assert_eq!(post_id(&v), p);
}
