//! Grouping of identical changes across a block's `for_each` instances, for plans a reviewer
//! can read at fleet scale: fifty clusters' same change is one entry "× 50" with the keys.
//! Two instances' changes are identical when they have the same action and the same rendered
//! diff once each instance's key (and each comma-separated part of it, as `pairs()` keys have)
//! is replaced by a placeholder.

use std::collections::BTreeMap;

use super::Change;
use super::render::{Style, render_change};

use crate::addr::BlockAddr;

/// Instances of one block whose changes are the same but for their keys.
pub struct Group<'a> {
    /// The changes, in address order (at least one).
    pub members: Vec<&'a Change>,
    /// The first member's rendered change (no colour, no address line), keys replaced by
    /// `${each.key}` (or `${KEYPART[i]}` for the parts of a comma-separated key).
    pub body: String,
}

impl Group<'_> {
    /// The block all members belong to.
    pub fn block(&self) -> &BlockAddr {
        &self.members[0].address.block
    }

    /// The members' keys, in order (empty strings for an instance without a key).
    pub fn keys(&self) -> Vec<String> {
        self.members.iter().map(|c| c.address.key.clone().unwrap_or_default()).collect()
    }
}

/// The rendered change of `c` without its address line, its key replaced by placeholders.
pub fn keyless_body(c: &Change) -> String {
    let mut text = String::new();
    render_change(c, Style::new(false), &mut text);
    let mut body: String = text.split_once('\n').map_or(String::new(), |(_, rest)| rest.to_string());
    // The headline without the address (its reason may name the key too).
    body.insert_str(0, &format!("({})\n", super::render::headline(c)));
    without_key(c, &body)
}

/// `text` with the key of `c` (and each comma-separated part of it) replaced by placeholders,
/// in one pass (a placeholder is never rewritten) and only where an occurrence stands alone: not
/// inside a longer word or number (`cluster-1` in `cluster-10`; a numeric key in an address or
/// CIDR), though `-`, `_`, `.` and quotes around it are boundaries (`cluster-1-eastwest`).
pub fn without_key(c: &Change, text: &str) -> String {
    let Some(key) = c.address.key.as_deref().filter(|k| !k.is_empty()) else {
        return text.to_string();
    };
    // The whole key first, then its parts, longest first.
    let mut needles: Vec<(&str, String)> = vec![(key, "${each.key}".to_string())];
    let parts: Vec<&str> = key.split(',').collect();
    if parts.len() > 1 {
        let mut ps: Vec<(usize, &str)> = parts.iter().copied().enumerate().filter(|(_, p)| !p.is_empty()).collect();
        ps.sort_by_key(|(_, p)| std::cmp::Reverse(p.len()));
        needles.extend(ps.into_iter().map(|(i, p)| (p, format!("${{split(\",\", each.key)[{i}]}}"))));
    }
    let word = |ch: Option<char>| ch.is_some_and(char::is_alphanumeric);
    // A number (`0` of a `pairs()` key `1,0`) inside an address or a CIDR is not the key.
    let number = |ch: Option<char>| ch.is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '/' | ':'));
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < text.len() {
        let rest = &text[i..];
        let before = text[..i].chars().next_back();
        for (needle, placeholder) in &needles {
            if let Some(tail) = rest.strip_prefix(needle) {
                let after = tail.chars().next();
                let numeric = needle.chars().all(|c| c.is_ascii_digit());
                let edge_ok = |inner: Option<char>, outer: Option<char>| {
                    !(word(inner) && if numeric { number(outer) } else { word(outer) })
                };
                if edge_ok(needle.chars().next(), before) && edge_ok(needle.chars().next_back(), after) {
                    out.push_str(placeholder);
                    i += needle.len();
                    continue 'scan;
                }
            }
        }
        let ch = rest.chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// `changes` (in address order) grouped: consecutive instances of one block with the same
/// keyless body form one group; groups keep the order of their first member.
pub fn group<'a>(changes: &[&'a Change]) -> Vec<Group<'a>> {
    let mut order: Vec<(BlockAddr, String)> = Vec::new();
    let mut groups: BTreeMap<(BlockAddr, String), Vec<&'a Change>> = BTreeMap::new();
    for c in changes {
        let body = if c.address.key.is_some() { keyless_body(c) } else { format!("\u{0}{}", c.address) };
        let k = (c.address.block.clone(), body);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(c);
    }
    order
        .into_iter()
        .map(|k| {
            let members = groups.remove(&k).unwrap_or_default();
            let body = if k.1.starts_with('\u{0}') { keyless_body(members[0]) } else { k.1 };
            Group { members, body }
        })
        .collect()
}

/// Keys listed compactly: all of them when short, else the first ones and how many more.
pub fn key_list(keys: &[String], max_chars: usize) -> String {
    let mut out = String::new();
    for (i, k) in keys.iter().enumerate() {
        let next = if out.is_empty() { k.clone() } else { format!(", {k}") };
        if out.len() + next.len() > max_chars && i > 0 {
            out.push_str(&format!(" and {} more", keys.len() - i));
            return out;
        }
        out.push_str(&next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::without_key;
    use crate::plan::Change;

    fn change(address: &str) -> Change {
        serde_json::from_value(serde_json::json!({
            "address": address, "type": "t", "action": "create", "before": null, "after": null,
        }))
        .unwrap()
    }

    #[test]
    fn keys_are_replaced_once_and_only_where_they_stand_alone() {
        let c = change(r#"t.x["cluster-1"]"#);
        assert_eq!(
            without_key(&c, r#"name = "cluster-1-eastwest", peer = "cluster-10", at = t.x["cluster-1"]"#),
            r#"name = "${each.key}-eastwest", peer = "cluster-10", at = t.x["${each.key}"]"#
        );
    }

    // Parts of a `pairs()` key must not be replaced inside the placeholders already written,
    // nor inside numbers and words.
    #[test]
    fn parts_of_a_pairs_key_never_rewrite_a_placeholder() {
        let c = change(r#"t.x["1,0"]"#);
        assert_eq!(
            without_key(&c, r#"key "1,0", from 1 to 0, cidr 10.0.0.1/16, 1st"#),
            r#"key "${each.key}", from ${split(",", each.key)[0]} to ${split(",", each.key)[1]}, cidr 10.0.0.1/16, 1st"#
        );
        let c = change(r#"t.x["a,b"]"#);
        assert_eq!(
            without_key(&c, "a and b, a-b, abba"),
            r#"${split(",", each.key)[0]} and ${split(",", each.key)[1]}, ${split(",", each.key)[0]}-${split(",", each.key)[1]}, abba"#
        );
    }
}
