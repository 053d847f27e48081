//! Redirect URIs: which an app may register, whether a requested one
//! matches a registered one (pnut's rule), and building the redirect that
//! carries a code, a token or an error back to the app.

/// The out-of-band URI: the result is shown on a page instead.
pub const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";
/// Longest redirect URI accepted, registered or requested.
pub const MAX_LEN: usize = 2048;

/// Can `uri` be registered? An absolute URI without a fragment (RFC 6749
/// §3.1.2), or the out-of-band URI. Apps on a phone may use their own
/// scheme (`myapp://cb`); `javascript:`, `data:` and friends are refused.
pub fn check_registrable(uri: &str) -> Result<(), String> {
    if uri == OOB {
        return Ok(());
    }
    if uri.len() > MAX_LEN {
        return Err(format!("redirect URI: longer than {MAX_LEN} bytes"));
    }
    if uri.contains('#') {
        return Err("redirect URI: may not have a fragment (#…)".into());
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("redirect URI: may not contain spaces or control characters".into());
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(format!("redirect URI: not absolute (like https://example.com/callback) or {OOB}"));
    };
    let scheme_ok = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok
        || matches!(scheme.to_ascii_lowercase().as_str(), "javascript" | "data" | "vbscript" | "file")
    {
        return Err(format!("redirect URI: scheme {scheme} is not allowed"));
    }
    if rest.is_empty() {
        return Err("redirect URI: has no host or path".into());
    }
    Ok(())
}

/// Does the requested `given` URI match the registered `registered`? As
/// pnut describes it: a registered URI with a query must match exactly;
/// without one, the same URI with any query is allowed.
pub fn matches(registered: &str, given: &str) -> bool {
    // What follows `?` goes into a Location header: nothing that could end
    // the header or hide in it.
    if given.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    if registered == given {
        return true;
    }
    if registered.contains('?') || given.contains('#') {
        return false;
    }
    given.split_once('?').is_some_and(|(base, _)| base == registered)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `uri` with `pairs` added: to the query (`?`/`&`) or, for the implicit
/// flow, as the fragment.
pub fn with_params(uri: &str, pairs: &[(&str, &str)], fragment: bool) -> String {
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    let sep = if fragment {
        '#'
    } else if uri.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{uri}{sep}{}", joined.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pnuts_matching_rule() {
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        assert!(matches("https://a.example/cb", "https://a.example/cb?x=1"));
        assert!(!matches("https://a.example/cb?app=1", "https://a.example/cb?app=2"));
        assert!(matches("https://a.example/cb?app=1", "https://a.example/cb?app=1"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/evil"));
        assert!(!matches("https://a.example/cb", "https://a.example/cbx"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb?x#y"));
        assert!(!matches("https://a.example/cb", "https://a.example.evil/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb?x=1\r\nSet-Cookie: a=b"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb?x=1 y"));
    }

    #[test]
    fn what_may_be_registered() {
        assert!(check_registrable("https://a.example/cb").is_ok());
        assert!(check_registrable("myapp://callback").is_ok());
        assert!(check_registrable(OOB).is_ok());
        for bad in ["javascript://x", "/cb", "https://a.example/cb#f", "https://a b/", "data://x"] {
            assert!(check_registrable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn building_the_redirect() {
        assert_eq!(
            with_params("https://a/cb", &[("code", "x y"), ("state", "&")], false),
            "https://a/cb?code=x%20y&state=%26"
        );
        assert_eq!(with_params("https://a/cb?k=1", &[("code", "c")], false), "https://a/cb?k=1&code=c");
        assert_eq!(
            with_params("https://a/cb", &[("access_token", "t")], true),
            "https://a/cb#access_token=t"
        );
    }
}
