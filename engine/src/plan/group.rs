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

/// `text` with the key of `c` (and each comma-separated part of it) replaced by placeholders.
pub fn without_key(c: &Change, text: &str) -> String {
    let mut body = text.to_string();
    if let Some(key) = c.address.key.as_deref().filter(|k| !k.is_empty()) {
        body = body.replace(key, "${each.key}");
        let parts: Vec<&str> = key.split(',').collect();
        if parts.len() > 1 {
            for (i, p) in parts.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                body = body.replace(p, &format!("${{split(\",\", each.key)[{i}]}}"));
            }
        }
    }
    body
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
