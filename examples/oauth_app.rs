//! A tiny third-party app: sends a user through spout's OAuth web flow
//! (authorization code with PKCE and `state`), receives the code on its own
//! redirect URI, trades it for a user token, then opens an App Stream and
//! prints what arrives for the users who authorized it.
//!
//! Register it once, with its redirect URI:
//!   spout admin app add --redirect-uri http://127.0.0.1:8090/callback "My notifier"
//! then:
//!   cargo run --release --example oauth_app -- http://127.0.0.1:8080 ws://127.0.0.1:8081 CLIENT_ID CLIENT_SECRET
//! and open the URL it prints in a browser. `--port N` changes 8090; `--events N` stops after N events.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut take = |name: &str| {
        let i = args.iter().position(|a| a == name)?;
        args.remove(i);
        (i < args.len()).then(|| args.remove(i))
    };
    let port: u16 = take("--port").and_then(|p| p.parse().ok()).unwrap_or(8090);
    let max_events: Option<usize> = take("--events").and_then(|n| n.parse().ok());
    let [api, stream, client_id, secret] = args.as_slice() else {
        eprintln!("usage: oauth_app API_URL STREAM_URL CLIENT_ID CLIENT_SECRET [--port 8090] [--events N]");
        std::process::exit(2);
    };
    let redirect = format!("http://127.0.0.1:{port}/callback");
    // PKCE (RFC 7636) and state: fresh random values for this sign-in.
    let verifier = spout::util::base64url(&spout::util::random_bytes(32));
    let challenge = spout::util::base64url(&spout::util::sha256(&verifier));
    let state = spout::util::base64url(&spout::util::random_bytes(12));
    let listener =
        TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| fail(&format!("port {port}: {e}")));
    println!(
        "Open this in your browser to sign in:\n  {api}/oauth/authenticate?client_id={client_id}&redirect_uri={}\
         &scope=stream,messages&response_type=code&state={state}&code_challenge={challenge}&code_challenge_method=S256",
        spout::web::redirect::encode(&redirect)
    );

    let query = wait_for_callback(&listener);
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(e) = get("error") {
        fail(&format!("the user said no: {e} ({})", get("error_message").unwrap_or_default()));
    }
    if get("state").as_deref() != Some(state.as_str()) {
        fail("the state came back wrong: not our sign-in");
    }
    let code = get("code").unwrap_or_else(|| fail("no code in the callback"));

    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let token_url = format!("{api}/v1/oauth/access_token");
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("code", &code),
        ("redirect_uri", &redirect),
        ("code_verifier", &verifier),
    ];
    let user = post_form(&agent, &token_url, &form);
    println!(
        "signed in as @{} (scopes {})",
        user["username"].as_str().unwrap_or("?"),
        user["token"]["scopes"]
    );

    // The app's own token, and a stream of what its users do.
    let app = post_form(
        &agent,
        &token_url,
        &[("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret)],
    );
    let app_token = app["access_token"].as_str().unwrap_or_else(|| fail("no app token")).to_string();
    let body = r#"{"type":"long_poll","object_types":["post","message","token"],"key":"oauth_demo"}"#;
    let created = agent
        .post(format!("{api}/v1/streams"))
        .header("Authorization", format!("Bearer {app_token}"))
        .content_type("application/json")
        .send(body)
        .unwrap_or_else(|e| fail(&format!("creating the stream: {e}")));
    let status = created.status().as_u16();
    let text = created.into_body().read_to_string().unwrap_or_default();
    // Made now, or already there from an earlier run.
    let made = matches!(status, 200 | 201) || (status == 400 && text.contains("already taken"));
    if !made {
        fail(&format!("creating the stream: {status} {text}"));
    }
    let url = format!("{}/v1/app?access_token={app_token}&key=oauth_demo", stream.trim_end_matches('/'));
    let (mut ws, _) = tungstenite::connect(url).unwrap_or_else(|e| fail(&format!("stream: {e}")));
    let mut seen = 0;
    while max_events.is_none_or(|m| seen < m) {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                if v["meta"]["type"].is_string() {
                    seen += 1;
                }
                println!("{t}");
            }
            Ok(tungstenite::Message::Close(c)) => fail(&format!("stream closed: {c:?}")),
            Ok(_) => {}
            Err(e) => fail(&format!("stream: {e}")),
        }
    }
}

/// Serves the redirect URI until the browser arrives there; answers it
/// with a short page and returns the query.
fn wait_for_callback(listener: &TcpListener) -> Vec<(String, String)> {
    for conn in listener.incoming().flatten() {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(&conn);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let target = line.split(' ').nth(1).unwrap_or("");
        let Some(query) = target.strip_prefix("/callback?") else {
            let _ = (&conn)
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            continue;
        };
        let page = "You are signed in: you can close this tab.";
        let _ = write!(
            &conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        );
        return spout::util::parse_query(query);
    }
    fail("the listener stopped")
}

fn post_form(agent: &ureq::Agent, url: &str, form: &[(&str, &str)]) -> Value {
    let body: Vec<String> =
        form.iter().map(|(k, v)| format!("{k}={}", spout::web::redirect::encode(v))).collect();
    let resp = agent
        .post(url)
        .content_type("application/x-www-form-urlencoded")
        .send(body.join("&"))
        .unwrap_or_else(|e| fail(&format!("{url}: {e}")));
    let status = resp.status().as_u16();
    let v: Value =
        serde_json::from_str(&resp.into_body().read_to_string().unwrap_or_default()).unwrap_or_default();
    if status != 200 {
        fail(&format!("{url}: {status} {v}"));
    }
    v
}

fn fail(m: &str) -> ! {
    eprintln!("oauth_app: {m}");
    std::process::exit(1);
}
