//! Our view of an HTTP request and response, independent of tiny_http:
//! query and body parsing with clear 400s, the pnut envelope on the way out.

pub mod adapter;
pub mod multipart;
pub mod params;

use crate::error::{ApiError, ApiResult};
use crate::util::parse_query;
use serde_json::{json, Map, Value};

/// A request as handlers see it. Header names are lower case.
#[derive(Debug, Default, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The peer's address, when the listener knows it.
    pub remote: Option<std::net::IpAddr>,
}

impl Req {
    /// Splits `/a/b?x=1` into path and decoded query pairs.
    pub fn new(method: &str, url: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> Req {
        let (path, q) = url.split_once('?').unwrap_or((url, ""));
        Req {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            query: parse_query(q),
            headers: headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
            body,
            remote: None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// First value of a query parameter (repeats are ignored, as pnut does).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A 0/1 query flag; anything unrecognised keeps the default.
    pub fn flag(&self, name: &str, default: bool) -> bool {
        match self.param(name) {
            Some("1") | Some("true") => true,
            Some("0") | Some("false") => false,
            _ => default,
        }
    }

    /// The media type without parameters, lower case.
    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }

    /// The body as a JSON object; the endpoint requires `application/json`.
    pub fn json_object(&self) -> ApiResult<Map<String, Value>> {
        if self.content_type().as_deref() != Some("application/json") {
            return Err(ApiError::bad_request("Content-Type must be application/json"));
        }
        match parse_json(&self.body)? {
            Value::Object(m) => Ok(m),
            _ => Err(ApiError::bad_request("request body must be a JSON object")),
        }
    }

    /// The body as key/values from JSON or a form (form values are strings;
    /// `a.b=1` is also kept flat). An empty body is an empty object.
    pub fn params(&self) -> ApiResult<Map<String, Value>> {
        if self.body.is_empty() {
            return Ok(Map::new());
        }
        match self.content_type().as_deref() {
            Some("application/json") => match parse_json(&self.body)? {
                Value::Object(m) => Ok(m),
                _ => Err(ApiError::bad_request("request body must be a JSON object")),
            },
            Some("application/x-www-form-urlencoded") => {
                let text = String::from_utf8_lossy(&self.body);
                let mut m = Map::new();
                for (k, v) in parse_query(&text) {
                    m.entry(k).or_insert(Value::String(v));
                }
                Ok(m)
            }
            _ => Err(ApiError::bad_request(
                "Content-Type must be application/json or application/x-www-form-urlencoded",
            )),
        }
    }
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
}

/// A response: status, JSON body, extra headers.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
    /// A non-JSON body (file content) and its media type; wins over `body`.
    pub raw: Option<(String, Vec<u8>)>,
}

impl Resp {
    /// `{"meta":{"code":200},"data":data}`.
    pub fn ok(data: Value) -> Resp {
        Resp::data(200, data)
    }

    pub fn data(status: u16, data: Value) -> Resp {
        let body = crate::util::obj([("meta", json!({"code": status})), ("data", data)]);
        Resp { status, body, headers: Vec::new(), raw: None }
    }

    /// With extra `meta` keys (pagination, unread counts, ...).
    pub fn with_meta(status: u16, meta: Map<String, Value>, data: Value) -> Resp {
        let mut meta = meta;
        meta.insert("code".into(), json!(status));
        let body = crate::util::obj([("meta", Value::Object(meta)), ("data", data)]);
        Resp { status, body, headers: Vec::new(), raw: None }
    }

    /// A plain JSON body without the envelope (OAuth).
    pub fn plain(status: u16, body: Value) -> Resp {
        Resp { status, body, headers: Vec::new(), raw: None }
    }

    pub fn error(e: &ApiError) -> Resp {
        let headers = e.retry_after.map(|s| ("Retry-After".to_string(), s.to_string())).into_iter().collect();
        Resp { status: e.status, body: e.envelope(), headers, raw: None }
    }

    /// Bytes as they are (file content), with their media type.
    pub fn bytes(status: u16, content_type: &str, data: Vec<u8>) -> Resp {
        Resp { status, body: Value::Null, headers: Vec::new(), raw: Some((content_type.to_string(), data)) }
    }

    pub fn header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    /// The media type and the bytes to send (a file's content is moved,
    /// not copied); JSON is indented when the client asked with
    /// X-Pretty-Json.
    pub fn into_body(self, pretty: bool) -> (String, Vec<u8>) {
        if let Some(raw) = self.raw {
            return raw;
        }
        let r = if pretty { serde_json::to_vec_pretty(&self.body) } else { serde_json::to_vec(&self.body) };
        ("application/json; charset=utf-8".to_string(), r.unwrap_or_else(|_| b"{}".to_vec()))
    }
}

/// A value from a JSON or form body that must be a string.
pub fn str_field<'a>(m: &'a Map<String, Value>, name: &str) -> ApiResult<Option<&'a str>> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ct: &str, body: &str) -> Req {
        Req::new("post", "/v1/x?a=1&a=2&b", vec![("Content-Type".into(), ct.into())], body.into())
    }

    #[test]
    fn query_and_headers() {
        let r = req("application/json", "{}");
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/x");
        assert_eq!(r.param("a"), Some("1"));
        assert_eq!(r.param("b"), Some(""));
        assert_eq!(r.content_type().as_deref(), Some("application/json"));
    }

    #[test]
    fn bodies() {
        let m = req("application/x-www-form-urlencoded", "x=1&y=a+b").params().unwrap();
        assert_eq!(m["y"], "a b");
        let m = req("application/json; charset=utf-8", r#"{"x":1}"#).params().unwrap();
        assert_eq!(m["x"], 1);
        let e = req("text/plain", "x").params().unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("Content-Type"));
        let e = req("application/json", "{").json_object().unwrap_err();
        assert!(e.message.contains("not valid JSON"));
        let e = req("application/x-www-form-urlencoded", "x=1").json_object().unwrap_err();
        assert!(e.message.contains("application/json"));
        assert!(req("text/plain", "").params().unwrap().is_empty());
    }
}
