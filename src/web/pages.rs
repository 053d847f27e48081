//! The HTML of the web pages, as maud templates: every value is escaped
//! by the template, no page carries a script, and every form has its CSRF
//! token. What the pages say and hold; the handlers decide which one.

use maud::{html, Markup, DOCTYPE};

/// The hidden fields an OAuth request travels in between pages.
pub type Hidden<'a> = &'a [(&'a str, String)];

fn layout(title: &str, signed_in: Option<(&str, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · spout" }
                link rel="stylesheet" href="/oauth/style.css";
            }
            body {
                header {
                    span.brand { "spout" }
                    @if let Some((username, csrf)) = signed_in {
                        nav {
                            a href="/oauth/apps" { "Your authorized apps" }
                            form.inline method="post" action="/oauth/signout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out @" (username) }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn hidden(fields: Hidden) -> Markup {
    html! {
        @for (k, v) in fields {
            input type="hidden" name=(k) value=(v);
        }
    }
}

/// The sign-in form; `fields` carry where to go next.
pub fn sign_in(
    csrf: &str,
    fields: Hidden,
    error: Option<&str>,
    app: Option<&str>,
    can_register: bool,
) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(app) = app {
                p { "Sign in to let " strong { (app) } " use your account." }
            }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/oauth/signin" {
                input type="hidden" name="csrf" value=(csrf);
                (hidden(fields))
                label for="username" { "Username" }
                input #username type="text" name="username" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            @if can_register {
                p { "No account yet? " a href="/oauth/register" { "Create one" } "." }
            }
        },
    )
}

/// Open sign-up (`--open-registration`).
pub fn register(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Create an account",
        None,
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/oauth/register" {
                input type="hidden" name="csrf" value=(csrf);
                label for="username" { "Username" }
                input #username type="text" name="username" autocomplete="username" maxlength="20"
                    pattern="[A-Za-z0-9_]{1,20}" required autofocus;
                p.hint { "1 to 20 characters: letters, digits and _." }
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="new-password" minlength="8" required;
                button type="submit" { "Create account" }
            }
        },
    )
}

/// One scope as the consent page lists it.
pub struct ScopeLine {
    pub name: String,
    pub words: String,
}

pub struct Consent<'a> {
    pub username: &'a str,
    pub csrf: &'a str,
    pub app_name: &'a str,
    pub app_url: &'a str,
    pub redirect_host: &'a str,
    pub scopes: &'a [ScopeLine],
    pub fields: Hidden<'a>,
}

pub fn consent(c: &Consent) -> Markup {
    layout(
        "Authorize an app",
        Some((c.username, c.csrf)),
        html! {
            p {
                strong { (c.app_name) }
                @if !c.app_url.is_empty() { " (" (c.app_url) ")" }
                " asks to use your account, @" (c.username) ". It will be able to:"
            }
            ul.scopes {
                @for s in c.scopes {
                    li { (s.words) " " span.scope { "(" (s.name) ")" } }
                }
            }
            p.hint { "You will be sent back to " strong { (c.redirect_host) } ". You can revoke this at any time on "
                a href="/oauth/apps" { "your authorized apps" } " page." }
            form method="post" action="/oauth/authorize" {
                input type="hidden" name="csrf" value=(c.csrf);
                (hidden(c.fields))
                button type="submit" name="decision" value="allow" { "Allow" }
                " "
                button.secondary type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
}

/// The out-of-band result: the code or the token for the user to paste.
pub fn out_of_band(username: &str, csrf: &str, app_name: &str, what: &str, value: &str) -> Markup {
    layout(
        "Authorized",
        Some((username, csrf)),
        html! {
            p { "Copy this " (what) " into " strong { (app_name) } ":" }
            p { output #result { code { (value) } } }
            p.hint { "It is shown once. Do not share it with anyone else." }
        },
    )
}

/// One row of the authorized apps page.
pub struct AppRow {
    pub client_id: String,
    pub name: String,
    pub url: String,
    pub scopes: Vec<ScopeLine>,
    pub since: String,
}

pub fn apps(username: &str, csrf: &str, rows: &[AppRow], notice: Option<&str>) -> Markup {
    layout(
        "Your authorized apps",
        Some((username, csrf)),
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if rows.is_empty() {
                p { "You have not authorized any app." }
            }
            @for r in rows {
                section.app {
                    h2 { (r.name) }
                    @if !r.url.is_empty() { p.hint { (r.url) } }
                    p.hint { "Authorized " (r.since) }
                    ul.scopes {
                        @for s in &r.scopes { li { (s.words) " " span.scope { "(" (s.name) ")" } } }
                    }
                    form method="post" action="/oauth/apps/revoke" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="client_id" value=(r.client_id);
                        button.danger type="submit" aria-label={ "Revoke " (r.name) } { "Revoke" }
                    }
                }
            }
        },
    )
}

/// A request that cannot go on (and may not be sent back to the app).
pub fn problem(title: &str, message: &str) -> Markup {
    layout(title, None, html! { p.error role="alert" { (message) } })
}

/// The one stylesheet (served from `/oauth/style.css`: the pages' CSP
/// allows no inline style or script).
pub const STYLE: &str = "\
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4}\
header{display:flex;justify-content:space-between;align-items:center;padding:.6em 1em;background:#24343f;color:#fff}\
header a{color:#fff;margin-right:1em}.brand{font-weight:bold}\
main{max-width:34em;margin:2em auto;padding:1.5em;background:#fff;border-radius:6px}\
label{display:block;margin-top:1em;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5em;font-size:1em}\
button{margin-top:1em;padding:.5em 1.2em;font-size:1em;border:0;border-radius:4px;background:#1f6f4a;color:#fff;cursor:pointer}\
button.secondary{background:#666}button.danger{background:#a12a2a}\
form.inline{display:inline}form.inline button{margin:0;background:#3d5566}\
.error{color:#a12a2a;font-weight:600}.notice{color:#1f6f4a}.hint{color:#555;font-size:.9em}\
.scope{color:#777;font-size:.85em}code{word-break:break-all;background:#eee;padding:.2em .4em}\
section.app{border-top:1px solid #ddd;padding-top:.5em}";
