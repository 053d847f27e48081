//! Connects to an App Stream and prints every message, one JSON document per
//! line, sending a keepalive every 30 s.
//!
//! Usage:
//!   cargo run --release --example consume -- STREAM_URL APP_TOKEN KEY [EXTRA_QUERY]
//! e.g.
//!   cargo run --release --example consume -- ws://127.0.0.1:8081 $APP_TOKEN main include_raw=1

use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Error, Message};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: consume STREAM_URL APP_TOKEN KEY [EXTRA_QUERY]");
        std::process::exit(2);
    }
    let extra = args.get(3).map(|q| format!("&{q}")).unwrap_or_default();
    let url =
        format!("{}/v1/app?access_token={}&key={}{extra}", args[0].trim_end_matches('/'), args[1], args[2]);
    let (mut ws, _) = match tungstenite::connect(url) {
        Ok(c) => c,
        Err(Error::Http(resp)) => {
            let body = resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            eprintln!("refused: {} {body}", resp.status());
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cannot connect: {e}");
            std::process::exit(1);
        }
    };
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    }
    let mut last_sent = Instant::now();
    loop {
        if last_sent.elapsed() > Duration::from_secs(30) {
            if ws.send(Message::Text(".".into())).is_err() {
                break;
            }
            last_sent = Instant::now();
        }
        match ws.read() {
            Ok(Message::Text(t)) => println!("{t}"),
            Ok(Message::Close(c)) => {
                eprintln!("closed by the server: {c:?}");
                break;
            }
            Ok(_) => {}
            Err(Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => {
                eprintln!("connection ended: {e}");
                break;
            }
        }
    }
}
