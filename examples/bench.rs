//! spout's benchmark: starts the real release binary on a fresh temporary
//! database (or targets a running one), sets up apps, users, tokens and
//! streams itself, runs the scenarios and prints one table row each.
//!
//! Usage:
//!   cargo run --release --example bench -- [SCENARIOS] [FLAGS]
//!
//! SCENARIOS (default: idle fanout ingest slow), any of:
//!   idle     open --conns websockets (default 5000), hold them --hold s
//!   fanout   --conns subscribers (default 1000) over --apps apps, --writers
//!            posting --rate posts/s (default 200) for --secs s
//!   ingest   --writers writers as fast as possible, one stream connected
//!   slow     fanout with one subscriber that never reads, against without
//!   hostile  fanout (--conns, default 100) alone, beside another tenant's
//!            filter at every bound, and beside that filter and attackers
//!            (slowloris on both listeners, endless header lines, a ping
//!            flood that never reads): the p99 of each, and its ratio
//!   search   ingest with the full-text index on and off (alternating, a
//!            fresh server each), then GET /v1/posts/search latency on
//!            --posts posts (default 1,000,000) the bench writes straight
//!            into the database
//! FLAGS:
//!   --conns N --rate R --secs T --writers P --apps A --hold S --posts N
//!   --json FILE               also write the rows as JSON
//!   --spin-us U               the subscriber loops poll without sleeping for
//!                             U µs after data arrives (default 0: it sleeps
//!                             in epoll_wait at once; a sleeping client costs
//!                             the server a cross-CPU wake-up per write)
//!   --loops L                 read the subscribers from L epoll loops (1
//!                             or 2, each on its own thread with half the
//!                             connections; default 2)
//!   --series FILE             fanout: per post, write its send time (ms from
//!                             the first post), first and last receipt (µs)
//!   --bin PATH                the spout binary (default: target/release/spout, built if missing)
//!   --api URL --stream HOST:PORT --db PATH   use a running server (its
//!                             database for the admin commands; start it with
//!                             large --max-conns-per-app, --max-pending and
//!                             --max-pending-per-ip)
//!
//! Latency is publish-to-receipt: each post's text carries the writer's
//! clock in ns just before the request; a subscriber loop subtracts it
//! from its own clock (same machine). Subscribers are read by two epoll
//! loops (`--loops`), not a thread each, and the client's CPU is reported.

#[path = "bench/hostile.rs"]
mod hostile;
#[path = "bench/searching.rs"]
mod searching;

use rustix::event::epoll;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
struct Args {
    scenarios: Vec<String>,
    conns: Option<usize>,
    rate: u64,
    secs: u64,
    writers: usize,
    apps: usize,
    hold: u64,
    spin_us: u64,
    loops: usize,
    json: Option<String>,
    series: Option<String>,
    bin: Option<String>,
    api: Option<String>,
    stream: Option<String>,
    db: Option<String>,
    posts: Option<usize>,
}

fn parse_args() -> Args {
    let mut a = Args {
        scenarios: Vec::new(),
        conns: None,
        rate: 200,
        secs: 10,
        writers: 4,
        apps: 10,
        hold: 30,
        spin_us: 0,
        loops: 2,
        json: None,
        series: None,
        bin: None,
        api: None,
        stream: None,
        db: None,
        posts: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| die(&format!("{x} needs a value")));
        match x.as_str() {
            "--conns" => a.conns = Some(num(&val())),
            "--rate" => a.rate = num(&val()) as u64,
            "--secs" => a.secs = num(&val()) as u64,
            "--writers" => a.writers = num(&val()).max(1),
            "--apps" => a.apps = num(&val()).max(1),
            "--hold" => a.hold = num(&val()) as u64,
            "--spin-us" => a.spin_us = num(&val()) as u64,
            "--loops" => a.loops = num(&val()).clamp(1, 2),
            "--json" => a.json = Some(val()),
            "--series" => a.series = Some(val()),
            "--bin" => a.bin = Some(val()),
            "--api" => a.api = Some(val()),
            "--stream" => a.stream = Some(val()),
            "--db" => a.db = Some(val()),
            "--posts" => a.posts = Some(num(&val())),
            "idle" | "fanout" | "ingest" | "slow" | "hostile" | "search" => a.scenarios.push(x.clone()),
            "-h" | "--help" => {
                println!("see the header of examples/bench.rs");
                std::process::exit(0);
            }
            other => die(&format!("unknown argument {other}")),
        }
    }
    if a.scenarios.is_empty() {
        a.scenarios = vec!["idle".into(), "fanout".into(), "ingest".into(), "slow".into()];
    }
    a
}

fn num(s: &str) -> usize {
    s.replace('_', "").parse().unwrap_or_else(|_| die(&format!("not a number: {s}")))
}

fn die(m: &str) -> ! {
    eprintln!("bench: {m}");
    std::process::exit(2)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

// ---------------------------------------------------------------- process

/// CPU seconds (user + system) and RSS KiB and threads of a process.
fn proc_stats(pid: &str) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (cpu / ticks, field("VmRSS:"), field("Threads:"))
}

/// Raises the open-files limit to what `need` descriptors require: the soft
/// limit up to the hard one, and the hard one too when privileged (root or
/// CAP_SYS_RESOURCE, up to `fs.nr_open`). Children (the server) inherit it.
fn raise_nofile(need: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum.unwrap_or(u64::MAX);
    if hard < need {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(need);
        let want = need.min(nr_open);
        if setrlimit(Resource::Nofile, Rlimit { current: Some(want), maximum: Some(want) }).is_err() {
            eprintln!(
                "bench: the hard open-files limit ({hard}) is below the {need} this run needs and cannot be \
                 raised without CAP_SYS_RESOURCE; first run (privileged): prlimit --pid $$ --nofile={need}:{need}"
            );
        }
    }
    let cur = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: cur.maximum, maximum: cur.maximum });
    getrlimit(Resource::Nofile).current.unwrap_or(0)
}

struct Target {
    api: String,
    stream: String,
    db: String,
    pid: String,
    child: Option<Child>,
    _dir: Option<PathBuf>,
    bin: PathBuf,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = &self._dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn find_bin(a: &Args) -> PathBuf {
    if let Some(b) = &a.bin {
        return PathBuf::from(b);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/release/examples/bench → target/release/spout
    let bin = exe.parent().and_then(|p| p.parent()).map(|p| p.join("spout")).unwrap_or_default();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("bench: building the release binary ({})", bin.display());
    let ok = Command::new(cargo).args(["build", "--release", "--bin", "spout"]).status().map(|s| s.success());
    if !matches!(ok, Ok(true)) && !bin.exists() {
        die("cannot build the spout binary; pass --bin");
    }
    bin
}

fn start_target(a: &Args) -> Target {
    let bin = find_bin(a);
    if let (Some(api), Some(stream), Some(db)) = (&a.api, &a.stream, &a.db) {
        return Target {
            api: api.clone(),
            stream: stream.clone(),
            db: db.clone(),
            pid: String::new(),
            child: None,
            _dir: None,
            bin,
        };
    }
    let dir = std::env::temp_dir().join(format!("spout-bench-{}-{}", std::process::id(), now_ns()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| die(&format!("temp dir: {e}")));
    let db = dir.join("bench.db").to_string_lossy().into_owned();
    let mut child = Command::new(&bin)
        .args(["serve", "--api-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0", "--db", &db])
        .args([
            "--max-conns-per-app",
            "1000000",
            "--max-conns",
            "1000000",
            // Every client of the bench comes from 127.0.0.1.
            "--max-pending",
            "1000000",
            "--max-pending-per-ip",
            "1000000",
            "--http-threads",
            "16",
            "--rate-limit",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| die(&format!("cannot start {}: {e}", bin.display())));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let api = lines.next().and_then(|l| l.ok()).unwrap_or_default().replace("api listening on ", "");
    let stream =
        lines.next().and_then(|l| l.ok()).unwrap_or_default().replace("stream listening on ws://", "");
    let pid = child.id().to_string();
    Target { api, stream, db, pid, child: Some(child), _dir: Some(dir), bin }
}

impl Target {
    fn admin(&self, args: &[&str], stdin: &str) -> String {
        let mut c = Command::new(&self.bin)
            .arg("admin")
            .args(args)
            .args(["--db", &self.db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| die(&format!("admin: {e}")));
        let _ = c.stdin.take().map(|mut s| s.write_all(stdin.as_bytes()));
        let out = c.wait_with_output().unwrap_or_else(|e| die(&format!("admin: {e}")));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn stats(&self) -> Option<(f64, u64, u64)> {
        (!self.pid.is_empty()).then(|| proc_stats(&self.pid))
    }
}

/// Apps with a stream each and writer users: (app tokens, stream key, writer tokens).
struct Setup {
    app_tokens: Vec<String>,
    writer_tokens: Vec<String>,
}

fn setup(t: &Target, apps: usize, writers: usize, tag: &str) -> Setup {
    let agent = agent();
    let mut app_tokens = Vec::new();
    let mut first_client = String::new();
    for i in 0..apps {
        let v: Value = serde_json::from_str(&t.admin(&["app", "add", &format!("bench-{tag}-{i}")], ""))
            .unwrap_or_default();
        let cid = v["client_id"].as_str().unwrap_or_default().to_string();
        if i == 0 {
            first_client = cid.clone();
        }
        let token = t.admin(&["token", "add", "--app", &cid], "");
        let r = post_json(
            &agent,
            &format!("{}/v1/streams", t.api),
            &token,
            &json!({"type": "long_poll", "object_types": ["post"], "key": "bench"}),
        );
        if r.0 != 200 {
            die(&format!("creating a stream failed: {} {}", r.0, r.1));
        }
        app_tokens.push(token);
    }
    let mut writer_tokens = Vec::new();
    for i in 0..writers {
        let name = format!("w{tag}{i}");
        t.admin(&["user", "add", &name], "bench-password");
        writer_tokens.push(
            t.admin(&["token", "add", "--app", &first_client, "--user", &name, "--scopes", "write_post"], ""),
        );
    }
    Setup { app_tokens, writer_tokens }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn post_json(agent: &ureq::Agent, url: &str, token: &str, body: &Value) -> (u16, String) {
    match agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
    {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.into_body().read_to_string().unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

// ---------------------------------------------------------------- subscribers

/// One websocket subscriber read by the epoll loop.
struct Sub {
    sock: TcpStream,
    buf: Vec<u8>,
    seen: Vec<u64>,
    received: u64,
    dups: u64,
    closed: bool,
}

fn connect_ws(stream: &str, token: &str, key: &str, rcvbuf: Option<usize>) -> Option<TcpStream> {
    let mut s = match rcvbuf {
        Some(n) => {
            use rustix::net::{connect, socket, sockopt, AddressFamily, SocketType};
            let fd = socket(AddressFamily::INET, SocketType::STREAM, None).ok()?;
            sockopt::set_socket_recv_buffer_size(&fd, n).ok()?;
            connect(&fd, &stream.parse::<std::net::SocketAddr>().ok()?).ok()?;
            TcpStream::from(fd)
        }
        None => TcpStream::connect(stream).ok()?,
    };
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /v1/app?access_token={token}&key={key} HTTP/1.1\r\nHost: {stream}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: YmVuY2hiZW5jaGJlbmNoMQ==\r\n\r\n"
    )
    .ok()?;
    // Read the head and the connection message (one frame) byte-wise enough.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).ok()?;
        head.push(b[0]);
        if head.len() > 4096 {
            return None;
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        eprintln!("bench: refused: {}", String::from_utf8_lossy(&head).lines().next().unwrap_or(""));
        return None;
    }
    Some(s)
}

/// A client text frame (masked, as RFC 6455 requires).
fn client_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Pulls complete frames out of `buf`; calls `on_text` for each text frame.
fn frames(buf: &mut Vec<u8>, mut on_text: impl FnMut(&[u8]), closed: &mut bool) {
    let mut at = 0;
    loop {
        let b = &buf[at..];
        if b.len() < 2 {
            break;
        }
        let (len, hl) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap_or([0; 8])) as usize, 10),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if b.len() < hl + len {
            break;
        }
        match b[0] & 0x0f {
            0x1 => on_text(&b[hl..hl + len]),
            0x8 => *closed = true,
            _ => {}
        }
        at += hl + len;
    }
    buf.drain(..at);
}

/// `bench:<ns>:<seq>` inside a frame.
fn marker(payload: &[u8]) -> Option<(u64, usize)> {
    let i = payload.windows(6).position(|w| w == b"bench:")?;
    let rest = &payload[i + 6..];
    let mut nums = rest.split(|c| !c.is_ascii_digit());
    let ns = std::str::from_utf8(nums.next()?).ok()?.parse().ok()?;
    let seq = std::str::from_utf8(nums.next()?).ok()?.parse().ok()?;
    Some((ns, seq))
}

struct LoopResult {
    latencies_us: Vec<u64>,
    /// Per post, publish to its first receipt on any connection: the part
    /// of the latency before the fan-out (HTTP, commit, hand-over to the hub).
    first_us: Vec<u64>,
    /// Per post: (send time ns, first receipt µs, last receipt µs).
    series: Vec<(u64, u64, u64)>,
    cpu_secs: f64,
    wall: Duration,
}

/// What one epoll loop measured (`event_loops` merges them).
struct LoopPart {
    latencies_us: Vec<u64>,
    /// Post seq → (send time ns, first receipt µs, last receipt µs) on this
    /// loop's connections.
    receipts: HashMap<usize, (u64, u64, u64)>,
    cpu_secs: f64,
    wall: Duration,
}

/// Reads the subscribers from `loops` epoll loops, each on its own thread
/// with its share of the connections, and merges what they measured.
fn event_loops(
    subs: &mut [Sub],
    stop: &AtomicBool,
    expected: &AtomicU64,
    spin_us: u64,
    loops: usize,
) -> LoopResult {
    let per = subs.len().div_ceil(loops.max(1)).max(1);
    let parts: Vec<LoopPart> = std::thread::scope(|sc| {
        let hs: Vec<_> = subs
            .chunks_mut(per)
            .map(|part| sc.spawn(move || event_loop(part, stop, expected, spin_us)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| die("event loop panicked"))).collect()
    });
    let mut first: HashMap<usize, (u64, u64, u64)> = HashMap::new();
    let mut lat = Vec::new();
    let (mut cpu_secs, mut wall) = (0.0f64, Duration::ZERO);
    for p in parts {
        lat.extend(p.latencies_us);
        for (seq, (sent, f, l)) in p.receipts {
            let e = first.entry(seq).or_insert((sent, f, l));
            e.1 = e.1.min(f);
            e.2 = e.2.max(l);
        }
        // Each loop reads the whole process's CPU time; keep one reading.
        cpu_secs = cpu_secs.max(p.cpu_secs);
        wall = wall.max(p.wall);
    }
    let mut series: Vec<(u64, u64, u64)> = first.values().copied().collect();
    series.sort_unstable();
    let mut first_us: Vec<u64> = series.iter().map(|x| x.1).collect();
    first_us.sort_unstable();
    LoopResult { latencies_us: lat, first_us, series, cpu_secs, wall }
}

/// Reads `subs` from one epoll loop until `stop`; sends a keepalive to
/// each every 20 s.
fn event_loop(subs: &mut [Sub], stop: &AtomicBool, expected: &AtomicU64, spin_us: u64) -> LoopPart {
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap_or_else(|e| die(&format!("epoll: {e}")));
    for (i, s) in subs.iter().enumerate() {
        let _ = s.sock.set_nonblocking(true);
        let _ = epoll::add(&ep, s.sock.as_fd(), epoll::EventData::new_u64(i as u64), epoll::EventFlags::IN);
    }
    let cpu0 = self_cpu();
    let start = Instant::now();
    let mut last_keepalive = Instant::now();
    let mut lat = Vec::new();
    let mut events: Vec<epoll::Event> = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut drain_deadline: Option<Instant> = None;
    let mut last_data = Instant::now();
    let mut first: HashMap<usize, (u64, u64, u64)> = HashMap::new();
    let spin = Duration::from_micros(spin_us);
    loop {
        if stop.load(Ordering::Relaxed) {
            // Keep reading until every subscriber has everything or 5 s pass.
            let d = *drain_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(5));
            let want = expected.load(Ordering::Relaxed);
            if Instant::now() > d || subs.iter().all(|s| s.closed || s.received >= want) {
                break;
            }
        }
        events.clear();
        // Poll without sleeping for `spin` after the last data (--spin-us).
        let timeout = if last_data.elapsed() < spin { 0 } else { 50_000_000 };
        let _ = epoll::wait(
            &ep,
            rustix::buffer::spare_capacity(&mut events),
            Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: timeout }),
        );
        if !events.is_empty() {
            last_data = Instant::now();
        }
        for ev in events.iter() {
            let i = ev.data.u64() as usize;
            let s = &mut subs[i];
            loop {
                match (&s.sock).read(&mut chunk) {
                    Ok(0) => {
                        s.closed = true;
                        let _ = epoll::delete(&ep, s.sock.as_fd());
                        break;
                    }
                    Ok(n) => {
                        s.buf.extend_from_slice(&chunk[..n]);
                        let now = now_ns();
                        let (seen, received, dups) = (&mut s.seen, &mut s.received, &mut s.dups);
                        frames(
                            &mut s.buf,
                            |p| {
                                if let Some((sent, seq)) = marker(p) {
                                    let us = now.saturating_sub(sent) / 1000;
                                    lat.push(us);
                                    let f = first.entry(seq).or_insert((sent, us, us));
                                    f.1 = f.1.min(us);
                                    f.2 = f.2.max(us);
                                    let (w, bit) = (seq / 64, 1u64 << (seq % 64));
                                    if seen.len() <= w {
                                        seen.resize(w + 1, 0);
                                    }
                                    if seen[w] & bit != 0 {
                                        *dups += 1;
                                    } else {
                                        seen[w] |= bit;
                                        *received += 1;
                                    }
                                }
                            },
                            &mut s.closed,
                        );
                        if n < chunk.len() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        if last_keepalive.elapsed() > Duration::from_secs(20) {
            last_keepalive = Instant::now();
            for s in subs.iter_mut().filter(|s| !s.closed) {
                let _ = (&s.sock).write(&client_text(b"."));
            }
        }
    }
    LoopPart { latencies_us: lat, receipts: first, cpu_secs: self_cpu() - cpu0, wall: start.elapsed() }
}

fn self_cpu() -> f64 {
    proc_stats("self").0
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Posts at `rate` per second in total from `tokens` for `secs`; returns
/// (posts accepted, request latencies µs).
fn write_posts(
    api: &str,
    tokens: &[String],
    rate: Option<u64>,
    secs: u64,
    seq: &AtomicU64,
) -> (u64, Vec<u64>) {
    let stop_at = Instant::now() + Duration::from_secs(secs);
    let per_writer = rate.map(|r| r as f64 / tokens.len() as f64);
    let n_writers = tokens.len() as f64;
    std::thread::scope(|sc| {
        let hs: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(k, tok)| {
                sc.spawn(move || {
                    let agent = agent();
                    let url = format!("{api}/v1/posts");
                    let mut ok = 0u64;
                    let mut lat = Vec::new();
                    let start = Instant::now();
                    let mut i = 0u64;
                    while Instant::now() < stop_at {
                        if let Some(r) = per_writer {
                            // Writers take turns (writer k is k/rate late),
                            // so posts are evenly spaced at the total rate
                            // rather than arriving in bursts of P.
                            let due = start + Duration::from_secs_f64((i as f64 + k as f64 / n_writers) / r);
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                        }
                        i += 1;
                        let n = seq.fetch_add(1, Ordering::Relaxed);
                        let t0 = Instant::now();
                        let (code, _) = post_json(
                            &agent,
                            &url,
                            tok,
                            &json!({"text": format!("bench:{}:{n} x", now_ns())}),
                        );
                        lat.push(t0.elapsed().as_micros() as u64);
                        if code == 201 {
                            ok += 1;
                        } else {
                            eprintln!("bench: post failed with {code}");
                        }
                    }
                    (ok, lat)
                })
            })
            .collect();
        let mut total = 0;
        let mut lat = Vec::new();
        for h in hs {
            let (ok, l) = h.join().unwrap_or_default();
            total += ok;
            lat.extend(l);
        }
        (total, lat)
    })
}

// ---------------------------------------------------------------- scenarios

struct Row {
    name: String,
    cols: Vec<(String, String)>,
    json: Value,
}

fn open_subs(t: &Target, s: &Setup, n: usize) -> (Vec<Sub>, Duration) {
    let start = Instant::now();
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let tok = &s.app_tokens[i % s.app_tokens.len()];
        match connect_ws(&t.stream, tok, "bench", None) {
            Some(sock) => subs.push(Sub {
                sock,
                buf: Vec::new(),
                seen: Vec::new(),
                received: 0,
                dups: 0,
                closed: false,
            }),
            None => die(&format!("connection {i} failed (open files limit? ulimit -n)")),
        }
    }
    (subs, start.elapsed())
}

fn fanout(t: &Target, a: &Args, conns: usize, rate: u64, slow: bool, tag: &str) -> Row {
    let s = setup(t, a.apps, a.writers, tag);
    let (mut subs, _) = open_subs(t, &s, conns);
    let stalled = slow.then(|| connect_ws(&t.stream, &s.app_tokens[0], "bench", Some(4096)));
    let stop = AtomicBool::new(false);
    let expected = AtomicU64::new(u64::MAX);
    let seq = AtomicU64::new(0);
    let cpu0 = t.stats().map(|x| x.0).unwrap_or(0.0);
    let (res, (posted, _)) = std::thread::scope(|sc| {
        let h = sc.spawn(|| event_loops(&mut subs, &stop, &expected, a.spin_us, a.loops));
        let w = write_posts(&t.api, &s.writer_tokens, Some(rate), a.secs, &seq);
        expected.store(w.0, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        (h.join().unwrap_or_else(|_| die("event loop panicked")), w)
    });
    drop(stalled);
    if let Some(path) = &a.series {
        let t0 = res.series.first().map(|x| x.0).unwrap_or(0);
        let text: String = res
            .series
            .iter()
            .map(|(sent, f, l)| format!("{:.3} {f} {l}\n", (sent - t0) as f64 / 1e6))
            .collect();
        std::fs::write(path, text).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    }
    let server_cpu = t.stats().map(|x| x.0).unwrap_or(0.0) - cpu0;
    let mut lat = res.latencies_us;
    lat.sort_unstable();
    let delivered: u64 = subs.iter().map(|s| s.received).sum();
    let dups: u64 = subs.iter().map(|s| s.dups).sum();
    let lost = (posted * conns as u64).saturating_sub(delivered);
    let secs = res.wall.as_secs_f64().max(1e-9);
    let client_cores = res.cpu_secs / secs;
    if client_cores > 0.9 {
        eprintln!("bench: warning: the client (its loops and writers) used {client_cores:.2} cores; it may be the bottleneck");
    }
    let us_per_event = if delivered > 0 { server_cpu * 1e6 / delivered as f64 } else { 0.0 };
    let name = if slow { format!("slow({conns}+1)x{rate}/s") } else { format!("fanout {conns}x{rate}/s") };
    Row {
        name,
        cols: vec![
            ("posts".into(), posted.to_string()),
            ("events/s".into(), format!("{:.0}", delivered as f64 / a.secs as f64)),
            ("p50 µs".into(), pct(&lat, 0.50).to_string()),
            ("p99 µs".into(), pct(&lat, 0.99).to_string()),
            ("p99.9 µs".into(), pct(&lat, 0.999).to_string()),
            ("max µs".into(), lat.last().copied().unwrap_or(0).to_string()),
            ("first p50 µs".into(), pct(&res.first_us, 0.5).to_string()),
            ("lost".into(), lost.to_string()),
            ("dup".into(), dups.to_string()),
            ("server µs/event".into(), format!("{us_per_event:.2}")),
            ("client cores".into(), format!("{client_cores:.2}")),
        ],
        json: json!({
            "scenario": if slow { "slow" } else { "fanout" }, "stalled_reader": slow, "conns": conns, "rate": rate, "secs": a.secs,
            "posts": posted, "delivered": delivered, "events_per_sec": delivered as f64 / a.secs as f64,
            "p50_us": pct(&lat, 0.5), "p99_us": pct(&lat, 0.99), "p999_us": pct(&lat, 0.999),
            "max_us": lat.last().copied().unwrap_or(0), "first_receipt_p50_us": pct(&res.first_us, 0.5), "lost": lost, "duplicated": dups,
            "server_cpu_us_per_event": us_per_event, "server_cpu_secs": server_cpu, "client_cores": client_cores
        }),
    }
}

fn idle(t: &Target, a: &Args) -> Row {
    let conns = a.conns.unwrap_or(5000);
    let s = setup(t, a.apps, 0, "idle");
    let (_, rss0, threads0) = t.stats().unwrap_or_default();
    let (mut subs, open_time) = open_subs(t, &s, conns);
    let (cpu1, rss1, threads1) = t.stats().unwrap_or_default();
    let stop = AtomicBool::new(false);
    let expected = AtomicU64::new(0);
    let res = std::thread::scope(|sc| {
        let h = sc.spawn(|| event_loops(&mut subs, &stop, &expected, a.spin_us, a.loops));
        std::thread::sleep(Duration::from_secs(a.hold));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap_or_else(|_| die("event loop panicked"))
    });
    let (cpu2, rss2, _) = t.stats().unwrap_or_default();
    let dropped = subs.iter().filter(|s| s.closed).count();
    let per_conn = (rss1.saturating_sub(rss0)) as f64 / conns as f64;
    let cores = (cpu2 - cpu1) / res.wall.as_secs_f64().max(1e-9);
    let map_count =
        std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap_or_default().trim().to_string();
    Row {
        name: format!("idle {conns} for {}s", a.hold),
        cols: vec![
            ("open s".into(), format!("{:.2}", open_time.as_secs_f64())),
            ("RSS before MiB".into(), format!("{:.1}", rss0 as f64 / 1024.0)),
            ("RSS after MiB".into(), format!("{:.1}", rss1 as f64 / 1024.0)),
            ("KiB/conn".into(), format!("{per_conn:.1}")),
            ("threads".into(), format!("{threads0}->{threads1}")),
            ("server cores".into(), format!("{cores:.4}")),
            ("dropped".into(), dropped.to_string()),
            ("vm.max_map_count".into(), map_count.clone()),
        ],
        json: json!({
            "scenario": "idle", "conns": conns, "hold_secs": a.hold, "open_secs": open_time.as_secs_f64(),
            "rss_before_kib": rss0, "rss_after_kib": rss1, "rss_end_kib": rss2, "kib_per_conn": per_conn,
            "threads_before": threads0, "threads_after": threads1, "server_cores": cores, "dropped": dropped,
            "vm_max_map_count": map_count
        }),
    }
}

fn ingest(t: &Target, a: &Args) -> Row {
    let s = setup(t, 1, a.writers.max(8), "ingest");
    let (mut subs, _) = open_subs(t, &s, 1);
    let stop = AtomicBool::new(false);
    let expected = AtomicU64::new(u64::MAX);
    let seq = AtomicU64::new(0);
    let cpu0 = t.stats().map(|x| x.0).unwrap_or(0.0);
    let (res, (posted, mut lat)) = std::thread::scope(|sc| {
        let h = sc.spawn(|| event_loops(&mut subs, &stop, &expected, a.spin_us, a.loops));
        let w = write_posts(&t.api, &s.writer_tokens, None, a.secs, &seq);
        expected.store(w.0, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        (h.join().unwrap_or_else(|_| die("event loop panicked")), w)
    });
    let server_cpu = t.stats().map(|x| x.0).unwrap_or(0.0) - cpu0;
    let us_per_post = if posted > 0 { server_cpu * 1e6 / posted as f64 } else { 0.0 };
    lat.sort_unstable();
    let delivered = subs[0].received;
    Row {
        name: format!("ingest {} writers", s.writer_tokens.len()),
        cols: vec![
            ("posts/s".into(), format!("{:.0}", posted as f64 / a.secs as f64)),
            ("req p50 µs".into(), pct(&lat, 0.5).to_string()),
            ("req p99 µs".into(), pct(&lat, 0.99).to_string()),
            ("events/s".into(), format!("{:.0}", delivered as f64 / a.secs as f64)),
            ("lost".into(), posted.saturating_sub(delivered).to_string()),
            ("server µs/post".into(), format!("{us_per_post:.0}")),
            ("client cores".into(), format!("{:.2}", res.cpu_secs / res.wall.as_secs_f64().max(1e-9))),
        ],
        json: json!({
            "scenario": "ingest", "writers": s.writer_tokens.len(), "secs": a.secs,
            "posts_per_sec": posted as f64 / a.secs as f64, "req_p50_us": pct(&lat, 0.5),
            "req_p99_us": pct(&lat, 0.99), "events_per_sec": delivered as f64 / a.secs as f64,
            "lost": posted.saturating_sub(delivered), "server_cpu_us_per_post": us_per_post
        }),
    }
}

fn print_row(r: &Row) {
    let cols: Vec<String> = r.cols.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("| {:<24} | {} |", r.name, cols.join(" | "));
}

fn main() {
    let a = parse_args();
    // One descriptor per connection in the server and one in the client
    // (separate processes, each with this limit), plus slack.
    let nofile = raise_nofile(a.conns.unwrap_or(5000) as u64 + 1024);
    eprintln!(
        "bench: open files limit {nofile}; threads-max {}; vm.max_map_count {} (each connection is a thread: about max_map_count/2 is the ceiling)",
        std::fs::read_to_string("/proc/sys/kernel/threads-max").unwrap_or_default().trim(),
        std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap_or_default().trim()
    );
    let t = start_target(&a);
    eprintln!("bench: server api {} stream {}", t.api, t.stream);
    let mut rows = Vec::new();
    let mut run = |r: Row| {
        print_row(&r);
        rows.push(r);
    };
    for sc in a.scenarios.clone() {
        match sc.as_str() {
            "idle" => run(idle(&t, &a)),
            "fanout" => run(fanout(&t, &a, a.conns.unwrap_or(1000), a.rate, false, "f")),
            "ingest" => run(ingest(&t, &a)),
            "hostile" => hostile::run(&t, &a).into_iter().for_each(&mut run),
            "search" => searching::run(&t, &a).into_iter().for_each(&mut run),
            "slow" => {
                let n = a.conns.unwrap_or(100);
                run(fanout(&t, &a, n, a.rate, false, "s0"));
                run(fanout(&t, &a, n, a.rate, true, "s1"));
            }
            _ => {}
        }
    }
    if let Some(path) = &a.json {
        let v: Vec<Value> = rows.iter().map(|r| r.json.clone()).collect();
        let mut by: HashMap<&str, Value> = HashMap::new();
        by.insert("rows", json!(v));
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&by).unwrap_or_default()) {
            die(&format!("cannot write {path}: {e}"));
        }
    }
}
