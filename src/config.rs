//! Command-line flags and environment variables → one validated `Config`.
//! This is the only module that reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `spout serve` needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub api_addr: SocketAddr,
    pub stream_addr: SocketAddr,
    pub db: PathBuf,
    /// Base URL reported in stream `endpoint` fields; `None` means "derive it
    /// from the stream listener's bound address".
    pub public_stream_url: Option<String>,
    /// Base URL used in links to the API (avatar and cover images).
    pub public_api_url: Option<String>,
    pub max_body: usize,
    pub http_threads: usize,
    pub keepalive: Duration,
    pub heartbeat: Duration,
    pub max_conns_per_app: usize,
    /// Connections of both listeners; `None` is as many as the machine can
    /// hold (`admission::Machine::ceiling`), and a number above that is
    /// lowered to it.
    pub max_conns_total: Option<usize>,
    /// Connections that are not an authorized stream, in all and per
    /// client address (`admission`).
    pub max_pending: usize,
    pub max_pending_per_ip: usize,
    /// Bytes a connection may have queued before it is a slow consumer.
    pub conn_backlog_bytes: usize,
    pub sync_full: bool,
    pub retention_secs: i64,
    pub retention_events: usize,
    pub prune_every: Duration,
    pub rate_limit: u64,
    pub rate_window: Duration,
    /// Wrong passwords per account per `login_window` (per address: 4x).
    pub login_failures: u64,
    pub login_window: Duration,
    pub head_timeout: Duration,
    pub body_timeout: Duration,
    pub ws_max_message: usize,
    /// `--open-registration`: the sign-up page is open to anyone.
    pub open_registration: bool,
    /// How long an OAuth authorization code may be exchanged.
    pub oauth_code_secs: i64,
    /// A user's post with the same text as one of theirs this recent is
    /// refused (0: never).
    pub duplicate_secs: i64,
}

/// One flag: its name, env var, default (as text) and help.
pub struct Flag {
    pub name: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// The flags of `spout serve`, in the order the README lists them.
pub const FLAGS: &[Flag] = &[
    Flag {
        name: "--api-addr",
        env: "SPOUT_API_ADDR",
        default: "127.0.0.1:8080",
        help: "REST API listener (port 0 picks a free port)",
    },
    Flag {
        name: "--stream-addr",
        env: "SPOUT_STREAM_ADDR",
        default: "127.0.0.1:8081",
        help: "App Stream listener: websocket and chunked HTTP",
    },
    Flag {
        name: "--db",
        env: "SPOUT_DB",
        default: "spout.db",
        help: "SQLite database file, created and migrated on first start",
    },
    Flag {
        name: "--public-stream-url",
        env: "SPOUT_PUBLIC_STREAM_URL",
        default: "",
        help: "base URL in stream `endpoint` fields (default ws://<stream listener>)",
    },
    Flag {
        name: "--public-api-url",
        env: "SPOUT_PUBLIC_API_URL",
        default: "",
        help: "base URL for links to the API (default http://<api listener>)",
    },
    Flag {
        name: "--max-body",
        env: "SPOUT_MAX_BODY",
        default: "1048576",
        help: "largest request body in bytes (413 above)",
    },
    Flag {
        name: "--http-threads",
        env: "SPOUT_HTTP_THREADS",
        default: "8",
        help: "REST requests handled at once (each on its connection's own thread)",
    },
    Flag {
        name: "--keepalive-secs",
        env: "SPOUT_KEEPALIVE_SECS",
        default: "60",
        help: "a websocket client must send something this often",
    },
    Flag {
        name: "--heartbeat-secs",
        env: "SPOUT_HEARTBEAT_SECS",
        default: "30",
        help: "blank-line heartbeat interval on chunked streams",
    },
    Flag {
        name: "--max-conns-per-app",
        env: "SPOUT_MAX_CONNS_PER_APP",
        default: "2",
        help: "live stream connections per app (pnut allows 2)",
    },
    Flag {
        name: "--max-conns",
        env: "SPOUT_MAX_CONNS",
        default: "auto",
        help: "connections in total, both listeners (auto: as many as the machine can hold; a number above that is lowered to it)",
    },
    Flag {
        name: "--max-pending",
        env: "SPOUT_MAX_PENDING",
        default: "1024",
        help: "connections that are not an open stream (API connections, streams before authorization); 503 above",
    },
    Flag {
        name: "--max-pending-per-ip",
        env: "SPOUT_MAX_PENDING_PER_IP",
        default: "64",
        help: "of those, from one address (IPv6: one /64); 503 above",
    },
    Flag {
        name: "--conn-backlog-bytes",
        env: "SPOUT_CONN_BACKLOG_BYTES",
        default: "1048576",
        help: "bytes queued for one connection before it is dropped as a slow consumer",
    },
    Flag {
        name: "--retention-secs",
        env: "SPOUT_RETENTION_SECS",
        default: "604800",
        help: "events older than this leave the log (undelivered ones are reported as dropped)",
    },
    Flag {
        name: "--retention-events",
        env: "SPOUT_RETENTION_EVENTS",
        default: "10000",
        help: "undelivered events kept per stream while it is away",
    },
    Flag {
        name: "--prune-secs",
        env: "SPOUT_PRUNE_SECS",
        default: "60",
        help: "how often retention runs (also once at start)",
    },
    Flag {
        name: "--rate-limit",
        env: "SPOUT_RATE_LIMIT",
        default: "10000",
        help: "REST requests per token (per address without one) per window; 0 turns it off",
    },
    Flag {
        name: "--rate-window-secs",
        env: "SPOUT_RATE_WINDOW_SECS",
        default: "60",
        help: "the rate-limit window",
    },
    Flag {
        name: "--login-failures",
        env: "SPOUT_LOGIN_FAILURES",
        default: "5",
        help: "wrong passwords per account per login window before 429 (per address: 4x); 0 turns it off",
    },
    Flag {
        name: "--login-window-secs",
        env: "SPOUT_LOGIN_WINDOW_SECS",
        default: "300",
        help: "the window of --login-failures",
    },
    Flag {
        name: "--head-timeout-secs",
        env: "SPOUT_HEAD_TIMEOUT_SECS",
        default: "10",
        help: "a client must send a whole request head within this of its first byte, on both listeners (slowloris)",
    },
    Flag {
        name: "--body-timeout-secs",
        env: "SPOUT_BODY_TIMEOUT_SECS",
        default: "30",
        help: "a client must send a whole request body within this of its head (408 after)",
    },
    Flag {
        name: "--ws-max-message",
        env: "SPOUT_WS_MAX_MESSAGE",
        default: "65536",
        help: "largest websocket message or frame a client may send (bytes; 1009 close above)",
    },
    Flag {
        name: "--open-registration",
        env: "SPOUT_OPEN_REGISTRATION",
        default: "off",
        help: "let anyone create an account at /oauth/register (a switch: on, off; alone means on)",
    },
    Flag {
        name: "--oauth-code-secs",
        env: "SPOUT_OAUTH_CODE_SECS",
        default: "300",
        help: "how long an OAuth authorization code may be exchanged for a token (seconds)",
    },
    Flag {
        name: "--duplicate-window-secs",
        env: "SPOUT_DUPLICATE_WINDOW_SECS",
        default: "60",
        help: "a post with the same text as one of its author's posts this recent is refused with 409 (0: never)",
    },
    Flag {
        name: "--sync",
        env: "SPOUT_SYNC",
        default: "normal",
        help: "SQLite synchronous mode: normal (survives a process crash) or full (also power loss)",
    },
];

impl Config {
    /// Parses `args` (the words after `serve`), falling back to the
    /// environment and then to the defaults.
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        let mut values: Vec<Option<String>> =
            FLAGS.iter().map(|f| std::env::var(f.env).ok().filter(|v| !v.is_empty())).collect();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let idx = FLAGS
                .iter()
                .position(|f| f.name == name)
                .ok_or_else(|| format!("unknown flag {arg} (see spout --help)"))?;
            // A switch (default off) alone means on.
            let value = match inline {
                Some(v) => v,
                None if FLAGS[idx].default == "off" => "on".to_string(),
                None => {
                    i += 1;
                    args.get(i).cloned().ok_or_else(|| format!("{name} needs a value"))?
                }
            };
            values[idx] = Some(value);
            i += 1;
        }
        let get = |name: &str| -> String {
            let idx = FLAGS.iter().position(|f| f.name == name).expect("every flag read is in FLAGS");
            values[idx].clone().unwrap_or_else(|| FLAGS[idx].default.to_string())
        };
        let addr = |name: &str| -> Result<SocketAddr, String> {
            get(name).parse().map_err(|_| format!("{name}: not an address like 127.0.0.1:8080"))
        };
        let num = |name: &str, min: u64| -> Result<u64, String> {
            let v: u64 = get(name).parse().map_err(|_| format!("{name}: not a whole number"))?;
            if v < min {
                return Err(format!("{name}: must be at least {min}"));
            }
            Ok(v)
        };
        let url = |name: &str| -> Option<String> {
            let v = get(name);
            (!v.is_empty()).then(|| v.trim_end_matches('/').to_string())
        };
        let sync_full = match get("--sync").as_str() {
            "normal" => false,
            "full" => true,
            other => return Err(format!("--sync: expected normal or full, got {other}")),
        };
        Ok(Config {
            api_addr: addr("--api-addr")?,
            stream_addr: addr("--stream-addr")?,
            db: PathBuf::from(get("--db")),
            public_stream_url: url("--public-stream-url"),
            public_api_url: url("--public-api-url"),
            max_body: num("--max-body", 1024)? as usize,
            http_threads: num("--http-threads", 1)? as usize,
            keepalive: Duration::from_secs(num("--keepalive-secs", 1)?),
            heartbeat: Duration::from_secs(num("--heartbeat-secs", 1)?),
            max_conns_per_app: num("--max-conns-per-app", 1)? as usize,
            max_conns_total: match get("--max-conns").as_str() {
                "auto" => None,
                _ => Some(num("--max-conns", 1)? as usize),
            },
            max_pending: num("--max-pending", 1)? as usize,
            max_pending_per_ip: num("--max-pending-per-ip", 1)? as usize,
            conn_backlog_bytes: num("--conn-backlog-bytes", 4096)? as usize,
            sync_full,
            retention_secs: num("--retention-secs", 1)? as i64,
            retention_events: num("--retention-events", 1)? as usize,
            prune_every: Duration::from_secs(num("--prune-secs", 1)?),
            rate_limit: num("--rate-limit", 0)?,
            rate_window: Duration::from_secs(num("--rate-window-secs", 1)?),
            login_failures: num("--login-failures", 0)?,
            login_window: Duration::from_secs(num("--login-window-secs", 1)?),
            head_timeout: Duration::from_secs(num("--head-timeout-secs", 1)?),
            body_timeout: Duration::from_secs(num("--body-timeout-secs", 1)?),
            ws_max_message: num("--ws-max-message", 125)? as usize,
            open_registration: match get("--open-registration").as_str() {
                "on" | "1" | "true" => true,
                "off" | "0" | "false" => false,
                other => return Err(format!("--open-registration: expected on or off, got {other}")),
            },
            oauth_code_secs: num("--oauth-code-secs", 0)? as i64,
            duplicate_secs: num("--duplicate-window-secs", 0)? as i64,
        })
    }

    /// `--help` text generated from `FLAGS`, so it never drifts.
    pub fn help() -> String {
        let mut s = String::from(
            "spout: a pnut.io v1 API server built around App Streams\n\n\
             usage:\n  spout [serve] [FLAGS]\n  spout admin user add [--type human|bot|feed] USERNAME   (password on stdin)\n  \
             spout admin user list\n  spout admin app add NAME\n  spout admin app list\n  \
             spout admin token add --app CLIENT_ID [--user USERNAME] [--scopes basic,stream,...]\n  \
             spout admin token revoke   (the token on stdin; its live streams close)\n  \
             spout admin stream delete --app CLIENT_ID KEY   (its live connections close)\n\n\
             admin commands take --db too.\n\nflags (each also read from its env var):\n",
        );
        for f in FLAGS {
            s.push_str(&format!(
                "  {:<22} {:<26} default {:<16} {}\n",
                f.name,
                f.env,
                if f.default.is_empty() { "-" } else { f.default },
                f.help
            ));
        }
        s
    }
}

/// The API base URL for objects rendered by `spout admin` (no listener to
/// ask): `SPOUT_PUBLIC_API_URL`, else the default API address.
pub fn cli_api_url() -> String {
    std::env::var("SPOUT_PUBLIC_API_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "http://127.0.0.1:8080".into())
}

/// Reads only `--db` (flag or env) for the admin commands.
pub fn db_path(args: &mut Vec<String>) -> Result<PathBuf, String> {
    let mut db =
        std::env::var("SPOUT_DB").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "spout.db".into());
    if let Some(i) = args.iter().position(|a| a == "--db" || a.starts_with("--db=")) {
        let a = args.remove(i);
        if let Some(v) = a.strip_prefix("--db=") {
            db = v.to_string();
        } else if i < args.len() {
            db = args.remove(i);
        } else {
            return Err("--db needs a value".into());
        }
    }
    Ok(PathBuf::from(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_defaults() {
        let args: Vec<String> =
            ["--api-addr", "127.0.0.1:0", "--keepalive-secs=5"].iter().map(|s| s.to_string()).collect();
        let c = Config::from_args(&args).unwrap();
        assert_eq!(c.api_addr.port(), 0);
        assert_eq!(c.keepalive, Duration::from_secs(5));
        assert_eq!(c.max_conns_per_app, 2);
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::from_args(&["--max-body".into(), "x".into()]).unwrap_err();
        assert!(e.contains("--max-body"), "{e}");
        let e = Config::from_args(&["--nope".into()]).unwrap_err();
        assert!(e.contains("--nope"), "{e}");
    }
}
