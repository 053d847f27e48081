//! App.net filters: clauses with JSON-pointer fields (with `*` wildcards),
//! operators and match policies. Parsing validates everything and names the
//! bad clause; matching is a pure function of the event envelope.

use crate::event::ObjType;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    IncludeAny,
    IncludeAll,
    ExcludeAny,
    ExcludeAll,
}

impl Policy {
    fn parse(s: &str) -> Option<Policy> {
        Some(match s {
            "include_any" => Policy::IncludeAny,
            "include_all" => Policy::IncludeAll,
            "exclude_any" => Policy::ExcludeAny,
            "exclude_all" => Policy::ExcludeAll,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::IncludeAny => "include_any",
            Policy::IncludeAll => "include_all",
            Policy::ExcludeAny => "exclude_any",
            Policy::ExcludeAll => "exclude_all",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Equals,
    Matches,
    Lt,
    Le,
    Gt,
    Ge,
    OneOf,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "equals" => Op::Equals,
            "matches" => Op::Matches,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "one_of" => Op::OneOf,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equals => "equals",
            Op::Matches => "matches",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::OneOf => "one_of",
        }
    }
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    /// `*`: every element of a list (or every value of an object).
    Any,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Clause {
    pub object_type: ObjType,
    pub op: Op,
    /// The field as written (for rendering the filter back).
    pub field: String,
    path: Vec<Step>,
    /// The value as written; `$authorized_userids` stays a string here.
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub policy: Policy,
    pub clauses: Vec<Clause>,
}

/// The variable that stands for the users who authorized the app.
pub const AUTHORIZED_USERIDS: &str = "$authorized_userids";

fn parse_pointer(field: &str) -> Option<Vec<Step>> {
    if field.is_empty() {
        return Some(Vec::new());
    }
    let rest = field.strip_prefix('/')?;
    let mut steps = Vec::new();
    for raw in rest.split('/') {
        if raw == "*" {
            steps.push(Step::Any);
            continue;
        }
        let mut out = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    Some('2') => out.push('*'),
                    _ => return None,
                }
            } else {
                out.push(c);
            }
        }
        steps.push(Step::Key(out));
    }
    Some(steps)
}

fn is_int(v: &Value) -> bool {
    v.as_i64().is_some() || v.as_str().is_some_and(|s| s.parse::<i64>().is_ok())
}

impl Filter {
    /// Validates a filter body's `match_policy` and `clauses`; the error
    /// names the offending part (`clauses[2].operator: …`).
    pub fn parse(policy: Option<&Value>, clauses: Option<&Value>) -> Result<Filter, String> {
        let policy = match policy {
            Some(Value::String(s)) => Policy::parse(s).ok_or_else(|| {
                format!(
                    "match_policy: '{s}' is not one of include_any, include_all, exclude_any, exclude_all"
                )
            })?,
            None => return Err("match_policy: required".into()),
            Some(v) => return Err(format!("match_policy: must be a string, got {v}")),
        };
        let list = match clauses {
            Some(Value::Array(l)) if !l.is_empty() => l,
            Some(Value::Array(_)) => return Err("clauses: must not be empty".into()),
            None => return Err("clauses: required (a non-empty list)".into()),
            Some(v) => return Err(format!("clauses: must be a list, got {v}")),
        };
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let at = |m: String| format!("clauses[{i}].{m}");
            let obj = c.as_object().ok_or_else(|| format!("clauses[{i}]: must be an object"))?;
            let object_type =
                obj.get("object_type").and_then(Value::as_str).and_then(ObjType::parse).ok_or_else(|| {
                    at(format!(
                        "object_type: {} is not an object type",
                        obj.get("object_type").unwrap_or(&Value::Null)
                    ))
                })?;
            let op_text = obj.get("operator").and_then(Value::as_str).unwrap_or("");
            let op = Op::parse(op_text).ok_or_else(|| {
                at(format!("operator: '{op_text}' is not one of equals, matches, lt, le, gt, ge, one_of"))
            })?;
            let field = obj
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| at("field: required (a JSON Pointer such as /data/user/id)".into()))?;
            let path = parse_pointer(field).ok_or_else(|| {
                at(format!("field: '{field}' is not a JSON Pointer (start with /, escape with ~0 ~1 ~2)"))
            })?;
            let value = obj.get("value").cloned().ok_or_else(|| at("value: required".into()))?;
            let ok = match op {
                Op::Equals => !value.is_array() && !value.is_object(),
                Op::Matches => value.is_string(),
                Op::Lt | Op::Le | Op::Gt | Op::Ge => is_int(&value),
                Op::OneOf => value.is_array() || value.as_str() == Some(AUTHORIZED_USERIDS),
            };
            if !ok {
                let want = match op {
                    Op::Equals => "a string, number, boolean or null",
                    Op::Matches => "a string",
                    Op::OneOf => "a list or \"$authorized_userids\"",
                    _ => "an integer",
                };
                return Err(at(format!("value: {} needs {want}, got {value}", op.as_str())));
            }
            out.push(Clause { object_type, op, field: field.to_string(), path, value });
        }
        Ok(Filter { policy, clauses: out })
    }

    /// Does an event of `kind` with this envelope pass the filter? Clauses
    /// apply only to their own object type; a type the filter has no clause
    /// for passes unfiltered. `authorized` is the app's authorized user ids.
    pub fn passes(&self, kind: ObjType, envelope: &Value, authorized: &[String]) -> bool {
        let applicable: Vec<&Clause> = self.clauses.iter().filter(|c| c.object_type == kind).collect();
        if applicable.is_empty() {
            return true;
        }
        let mut hits = applicable.iter().map(|c| c.matches(envelope, authorized));
        match self.policy {
            Policy::IncludeAny => hits.any(|h| h),
            Policy::IncludeAll => hits.all(|h| h),
            Policy::ExcludeAny => !hits.any(|h| h),
            Policy::ExcludeAll => !hits.all(|h| h),
        }
    }

    /// Does any clause use `$authorized_userids` (the result then depends on
    /// the app)?
    pub fn uses_authorized(&self) -> bool {
        self.clauses.iter().any(|c| c.value.as_str() == Some(AUTHORIZED_USERIDS))
    }

    pub fn clauses_json(&self) -> Value {
        Value::Array(
            self.clauses
                .iter()
                .map(|c| {
                    json!({"object_type": c.object_type.as_str(), "operator": c.op.as_str(), "field": c.field, "value": c.value})
                })
                .collect(),
        )
    }
}

fn collect<'a>(v: &'a Value, path: &[Step], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(v);
        return;
    };
    match (first, v) {
        (Step::Any, Value::Array(items)) => items.iter().for_each(|i| collect(i, rest, out)),
        (Step::Any, Value::Object(m)) => m.values().for_each(|i| collect(i, rest, out)),
        (Step::Key(k), Value::Object(m)) => {
            if let Some(c) = m.get(k) {
                collect(c, rest, out);
            }
        }
        (Step::Key(k), Value::Array(items)) => {
            if let Some(c) = k.parse::<usize>().ok().and_then(|i| items.get(i)) {
                collect(c, rest, out);
            }
        }
        _ => {}
    }
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Equal as JSON, with ids compared across string and number forms.
fn same(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => s == &n.to_string(),
        _ => false,
    }
}

impl Clause {
    fn matches(&self, envelope: &Value, authorized: &[String]) -> bool {
        let mut found = Vec::new();
        collect(envelope, &self.path, &mut found);
        found.iter().any(|f| match self.op {
            Op::Equals => same(f, &self.value),
            Op::Matches => match (f.as_str(), self.value.as_str()) {
                (Some(hay), Some(needle)) => hay.contains(needle),
                _ => false,
            },
            Op::Lt | Op::Le | Op::Gt | Op::Ge => match (as_int(f), as_int(&self.value)) {
                (Some(x), Some(y)) => match self.op {
                    Op::Lt => x < y,
                    Op::Le => x <= y,
                    Op::Gt => x > y,
                    _ => x >= y,
                },
                _ => false,
            },
            Op::OneOf => match &self.value {
                Value::Array(list) => list.iter().any(|v| same(f, v)),
                _ => authorized.iter().any(|id| same(f, &Value::String(id.clone()))),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(policy: &str, clauses: Value) -> Filter {
        Filter::parse(Some(&json!(policy)), Some(&clauses)).unwrap()
    }

    fn post(user: &str, tags: &[&str], replies: i64) -> Value {
        json!({
            "meta": {"type": "post", "id": "9"},
            "data": [{
                "user": {"id": user},
                "counts": {"replies": replies},
                "content": {"text": "hello rollout world", "entities": {"tags": tags.iter().map(|t| json!({"text": t})).collect::<Vec<_>>()}},
                "odd*key": "star"
            }]
        })
    }

    fn clause(op: &str, field: &str, value: Value) -> Value {
        json!({"object_type": "post", "operator": op, "field": field, "value": value})
    }

    #[test]
    fn every_operator() {
        let ev = post("7", &["rust", "sqlite"], 3);
        let pass = |op: &str, field: &str, value: Value| {
            filter("include_any", json!([clause(op, field, value)])).passes(ObjType::Post, &ev, &[])
        };
        assert!(pass("equals", "/data/0/user/id", json!("7")));
        assert!(pass("equals", "/data/0/user/id", json!(7)), "ids compare across string and number");
        assert!(!pass("equals", "/data/0/user/id", json!("8")));
        assert!(pass("matches", "/data/0/content/text", json!("rollout")));
        assert!(!pass("matches", "/data/0/content/text", json!("nope")));
        assert!(pass("lt", "/data/0/counts/replies", json!(4)));
        assert!(!pass("lt", "/data/0/counts/replies", json!(3)));
        assert!(pass("le", "/data/0/counts/replies", json!(3)));
        assert!(pass("gt", "/data/0/counts/replies", json!(2)));
        assert!(!pass("gt", "/data/0/counts/replies", json!(3)));
        assert!(pass("ge", "/data/0/counts/replies", json!("3")));
        assert!(pass("one_of", "/data/0/user/id", json!(["1", "7"])));
        assert!(!pass("one_of", "/data/0/user/id", json!(["1"])));
        assert!(pass("equals", "/meta/type", json!("post")));
    }

    #[test]
    fn wildcards_and_escapes() {
        let ev = post("7", &["rust", "sqlite"], 0);
        let f = |field: &str, value: Value| filter("include_any", json!([clause("equals", field, value)]));
        assert!(f("/data/*/content/entities/tags/*/text", json!("sqlite")).passes(ObjType::Post, &ev, &[]));
        assert!(!f("/data/*/content/entities/tags/*/text", json!("go")).passes(ObjType::Post, &ev, &[]));
        assert!(f("/data/0/odd~2key", json!("star")).passes(ObjType::Post, &ev, &[]));
        assert!(!f("/data/0/nothing/here", json!("x")).passes(ObjType::Post, &ev, &[]));
    }

    #[test]
    fn authorized_userids_variable() {
        let ev = post("7", &[], 0);
        let f =
            filter("include_any", json!([clause("one_of", "/data/0/user/id", json!("$authorized_userids"))]));
        assert!(f.uses_authorized());
        assert!(f.passes(ObjType::Post, &ev, &["3".into(), "7".into()]));
        assert!(!f.passes(ObjType::Post, &ev, &["3".into()]));
    }

    #[test]
    fn policies() {
        let ev = post("7", &["rust"], 0);
        let yes = clause("equals", "/data/0/user/id", json!("7"));
        let no = clause("equals", "/data/0/user/id", json!("8"));
        let run = |p: &str, cs: Value| filter(p, cs).passes(ObjType::Post, &ev, &[]);
        assert!(run("include_any", json!([yes, no])));
        assert!(!run("include_any", json!([no])));
        assert!(!run("include_all", json!([yes, no])));
        assert!(run("include_all", json!([yes, yes])));
        assert!(!run("exclude_any", json!([yes, no])));
        assert!(run("exclude_any", json!([no])));
        assert!(run("exclude_all", json!([yes, no])));
        assert!(!run("exclude_all", json!([yes])));
        // Clauses apply only to their own object type.
        let f = filter("include_any", json!([no]));
        assert!(f.passes(ObjType::User, &json!({"meta": {"type": "user"}}), &[]));
    }

    #[test]
    fn validation_names_the_clause() {
        let err = |p: Value, c: Value| Filter::parse(Some(&p), Some(&c)).unwrap_err();
        assert!(
            err(json!("include_some"), json!([clause("equals", "/a", json!(1))])).contains("match_policy")
        );
        assert!(err(json!("include_any"), json!([])).contains("clauses"));
        let e = err(
            json!("include_any"),
            json!([clause("equals", "/a", json!(1)), clause("like", "/a", json!(1))]),
        );
        assert!(e.starts_with("clauses[1].operator"), "{e}");
        assert!(err(json!("include_any"), json!([clause("equals", "a/b", json!(1))]))
            .contains("clauses[0].field"));
        assert!(err(json!("include_any"), json!([clause("equals", "/a~3", json!(1))])).contains("field"));
        assert!(
            err(json!("include_any"), json!([clause("lt", "/a", json!("x"))])).contains("clauses[0].value")
        );
        assert!(err(json!("include_any"), json!([clause("matches", "/a", json!(1))])).contains("value"));
        assert!(err(json!("include_any"), json!([clause("one_of", "/a", json!("x"))])).contains("value"));
        assert!(err(json!("include_any"), json!([clause("equals", "/a", json!([1]))])).contains("value"));
        let bad_type = json!([{"object_type": "star", "operator": "equals", "field": "/a", "value": 1}]);
        assert!(err(json!("include_any"), bad_type).contains("clauses[0].object_type"));
        assert!(Filter::parse(None, Some(&json!([]))).unwrap_err().contains("match_policy"));
    }
}
