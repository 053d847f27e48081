//! App.net filters: clauses with JSON-pointer fields (with `*` wildcards),
//! operators and match policies. Parsing validates everything and names the
//! bad clause; matching is a pure function of the event envelope.

use crate::event::ObjType;
use serde_json::{json, Value};
use std::collections::HashSet;

/// Bounds on a filter a client writes (`Filter::within_limits`; a 400
/// naming the bound past one). Filters stored before these bounds still
/// load; the visit caps below bound what any filter costs per event.
pub const MAX_CLAUSES: usize = 20;
pub const MAX_ONE_OF: usize = 100;
pub const MAX_FIELD_BYTES: usize = 256;
pub const MAX_FIELD_SEGMENTS: usize = 10;
pub const MAX_WILDCARDS: usize = 2;
pub const MAX_STRING_BYTES: usize = 256;
/// The largest filter body (`POST`/`PUT /v1/filters`), in bytes.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
/// Nodes of an event one clause may visit (wildcards multiply them); past
/// it the clause does not match.
pub const CLAUSE_VISITS: usize = 1_000;
/// Nodes all of a filter's clauses may visit for one event.
pub const EVENT_VISITS: usize = 20_000;

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
    /// The value compiled for matching without allocating.
    test: Test,
}

/// A clause's value, ready to compare.
#[derive(Clone, Debug, PartialEq)]
enum Test {
    /// `equals` (a set of one) and `one_of`.
    In(Values),
    Matches(String),
    /// `lt`, `le`, `gt`, `ge` against an integer.
    Cmp(Op, i64),
    /// `one_of "$authorized_userids"`.
    Authorized,
}

/// Values to find a field's value among, with ids equal across their
/// string and number forms (`"7"` is `7`): strings as written and numbers
/// in their text form, integers as numbers, anything else as JSON.
#[derive(Clone, Debug, Default, PartialEq)]
struct Values {
    texts: HashSet<String>,
    ints: HashSet<i64>,
    others: Vec<Value>,
}

impl Values {
    fn of<'a>(values: impl IntoIterator<Item = &'a Value>) -> Values {
        let mut out = Values::default();
        for v in values {
            match v {
                Value::String(s) => {
                    // Only the canonical text of an integer is that integer.
                    if let Some(n) = s.parse::<i64>().ok().filter(|n| n.to_string() == *s) {
                        out.ints.insert(n);
                    }
                    out.texts.insert(s.clone());
                }
                Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        out.ints.insert(i);
                    }
                    out.texts.insert(n.to_string());
                }
                other => out.others.push(other.clone()),
            }
        }
        out
    }

    fn contains(&self, f: &Value) -> bool {
        match f {
            Value::String(s) => self.texts.contains(s.as_str()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => self.ints.contains(&i),
                None => self.texts.contains(&n.to_string()),
            },
            other => self.others.contains(other),
        }
    }
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
                obj.get("object_type").and_then(Value::as_str).and_then(ObjType::from_client).ok_or_else(
                    || {
                        at(format!(
                            "object_type: {} is not an object type",
                            obj.get("object_type").unwrap_or(&Value::Null)
                        ))
                    },
                )?;
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
            let test = match op {
                Op::Equals => Test::In(Values::of([&value])),
                Op::Matches => Test::Matches(value.as_str().unwrap_or_default().to_string()),
                Op::OneOf => match &value {
                    Value::Array(list) => Test::In(Values::of(list)),
                    _ => Test::Authorized,
                },
                _ => Test::Cmp(op, as_int(&value).unwrap_or_default()),
            };
            out.push(Clause { object_type, op, field: field.to_string(), path, value, test });
        }
        Ok(Filter { policy, clauses: out })
    }

    /// The bounds a filter written by a client must keep (`MAX_*`); the
    /// error names the bound and the clause.
    pub fn within_limits(&self) -> Result<(), String> {
        if self.clauses.len() > MAX_CLAUSES {
            return Err(format!("clauses: a filter may have at most {MAX_CLAUSES} clauses"));
        }
        for (i, c) in self.clauses.iter().enumerate() {
            let at = |m: String| Err(format!("clauses[{i}].{m}"));
            if c.field.len() > MAX_FIELD_BYTES {
                return at(format!("field: at most {MAX_FIELD_BYTES} bytes"));
            }
            if c.path.len() > MAX_FIELD_SEGMENTS {
                return at(format!("field: at most {MAX_FIELD_SEGMENTS} segments"));
            }
            if c.path.iter().filter(|s| **s == Step::Any).count() > MAX_WILDCARDS {
                return at(format!("field: at most {MAX_WILDCARDS} wildcards (*)"));
            }
            let values: Vec<&Value> = match &c.value {
                Value::Array(list) => {
                    if list.len() > MAX_ONE_OF {
                        return at(format!("value: one_of takes at most {MAX_ONE_OF} values"));
                    }
                    list.iter().collect()
                }
                v => vec![v],
            };
            for v in values {
                let long = match v {
                    Value::String(s) => s.len() > MAX_STRING_BYTES,
                    Value::Array(_) | Value::Object(_) => v.to_string().len() > MAX_STRING_BYTES,
                    _ => false,
                };
                if long {
                    return at(format!("value: strings of at most {MAX_STRING_BYTES} bytes"));
                }
            }
        }
        Ok(())
    }

    /// Does an event of `kind` with this envelope pass the filter? Clauses
    /// apply only to their own object type; a type the filter has no clause
    /// for passes unfiltered. `authorized` is the app's authorized user ids.
    /// The clauses visit at most `EVENT_VISITS` nodes of the event together
    /// (`CLAUSE_VISITS` each); a clause out of visits does not match.
    pub fn passes(&self, kind: ObjType, envelope: &Value, authorized: &[String]) -> bool {
        let mut left = EVENT_VISITS;
        let mut hits = self.clauses.iter().filter(|c| c.object_type == kind).map(|c| {
            let mut budget = CLAUSE_VISITS.min(left);
            let hit = c.matches(envelope, authorized, &mut budget);
            left -= CLAUSE_VISITS.min(left) - budget;
            hit
        });
        let Some(first) = hits.next() else { return true };
        match self.policy {
            Policy::IncludeAny => first || hits.any(|h| h),
            Policy::IncludeAll => first && hits.all(|h| h),
            Policy::ExcludeAny => !(first || hits.any(|h| h)),
            Policy::ExcludeAll => !(first && hits.all(|h| h)),
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

/// Calls `hit` with each value `path` reaches in `v` (wildcards reach
/// every element) until it returns true; says whether one did. Each node
/// visited costs one of `budget`; at zero the walk stops.
fn find(v: &Value, path: &[Step], budget: &mut usize, hit: &mut impl FnMut(&Value) -> bool) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let Some((first, rest)) = path.split_first() else {
        return hit(v);
    };
    match (first, v) {
        (Step::Any, Value::Array(items)) => items.iter().any(|i| find(i, rest, budget, hit)),
        (Step::Any, Value::Object(m)) => m.values().any(|i| find(i, rest, budget, hit)),
        (Step::Key(k), Value::Object(m)) => m.get(k).is_some_and(|c| find(c, rest, budget, hit)),
        (Step::Key(k), Value::Array(items)) => {
            k.parse::<usize>().ok().and_then(|i| items.get(i)).is_some_and(|c| find(c, rest, budget, hit))
        }
        _ => false,
    }
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl Clause {
    fn matches(&self, envelope: &Value, authorized: &[String], budget: &mut usize) -> bool {
        find(envelope, &self.path, budget, &mut |f| match &self.test {
            Test::In(values) => values.contains(f),
            Test::Matches(needle) => f.as_str().is_some_and(|hay| hay.contains(needle.as_str())),
            Test::Cmp(op, y) => as_int(f).is_some_and(|x| match op {
                Op::Lt => x < *y,
                Op::Le => x <= *y,
                Op::Gt => x > *y,
                _ => x >= *y,
            }),
            Test::Authorized => match f {
                Value::String(s) => authorized.iter().any(|id| id == s),
                Value::Number(n) => {
                    n.as_i64().is_some_and(|i| authorized.iter().any(|id| id.parse() == Ok(i)))
                }
                _ => false,
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
        let bad_type = json!([{"object_type": "stars", "operator": "equals", "field": "/a", "value": 1}]);
        assert!(err(json!("include_any"), bad_type).contains("clauses[0].object_type"));
        assert!(Filter::parse(None, Some(&json!([]))).unwrap_err().contains("match_policy"));
    }

    /// Each bound is named; a filter at every bound is within them.
    #[test]
    fn limits_are_named() {
        let limit = |c: Value| filter("include_any", c).within_limits();
        let ok = clause("one_of", "/data/*/x/*/a/b/c/d/e/f", json!(vec!["v".repeat(256); 100]));
        assert_eq!(limit(json!(vec![ok.clone(); 20])), Ok(()));
        let e = limit(json!(vec![ok.clone(); 21])).unwrap_err();
        assert_eq!(e, "clauses: a filter may have at most 20 clauses");
        let e = limit(json!([clause("one_of", "/a", json!(vec!["v"; 101]))])).unwrap_err();
        assert_eq!(e, "clauses[0].value: one_of takes at most 100 values");
        let e = limit(json!([clause("equals", &format!("/{}", "a".repeat(256)), json!(1))])).unwrap_err();
        assert_eq!(e, "clauses[0].field: at most 256 bytes");
        let e = limit(json!([clause("equals", "/a/b/c/d/e/f/g/h/i/j/k", json!(1))])).unwrap_err();
        assert_eq!(e, "clauses[0].field: at most 10 segments");
        let e = limit(json!([clause("equals", "/*/*/*", json!(1))])).unwrap_err();
        assert_eq!(e, "clauses[0].field: at most 2 wildcards (*)");
        let e = limit(json!([clause("matches", "/a", json!("x".repeat(257)))])).unwrap_err();
        assert_eq!(e, "clauses[0].value: strings of at most 256 bytes");
    }

    /// A filter past the bounds (stored before them) still loads, and a
    /// wildcard walk stops at its visit cap: the clause does not match.
    #[test]
    fn wildcard_walks_stop_at_their_visit_cap() {
        let wide: Vec<Value> = (0..2_000).map(|i| json!({"id": i.to_string()})).collect();
        let ev = json!({"meta": {"type": "post"}, "data": wide});
        let f = |v: &str| filter("include_any", json!([clause("equals", "/data/*/id", json!(v))]));
        assert!(f("10").passes(ObjType::Post, &ev, &[]), "within the cap");
        assert!(!f("1999").passes(ObjType::Post, &ev, &[]), "past the cap the clause does not match");
        let big = filter(
            "include_any",
            json!([clause(
                "one_of",
                "/data/*/id",
                json!((0..60_000).map(|i| i.to_string()).collect::<Vec<_>>())
            )]),
        );
        assert!(big.within_limits().is_err());
        assert!(big.passes(ObjType::Post, &ev, &[]));
        // ids compare across their string and number forms, one_of too.
        let n = filter("include_any", json!([clause("one_of", "/data/*/id", json!([7, "x"]))]));
        assert!(n.passes(ObjType::Post, &json!({"data": [{"id": "7"}]}), &[]));
        assert!(!n.passes(ObjType::Post, &json!({"data": [{"id": "07"}]}), &[]));
        assert!(n.passes(ObjType::Post, &json!({"data": [{"id": 7}]}), &[]));
    }
}
