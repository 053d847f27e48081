//! Query parameters every list and lookup shares, parsed once: the page
//! window (`since_id`, `before_id`, `count`), its `meta`, and `ids=` lists.
//! One copy, so every endpoint answers the same input the same way.

use crate::error::{ApiError, ApiResult};
use crate::http::Req;
use crate::storage::Page;
use serde_json::{json, Map, Value};

/// A positive id, naming `field` when it is not one.
pub fn parse_id(field: &str, s: &str) -> ApiResult<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request(format!("{field}: '{s}' is not a valid id")))
}

/// A JSON boolean, or a form/query `1`/`0`/`true`/`false` (a string or a
/// number), naming `field` on anything else; absent or null is `None`.
pub fn bool_field(m: &Map<String, Value>, field: &str) -> ApiResult<Option<bool>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "1" || s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "0" || s == "false" => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_i64() == Some(1) || n.as_i64() == Some(0) => {
            Ok(Some(n.as_i64() == Some(1)))
        }
        Some(_) => Err(ApiError::bad_request(format!("{field}: must be a boolean (true/false or 1/0)"))),
    }
}

/// pnut's `entities.parse_links` and `entities.parse_markdown_links` from
/// a body, nested (`{"entities": {"parse_links": false}}`) or flat
/// (`entities.parse_links=0`); both default to true.
pub fn text_opts(m: &Map<String, Value>) -> ApiResult<crate::text::TextOpts> {
    let nested = match m.get("entities") {
        Some(Value::Object(e)) => e.clone(),
        _ => Map::new(),
    };
    let get = |name: &str| -> ApiResult<Option<bool>> {
        match bool_field(&nested, name)? {
            Some(b) => Ok(Some(b)),
            None => bool_field(m, &format!("entities.{name}")),
        }
    };
    Ok(crate::text::TextOpts {
        links: get("parse_links")?.unwrap_or(true),
        markdown_links: get("parse_markdown_links")?.unwrap_or(true),
    })
}

/// `since_id`, `before_id`, `count`. An id that is not a number is a 400
/// naming the parameter; `count` is 1..200 or -200..-1, default 20, and an
/// invalid count is ignored, as pnut does. `special` gives the meaning of a
/// non-numeric bound a list accepts (a channel's marker names), given the
/// parameter and how far an inclusive bound moves (`since_id`: -1,
/// `before_id`: +1); `Some(None)` is "no bound".
pub fn page_with(req: &Req, special: impl Fn(&str, i64) -> Option<Option<i64>>) -> ApiResult<Page> {
    let bound = |name: &str| -> ApiResult<Option<i64>> {
        let adjust = if name == "since_id" { -1 } else { 1 };
        match req.param(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => match special(v, adjust) {
                Some(b) => Ok(b),
                None => v
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| ApiError::bad_request(format!("{name}: '{v}' is not a valid id"))),
            },
        }
    };
    let count = req
        .param("count")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| (1..=200).contains(n) || (-200..=-1).contains(n))
        .unwrap_or(20);
    Ok(Page { since: bound("since_id")?, before: bound("before_id")?, count })
}

/// `page_with` for a list without special bounds.
pub fn page(req: &Req) -> ApiResult<Page> {
    page_with(req, |_, _| None)
}

/// `more`, and `min_id`, `max_id` for a page whose items have these keys
/// (newest first). An empty page has no bounds to report, so it has only
/// `more` (pnut's documents do not say; a client pages on from the bounds
/// of a page that had items).
pub fn page_meta(keys: &[i64], more: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("more".into(), json!(more));
    if let (Some(max), Some(min)) = (keys.first(), keys.last()) {
        m.insert("max_id".into(), json!(max.to_string()));
        m.insert("min_id".into(), json!(min.to_string()));
    }
    m
}

/// The comma-separated `ids=` list (at most `max`; `what` says what the
/// ids are, for the error when the parameter is missing), each item as
/// given, empty ones skipped.
pub fn ids<'a>(req: &'a Req, max: usize, what: &str) -> ApiResult<Vec<&'a str>> {
    let raw = req.param("ids").ok_or_else(|| ApiError::bad_request(format!("ids: required ({what})")))?;
    let items: Vec<&str> = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.len() > max {
        return Err(ApiError::bad_request(format!("ids: at most {max} ids")));
    }
    Ok(items)
}

/// `ids`, each a positive id.
pub fn id_list(req: &Req, max: usize, what: &str) -> ApiResult<Vec<i64>> {
    ids(req, max, what)?.into_iter().map(|s| parse_id("ids", s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &str) -> Req {
        Req::new("GET", &format!("/x?{q}"), vec![], vec![])
    }

    #[test]
    fn page_params() {
        let p = page(&req("count=-5&before_id=9&since_id=3")).unwrap();
        assert_eq!((p.since, p.before, p.count), (Some(3), Some(9), -5));
        for bad in ["0", "201", "-201", "x"] {
            assert_eq!(page(&req(&format!("count={bad}"))).unwrap().count, 20, "{bad}");
        }
        let e = page(&req("since_id=abc")).unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (400, "since_id: 'abc' is not a valid id"));
        let marker = page_with(&req("since_id=marker_inclusive"), |v, adjust| {
            (v == "marker_inclusive").then_some(Some(10 + adjust))
        })
        .unwrap();
        assert_eq!(marker.since, Some(9));
    }

    #[test]
    fn id_lists() {
        assert_eq!(id_list(&req("ids=1,%202,,3"), 3, "x").unwrap(), vec![1, 2, 3]);
        assert_eq!(id_list(&req("ids=1,2"), 1, "x").unwrap_err().message, "ids: at most 1 ids");
        assert_eq!(id_list(&req("ids=1,b"), 5, "x").unwrap_err().message, "ids: 'b' is not a valid id");
        assert_eq!(id_list(&req(""), 5, "post ids").unwrap_err().message, "ids: required (post ids)");
    }
}
