//! The OAuth web flow as a browser drives it (issue 19): GET the page,
//! POST its form with the CSRF token and the cookie, follow the redirect
//! by hand, exchange the code. No redirect is followed automatically, so
//! every Location is asserted.

use crate::common::*;
use serde_json::{json, Value};

const CB: &str = "http://127.0.0.1:9/cb";
const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";

/// A page as the browser got it.
struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn location(&self) -> &str {
        self.header("location").unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
    }

    /// The value of the (first) hidden field `name`.
    fn field(&self, name: &str) -> String {
        self.fields()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no field {name} in the page: {}", self.body))
    }

    /// Every hidden field of the page, unescaped, in order.
    fn fields(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for part in self.body.split("<input type=\"hidden\" ").skip(1) {
            let attr = |a: &str| {
                let start = part.find(&format!("{a}=\""))? + a.len() + 2;
                let end = part[start..].find('"')? + start;
                Some(unescape(&part[start..end]))
            };
            if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
                out.push((n, v));
            }
        }
        out
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// A browser: one cookie jar (ours has one cookie), no automatic redirects.
struct Browser<'a> {
    s: &'a Server,
    agent: ureq::Agent,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(s: &'a Server) -> Browser<'a> {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        Browser { s, agent, cookie: None }
    }

    fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{}", self.s.api, path) };
        let mut b = ureq::http::Request::builder().method(method).uri(url);
        if let Some(c) = &self.cookie {
            b = b.header("Cookie", format!("spout_session={c}"));
        }
        let body = match form {
            Some(f) => {
                b = b.header("Content-Type", "application/x-www-form-urlencoded");
                let parts: Vec<String> = f.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
                parts.join("&").into_bytes()
            }
            None => Vec::new(),
        };
        let resp = self.agent.run(b.body(body).unwrap()).expect("request");
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let value = v.split(';').next().unwrap().trim_start_matches("spout_session=").to_string();
                self.cookie = (!value.is_empty()).then_some(value);
            }
        }
        let body = resp.into_body().read_to_string().unwrap_or_default();
        Page { status, headers, body }
    }

    fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form))
    }

    /// Submits the page's form to `action` with its hidden fields and `extra`.
    fn submit(&mut self, page: &Page, action: &str, extra: &[(&str, &str)]) -> Page {
        let fields = page.fields();
        let mut all: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        self.post(action, &all)
    }

    /// Signs in from the sign-in page `page`; returns where it sent us.
    fn sign_in(&mut self, page: &Page, user: &str, password: &str) -> Page {
        assert!(page.body.contains("action=\"/oauth/signin\""), "not a sign-in page: {}", page.body);
        self.submit(page, "/oauth/signin", &[("username", user), ("password", password)])
    }
}

/// A server with alice and bob, and app "Notes" registered for `CB`.
struct Fx {
    s: Server,
    app: (String, String),
}

fn fx_with(extra: &[&str]) -> Fx {
    let s = Server::start_with(extra);
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    let app = s.add_app_with(&["--redirect-uri", CB, "--url", "https://notes.example", "Notes"]);
    Fx { s, app }
}

fn fx() -> Fx {
    fx_with(&[])
}

fn authorize_url(client_id: &str, redirect: &str, extra: &str) -> String {
    format!(
        "/oauth/authenticate?client_id={client_id}&redirect_uri={}&scope=stream,write_post&response_type=code{extra}",
        enc(redirect)
    )
}

/// A query parameter (or fragment parameter) of a Location.
fn param(location: &str, name: &str) -> Option<String> {
    let q = location.split(['?', '#']).nth(1)?;
    spout::util::parse_query(q).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Signs alice in and allows the request at `url`; returns the redirect
/// (straight away when she already granted it, through /authenticate).
fn allow(b: &mut Browser, url: &str) -> Page {
    let first = b.get(url);
    if first.status == 302 {
        return first;
    }
    let page = if first.body.contains("action=\"/oauth/signin\"") {
        let signed = b.sign_in(&first, "alice", "alice-pw");
        assert_eq!(signed.status, 303, "{}", signed.body);
        b.get(signed.location())
    } else {
        first
    };
    assert!(page.body.contains("action=\"/oauth/authorize\""), "no consent page: {}", page.body);
    b.submit(&page, "/oauth/authorize", &[("decision", "allow")])
}

fn exchange(s: &Server, app: &(String, String), code: &str, redirect: &str, verifier: Option<&str>) -> Resp {
    let mut f = vec![
        ("grant_type", "authorization_code"),
        ("client_id", app.0.as_str()),
        ("client_secret", app.1.as_str()),
        ("code", code),
        ("redirect_uri", redirect),
    ];
    if let Some(v) = verifier {
        f.push(("code_verifier", v));
    }
    s.form("/v1/oauth/access_token", &f)
}

#[test]
fn the_code_flow_from_sign_in_to_a_working_token() {
    let f = fx();
    let mut b = Browser::new(&f.s);
    let signin = b.get(&authorize_url(&f.app.0, CB, "&state=xyz%20%26"));
    assert_eq!(signin.status, 200, "{}", signin.body);
    assert!(
        signin.body.contains("Sign in to let <strong>Notes</strong> use your account"),
        "{}",
        signin.body
    );
    // A page: its own CSP with no script, never framed, never shared
    // with another origin, its cookie HttpOnly and SameSite=Lax.
    let csp = signin.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    assert_eq!(signin.header("x-frame-options"), Some("DENY"));
    assert_eq!(signin.header("access-control-allow-origin"), None);
    assert!(signin.header("content-type").unwrap().starts_with("text/html"));
    let set = signin.header("set-cookie").unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/oauth"), "{set}");
    assert!(!signin.body.contains("<script"), "{}", signin.body);
    let before = b.cookie.clone().unwrap();

    let signed = b.sign_in(&signin, "alice", "alice-pw");
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert!(signed.location().starts_with("/oauth/authenticate?client_id="), "{}", signed.location());
    let session = b.cookie.clone().unwrap();
    assert_ne!(session, before, "signing in gives a new cookie");
    // The session is stored hashed: the database never holds the cookie.
    let db = spout::storage::Connection::open(f.s.db()).unwrap();
    let count = |v: &[u8]| -> i64 {
        db.query_row("SELECT COUNT(*) FROM web_sessions WHERE hash = ?1", [v], |r| r.get(0)).unwrap()
    };
    assert_eq!(count(session.as_bytes()), 0);
    assert_eq!(count(&spout::util::sha256(&session)), 1);

    let consent = b.get(signed.location());
    assert_eq!(consent.status, 200);
    for words in [
        "<strong>Notes</strong>",
        "(https://notes.example)",
        "Post, reply, repost and bookmark as you",
        "(write_post)",
        "127.0.0.1:9",
    ] {
        assert!(consent.body.contains(words), "{words} missing: {}", consent.body);
    }
    let back = b.submit(&consent, "/oauth/authorize", &[("decision", "allow")]);
    assert_eq!(back.status, 303, "{}", back.body);
    let loc = back.location().to_string();
    assert!(loc.starts_with(&format!("{CB}?code=")), "{loc}");
    assert_eq!(param(&loc, "state").as_deref(), Some("xyz &"));
    let code = param(&loc, "code").unwrap();

    let r = exchange(&f.s, &f.app, &code, CB, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["username"], "alice");
    assert_eq!(r.body["user_id"], "1");
    assert_eq!(r.body["token"]["scopes"], json!(["basic", "stream", "write_post"]));
    assert_eq!(r.header("x-oauth-scopes"), Some("basic,stream,write_post"));
    let token = r.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(f.s.get("/v1/users/me", Some(&token)).body["data"]["username"], "alice");

    // A code works once; a second use revokes what the first one gave.
    let again = exchange(&f.s, &f.app, &code, CB, None);
    assert_error(&again, 400, "already used");
    assert_error(&f.s.get("/v1/users/me", Some(&token)), 401, "Invalid");
}

#[test]
fn a_redirect_uri_that_is_not_registered_is_never_followed() {
    let f = fx();
    let mut b = Browser::new(&f.s);
    for bad in [
        "http://127.0.0.1:9/cb/other",
        "http://127.0.0.1:9/cbx",
        "https://evil.example/cb",
        "http://127.0.0.1:9/cb?x=1\r\nSet-Cookie: a=b",
        "http://127.0.0.1:9/cb#x",
    ] {
        let p = b.get(&authorize_url(&f.app.0, bad, ""));
        assert_eq!(p.status, 400, "{bad}: {}", p.body);
        assert_eq!(p.header("location"), None, "{bad}");
        assert!(p.body.contains("redirect_uri: not one that Notes registered"), "{}", p.body);
    }
    let p = b.get(&authorize_url("no-such-app", CB, ""));
    assert_eq!((p.status, p.header("location")), (400, None));
    assert!(p.body.contains("client_id: no app no-such-app"), "{}", p.body);
    // Registered without a query: any query is allowed (pnut's rule), and
    // the code comes back after it.
    let back = allow(&mut b, &authorize_url(&f.app.0, "http://127.0.0.1:9/cb?from=app", ""));
    assert!(back.location().starts_with("http://127.0.0.1:9/cb?from=app&code="), "{}", back.location());
    // The exchange must name the same redirect URI.
    let code = param(back.location(), "code").unwrap();
    assert_error(&exchange(&f.s, &f.app, &code, CB, None), 400, "redirect_uri: not the one");
    // An app with no registered URI cannot use the flow at all.
    let bare = f.s.add_app_with(&["Bare"]);
    let p = b.get(&authorize_url(&bare.0, CB, ""));
    assert_eq!(p.status, 400);
    assert!(p.body.contains("Bare has registered no redirect URI"), "{}", p.body);
}

#[test]
fn an_expired_code_is_refused() {
    let f = fx_with(&["--oauth-code-secs", "0"]);
    let mut b = Browser::new(&f.s);
    let back = allow(&mut b, &authorize_url(&f.app.0, CB, ""));
    let code = param(back.location(), "code").unwrap();
    assert_error(&exchange(&f.s, &f.app, &code, CB, None), 400, "code: expired");
    assert_error(&exchange(&f.s, &f.app, "made-up", CB, None), 400, "code: unknown");
}

#[test]
fn pkce_is_enforced_when_the_app_sends_a_challenge() {
    let f = fx();
    let mut b = Browser::new(&f.s);
    let verifier = "a-verifier-of-enough-length-0123456789-abcdefgh";
    let challenge = spout::util::base64url(&spout::util::sha256(verifier));
    let url = authorize_url(&f.app.0, CB, &format!("&code_challenge={challenge}&code_challenge_method=S256"));
    let code = param(allow(&mut b, &url).location(), "code").unwrap();
    assert_error(&exchange(&f.s, &f.app, &code, CB, None), 400, "code_verifier: required");
    assert_error(
        &exchange(&f.s, &f.app, &code, CB, Some("wrong-verifier-wrong-verifier-wrong-verifier")),
        400,
        "does not match",
    );
    // Another app's secret does not open this app's code.
    let other = f.s.add_app_with(&["--redirect-uri", CB, "Other"]);
    assert_error(&exchange(&f.s, &other, &code, CB, Some(verifier)), 400, "code: unknown");
    let ok = exchange(&f.s, &f.app, &code, CB, Some(verifier));
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Only S256: plain (or none named) is refused back to the app.
    let plain = b.get(&authorize_url(&f.app.0, CB, "&code_challenge=abc&state=s1"));
    assert_eq!(plain.status, 302);
    assert_eq!(param(plain.location(), "error").as_deref(), Some("invalid_request"));
    assert_eq!(param(plain.location(), "state").as_deref(), Some("s1"));
    // A verifier for a code that had no challenge is refused too.
    let code = param(allow(&mut b, &authorize_url(&f.app.0, CB, "")).location(), "code").unwrap();
    assert_error(&exchange(&f.s, &f.app, &code, CB, Some(verifier)), 400, "had no code_challenge");
}

#[test]
fn denial_and_bad_requests_go_back_to_the_app_as_errors() {
    let f = fx();
    let mut b = Browser::new(&f.s);
    let signin = b.get(&authorize_url(&f.app.0, CB, "&state=st"));
    let signed = b.sign_in(&signin, "alice", "alice-pw");
    let consent = b.get(signed.location());
    let back = b.submit(&consent, "/oauth/authorize", &[("decision", "deny")]);
    assert_eq!(back.status, 303);
    let loc = back.location();
    assert!(loc.starts_with(&format!("{CB}?error=access_denied")), "{loc}");
    assert_eq!(param(loc, "error_message").as_deref(), Some("resource owner denied your app access"));
    assert_eq!(param(loc, "state").as_deref(), Some("st"));
    assert_eq!(f.s.get("/v1/apps/me/users/ids", Some(&f.s.app_token(&f.app))).body["data"], json!([]));
    let p = b.get(&format!(
        "/oauth/authenticate?client_id={}&redirect_uri={}&scope=root&response_type=code",
        f.app.0,
        enc(CB)
    ));
    assert_eq!(param(p.location(), "error").as_deref(), Some("invalid_scope"));
    let p = b.get(&format!(
        "/oauth/authenticate?client_id={}&redirect_uri={}&response_type=magic",
        f.app.0,
        enc(CB)
    ));
    assert_eq!(param(p.location(), "error").as_deref(), Some("unsupported_response_type"));
}

#[test]
fn forms_without_their_csrf_token_are_refused() {
    let f = fx();
    let mut b = Browser::new(&f.s);
    let signin = b.get(&authorize_url(&f.app.0, CB, ""));
    // Sign-in without the token (or with a made-up one) does nothing.
    let p = b.post("/oauth/signin", &[("username", "alice"), ("password", "alice-pw")]);
    assert_eq!((p.status, p.header("location")), (403, None), "{}", p.body);
    let p = b.post("/oauth/signin", &[("csrf", "forged"), ("username", "alice"), ("password", "alice-pw")]);
    assert_eq!(p.status, 403);
    // A cookie planted by another site, with the token one could compute
    // from it alone: refused (tokens are keyed by the server).
    let mut planted = Browser::new(&f.s);
    let k = "plantedplantedplantedplanted";
    planted.cookie = Some(k.to_string());
    let guess = spout::util::base64url(&spout::util::sha256(&format!("csrf:{k}")));
    let p =
        planted.post("/oauth/signin", &[("csrf", &guess), ("username", "alice"), ("password", "alice-pw")]);
    assert_eq!((p.status, p.header("location")), (403, None), "{}", p.body);
    let signed = b.sign_in(&signin, "alice", "alice-pw");
    let consent = b.get(signed.location());
    // The consent form without its token, or with another browser's.
    let mut fields: Vec<(String, String)> =
        consent.fields().into_iter().filter(|(k, _)| k != "csrf").collect();
    fields.push(("decision".into(), "allow".into()));
    let bare: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let p = b.post("/oauth/authorize", &bare);
    assert_eq!((p.status, p.header("location")), (403, None), "{}", p.body);
    let mut other = Browser::new(&f.s);
    let theirs = other.get("/oauth/signin").field("csrf");
    let mut with_theirs = bare.clone();
    with_theirs.push(("csrf", &theirs));
    assert_eq!(b.post("/oauth/authorize", &with_theirs).status, 403);
    // A browser with no cookie at all (another site's form) is refused.
    let mut stranger = Browser::new(&f.s);
    let mut forged = bare.clone();
    let csrf = consent.field("csrf");
    forged.push(("csrf", &csrf));
    assert_eq!(stranger.post("/oauth/authorize", &forged).status, 403);
    assert_eq!(f.s.get("/v1/apps/me/users/ids", Some(&f.s.app_token(&f.app))).body["data"], json!([]));
}

#[test]
fn the_implicit_flow_and_the_out_of_band_page() {
    let f = fx();
    let mut b = Browser::new(&f.s);
    let url = format!(
        "/oauth/authorize?client_id={}&redirect_uri={}&scope=basic&response_type=token&state=k",
        f.app.0,
        enc(CB)
    );
    let back = allow(&mut b, &url);
    let loc = back.location();
    assert!(loc.starts_with(&format!("{CB}#access_token=")), "{loc}");
    assert_eq!(param(loc, "state").as_deref(), Some("k"));
    let token = param(loc, "access_token").unwrap();
    assert_eq!(f.s.get("/v1/token", Some(&token)).body["data"]["user"]["username"], "alice");

    let oob = f.s.add_app_with(&["--redirect-uri", OOB, "Terminal"]);
    let url = format!(
        "/oauth/authorize?client_id={}&redirect_uri={}&scope=basic&response_type=token",
        oob.0,
        enc(OOB)
    );
    let page = allow(&mut b, &url);
    assert_eq!(page.status, 200, "{}", page.body);
    let shown = page.body.split("<code>").nth(1).and_then(|s| s.split("</code>").next()).unwrap();
    assert_eq!(f.s.get("/v1/token", Some(shown)).body["data"]["app"]["name"], "Terminal");
}

#[test]
fn authenticate_skips_consent_once_granted_and_authorize_always_asks() {
    let f = fx();
    let mut b = Browser::new(&f.s);
    let code = param(allow(&mut b, &authorize_url(&f.app.0, CB, "")).location(), "code").unwrap();
    // Not granted until the app exchanged its code: consent again.
    assert_eq!(b.get(&authorize_url(&f.app.0, CB, "")).status, 200);
    assert_eq!(exchange(&f.s, &f.app, &code, CB, None).status, 200);
    let again = b.get(&authorize_url(&f.app.0, CB, ""));
    assert_eq!(again.status, 302, "{}", again.body);
    assert!(again.location().starts_with(&format!("{CB}?code=")));
    let forced = b.get(&authorize_url(&f.app.0, CB, "").replace("/oauth/authenticate", "/oauth/authorize"));
    assert_eq!(forced.status, 200);
    assert!(forced.body.contains("action=\"/oauth/authorize\""));
    // More scopes than granted: consent again.
    let more =
        b.get(&authorize_url(&f.app.0, CB, "").replace("stream,write_post", "stream,write_post,messages"));
    assert_eq!(more.status, 200);
    assert!(more.body.contains("(messages)"), "{}", more.body);
    // Fewer scopes than granted, without consent: the app keeps what the
    // user granted (a link elsewhere cannot narrow it).
    let token = exchange(&f.s, &f.app, &param(again.location(), "code").unwrap(), CB, None).body
        ["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let fewer = b.get(&authorize_url(&f.app.0, CB, "").replace("stream,write_post", "basic"));
    assert_eq!(fewer.status, 302, "{}", fewer.body);
    let r = exchange(&f.s, &f.app, &param(fewer.location(), "code").unwrap(), CB, None);
    assert_eq!(r.body["token"]["scopes"], json!(["basic", "stream", "write_post"]), "{}", r.body);
    assert_eq!(f.s.get("/v1/token", Some(&token)).header("x-oauth-scopes"), Some("basic,stream,write_post"));
}

#[test]
fn revoking_on_the_apps_page_ends_the_authorization_everywhere() {
    let f = fx();
    let s = &f.s;
    let other = s.add_app("Chat");
    let bob = s.user_token(&other, "bob", "bob-pw", "messages,write_post");
    let mut b = Browser::new(s);
    let url = format!(
        "/oauth/authenticate?client_id={}&redirect_uri={}&scope=messages&response_type=code",
        f.app.0,
        enc(CB)
    );
    let code = param(allow(&mut b, &url).location(), "code").unwrap();
    let alice = exchange(s, &f.app, &code, CB, None).body["access_token"].as_str().unwrap().to_string();
    // A code issued but not yet exchanged when the user revokes.
    let pending = param(b.get(&url).location(), "code").unwrap();
    let app_token = s.app_token(&f.app);
    s.create_stream(&app_token, "k", &["token", "message", "post"]);
    let (mut ws, _) = s.ws(&format!("access_token={app_token}&key=k"));

    let apps = b.get("/oauth/apps");
    assert!(
        apps.body.contains("<h2>Notes</h2>")
            && apps.body.contains("Read and send your private and channel messages"),
        "{}",
        apps.body
    );
    let done = b.submit(&apps, "/oauth/apps/revoke", &[]);
    assert_eq!((done.status, done.location()), (303, "/oauth/apps?revoked=1"));
    let after = b.get(done.location());
    assert!(
        after.body.contains("The app was revoked") && after.body.contains("You have not authorized any app"),
        "{}",
        after.body
    );

    let ev = ws.next_event();
    assert_eq!(
        (ev["meta"]["type"].as_str(), ev["meta"]["is_deleted"].as_bool()),
        (Some("token"), Some(true)),
        "{ev}"
    );
    assert_eq!(ev["data"]["user"]["username"], "alice");
    assert_error(&s.get("/v1/users/me", Some(&alice)), 401, "Invalid");
    assert_error(&exchange(s, &f.app, &pending, CB, None), 400, "unknown code");
    // Alice's PMs no longer reach the app; public posts still do.
    let pm = s.json(
        "POST",
        "/v1/channels/pm/messages",
        Some(&bob),
        json!({"text": "secret", "destinations": ["@alice"]}),
    );
    assert_eq!(pm.status, 201, "{}", pm.body);
    let post = s.json("POST", "/v1/posts", Some(&bob), json!({"text": "marker"}));
    assert_eq!(post.status, 201);
    let next: Value = ws.next_event();
    assert_eq!(
        (next["meta"]["type"].as_str(), next["data"][0]["content"]["text"].as_str()),
        (Some("post"), Some("marker")),
        "{next}"
    );
    // Revoking what is not authorized (any more) is a 404 page.
    let p = b.submit(&apps, "/oauth/apps/revoke", &[]);
    assert_eq!(p.status, 404);
}

#[test]
fn the_password_grant_is_for_apps_that_opted_in() {
    let f = fx();
    // Right or wrong password, the same refusal: no way to test passwords.
    for password in ["alice-pw", "wrong"] {
        let r = f.s.form(
            "/v1/oauth/access_token",
            &[
                ("grant_type", "password"),
                ("client_id", &f.app.0),
                ("password_grant_secret", &f.app.1),
                ("username", "alice"),
                ("password", password),
            ],
        );
        assert_error(&r, 403, "may not use the password grant");
    }
}

#[test]
fn sign_in_attempts_are_limited_per_account() {
    let f = fx_with(&["--login-failures", "2"]);
    let mut b = Browser::new(&f.s);
    let mut page = b.get("/oauth/signin");
    for _ in 0..2 {
        page = b.sign_in(&page, "alice", "wrong");
        assert_eq!(page.status, 401);
        assert!(page.body.contains("Wrong username or password."), "{}", page.body);
    }
    let locked = b.sign_in(&page, "alice", "alice-pw");
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.header("retry-after").is_some());
    assert!(locked.body.contains("Too many failed sign-ins"), "{}", locked.body);
    assert!(b.get("/oauth/apps").body.contains("action=\"/oauth/signin\""), "still signed out");
}

#[test]
fn open_sign_up_is_off_unless_asked_for() {
    let f = fx();
    let mut b = Browser::new(&f.s);
    assert_eq!(b.get("/oauth/register").status, 404);
    assert!(!b.get("/oauth/signin").body.contains("/oauth/register"));

    let f = fx_with(&["--open-registration"]);
    let mut b = Browser::new(&f.s);
    let page = b.get("/oauth/register");
    assert_eq!(page.status, 200);
    let bad = b.submit(&page, "/oauth/register", &[("username", "no spaces"), ("password", "long enough")]);
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("username: 1 to 20 characters"), "{}", bad.body);
    let taken = b.submit(&page, "/oauth/register", &[("username", "alice"), ("password", "long enough")]);
    assert_eq!(taken.status, 409);
    let short = b.submit(&page, "/oauth/register", &[("username", "carol"), ("password", "short")]);
    assert_eq!(short.status, 400);
    let ok = b.submit(&page, "/oauth/register", &[("username", "carol"), ("password", "long enough")]);
    assert_eq!((ok.status, ok.location()), (303, "/oauth/apps"));
    let apps = b.get("/oauth/apps");
    assert!(
        apps.body.contains("Sign out @carol") && apps.body.contains("You have not authorized any app"),
        "{}",
        apps.body
    );
    // Signing out ends the session.
    let out = b.submit(&apps, "/oauth/signout", &[]);
    assert_eq!((out.status, out.location()), (303, "/oauth/signin"));
    assert!(b.get("/oauth/apps").body.contains("action=\"/oauth/signin\""));
}
