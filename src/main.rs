//! The `spout` command: `spout [serve]` runs the server; `spout admin …`
//! manages users, apps and tokens on the same database (safe while the
//! server runs). Exit codes: 0 ok, 1 runtime failure, 2 bad usage.

#![forbid(unsafe_code)]

use serde_json::json;
use spout::config::{self, Config};
use spout::storage::{apps, users, Db};
use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("-h") | Some("--help") | Some("help") => {
            print!("{}", Config::help());
            return ExitCode::SUCCESS;
        }
        Some("-V") | Some("--version") | Some("version") => {
            println!("spout {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("admin") if args[1..].iter().any(|a| a == "-h" || a == "--help") || args.len() == 1 => {
            print!("{}", admin_help(&args[1..]));
            return ExitCode::SUCCESS;
        }
        Some("admin") => admin(args[1..].to_vec()),
        Some("serve") if args[1..].iter().any(|a| a == "-h" || a == "--help") => {
            print!("{}", Config::help());
            return ExitCode::SUCCESS;
        }
        Some("serve") => serve(&args[1..]),
        _ => serve(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("spout: {msg}");
            ExitCode::from(code)
        }
    }
}

type CliResult = Result<(), (u8, String)>;

fn usage(m: impl Into<String>) -> (u8, String) {
    (2, m.into())
}

fn fail(m: impl ToString) -> (u8, String) {
    (1, m.to_string())
}

fn serve(args: &[String]) -> CliResult {
    let cfg = Config::from_args(args).map_err(usage)?;
    let handle = spout::server::start(cfg).map_err(fail)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "api listening on http://{}", handle.api_addr);
    let _ = writeln!(out, "stream listening on ws://{}", handle.stream_addr);
    let _ = out.flush();
    drop(out);
    let mut signals =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
            .map_err(|e| fail(format!("cannot install signal handlers: {e}")))?;
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: shutting down gracefully");
    }
    handle.stop(std::time::Duration::from_secs(10));
    Ok(())
}

/// The admin commands: their words, usage and what they do.
const ADMIN: &[(&[&str], &str, &str)] = &[
    (
        &["user", "add"],
        "user add [--type human|bot|feed] USERNAME",
        "adds a user; the password on standard input",
    ),
    (&["user", "list"], "user list", "lists the users"),
    (
        &["app", "add"],
        "app add [--redirect-uri URI]... [--url URL] [--owner USERNAME] [--password-grant] NAME",
        "registers an app; prints its client_id and (once) its secret. --redirect-uri (repeatable) is where the OAuth flow may send users back (urn:ietf:wg:oauth:2.0:oob shows the result on a page); --password-grant lets it trade passwords for tokens",
    ),
    (&["app", "list"], "app list", "lists the apps"),
    (
        &["token", "add"],
        "token add --app CLIENT_ID [--user USERNAME] [--scopes basic,stream,...]",
        "mints an app token, or a user token (authorizing the app)",
    ),
    (
        &["token", "revoke"],
        "token revoke",
        "revokes the token given on standard input; its live streams close",
    ),
    (&["reports", "list"], "reports list", "lists the reports of posts and messages users made, newest first"),
    (
        &["stream", "delete"],
        "stream delete --app CLIENT_ID KEY",
        "deletes a stream; its live connections close",
    ),
];

/// `spout admin [COMMAND] --help`: that command's usage, or all of them.
fn admin_help(args: &[String]) -> String {
    let words: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<_> = ADMIN.iter().filter(|(w, _, _)| words.len() >= 2 && w[..] == words[..2]).collect();
    let list = if chosen.is_empty() { ADMIN.iter().collect() } else { chosen };
    let mut out = String::from("usage:\n");
    for (_, usage, what) in list {
        out.push_str(&format!("  spout admin {usage} [--db PATH] [--create]\n      {what}\n"));
    }
    out.push_str("\nThe database is --db (or SPOUT_DB, default spout.db); it must exist (the server made it) unless --create is given.\n");
    out
}

/// The usage of the admin command `words` starts, as an error.
fn admin_usage(words: &[&str]) -> (u8, String) {
    match ADMIN.iter().find(|(w, _, _)| words.len() >= 2 && w[..] == words[..2]) {
        Some((_, u, _)) => usage(format!("usage: spout admin {u}")),
        None => usage(format!("unknown admin command: {}\n\n{}", words.join(" "), admin_help(&[]))),
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Takes `--name VALUE` out of `args`.
fn take_flag(args: &mut Vec<String>, name: &str) -> Result<Option<String>, (u8, String)> {
    let Some(i) = args.iter().position(|a| a == name) else { return Ok(None) };
    args.remove(i);
    if i < args.len() {
        Ok(Some(args.remove(i)))
    } else {
        Err(usage(format!("{name} needs a value")))
    }
}

fn admin(mut args: Vec<String>) -> CliResult {
    let db_path = config::db_path(&mut args).map_err(usage)?;
    let create = match args.iter().position(|a| a == "--create") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    if !create && !db_path.exists() {
        return Err(fail(format!(
            "no database at {} (give --db PATH, or --create to make a new one)",
            db_path.display()
        )));
    }
    eprintln!("spout: using database {}", db_path.display());
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let db = || Db::open(&db_path, false).map_err(fail);
    let e = |e: spout::error::ApiError| fail(e.message);
    match words.as_slice() {
        ["user", "add", ..] => {
            let mut rest: Vec<String> = args[2..].to_vec();
            let kind = take_flag(&mut rest, "--type")?.unwrap_or_else(|| "human".into());
            if !matches!(kind.as_str(), "human" | "bot" | "feed") {
                return Err(usage("--type: one of human, bot, feed"));
            }
            let [name] = rest.as_slice() else { return Err(admin_usage(&words)) };
            let name = name.to_string();
            users::check_username(&name).map_err(usage)?;
            let mut pw = String::new();
            std::io::stdin().read_to_string(&mut pw).map_err(fail)?;
            let pw = pw.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err(usage("give the password on standard input"));
            }
            let hash = users::hash_password(&pw);
            let db = db()?;
            let u = db
                .write(|tx| {
                    let Some(u) = users::create(tx, &name, &hash)? else { return Ok(None) };
                    users::set_kind(tx, u.id, &kind)?;
                    Ok(Some(u))
                })
                .map_err(e)?
                .ok_or_else(|| fail(format!("username {name} is taken")))?;
            print_json(&json!({"id": u.id.to_string(), "username": u.username, "type": kind}));
        }
        ["user", "list"] => {
            let list = db()?.read(|c| Ok(users::list(c)?)).map_err(e)?;
            let v: Vec<_> =
                list.iter().map(|u| json!({"id": u.id.to_string(), "username": u.username})).collect();
            print_json(&json!(v));
        }
        ["app", "add", ..] => {
            let mut rest: Vec<String> = args[2..].to_vec();
            let mut uris = Vec::new();
            while let Some(uri) = take_flag(&mut rest, "--redirect-uri")? {
                spout::web::redirect::check_registrable(&uri).map_err(usage)?;
                uris.push(uri);
            }
            let url = take_flag(&mut rest, "--url")?.unwrap_or_default();
            let owner = take_flag(&mut rest, "--owner")?;
            let password_grant = match rest.iter().position(|a| a == "--password-grant") {
                Some(i) => {
                    rest.remove(i);
                    true
                }
                None => false,
            };
            let [name] = rest.as_slice() else { return Err(admin_usage(&words)) };
            if name.starts_with('-') {
                return Err(usage(format!("unknown flag {name}")));
            }
            let name = name.to_string();
            let (app, secret) = db()?
                .write(|tx| {
                    let (app, secret) = apps::create_app(tx, &name, password_grant)?;
                    apps::set_url(tx, app.id, &url)?;
                    if let Some(name) = &owner {
                        let u = users::by_username(tx, name)?.ok_or_else(|| {
                            spout::error::ApiError::not_found(format!("--owner: no user {name}"))
                        })?;
                        apps::set_owner(tx, app.id, Some(u.id))?;
                    }
                    for u in &uris {
                        spout::storage::oauth::add_redirect_uri(tx, app.id, u)?;
                    }
                    Ok((app, secret))
                })
                .map_err(e)?;
            print_json(&json!({
                "name": app.name,
                "client_id": app.client_id,
                "client_secret": secret,
                "redirect_uris": uris,
                "password_grant": password_grant,
            }));
        }
        ["app", "list"] => {
            let list = db()?.read(|c| Ok(apps::list_apps(c)?)).map_err(e)?;
            let v: Vec<_> = list.iter().map(|a| json!({"name": a.name, "client_id": a.client_id})).collect();
            print_json(&json!(v));
        }
        ["token", "add", ..] => {
            let mut rest: Vec<String> = args[2..].to_vec();
            let app = take_flag(&mut rest, "--app")?.ok_or_else(|| usage("--app CLIENT_ID is required"))?;
            let user = take_flag(&mut rest, "--user")?;
            let scopes = take_flag(&mut rest, "--scopes")?.unwrap_or_default();
            if let Some(x) = rest.first() {
                return Err(usage(format!("unexpected argument {x}")));
            }
            let scopes = spout::auth::parse_scopes(&scopes).map_err(|x| usage(x.message))?;
            let db = db()?;
            let token = db
                .write(|tx| {
                    let a = apps::app_by_client_id(tx, &app)?.ok_or_else(|| {
                        spout::error::ApiError::not_found(format!("no app with client_id {app}"))
                    })?;
                    match &user {
                        None => Ok(apps::create_app_token(tx, a.id)?.1),
                        Some(name) => {
                            let u = users::by_username(tx, name)?.ok_or_else(|| {
                                spout::error::ApiError::not_found(format!("no user {name}"))
                            })?;
                            Ok(spout::grants::grant(tx, &config::cli_api_url(), &a, u.id, &scopes)?.token)
                        }
                    }
                })
                .map_err(e)?;
            println!("{token}");
        }
        ["token", "revoke"] => {
            // On standard input, like a password: not in `ps` or shell history.
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token).map_err(fail)?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(usage("give the token on standard input"));
            }
            let db = db()?;
            let hash = spout::util::sha256(&token);
            let p = db
                .read(|c| Ok(apps::principal_by_hash(c, &hash)?))
                .map_err(e)?
                .ok_or_else(|| fail("no such token (already revoked?)"))?;
            db.write(|tx| spout::grants::revoke_token(tx, &config::cli_api_url(), &p)).map_err(e)?;
            print_json(
                &json!({"revoked": true, "app": p.app.client_id, "user_id": p.user_id.map(|u| u.to_string())}),
            );
        }
        ["reports", "list"] => {
            let list = db()?.read(|c| Ok(spout::storage::reports::all(c)?)).map_err(e)?;
            let v: Vec<_> = list
                .iter()
                .map(|r| {
                    json!({"id": r.id.to_string(), "type": r.kind, "object_id": r.object_id.to_string(),
                           "reporter": r.reporter, "reason": r.reason,
                           "created_at": spout::util::iso8601(r.created_at)})
                })
                .collect();
            print_json(&json!(v));
        }
        ["stream", "delete", ..] => {
            let mut rest: Vec<String> = args[2..].to_vec();
            let app = take_flag(&mut rest, "--app")?.ok_or_else(|| usage("--app CLIENT_ID is required"))?;
            let [key] = rest.as_slice() else { return Err(admin_usage(&words)) };
            let db = db()?;
            db.write(|tx| {
                let not_found = |what: String| spout::error::ApiError::not_found(what);
                let a = apps::app_by_client_id(tx, &app)?
                    .ok_or_else(|| not_found(format!("no app with client_id {app}")))?;
                let s = spout::storage::streams::get(tx, a.id, key)?
                    .ok_or_else(|| not_found(format!("app {app} has no stream {key}")))?;
                spout::storage::streams::delete_live(tx, s.id)
            })
            .map_err(e)?;
            print_json(&json!({"deleted": key}));
        }
        _ => return Err(admin_usage(&words)),
    }
    Ok(())
}
