//! Budgets a client cannot inflate: the rate limit counts made-up tokens
//! against the address they come from, and password guessing meets a
//! per-account budget whatever headers the guesser sends (issue 16, points
//! 8 and 9).

use crate::common::*;

fn grant(s: &Server, app: &(String, String), user: &str, password: &str, bearer: &str) -> Resp {
    let body = format!(
        "grant_type=password&client_id={}&password_grant_secret={}&username={}&password={}",
        enc(&app.0),
        enc(&app.1),
        enc(user),
        enc(password)
    );
    s.call("POST", "/v1/oauth/access_token", Some(bearer), Some(("application/x-www-form-urlencoded", &body)))
}

/// Each request with a new made-up token used to get a budget (and a map
/// entry) of its own; now they share their address's budget, while a real
/// token keeps its own.
#[test]
fn made_up_tokens_share_their_address_budget() {
    let s = Server::start_with(&["--rate-limit", "20", "--rate-window-secs", "3600"]);
    let app = s.add_app("a");
    let t = s.app_token(&app); // one request of the address's budget
    let mut statuses = Vec::new();
    for i in 0..40 {
        let bogus = format!("made-up-{i}-{}", "x".repeat(300 + i));
        statuses.push(s.get("/v1/token", Some(&bogus)).status);
    }
    assert_eq!(statuses.iter().filter(|&&c| c == 401).count(), 19, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&c| c == 429).count(), 21, "{statuses:?}");
    let r = s.get("/v1/token", Some("yet-another-made-up-token"));
    assert_error(&r, 429, "Rate limit");
    assert!(r.header("Retry-After").is_some());
    assert_eq!(s.get("/v1/token", Some(&t)).status, 200, "a real token has its own budget");
}

/// After a handful of wrong passwords for one account, further attempts get
/// a 429 with Retry-After, even with the right password and with a new
/// random Authorization header on every request; other accounts are not
/// affected.
#[test]
fn password_guessing_is_throttled_per_account() {
    let s = Server::start_with(&["--login-failures", "3"]);
    let app = s.add_app("a");
    s.add_user("alice", "correct horse");
    s.add_user("bob", "battery staple");
    for i in 0..3 {
        let r = grant(&s, &app, "alice", &format!("guess {i}"), &format!("random-{i}"));
        assert_error(&r, 401, "Invalid credentials");
    }
    for (i, password) in ["guess 3", "correct horse"].iter().enumerate() {
        let r = grant(&s, &app, "alice", password, &format!("random-again-{i}"));
        assert_error(&r, 429, "Too many failed sign-ins");
        let wait: u64 = r.header("Retry-After").expect("Retry-After").parse().unwrap();
        assert!(wait > 0 && wait <= 300, "{wait}");
        assert_eq!(r.body["meta"]["retry_in"], wait);
    }
    assert_eq!(grant(&s, &app, "bob", "battery staple", "random-bob").status, 200);
}

/// A password grant for an app that does not exist (or with a wrong app
/// secret) is refused before the password is checked: it neither costs a
/// hash nor spends the account's budget.
#[test]
fn an_unknown_client_is_refused_before_the_password_check() {
    let s = Server::start_with(&["--login-failures", "2"]);
    let app = s.add_app("a");
    s.add_user("alice", "correct horse");
    let bogus = ("no-such-client".to_string(), "whatever".to_string());
    let wrong_secret = (app.0.clone(), "not-the-secret".to_string());
    for i in 0..5 {
        assert_error(&grant(&s, &bogus, "alice", &format!("g{i}"), "x"), 401, "Invalid credentials");
        assert_error(&grant(&s, &wrong_secret, "alice", &format!("g{i}"), "x"), 401, "Invalid credentials");
    }
    assert_eq!(grant(&s, &app, "alice", "correct horse", "x").status, 200, "no budget was spent");
}
