//! Compute Engine list filters evaluated here, over a list read once per run, so that N data
//! sources with N filters cost one list instead of N. Only the common subset is understood:
//! `FIELD eq "RE2"` / `FIELD ne "RE2"` (the whole value matches the expression), `FIELD = VALUE`
//! / `FIELD != VALUE` (equal as text; no `*` wildcards), parenthesised terms, joined by `AND` or
//! by spaces, one style per filter (the server refuses `eq` mixed with `=`). [`Filter::parse`]
//! returns `None` for anything else (OR, `:`, wildcards, `<`, single quotes, a leading `-`), and
//! [`Filter::matches`] `None` for a field it cannot judge (a list, such as `tags.items`): the
//! caller then sends the filter to the server instead. A filter is never guessed at.

use regex::Regex;
use serde_json::Value as J;

/// A parsed filter: every term must hold.
#[derive(Debug)]
pub struct Filter(Vec<Term>);

#[derive(Debug)]
struct Term {
    field: Vec<String>,
    test: Test,
    negated: bool,
}

#[derive(Debug)]
enum Test {
    Matches(Regex),
    Equals(String),
}

impl Filter {
    /// The filter, if it is in the understood subset.
    pub fn parse(text: &str) -> Option<Filter> {
        let mut terms = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("AND ") {
                rest = r.trim_start();
                continue;
            }
            let (term, r) = term(rest)?;
            terms.push(term);
            rest = r.trim_start();
        }
        let regex = terms.iter().filter(|t| matches!(t.test, Test::Matches(_))).count();
        (!terms.is_empty() && (regex == 0 || regex == terms.len())).then_some(Filter(terms))
    }

    /// Whether an item (the API's JSON) passes; `None` when a field is a list or an object on
    /// the way, whose matching only the server knows.
    pub fn matches(&self, item: &J) -> Option<bool> {
        let mut all = true;
        for t in &self.0 {
            let mut v = item;
            for k in &t.field {
                if v.is_array() {
                    return None;
                }
                v = &v[k.as_str()];
            }
            let text = match v {
                J::String(s) => Some(s.clone()),
                J::Number(n) => Some(n.to_string()),
                J::Bool(b) => Some(b.to_string()),
                J::Null => None,
                _ => return None,
            };
            let holds = match (&t.test, text) {
                (Test::Matches(re), Some(s)) => re.is_match(&s),
                (Test::Equals(want), Some(s)) => *want == s,
                (_, None) => false,
            };
            all &= holds != t.negated;
        }
        Some(all)
    }

    /// The items that pass, or `None` when one of them cannot be judged here.
    pub fn select(&self, items: &[J]) -> Option<Vec<J>> {
        let mut out = Vec::new();
        for i in items {
            if self.matches(i)? {
                out.push(i.clone());
            }
        }
        Some(out)
    }
}

/// One term at the start of `s` (optionally in parentheses), and what follows it.
fn term(s: &str) -> Option<(Term, &str)> {
    if let Some(inner) = s.strip_prefix('(') {
        let close = closing(inner)?;
        let (t, rest) = term(inner[..close].trim())?;
        if !rest.trim().is_empty() {
            return None;
        }
        return Some((t, &inner[close + 1..]));
    }
    let field_end = s.find(|c: char| c.is_whitespace() || c == '=' || c == '!')?;
    let field = &s[..field_end];
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-';
    if field.is_empty() || field.starts_with('-') || !field.chars().all(valid) {
        return None;
    }
    let rest = s[field_end..].trim_start();
    let (op, rest) = ["!=", "=", "eq ", "ne "].into_iter().find_map(|op| rest.strip_prefix(op).map(|r| (op, r)))?;
    let (value, rest) = value(rest.trim_start())?;
    let test = match op {
        "eq " | "ne " => Test::Matches(Regex::new(&format!("^(?:{value})$")).ok()?),
        _ if value.contains('*') => return None,
        _ => Test::Equals(value),
    };
    let field = field.split('.').map(String::from).collect();
    Some((Term { field, test, negated: matches!(op, "!=" | "ne ") }, rest))
}

/// The index of the `)` closing an already opened parenthesis (quotes respected).
fn closing(s: &str) -> Option<usize> {
    let (mut depth, mut quoted) = (0usize, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth == 0 => return Some(i),
            ')' if !quoted => depth -= 1,
            _ => {}
        }
    }
    None
}

/// A quoted or bare value at the start of `s`, and what follows it.
fn value(s: &str) -> Option<(String, &str)> {
    if let Some(q) = s.strip_prefix('"') {
        let end = q.find('"')?;
        return Some((q[..end].to_string(), &q[end + 1..]));
    }
    let end = s.find(|c: char| c.is_whitespace() || c == ')').unwrap_or(s.len());
    let v = &s[..end];
    (!v.is_empty() && !v.starts_with(['(', '\''])).then(|| (v.to_string(), &s[end..]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Filter;

    fn passes(filter: &str, item: serde_json::Value) -> bool {
        Filter::parse(filter)
            .unwrap_or_else(|| panic!("`{filter}` should parse"))
            .matches(&item)
            .unwrap_or_else(|| panic!("`{filter}` should be judged here"))
    }

    #[test]
    fn the_guides_filters_are_understood_and_match_whole_values() {
        let vms = json!({"name": "gke-cluster-1-0a1b2c3d-vms", "targetTags": ["gke-cluster-1-0a1b2c3d-node"]});
        assert!(passes(r#"name eq "gke-cluster-1-[0-9a-f]{8}-vms""#, vms.clone()));
        assert!(!passes(r#"name eq "gke-cluster-[0-9a-f]{8}-vms""#, vms.clone()));
        assert!(!passes(r#"name eq "gke-cluster-1""#, vms.clone()), "a regular expression matches the whole value");
        assert!(passes(r#"name ne "default-.*""#, vms.clone()));
        assert!(passes(
            r#"(name eq "gke-.*") AND (network eq "default")"#,
            json!({"name": "gke-x", "network": "default"})
        ));
        assert!(passes(r#"labels.team = "mesh" name = ab"#, json!({"name": "ab", "labels": {"team": "mesh"}})));
        assert!(!passes("labels.team = mesh", json!({"name": "ab"})), "a missing field holds no value");
        assert!(passes("disabled = false", json!({"disabled": false})));
        assert!(passes("priority != 900", json!({"priority": 1000})));
    }

    #[test]
    fn anything_else_goes_to_the_server() {
        for f in [
            "name eq a OR name eq b",
            "name:gke-*",
            "name = gke-*",
            "priority < 1000",
            "name eq \"unclosed",
            "(name eq a",
            "",
            "name eq \"[\"",
            "name eq 'gke-.*'",
            "-name = x",
            "name eq \"a.*\" AND network = default",
        ] {
            assert!(Filter::parse(f).is_none(), "`{f}` is not in the subset");
        }
        // A list on the way (tags.items, networkInterfaces) is the server's to judge.
        let f = Filter::parse("tags.items = gke-x-node").unwrap();
        assert_eq!(f.matches(&json!({"tags": {"items": ["gke-x-node"]}})), None);
        let f = Filter::parse("networkInterfaces.network = default").unwrap();
        assert_eq!(f.matches(&json!({"networkInterfaces": [{"network": "default"}]})), None);
        assert_eq!(f.select(&[json!({"networkInterfaces": [{"network": "default"}]})]), None);
    }
}
