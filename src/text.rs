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

/// What the server parses in a text (pnut's `entities.parse_links`,
/// `entities.parse_markdown_links`; both on by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextOpts {
    pub links: bool,
    pub markdown_links: bool,
}

impl Default for TextOpts {
    fn default() -> TextOpts {
        TextOpts { links: true, markdown_links: true }
    }
}

/// Markdown links `[label](http(s)://url)` become their label; returns the
/// text and each link (position and length of the label in code points of
/// the new text, the URL).
fn markdown_links(text: &str) -> (String, Vec<Found>) {
    let chars: Vec<char> = text.chars().collect();
    let (mut out, mut n, mut found) = (String::with_capacity(text.len()), 0usize, Vec::new());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            let close = (i + 1..chars.len()).find(|&j| matches!(chars[j], ']' | '[' | '\n'));
            if let Some(close) = close.filter(|&c| chars[c] == ']' && c > i + 1) {
                if chars.get(close + 1) == Some(&'(') {
                    let end = (close + 2..chars.len()).find(|&j| chars[j] == ')' || chars[j].is_whitespace());
                    if let Some(end) = end.filter(|&e| chars[e] == ')') {
                        let url: String = chars[close + 2..end].iter().collect();
                        let lower = url.to_ascii_lowercase();
                        if (lower.starts_with("http://") || lower.starts_with("https://")) && url.len() > 8 {
                            let label = &chars[i + 1..close];
                            found.push(Found { pos: n, len: label.len(), text: url });
                            out.extend(label);
                            n += label.len();
                            i = end + 1;
                            continue;
                        }
                    }
                }
            }
        }
        out.push(chars[i]);
        n += 1;
        i += 1;
    }
    (out, found)
}

/// pnut's `content` object for `text`. `resolve` maps a mentioned name to
/// the user's id and username; unknown names are not mentions.
#[cfg(test)]
pub fn content(text: &str, resolve: impl Fn(&str) -> Option<(i64, String)>) -> Value {
    content_with(text, TextOpts::default(), resolve)
}

/// `content` with what to parse: markdown links leave their label in the
/// text and a link entity (`text` the label, `url` the target); with
/// `links` off, bare URLs stay plain text.
pub fn content_with(text: &str, opts: TextOpts, resolve: impl Fn(&str) -> Option<(i64, String)>) -> Value {
    let (owned, md) = if opts.markdown_links { markdown_links(text) } else { (text.to_string(), Vec::new()) };
    let text = owned.as_str();
    let mut p = parse(text);
    if !opts.links {
        p.links.clear();
    }
    // Nothing else inside a markdown link's label is an entity.
    let inside = |f: &Found| md.iter().any(|m| f.pos < m.pos + m.len && m.pos < f.pos + f.len);
    p.links.retain(|f| !inside(f));
    p.mentions.retain(|f| !inside(f));
    p.tags.retain(|f| !inside(f));
    p.links.extend(md.iter().cloned());
    p.links.sort_by_key(|f| f.pos);
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
            let label: String = chars[l.pos..l.pos + l.len].iter().collect();
            let mut h = String::from("<a href=\"");
            escape(&l.text, &mut h);
            h.push_str("\">");
            escape(&label, &mut h);
            h.push_str("</a>");
            spans.push((l.pos, l.len, h));
            json!({"pos": l.pos, "len": l.len, "text": label, "url": l.text})
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
    fn markdown_links_and_what_is_parsed() {
        let none = |_: &str| None;
        let c = content("see [the docs](https://pnut.io/docs) and https://a.example now", none);
        assert_eq!(c["text"], "see the docs and https://a.example now");
        let links = c["entities"]["links"].as_array().unwrap();
        assert_eq!(links[0], json!({"pos": 4, "len": 8, "text": "the docs", "url": "https://pnut.io/docs"}));
        assert_eq!(links[1]["url"], "https://a.example");
        assert!(c["html"].as_str().unwrap().contains("<a href=\"https://pnut.io/docs\">the docs</a>"));
        let off = TextOpts { links: false, markdown_links: false };
        let c = content_with("[x](https://a.example) https://b.example", off, none);
        assert_eq!(c["text"], "[x](https://a.example) https://b.example");
        assert_eq!(c["entities"]["links"], json!([]));
        // Not a link: no scheme, a space in the URL, an empty label.
        for t in ["[x](a.example)", "[x](https://a b)", "[](https://a.example)"] {
            assert_eq!(content(t, none)["text"], t, "{t}");
        }
    }

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
