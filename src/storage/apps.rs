//! Apps (clients), authorizations and tokens.

use super::Cached;
use crate::util::{ct_eq, new_secret, now, sha256};
use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub id: i64,
    pub client_id: String,
    pub name: String,
    pub url: String,
    pub created_at: i64,
    /// May use the password grant (`spout admin app add --password-grant`).
    pub password_grant: bool,
}

/// Who is calling: the token, its app, and for user tokens the user and
/// the scopes they granted.
#[derive(Clone, Debug)]
pub struct Principal {
    pub token_id: i64,
    pub app: App,
    pub user_id: Option<i64>,
    pub scopes: Vec<String>,
}

/// One live authorization: an app, a user and the scopes granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRow {
    pub app_id: i64,
    pub user_id: i64,
    pub scopes: Vec<String>,
}

const APP_COLS: &str = "a.id, a.client_id, a.name, a.url, a.created_at, a.password_grant";

fn app_from(r: &Row, at: usize) -> rusqlite::Result<App> {
    Ok(App {
        id: r.get(at)?,
        client_id: r.get(at + 1)?,
        name: r.get(at + 2)?,
        url: r.get(at + 3)?,
        created_at: r.get(at + 4)?,
        password_grant: r.get(at + 5)?,
    })
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect()
}

/// Creates an app; returns it with its secret (shown once, stored hashed).
pub fn create_app(c: &Connection, name: &str, password_grant: bool) -> rusqlite::Result<(App, String)> {
    // 24 random bytes → 32 URL-safe characters, the shape of pnut client ids.
    let client_id = crate::util::base64url(&crate::util::random_bytes(24));
    let secret = new_secret();
    c.qexec(
        "INSERT INTO apps (client_id, secret_hash, name, created_at, password_grant) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![client_id, sha256(&secret), name, now(), password_grant],
    )?;
    let app = app_by_id(c, c.last_insert_rowid())?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok((app, secret))
}

pub fn set_url(c: &Connection, app_id: i64, url: &str) -> rusqlite::Result<()> {
    c.qexec("UPDATE apps SET url = ?1 WHERE id = ?2", params![url, app_id])?;
    Ok(())
}

pub fn app_by_id(c: &Connection, id: i64) -> rusqlite::Result<Option<App>> {
    c.qrow(&format!("SELECT {APP_COLS} FROM apps a WHERE a.id = ?1"), [id], |r| app_from(r, 0)).optional()
}

pub fn list_apps(c: &Connection) -> rusqlite::Result<Vec<App>> {
    let mut st = c.prepare_cached(&format!("SELECT {APP_COLS} FROM apps a ORDER BY a.id"))?;
    let rows = st.query_map([], |r| app_from(r, 0))?;
    rows.collect()
}

/// The app with this client id if `secret` is its secret. `None` covers both
/// "no such app" and "wrong secret".
pub fn app_with_secret(c: &Connection, client_id: &str, secret: &str) -> rusqlite::Result<Option<App>> {
    let row = c
        .qrow(
            &format!("SELECT {APP_COLS}, a.secret_hash FROM apps a WHERE a.client_id = ?1"),
            [client_id],
            |r| Ok((app_from(r, 0)?, r.get::<_, Vec<u8>>(6)?)),
        )
        .optional()?;
    let given = sha256(secret);
    Ok(row.and_then(|(app, hash)| ct_eq(&hash, &given).then_some(app)))
}

pub fn app_by_client_id(c: &Connection, client_id: &str) -> rusqlite::Result<Option<App>> {
    c.qrow(&format!("SELECT {APP_COLS} FROM apps a WHERE a.client_id = ?1"), [client_id], |r| app_from(r, 0))
        .optional()
}

/// Mints an app token; returns (token id, token).
pub fn create_app_token(c: &Connection, app_id: i64) -> rusqlite::Result<(i64, String)> {
    let token = new_secret();
    c.qexec(
        "INSERT INTO tokens (hash, app_id, authorization_id, created_at) VALUES (?1, ?2, NULL, ?3)",
        params![sha256(&token), app_id, now()],
    )?;
    Ok((c.last_insert_rowid(), token))
}

/// The outcome of a user grant.
pub struct Grant {
    pub token_id: i64,
    pub token: String,
    /// The authorization is new or its scopes changed (a `token` event).
    pub changed: bool,
    /// Older tokens of the authorization deleted to keep it under
    /// `TOKENS_PER_AUTHORIZATION` (their streams must be told).
    pub dropped: Vec<i64>,
}

/// Tokens one user may hold for one app; a new one past this ends the
/// oldest (every sign-in mints one, so a loop of sign-ins cannot grow the
/// table).
pub const TOKENS_PER_AUTHORIZATION: i64 = 50;

/// Authorizes `user_id` for `app_id` with `scopes` (replacing earlier
/// scopes) and mints a user token.
pub fn grant(c: &Connection, app_id: i64, user_id: i64, scopes: &[String]) -> rusqlite::Result<Grant> {
    let joined = scopes.join(",");
    let existing: Option<(i64, String)> = c
        .qrow(
            "SELECT id, scopes FROM authorizations WHERE app_id = ?1 AND user_id = ?2",
            params![app_id, user_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (auth_id, changed) = match existing {
        Some((id, old)) => {
            if old != joined {
                c.qexec("UPDATE authorizations SET scopes = ?1 WHERE id = ?2", params![joined, id])?;
            }
            (id, old != joined)
        }
        None => {
            c.qexec(
                "INSERT INTO authorizations (app_id, user_id, scopes, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![app_id, user_id, joined, now()],
            )?;
            (c.last_insert_rowid(), true)
        }
    };
    let token = new_secret();
    c.qexec(
        "INSERT INTO tokens (hash, app_id, authorization_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![sha256(&token), app_id, auth_id, now()],
    )?;
    let token_id = c.last_insert_rowid();
    let mut st = c.prepare_cached(
        "SELECT id FROM tokens WHERE authorization_id = ?1 ORDER BY id DESC LIMIT -1 OFFSET ?2",
    )?;
    let dropped = st
        .query_map(params![auth_id, TOKENS_PER_AUTHORIZATION], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    for id in &dropped {
        c.qexec("DELETE FROM tokens WHERE id = ?1", [id])?;
    }
    Ok(Grant { token_id, token, changed, dropped })
}

/// Looks a bearer token up by its hash (`util::sha256`).
pub fn principal_by_hash(c: &Connection, hash: &[u8]) -> rusqlite::Result<Option<Principal>> {
    let row = c
        .qrow(
            &format!(
                "SELECT t.id, t.hash, au.user_id, au.scopes, {APP_COLS}
                 FROM tokens t JOIN apps a ON a.id = t.app_id
                 LEFT JOIN authorizations au ON au.id = t.authorization_id
                 WHERE t.hash = ?1"
            ),
            [hash],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    app_from(r, 4)?,
                ))
            },
        )
        .optional()?;
    Ok(row.and_then(|(token_id, stored, user_id, scopes, app)| {
        ct_eq(&stored, hash).then(|| Principal {
            token_id,
            app,
            user_id,
            scopes: scopes.as_deref().map(split_scopes).unwrap_or_default(),
        })
    }))
}

/// Deletes a token. For a user token whose authorization has no other token
/// left, the authorization ends too; returns whether it did.
pub fn revoke(c: &Connection, token_id: i64) -> rusqlite::Result<bool> {
    let auth: Option<i64> = c
        .qrow("SELECT authorization_id FROM tokens WHERE id = ?1", [token_id], |r| r.get(0))
        .optional()?
        .flatten();
    c.qexec("DELETE FROM tokens WHERE id = ?1", [token_id])?;
    let Some(auth) = auth else { return Ok(false) };
    let left: i64 =
        c.qrow("SELECT COUNT(*) FROM tokens WHERE authorization_id = ?1", [auth], |r| r.get(0))?;
    if left == 0 {
        c.qexec("DELETE FROM authorizations WHERE id = ?1", [auth])?;
        return Ok(true);
    }
    Ok(false)
}

/// Users who authorized `app_id` (ascending id) with their scopes.
pub fn authorizations_of_app(c: &Connection, app_id: i64) -> rusqlite::Result<Vec<AuthRow>> {
    let mut st = c.prepare_cached(
        "SELECT app_id, user_id, scopes FROM authorizations WHERE app_id = ?1 ORDER BY user_id",
    )?;
    let rows = st.query_map([app_id], |r| {
        Ok(AuthRow { app_id: r.get(0)?, user_id: r.get(1)?, scopes: split_scopes(&r.get::<_, String>(2)?) })
    })?;
    rows.collect()
}

/// Every live authorization (the hub loads these at start).
pub fn all_authorizations(c: &Connection) -> rusqlite::Result<Vec<AuthRow>> {
    let mut st = c.prepare_cached("SELECT app_id, user_id, scopes FROM authorizations")?;
    let rows = st.query_map([], |r| {
        Ok(AuthRow { app_id: r.get(0)?, user_id: r.get(1)?, scopes: split_scopes(&r.get::<_, String>(2)?) })
    })?;
    rows.collect()
}

/// Who authorized `app_id`, with their scopes.
pub fn grants_of_app(
    c: &Connection,
    app_id: i64,
) -> rusqlite::Result<std::collections::HashMap<i64, Vec<String>>> {
    Ok(authorizations_of_app(c, app_id)?.into_iter().map(|a| (a.user_id, a.scopes)).collect())
}

/// The scopes `user_id` granted `app_id`, if they authorized it.
pub fn scopes_granted(c: &Connection, app_id: i64, user_id: i64) -> rusqlite::Result<Option<Vec<String>>> {
    c.qrow(
        "SELECT scopes FROM authorizations WHERE app_id = ?1 AND user_id = ?2",
        params![app_id, user_id],
        |r| Ok(split_scopes(&r.get::<_, String>(0)?)),
    )
    .optional()
}

/// One app a user authorized, for the "your authorized apps" page.
pub struct UserAuth {
    pub app: App,
    pub scopes: Vec<String>,
    pub created_at: i64,
}

/// The apps `user_id` authorized, newest first.
pub fn authorizations_of_user(c: &Connection, user_id: i64) -> rusqlite::Result<Vec<UserAuth>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {APP_COLS}, au.scopes, au.created_at FROM authorizations au JOIN apps a ON a.id = au.app_id
         WHERE au.user_id = ?1 ORDER BY au.created_at DESC, au.id DESC"
    ))?;
    let rows = st.query_map([user_id], |r| {
        Ok(UserAuth {
            app: app_from(r, 0)?,
            scopes: split_scopes(&r.get::<_, String>(6)?),
            created_at: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Ends `user_id`'s authorization of `app_id` with every token it has;
/// returns the ids of the tokens deleted, `None` when there was none.
pub fn revoke_authorization(c: &Connection, app_id: i64, user_id: i64) -> rusqlite::Result<Option<Vec<i64>>> {
    let auth: Option<i64> = c
        .qrow(
            "SELECT id FROM authorizations WHERE app_id = ?1 AND user_id = ?2",
            params![app_id, user_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(auth) = auth else { return Ok(None) };
    let mut st = c.prepare_cached("SELECT id FROM tokens WHERE authorization_id = ?1")?;
    let ids = st.query_map([auth], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
    c.qexec("DELETE FROM tokens WHERE authorization_id = ?1", [auth])?;
    c.qexec("DELETE FROM authorizations WHERE id = ?1", [auth])?;
    // Codes issued but not yet exchanged would authorize the app again.
    c.qexec("DELETE FROM oauth_codes WHERE app_id = ?1 AND user_id = ?2", params![app_id, user_id])?;
    Ok(Some(ids))
}

pub fn token_exists(c: &Connection, token_id: i64) -> rusqlite::Result<bool> {
    c.qrow("SELECT EXISTS (SELECT 1 FROM tokens WHERE id = ?1)", [token_id], |r| r.get(0))
}

pub fn set_owner(c: &Connection, app_id: i64, owner: Option<i64>) -> rusqlite::Result<()> {
    c.qexec("UPDATE apps SET owner_id = ?1 WHERE id = ?2", params![owner, app_id])?;
    Ok(())
}

/// An app's owner and how many live posts it made (the client object).
pub fn client_facts(c: &Connection, app_id: i64) -> rusqlite::Result<(Option<i64>, i64)> {
    c.qrow(
        "SELECT owner_id, (SELECT COUNT(*) FROM posts WHERE app_id = ?1 AND is_deleted = 0) FROM apps WHERE id = ?1",
        [app_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The apps a user owns, oldest first.
pub fn apps_of_owner(c: &Connection, owner: i64) -> rusqlite::Result<Vec<App>> {
    let mut st =
        c.prepare_cached(&format!("SELECT {APP_COLS} FROM apps a WHERE a.owner_id = ?1 ORDER BY a.id"))?;
    let rows = st.query_map([owner], |r| app_from(r, 0))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authorization_keeps_its_newest_tokens_only() {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut c).unwrap();
        c.execute("INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'a', '', 0)", [])
            .unwrap();
        let (app, _) = create_app(&c, "A", false).unwrap();
        let scopes = vec!["basic".to_string()];
        let first = grant(&c, app.id, 1, &scopes).unwrap();
        let mut last = None;
        for _ in 0..TOKENS_PER_AUTHORIZATION {
            last = Some(grant(&c, app.id, 1, &scopes).unwrap());
        }
        let last = last.unwrap();
        assert_eq!(last.dropped, [first.token_id], "the oldest token ends");
        assert!(!token_exists(&c, first.token_id).unwrap());
        assert!(token_exists(&c, last.token_id).unwrap());
        let n: i64 = c.query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0)).unwrap();
        assert_eq!(n, TOKENS_PER_AUTHORIZATION);
    }
}
