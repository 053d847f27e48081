//! Property tests for the parsers that take client input: random and
//! mutated inputs must never panic, and what parses must behave. A small
//! xorshift generator keeps them dependency-free and reproducible;
//! `SPOUT_PROP_ITERS` runs them longer (the README says how).

use crate::filter::Filter;
use crate::http::Req;
use crate::text;
use crate::util::{parse_query, url_decode};
use serde_json::{json, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    /// A string mixing ASCII, pointer/percent syntax and multi-byte text.
    fn string(&mut self, max: usize) -> String {
        const PARTS: &[&str] = &[
            "a",
            "/",
            "~",
            "~0",
            "~1",
            "~2",
            "*",
            "%",
            "%2F",
            "%zz",
            "+",
            "=",
            "&",
            "@",
            "#",
            "http://",
            "é",
            "👩‍👧",
            "\u{0}",
            "\u{202e}",
            " ",
            "\n",
            "[",
            "]",
            "{",
            "}",
            "\"",
            "\\",
            "0",
            "9",
            "-",
            "_",
            ".",
        ];
        (0..self.below(max)).map(|_| *self.pick(PARTS)).collect()
    }
    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth > 3 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(3)),
            2 => json!(self.next() as i64 >> self.below(60)),
            3 => json!(self.string(12)),
            4 => json!(*self.pick(&[
                "equals",
                "matches",
                "lt",
                "le",
                "gt",
                "ge",
                "one_of",
                "$authorized_userids",
                "post",
                "include_any",
                "exclude_all"
            ])),
            5 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let keys = ["object_type", "operator", "field", "value", "x"];
                Value::Object(
                    (0..self.below(5))
                        .map(|_| (self.pick(&keys).to_string(), self.value(depth + 1)))
                        .collect(),
                )
            }
        }
    }
}

fn iters() -> usize {
    std::env::var("SPOUT_PROP_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

#[test]
fn filter_parser_and_matcher_never_panic() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let event = json!({"meta": {"type": "post", "id": "1"}, "data": [{"user": {"id": "7"}, "content": {"text": "a*b"}, "a": [1, [2, {"*": 3}]]}]});
    for _ in 0..iters() {
        let policy = r.value(0);
        let clauses = Value::Array(
            (0..r.below(4))
                .map(|_| {
                    let mut c = json!({
                        "object_type": r.pick(&["post", "user", "star", ""]),
                        "operator": r.pick(&["equals", "matches", "lt", "le", "gt", "ge", "one_of", "like"]),
                        "field": r.string(10),
                        "value": r.value(0),
                    });
                    if r.below(4) == 0 {
                        c = r.value(0);
                    }
                    c
                })
                .collect(),
        );
        if let Ok(f) = Filter::parse(Some(&policy), Some(&clauses)) {
            let _ = f.passes(crate::event::ObjType::Post, &event, &["7".to_string()]);
            let again = Filter::parse(Some(&json!(f.policy.as_str())), Some(&f.clauses_json()));
            assert_eq!(again.as_ref().ok(), Some(&f), "a parsed filter renders and parses back the same");
        }
    }
}

#[test]
fn request_and_text_parsers_never_panic() {
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..iters() {
        let url = format!("/{}?{}", r.string(8), r.string(16));
        let body = r.string(24).into_bytes();
        let ct = r
            .pick(&[
                "application/json",
                "application/x-www-form-urlencoded",
                "text/plain",
                "",
                "multipart/form-data; boundary=x",
            ])
            .to_string();
        let req = Req::new("POST", &url, vec![("Content-Type".into(), ct)], body);
        let _ = req.params();
        let _ = req.json_object();
        let _ = parse_query(&r.string(20));
        let _ = url_decode(&r.string(20));
        let t = r.string(40);
        let c = text::content(&t, |name| (name.len() % 2 == 0).then(|| (1, name.to_string())));
        // Entity positions always point inside the text, in code points.
        let n = t.chars().count() as u64;
        for kind in ["mentions", "tags", "links"] {
            for e in c["entities"][kind].as_array().unwrap() {
                let end = e["pos"].as_u64().unwrap() + e["len"].as_u64().unwrap();
                assert!(end <= n, "{kind} entity past the end of {t:?}: {e}");
            }
        }
    }
}
