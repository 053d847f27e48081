//! The standard-notification service of App.net's stream docs, written as a
//! user would against spout: it reads an app stream and prints one line per
//! notification (mentions, replies, reposts, bookmarks, follows, messages in
//! subscribed channels), dropping users listed in
//! `meta.suppress_notifications` and everything when
//! `meta.suppress_notifications_all` is true.
//!
//! Usage:
//!   cargo run --release --example notify -- API_URL STREAM_URL APP_TOKEN KEY
//! e.g.
//!   cargo run --release --example notify -- http://127.0.0.1:8080 ws://127.0.0.1:8081 $APP_TOKEN main
//! The stream should have object types post, bookmark, follow and message.

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Error, Message};

fn ids(v: &Value) -> impl Iterator<Item = String> + '_ {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string))
}

/// Who would be notified of this event, and why: (user id, reason).
fn recipients(ev: &Value, api: &str, token: &str, agent: &ureq::Agent) -> Vec<(String, String)> {
    let meta = &ev["meta"];
    let mut out = Vec::new();
    if meta["is_deleted"] == true {
        return out;
    }
    match meta["type"].as_str().unwrap_or("") {
        "post" => {
            let p = &ev["data"][0];
            let actor = p["user"]["username"].as_str().unwrap_or("someone");
            if let Some(orig) = p.get("repost_of") {
                if let Some(id) = orig["user"]["id"].as_str() {
                    out.push((
                        id.to_string(),
                        format!("@{actor} reposted your post {}", orig["id"].as_str().unwrap_or("?")),
                    ));
                }
                return out;
            }
            for m in p["content"]["entities"]["mentions"].as_array().into_iter().flatten() {
                if let Some(id) = m["id"].as_str() {
                    out.push((
                        id.to_string(),
                        format!("@{actor} mentioned you in post {}", p["id"].as_str().unwrap_or("?")),
                    ));
                }
            }
            if let Some(parent) = p["reply_to"].as_str() {
                // The replied-to author is not in the event: ask the API.
                let url = format!("{api}/v1/posts/{parent}");
                let author = agent
                    .get(&url)
                    .header("Authorization", &format!("Bearer {token}"))
                    .call()
                    .ok()
                    .and_then(|r| r.into_body().read_to_string().ok())
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .and_then(|v| v["data"]["user"]["id"].as_str().map(str::to_string));
                if let Some(id) = author {
                    out.push((id, format!("@{actor} replied to your post {parent}")));
                }
            }
        }
        "bookmark" => {
            let actor = ev["data"]["user"]["username"].as_str().unwrap_or("someone");
            if let Some(id) = ev["data"]["post"]["user"]["id"].as_str() {
                out.push((
                    id.to_string(),
                    format!(
                        "@{actor} bookmarked your post {}",
                        ev["data"]["post"]["id"].as_str().unwrap_or("?")
                    ),
                ));
            }
        }
        "follow" => {
            let actor = ev["data"]["user"]["username"].as_str().unwrap_or("someone");
            if let Some(id) = ev["data"]["followed_user"]["id"].as_str() {
                out.push((id.to_string(), format!("@{actor} followed you")));
            }
        }
        "message" => {
            let m = &ev["data"][0];
            let actor = m["user"]["username"].as_str().unwrap_or("someone");
            for id in ids(&meta["subscribed_user_ids"]) {
                out.push((
                    id,
                    format!("@{actor} wrote in channel {}", m["channel_id"].as_str().unwrap_or("?")),
                ));
            }
        }
        _ => {}
    }
    // Never notify people of their own actions.
    let actor_id = match meta["type"].as_str() {
        Some("post") | Some("message") => ev["data"][0]["user"]["id"].as_str(),
        _ => ev["data"]["user"]["id"].as_str(),
    };
    out.retain(|(id, _)| Some(id.as_str()) != actor_id);
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        eprintln!("usage: notify API_URL STREAM_URL APP_TOKEN KEY");
        std::process::exit(2);
    }
    let (api, stream, token, key) = (&args[0], &args[1], &args[2], &args[3]);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/v1/app?access_token={token}&key={key}", stream.trim_end_matches('/'));
    let (mut ws, _) = tungstenite::connect(url).unwrap_or_else(|e| {
        eprintln!("cannot connect: {e}");
        std::process::exit(1)
    });
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    }
    let mut last_sent = Instant::now();
    loop {
        if last_sent.elapsed() > Duration::from_secs(30) {
            let _ = ws.send(Message::Text(".".into()));
            last_sent = Instant::now();
        }
        let text = match ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(c)) => {
                eprintln!("stream closed: {c:?}");
                return;
            }
            Ok(_) => continue,
            Err(Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                continue
            }
            Err(e) => {
                eprintln!("stream ended: {e}");
                return;
            }
        };
        let Ok(ev) = serde_json::from_str::<Value>(&text) else { continue };
        let meta = &ev["meta"];
        if let Some(c) = meta.get("control") {
            eprintln!("control: {c}");
            continue;
        }
        if meta["suppress_notifications_all"] == true {
            continue;
        }
        let suppressed: BTreeSet<String> = ids(&meta["suppress_notifications"]).collect();
        let mut seen = BTreeSet::new();
        for (user, why) in recipients(&ev, api, token, &agent) {
            if !suppressed.contains(&user) && seen.insert(user.clone()) {
                println!("notify user {user}: {why}");
            }
        }
    }
}
