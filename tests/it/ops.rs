//! Operations: health, stats, graceful shutdown on SIGTERM.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn health_and_stats() {
    let s = Server::start();
    let h = s.get("/health", None);
    assert_eq!(h.status, 200);
    assert_eq!(h.body["data"]["status"], "ok");
    assert!(h.body["data"]["schema_version"].as_i64().unwrap() >= 4);
    let app = s.add_app("a");
    let t = s.app_token(&app);
    s.create_stream(&t, "k", &["user"]);
    let (_ws, _) = s.ws(&format!("access_token={t}&key=k"));
    let st = s.get("/v1/stats", None);
    assert_eq!(st.status, 200, "{}", st.body);
    assert_eq!(st.body["data"]["connections"], 1);
    assert_eq!(st.body["data"]["connections_per_app"], json!({app.0.clone(): 1}));
    assert_eq!(st.body["data"]["slow_consumer_disconnects"], 0);
}

#[test]
fn sigterm_closes_streams_with_a_notice_and_exits_cleanly() {
    let mut s = Server::start();
    let app = s.add_app("a");
    let t = s.app_token(&app);
    s.create_stream(&t, "k", &["user"]);
    let (mut ws, _) = s.ws(&format!("access_token={t}&key=k"));
    let mut child = s.child.take().unwrap();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let ctrl = ws.next_json().unwrap();
    assert_eq!(ctrl["meta"]["control"]["type"], "shutdown", "{ctrl}");
    match ws.next() {
        WsNext::Closed(Some((code, reason))) => {
            assert_eq!(code, 1001);
            assert!(reason.contains("shutting down"), "{reason}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()));
    let status = rx.recv_timeout(DEADLINE).expect("the server did not exit after SIGTERM").unwrap();
    assert!(status.success(), "exit status {status:?}");
    // Nothing was lost: the same database serves again.
    s.launch();
    assert_eq!(s.get(&format!("/v1/streams/k?access_token={t}"), None).status, 200);
}

#[test]
fn requests_past_the_rate_limit_get_429_with_pnut_headers() {
    let s = Server::start_with(&["--rate-limit", "3", "--rate-window-secs", "3600"]);
    let app = s.add_app("a");
    let t = s.app_token(&app); // request 1 (anonymous: per address)
    for i in 0..3 {
        let r = s.get("/v1/token", Some(&t));
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.header("X-RateLimit-Limit"), Some("3"));
        assert_eq!(r.header("X-RateLimit-Remaining"), Some((2 - i).to_string().as_str()));
        assert!(r.header("X-RateLimit-Reset").unwrap().parse::<u64>().unwrap() > 3000);
    }
    let r = s.get("/v1/token", Some(&t));
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["meta"]["code"], 429);
    assert!(r.body["meta"]["error_message"].as_str().unwrap().contains("Rate limit"));
    assert!(r.body["meta"]["retry_in"].as_u64().unwrap() > 3000);
    assert!(r.header("Retry-After").is_some());
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
    // Another token has its own budget.
    let t2 = s.app_token(&app);
    assert_eq!(s.get("/v1/token", Some(&t2)).status, 200);
}

/// Reads until the server closes the connection, at most `within` per
/// read; returns the control message sent before the close and the close.
fn closed_within(ws: &mut Ws, within: Duration) -> (Option<Value>, (u16, String)) {
    ws.set_timeout(within);
    let mut control = None;
    loop {
        match ws.next() {
            WsNext::Json(v) if v["meta"].get("control").is_some() => control = Some(v),
            WsNext::Json(_) => {}
            WsNext::Closed(Some(c)) => return (control, c),
            other => panic!("the connection was not closed within {within:?}: {other:?}"),
        }
    }
}

/// Changes made by `spout admin` in another process reach the running
/// server's live connections through the log, in order with the events: a
/// deleted stream and a revoked token close their connections within a
/// second, and nothing else closes.
#[test]
fn admin_stream_delete_and_token_revoke_close_live_connections() {
    let s = Server::start();
    let app = s.add_app("a");
    let t = s.app_token(&app);
    s.create_stream(&t, "gone", &["post"]);
    s.create_stream(&t, "kept", &["post"]);
    let (mut gone, _) = s.ws(&format!("access_token={t}&key=gone"));
    let (mut kept, _) = s.ws(&format!("access_token={t}&key=kept"));
    let out = s.admin(&["stream", "delete", "--app", &app.0, "gone"], "");
    assert!(out.contains(r#""deleted": "gone""#), "{out}");
    let (control, (code, _)) = closed_within(&mut gone, Duration::from_secs(1));
    assert_eq!(code, 1000);
    assert_eq!(
        control.expect("a control message before the close")["meta"]["control"]["type"],
        "stream_deleted"
    );
    let r = s.get("/v1/streams/gone", Some(&t));
    assert_eq!(r.status, 404, "{}", r.body);
    // The other connection is still open and served.
    kept.set_timeout(Duration::from_millis(300));
    assert!(matches!(kept.next(), WsNext::Timeout), "the other stream's connection was disturbed");

    let out = s.admin(&["token", "revoke"], &t);
    assert!(out.contains(r#""revoked": true"#), "{out}");
    let (control, (code, _)) = closed_within(&mut kept, Duration::from_secs(1));
    assert_eq!(code, 1008);
    assert_eq!(
        control.expect("a control message before the close")["meta"]["control"]["type"],
        "token_revoked"
    );
    assert_eq!(s.get("/v1/streams", Some(&t)).status, 401, "the token no longer works");
}

/// One server per database: a second `spout serve` on it exits non-zero
/// naming the database and the process that serves it; once that process is
/// killed (SIGKILL, no clean-up), a new server starts on it.
#[test]
fn a_second_server_on_the_same_database_is_refused() {
    let mut s = Server::start();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--api-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0", "--db", &s.db()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the database {} is already served by process {}", s.db(), s.pid())),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it never listened");
    s.kill();
    s.launch();
    assert_eq!(s.get("/health", None).status, 200);
}

/// The command line (issue 19): `--help` at every level prints that
/// command's usage and exits 0 (and does nothing else), a missing argument
/// names the usage, `--version` answers, and an admin command never creates
/// a database by accident.
#[test]
fn the_command_line_helps_and_never_creates_a_database_by_accident() {
    let dir = TempDir::new();
    let db = dir.0.join("fresh.db").to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .current_dir(&dir.0)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("spout "), "{out}");
    for args in
        [&["serve", "--help"][..], &["admin", "--help"], &["admin"], &["admin", "app", "add", "--help"]]
    {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(out.contains("usage"), "{args:?}: {out}");
    }
    let (_, out, _) = run(&["admin", "app", "add", "--help"]);
    assert!(
        out.contains("spout admin app add [--redirect-uri URI]") && !out.contains("token revoke"),
        "{out}"
    );
    assert!(!dir.0.join("spout.db").exists(), "--help created a database");
    let (code, _, err) = run(&["admin", "app", "list", "--db", &db]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("no database at {db}")), "{err}");
    assert!(!std::path::Path::new(&db).exists(), "an admin command created a database");
    let (code, _, err) = run(&["admin", "app", "add", "--db", &db, "--create"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("usage: spout admin app add [--redirect-uri URI]") && err.contains("NAME"), "{err}");
    let (code, out, err) = run(&["admin", "app", "add", "Mine", "--db", &db, "--create"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(r#""name": "Mine""#), "{out}");
    assert!(err.contains(&format!("using database {db}")), "{err}");
}

/// CORS, as pnut has it on (issue 19, part): a preflight from another
/// origin is answered, and every answer may be read from another origin,
/// its rate-limit headers included.
#[test]
fn browsers_on_other_origins_may_call_the_api() {
    let s = Server::start();
    let r = s.call_h(
        "OPTIONS",
        "/v1/posts",
        None,
        None,
        &[("Origin", "https://client.example"), ("Access-Control-Request-Method", "POST")],
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(r.header("Access-Control-Allow-Methods").unwrap_or("").contains("POST"));
    assert!(r.header("Access-Control-Allow-Headers").unwrap_or("").contains("Authorization"));
    let r = s.call_h("GET", "/health", None, None, &[("Origin", "https://client.example")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(r.header("Access-Control-Expose-Headers").unwrap_or("").contains("X-RateLimit-Remaining"));
}

/// Multipart body with one file field.
fn image_body(field: &str, mime: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let b = "spoutImg42";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"i\"\r\nContent-Type: {mime}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// Avatars and covers (issue 19, part): every user's image URL answers (a
/// 302 to the image: the upload, or a generated default, never a 404);
/// an upload sets the size in the user object and writes a `user` event;
/// DELETE goes back to the default; only images are taken.
#[test]
fn avatars_and_covers_always_answer_and_can_be_changed() {
    let s = Server::start();
    s.add_user("alice", "pw");
    let app = s.add_app("a");
    let t = s.user_token(&app, "alice", "pw", "update_profile");
    let at = s.app_token(&app);
    s.create_stream(&at, "u", &["user"]);
    let (mut ws, _) = s.ws(&format!("access_token={at}&key=u"));
    let no_redirects: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let fetch = |path: &str| {
        let r = no_redirects.get(format!("{}{path}", s.api)).call().unwrap();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_string());
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let status = r.status().as_u16();
        let body = r.into_body().read_to_vec().unwrap();
        (status, loc, ct, body)
    };
    for what in ["avatar", "cover"] {
        let (status, loc, _, _) = fetch(&format!("/v1/users/1/{what}?w=100"));
        assert_eq!(status, 302);
        let loc = loc.unwrap();
        let (status, _, ct, body) = fetch(loc.trim_start_matches(&s.api));
        assert_eq!((status, ct.as_deref()), (200, Some("image/png")));
        assert!(body.starts_with(b"\x89PNG"), "a generated default image");
    }
    // A 2x3 GIF as the avatar.
    let gif = [b"GIF89a".as_slice(), &[2, 0, 3, 0, 0, 0, 0], b";"].concat();
    let (ct, body) = image_body("avatar", "image/gif", &gif);
    let req = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}/v1/users/me/avatar", s.api))
        .header("Authorization", format!("Bearer {t}"))
        .header("Content-Type", ct)
        .body(body)
        .unwrap();
    let r = s.agent.run(req).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let u: serde_json::Value = serde_json::from_slice(&r.into_body().read_to_vec().unwrap()).unwrap();
    let img = &u["data"]["content"]["avatar_image"];
    assert_eq!(
        (img["width"].as_u64(), img["height"].as_u64(), img["is_default"].as_bool()),
        (Some(2), Some(3), Some(false))
    );
    let ev = ws.next_event();
    assert_eq!(ev["meta"]["type"], "user");
    assert_eq!(ev["data"]["content"]["avatar_image"]["is_default"], false);
    let (_, _, ct, body) = fetch("/v1/users/1/avatar/image");
    assert_eq!((ct.as_deref(), body), (Some("image/gif"), gif.clone()));
    // Not an image: 400, nothing changes.
    let (ct, body) = image_body("avatar", "image/svg+xml", b"<svg/>");
    let r = s.call_h(
        "POST",
        "/v1/users/me/avatar",
        Some(&t),
        Some((&ct, std::str::from_utf8(&body).unwrap())),
        &[],
    );
    assert_error(&r, 400, "must be a PNG, JPEG or GIF");
    let r = s.call("DELETE", "/v1/users/me/avatar", Some(&t), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["content"]["avatar_image"]["is_default"], true);
    let (_, _, ct, _) = fetch("/v1/users/1/avatar/image");
    assert_eq!(ct.as_deref(), Some("image/png"));
}

/// `GET /v1/sys/config` publishes the limits the handlers enforce, and
/// `POST /v1/text/process` shows what a text would become (issue 20, part).
#[test]
fn sys_config_and_text_process() {
    let s = Server::start_with(&["--max-body", "65536"]);
    s.add_user("alice", "pw");
    let app = s.add_app("a");
    let t = s.user_token(&app, "alice", "pw", "write_post");
    let c = s.get("/v1/sys/config", None);
    assert_eq!(c.status, 200);
    let max = c.body["data"]["post"]["max_length"].as_u64().unwrap() as usize;
    assert_eq!(max, 256);
    assert_eq!(c.body["data"]["message"]["max_length"], 2048);
    assert_eq!(c.body["data"]["file"]["max_bytes"], 65536);
    assert_eq!(c.body["data"]["post"]["seconds_for_revision"], 300);
    // What it says is what a post meets.
    let ok = s.json("POST", "/v1/posts", Some(&t), json!({"text": "x".repeat(max)}));
    assert_eq!(ok.status, 201, "{}", ok.body);
    let over = s.json("POST", "/v1/posts", Some(&t), json!({"text": "x".repeat(max + 1)}));
    assert_error(&over, 400, &format!("at most {max} characters"));
    let r = s.json("POST", "/v1/text/process", Some(&t), json!({"text": "hi @alice #spout"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["text"], "hi @alice #spout");
    assert_eq!(r.body["data"]["entities"]["mentions"][0]["text"], "alice");
    assert_eq!(r.body["data"]["entities"]["tags"][0]["text"], "spout");
    assert!(r.body["data"]["html"].as_str().unwrap().contains("alice"));
    assert_eq!(s.get("/v1/posts/1", None).status, 200);
    assert_eq!(s.get("/v1/posts/2", None).status, 404, "text/process stored nothing");
    assert_error(&s.json("POST", "/v1/text/process", None, json!({"text": "x"})), 401, "");
}

/// Unknown endpoints under a known prefix are 404s, and the search
/// endpoints (issue 20) are not taken for ids by the `{id}` routes, as they
/// once were (a 400).
#[test]
fn search_paths_are_not_ids_and_unknown_paths_are_404() {
    let s = Server::start();
    for path in
        ["/v1/users/search", "/v1/posts/search", "/v1/channels/search", "/v1/channels/messages/search"]
    {
        let r = s.get(&format!("{path}?q=x"), None);
        assert_eq!((r.status, &r.body["data"]), (200, &json!([])), "{path}: {}", r.body);
    }
    assert_error(&s.get("/v1/posts/1/nothing/here", None), 404, "no endpoint");
    assert_error(&s.get("/v1/posts/abc", None), 400, "post_id");
}
