//! Text → pnut `content`: entities (mentions, tags, links; positions in code
//! points) and the HTML rendering. Pure; the caller resolves usernames.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pos: usize,
    pub len: usize,
    /// Name without `@`/`#`, or the URL for links.
    pub text: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub mentions: Vec<Found>,
    pub tags: Vec<Found>,
    pub links: Vec<Found>,
}

fn word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Finds mention, tag and link candidates in `text`.
pub fn parse(text: &str) -> Parsed {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parsed::default();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0
            || (!word(chars[i - 1]) && chars[i - 1] != '/')
            || (chars[i - 1] == '/' && chars[i] == '@');
        let c = chars[i];
        if boundary && (c == 'h' || c == 'H') {
            let rest: String =
                chars[i..chars.len().min(i + 8)].iter().collect::<String>().to_ascii_lowercase();
            if rest.starts_with("http://") || rest.starts_with("https://") {
                let mut j = i;
                while j < chars.len() && !chars[j].is_whitespace() {
                    j += 1;
                }
                while j > i && ".,;:!?)'\"".contains(chars[j - 1]) {
                    j -= 1;
                }
                let url: String = chars[i..j].iter().collect();
                if url.len() > 8 {
                    p.links.push(Found { pos: i, len: j - i, text: url });
                    i = j;
                    continue;
                }
            }
        }
        if boundary && (c == '@' || c == '#') {
            let mut j = i + 1;
            let limit = if c == '@' { 20 } else { 256 };
            while j < chars.len()
                && j - i - 1 < limit
                && (if c == '@' {
                    chars[j].is_ascii_alphanumeric() || chars[j] == '_'
                } else {
                    word(chars[j])
                })
            {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            let ok = !name.is_empty() && (c == '@' || !name.chars().all(|d| d.is_ascii_digit()));
            if ok && (j == chars.len() || !word(chars[j])) {
                let f = Found { pos: i, len: j - i, text: name };
                if c == '@' {
                    p.mentions.push(f)
                } else {
                    p.tags.push(f)
                }
                i = j;
                continue;
            }
        }
        i += 1;
    }
    p
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
}

/// pnut's `content` object for `text`. `resolve` maps a mentioned name to
/// the user's id and username; unknown names are not mentions.
pub fn content(text: &str, resolve: impl Fn(&str) -> Option<(i64, String)>) -> Value {
    let p = parse(text);
    let chars: Vec<char> = text.chars().collect();
    // (pos, len, html) for every entity, in order.
    let mut spans: Vec<(usize, usize, String)> = Vec::new();
    let mut mentions = Vec::new();
    for m in &p.mentions {
        if let Some((id, username)) = resolve(&m.text) {
            let mut e = json!({"id": id.to_string(), "pos": m.pos, "len": m.len, "text": username});
            if m.pos == 0 {
                e["is_leading"] = json!(true);
            }
            if m.pos > 0 && chars[m.pos - 1] == '/' {
                e["is_copy"] = json!(true);
            }
            mentions.push(e);
            let mut h = format!(
                "<span data-mention-id=\"{id}\" data-mention-name=\"{username}\" itemprop=\"mention\">"
            );
            escape(&chars[m.pos..m.pos + m.len].iter().collect::<String>(), &mut h);
            h.push_str("</span>");
            spans.push((m.pos, m.len, h));
        }
    }
    let tags: Vec<Value> = p
        .tags
        .iter()
        .map(|t| {
            let mut h = String::from("<span data-tag-name=\"");
            escape(&t.text.to_lowercase(), &mut h);
            h.push_str("\" itemprop=\"tag\">");
            escape(&chars[t.pos..t.pos + t.len].iter().collect::<String>(), &mut h);
            h.push_str("</span>");
            spans.push((t.pos, t.len, h));
            json!({"pos": t.pos, "len": t.len, "text": t.text})
        })
        .collect();
    let links: Vec<Value> = p
        .links
        .iter()
        .map(|l| {
            let mut h = String::from("<a href=\"");
            escape(&l.text, &mut h);
            h.push_str("\">");
            escape(&l.text, &mut h);
            h.push_str("</a>");
            spans.push((l.pos, l.len, h));
            json!({"pos": l.pos, "len": l.len, "text": l.text, "url": l.text})
        })
        .collect();
    spans.sort_by_key(|s| s.0);
    let mut html = String::from("<span itemscope=\"https://pnut.io/schemas/Post\">");
    let mut at = 0;
    for (pos, len, h) in spans {
        escape(&chars[at..pos].iter().collect::<String>(), &mut html);
        html.push_str(&h);
        at = pos + len;
    }
    escape(&chars[at..].iter().collect::<String>(), &mut html);
    html.push_str("</span>");
    json!({
        "text": text,
        "html": html,
        "entities": {"links": links, "mentions": mentions, "tags": tags}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_entities_in_code_points() {
        let p = parse("é @bob likes #Rust_lang and https://example.com/x. #123 a@b");
        assert_eq!(p.mentions, vec![Found { pos: 2, len: 4, text: "bob".into() }]);
        assert_eq!(p.tags, vec![Found { pos: 13, len: 10, text: "Rust_lang".into() }]);
        assert_eq!(p.links[0].text, "https://example.com/x");
        assert_eq!(p.links[0].pos, 28);
    }

    #[test]
    fn content_html_and_unknown_mentions() {
        let c = content("@bob & @nobody <b>", |n| (n == "bob").then(|| (7, "Bob".to_string())));
        assert_eq!(c["entities"]["mentions"].as_array().unwrap().len(), 1);
        assert_eq!(c["entities"]["mentions"][0]["id"], "7");
        assert_eq!(c["entities"]["mentions"][0]["is_leading"], true);
        let html = c["html"].as_str().unwrap();
        assert!(html.contains("data-mention-id=\"7\""), "{html}");
        assert!(html.contains("&amp; @nobody &lt;b&gt;"), "{html}");
    }
}
