//! The OAuth authorization flow (RFC 6749 §4.1 and §4.2, as pnut documents
//! it): `GET /oauth/authenticate|authorize` check the request, sign the user
//! in and show consent; `POST /oauth/authorize` takes the decision and
//! sends the browser back to the app with a code, a token or an error.
//! A request whose app or redirect URI is wrong is never sent anywhere: it
//! is shown as an error page (RFC 6749 §4.1.2.1).

use super::redirect::{self, OOB};
use super::{field, form, page, pages, redirect as go, scope_line, Browser};
use crate::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::http::{Req, Resp};
use crate::storage::{apps, oauth, users, App};

/// Longest `state` an app may send back to itself.
const MAX_STATE: usize = 1024;

/// A checked authorization request.
struct AuthRequest {
    app: App,
    redirect_uri: String,
    scopes: Vec<String>,
    /// `response_type=token`: the implicit flow.
    token_flow: bool,
    state: Option<String>,
    /// PKCE S256 code challenge.
    challenge: Option<String>,
}

impl AuthRequest {
    /// The request as hidden form fields, for the next page.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("client_id", self.app.client_id.clone()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", self.scopes.join(",")),
            ("response_type", if self.token_flow { "token" } else { "code" }.to_string()),
        ];
        if let Some(s) = &self.state {
            f.push(("state", s.clone()));
        }
        if let Some(c) = &self.challenge {
            f.push(("code_challenge", c.clone()));
            f.push(("code_challenge_method", "S256".into()));
        }
        f
    }

    /// Sends the browser back to the app with `pairs` (and `state`).
    fn back(&self, status: u16, pairs: &[(&str, &str)]) -> Resp {
        let mut all = pairs.to_vec();
        if let Some(s) = &self.state {
            all.push(("state", s));
        }
        go(status, &redirect::with_params(&self.redirect_uri, &all, self.token_flow))
    }

    /// An OAuth error for the app: on its redirect URI, or on a page for
    /// the out-of-band URI.
    fn error(&self, status: u16, code: &str, message: &str) -> Resp {
        if self.redirect_uri == OOB {
            return page(400, pages::problem("The app's request was refused", message));
        }
        self.back(status, &[("error", code), ("error_message", message), ("error_description", message)])
    }
}

/// Checks a request's parameters (from the query or the consent form).
/// `Err(page)` when the request cannot go on; the page is a redirect to
/// the app only once its redirect URI is known to be registered.
fn check(ctx: &Ctx, get: impl Fn(&str) -> Option<String>, status: u16) -> Result<AuthRequest, Resp> {
    let refuse = |m: String| super::problem(&ApiError::bad_request(m));
    let client_id =
        get("client_id").filter(|s| !s.is_empty()).ok_or_else(|| refuse("client_id: required".into()))?;
    let found = ctx.db.read(|c| match apps::app_by_client_id(c, &client_id)? {
        Some(app) => Ok(Some((oauth::redirect_uris(c, app.id)?, app))),
        None => Ok(None),
    });
    let (registered, app) = match found {
        Ok(Some(x)) => x,
        Ok(None) => return Err(refuse(format!("client_id: no app {client_id}"))),
        Err(e) => return Err(super::problem(&e)),
    };
    if registered.is_empty() {
        return Err(refuse(format!(
            "{} has registered no redirect URI, so it cannot use this flow",
            app.name
        )));
    }
    let redirect_uri = match get("redirect_uri").filter(|s| !s.is_empty()) {
        Some(u) => u,
        None if registered.len() == 1 => registered[0].clone(),
        None => return Err(refuse("redirect_uri: required".into())),
    };
    if redirect_uri.len() > redirect::MAX_LEN
        || !registered.iter().any(|r| redirect::matches(r, &redirect_uri))
    {
        return Err(refuse(format!("redirect_uri: not one that {} registered", app.name)));
    }
    let mut ar = AuthRequest {
        app,
        redirect_uri,
        scopes: Vec::new(),
        token_flow: false,
        state: get("state").filter(|s| !s.is_empty()),
        challenge: None,
    };
    // From here on the app hears about what is wrong.
    match get("response_type").as_deref() {
        Some("code") => {}
        Some("token") => ar.token_flow = true,
        _ => {
            return Err(ar.error(status, "unsupported_response_type", "response_type: use code or token"));
        }
    }
    if ar.state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        ar.state = None;
        return Err(ar.error(status, "invalid_request", "state: longer than 1024 bytes"));
    }
    match crate::auth::parse_scopes(&get("scope").unwrap_or_default()) {
        Ok(s) => ar.scopes = s,
        Err(e) => return Err(ar.error(status, "invalid_scope", &e.message)),
    }
    let method = get("code_challenge_method");
    match (get("code_challenge").filter(|s| !s.is_empty()), method.as_deref()) {
        (None, _) => {}
        (Some(c), Some("S256")) => {
            let ok = (43..=128).contains(&c.len())
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(ar.error(
                    status,
                    "invalid_request",
                    "code_challenge: not a base64url S256 challenge",
                ));
            }
            ar.challenge = Some(c);
        }
        // `plain`, or none named (which RFC 7636 reads as plain).
        (Some(_), _) => {
            return Err(ar.error(status, "invalid_request", "code_challenge_method: only S256 is accepted"));
        }
    }
    Ok(ar)
}

/// `GET /oauth/authenticate` (`force_consent` false: a user who already
/// granted every scope asked for is sent straight back) and
/// `GET /oauth/authorize` (always asks).
pub fn start(ctx: &Ctx, req: &Req, force_consent: bool) -> ApiResult<Resp> {
    let ar = match check(ctx, |k| req.param(k).map(str::to_string), 302) {
        Ok(ar) => ar,
        Err(page) => return Ok(page),
    };
    let b = Browser::of(ctx, req)?;
    let Some(user) = &b.user else {
        let here = match req.query.is_empty() {
            true => req.path.clone(),
            false => format!("{}?{}", req.path, encode_query(&req.query)),
        };
        let fields = [("return", here)];
        let p = pages::sign_in(&b.csrf(), &fields, None, Some(&ar.app.name), ctx.web.open_registration);
        return Ok(b.finish(ctx, page(200, p)));
    };
    if !force_consent {
        let granted = ctx.db.read(|c| Ok(apps::scopes_granted(c, ar.app.id, user.id)?))?;
        if let Some(g) = granted.filter(|g| ar.scopes.iter().all(|s| g.contains(s))) {
            // Without consent nothing changes: the app gets what the user
            // already granted, never fewer scopes (a link elsewhere must
            // not be able to narrow an app's authorization).
            let ar = AuthRequest { scopes: g, ..ar };
            return issue(ctx, &b, &ar, user, 302);
        }
    }
    let scopes: Vec<pages::ScopeLine> = ar.scopes.iter().map(|s| scope_line(s)).collect();
    let host = if ar.redirect_uri == OOB {
        "a page here that shows the result".to_string()
    } else {
        ar.redirect_uri
            .split_once("://")
            .map_or("", |(_, r)| r)
            .split(['/', '?'])
            .next()
            .unwrap_or("")
            .to_string()
    };
    let fields = ar.fields();
    let csrf = b.csrf();
    let p = pages::consent(&pages::Consent {
        username: &user.username,
        csrf: &csrf,
        app_name: &ar.app.name,
        app_url: &ar.app.url,
        redirect_host: &host,
        scopes: &scopes,
        fields: &fields,
    });
    Ok(page(200, p))
}

/// `POST /oauth/authorize`: the consent form's Allow or Deny.
pub fn decide(ctx: &Ctx, req: &Req) -> ApiResult<Resp> {
    let f = form(req)?;
    let b = Browser::of(ctx, req)?;
    b.check_csrf(&f)?;
    let Some(user) = &b.user else {
        return Err(ApiError::forbidden("You are signed out: start again from the app"));
    };
    let ar = match check(ctx, |k| field(&f, k).map(str::to_string), 303) {
        Ok(ar) => ar,
        Err(page) => return Ok(page),
    };
    match field(&f, "decision") {
        Some("allow") => issue(ctx, &b, &ar, user, 303),
        Some("deny") => Ok(ar.error(303, "access_denied", "resource owner denied your app access")),
        _ => Err(ApiError::bad_request("decision: allow or deny")),
    }
}

/// Grants the request: a code (or, in the implicit flow, a token) back to
/// the app, or on a page for the out-of-band URI.
fn issue(ctx: &Ctx, b: &Browser, ar: &AuthRequest, user: &users::UserRow, status: u16) -> ApiResult<Resp> {
    let (what, value) = if ar.token_flow {
        let g = ctx.db.write(|tx| crate::grants::grant(tx, &ctx.api_url, &ar.app, user.id, &ar.scopes))?;
        ("access_token", g.token)
    } else {
        let code = oauth::NewCode {
            app_id: ar.app.id,
            user_id: user.id,
            scopes: &ar.scopes,
            redirect_uri: &ar.redirect_uri,
            challenge: ar.challenge.as_deref(),
        };
        ("code", ctx.db.write(|tx| Ok(oauth::create_code(tx, &code, ctx.web.code_secs)?))?)
    };
    if ar.redirect_uri == OOB {
        let noun = if ar.token_flow { "access token" } else { "authorization code" };
        return Ok(page(200, pages::out_of_band(&user.username, &b.csrf(), &ar.app.name, noun, &value)));
    }
    Ok(ar.back(status, &[(what, &value)]))
}

/// The query again, encoded, to come back to after signing in.
fn encode_query(q: &[(String, String)]) -> String {
    let parts: Vec<String> =
        q.iter().map(|(k, v)| format!("{}={}", redirect::encode(k), redirect::encode(v))).collect();
    parts.join("&")
}
