//! Keeps the benchmark from rotting: runs every scenario of
//! `examples/bench.rs` tiny against the debug server and checks what it
//! reports about correctness (every event arrived, none twice, no idle
//! connection dropped). Its timings are not asserted: performance figures
//! come from release runs, printed, never from tests.

use crate::common::BIN;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn bench_runs_every_scenario_and_loses_nothing() {
    // `cargo test` builds the examples next to the binaries.
    let bin = std::path::Path::new(BIN);
    let bench = bin.parent().unwrap().join("examples").join("bench");
    assert!(bench.exists(), "cargo test builds examples; missing {}", bench.display());
    let dir = std::env::temp_dir().join(format!("spout-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("rows.json");
    let mut child = Command::new(&bench)
        .args(["idle", "fanout", "ingest", "slow"])
        .args([
            "--conns",
            "12",
            "--hold",
            "1",
            "--secs",
            "1",
            "--rate",
            "40",
            "--writers",
            "2",
            "--apps",
            "3",
        ])
        .arg("--bin")
        .arg(bin)
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the bench did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "bench exited with {status}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r["scenario"].as_str().unwrap()).collect();
    // `slow` runs the fan-out without, then with, a reader that stalls.
    assert_eq!(kinds, ["idle", "fanout", "ingest", "fanout", "slow"], "{doc}");
    assert_eq!(rows[3]["stalled_reader"], false);
    assert_eq!(rows[4]["stalled_reader"], true);
    assert_eq!(rows[0]["conns"], 12);
    assert_eq!(rows[0]["dropped"], 0, "{}", rows[0]);
    for r in [&rows[1], &rows[3], &rows[4]] {
        assert!(r["posts"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["delivered"].as_u64().unwrap(), r["posts"].as_u64().unwrap() * 12, "{r}");
        assert_eq!(r["lost"], 0, "{r}");
        assert_eq!(r["duplicated"], 0, "{r}");
    }
    assert!(rows[2]["posts_per_sec"].as_f64().unwrap() > 0.0, "{}", rows[2]);
    assert_eq!(rows[2]["lost"], 0, "{}", rows[2]);
    let _ = std::fs::remove_dir_all(dir);
}
