//! compute list filters as gcloud sends them: `field eq RE2` / `field ne RE2` (the expression
//! must match the whole value), several ANDed as `(a eq x)(b ne y)`; also `field = "text"` and
//! `field != "text"` for exact comparisons.

use regex::Regex;
use serde_json::Value;

/// One condition.
#[derive(Debug)]
pub struct Cond {
    field: String,
    negate: bool,
    matcher: Matcher,
}

#[derive(Debug)]
enum Matcher {
    Regex(Regex),
    Exact(String),
}

/// A parsed filter: all conditions must hold.
#[derive(Debug, Default)]
pub struct Filter(Vec<Cond>);

impl Filter {
    /// Parses a filter; an empty string matches everything.
    pub fn parse(s: &str) -> Result<Filter, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Filter::default());
        }
        let groups: Vec<&str> = if s.starts_with('(') {
            let mut out = Vec::new();
            let mut depth = 0;
            let mut start = 0;
            let mut quote: Option<char> = None;
            for (i, c) in s.char_indices() {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '"' | '\'') => quote = Some(c),
                    (None, '(') => {
                        if depth == 0 {
                            start = i + 1;
                        }
                        depth += 1;
                    }
                    (None, ')') => {
                        depth -= 1;
                        if depth == 0 {
                            out.push(&s[start..i]);
                        }
                    }
                    _ => {}
                }
            }
            out
        } else {
            vec![s]
        };
        groups.into_iter().map(parse_cond).collect::<Result<Vec<_>, _>>().map(Filter)
    }

    /// Whether a resource matches.
    pub fn matches(&self, v: &Value) -> bool {
        self.0.iter().all(|c| {
            let vals = values_at(v, &c.field);
            let hit = vals.iter().any(|x| match &c.matcher {
                Matcher::Regex(r) => r.is_match(x),
                Matcher::Exact(e) => x == e,
            });
            hit != c.negate
        })
    }
}

fn parse_cond(g: &str) -> Result<Cond, String> {
    let g = g.trim();
    let (field, rest) =
        g.split_once(char::is_whitespace).ok_or_else(|| format!("Invalid list filter expression '{g}'."))?;
    let rest = rest.trim_start();
    let (op, value) = rest.split_once(char::is_whitespace).map_or((rest, ""), |(a, b)| (a, b.trim()));
    let value = unquote(value);
    let (negate, regex) = match op {
        "eq" => (false, true),
        "ne" => (true, true),
        "=" => (false, false),
        "!=" => (true, false),
        _ => return Err(format!("Invalid list filter expression '{g}'.")),
    };
    let matcher = if regex {
        Matcher::Regex(
            Regex::new(&format!("^(?:{value})$")).map_err(|e| format!("Invalid regular expression in filter: {e}"))?,
        )
    } else {
        Matcher::Exact(value.to_string())
    };
    Ok(Cond { field: field.to_string(), negate, matcher })
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn values_at(v: &Value, path: &str) -> Vec<String> {
    let mut cur = vec![v];
    for part in path.split('.') {
        let mut next = Vec::new();
        for c in cur {
            match c.get(part) {
                Some(Value::Array(a)) => next.extend(a.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        cur = next;
    }
    cur.into_iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gcloud_forms() {
        let fw =
            json!({"name": "cluster-1-pods", "network": "https://x/global/networks/default", "targetTags": ["a", "b"]});
        assert!(Filter::parse(r#"name eq ".*\bcluster\-1.*""#).unwrap().matches(&fw));
        assert!(!Filter::parse(r#"name eq ".*\bcluster\-2.*""#).unwrap().matches(&fw));
        assert!(Filter::parse(r#"(name eq ".*\bcluster.*")(network eq ".*\bdefault\b.*")"#).unwrap().matches(&fw));
        assert!(!Filter::parse(r#"(name eq ".*\bcluster.*")(network ne ".*\bdefault\b.*")"#).unwrap().matches(&fw));
        assert!(Filter::parse("targetTags eq b").unwrap().matches(&fw));
        assert!(Filter::parse("name = \"cluster-1-pods\"").unwrap().matches(&fw));
        assert!(Filter::parse("name eq cluster").is_ok_and(|f| !f.matches(&fw)), "regex must match the whole value");
        assert!(Filter::parse("name like x").is_err());
    }
}
