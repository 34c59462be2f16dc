//! Plans as plain data: one [`Change`] per instance (no-ops included, so apply can pass values
//! along), the refresh's findings, the planned outputs, and what the plan was made from so a
//! saved plan can be checked before it is applied. Renderers (human, JSON, Markdown) read only
//! this model.

pub mod decide;
pub mod group;
pub mod json;
pub mod markdown;
pub mod planner;
pub mod render;
pub mod saved;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::addr::Addr;
use crate::value::{Map, Value};

/// What happens to one instance. Each action *is* its symbol, so plans read without colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do.
    NoOp,
    /// Read a data source at apply time (its inputs were unknown at plan time).
    Read,
    /// Create a new object.
    Create,
    /// Change the object in place.
    Update,
    /// Delete and create again (or create, then delete, with `create_before_destroy`).
    Replace,
    /// Delete the object.
    Delete,
    /// Take an object that already exists into state (meshform then manages what it declares
    /// of it; what destroy does to it, the plan says): found on create, or named by an
    /// `[[import]]` entry.
    Adopt,
    /// Remove the object's record from state and leave the object alone (`[[removed]]` with
    /// `destroy = false`; a refresh-only plan's object deleted outside meshform).
    Forget,
}

impl Action {
    /// The diff symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Read => "<=",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Adopt => "<+",
            Action::Forget => ".",
        }
    }

    /// A verb for progress lines.
    pub fn verb(self) -> &'static str {
        match self {
            Action::NoOp => "unchanged",
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "destroy",
            Action::Adopt => "adopt",
            Action::Forget => "forget",
        }
    }

    /// Whether this action changes anything live.
    pub fn is_change(self) -> bool {
        !matches!(self, Action::NoOp | Action::Read)
    }
}

/// The plan's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Make live objects match the desired state: create, update, replace, delete orphans.
    #[default]
    Normal,
    /// Delete every object in state (or the targets and what depends on them), in reverse
    /// dependency order.
    Destroy,
    /// Change nothing live: record in state what the refresh found changed outside meshform.
    RefreshOnly,
}

/// One instance's planned change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Instance address.
    pub address: Addr,
    /// Resource type.
    #[serde(rename = "type")]
    pub ty: String,
    /// What happens.
    pub action: Action,
    /// Why, when it is not obvious ("not in the desired state", "deleted outside meshform").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The object before (refreshed), if it exists.
    pub before: Option<Map>,
    /// The object after; unknown values are known only after apply.
    pub after: Option<Map>,
    /// Sensitive attribute names (their values are never shown).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sensitive: BTreeSet<String>,
    /// Attributes whose change forces the replacement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_because: Vec<String>,
    /// Instances this one depends on in the desired state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Addr>,
    /// Create the replacement before deleting the old object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_before_destroy: bool,
    /// What the change does to the objects inside it (a manifest's objects created and deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_changes: Vec<crate::provider::ObjectChange>,
    /// For a delete that is not plain deletion: what it does instead (an adopted namespace is
    /// unlabelled and kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_effect: Option<String>,
    /// The address state recorded it under before a `[[moved]]` entry moved it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<Addr>,
    /// The provider's id of the existing object an `[[import]]` entry takes into state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_id: Option<String>,
    /// Attributes plans show through another one (name → the other; see
    /// [`crate::provider::AttrSchema::shown_by`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shown_by: BTreeMap<String, String>,
}

impl Change {
    /// This change with every sensitive value redacted (for saving and showing).
    pub fn redacted(&self) -> Change {
        let mut c = self.clone();
        for name in &self.sensitive {
            let hidden = |v: &Value| !matches!(v, Value::Null | Value::Unknown);
            let before = c.before.as_mut().and_then(|m| m.get_mut(name)).filter(|v| hidden(v));
            let before = before.map(|v| {
                *v = v.redact_keys();
                v.clone()
            });
            if let Some(v) = c.after.as_mut().and_then(|m| m.get_mut(name)).filter(|v| hidden(v)) {
                *v = v.redact_like(before.as_ref());
            }
        }
        c
    }
}

/// An attribute that differs between what state recorded and what is live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttrDrift {
    /// Attribute name.
    pub name: String,
    /// Recorded value (redacted when sensitive).
    pub recorded: Option<Value>,
    /// Live value (redacted when sensitive).
    pub live: Option<Value>,
}

/// An object that changed outside meshform since the last apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Instance address.
    pub address: Addr,
    /// Resource type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Deleted outside meshform.
    pub deleted: bool,
    /// Attributes that changed (empty when deleted).
    pub attributes: Vec<AttrDrift>,
    /// Sensitive attribute names.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sensitive: BTreeSet<String>,
}

/// What a plan was made from, so a saved plan applies only to the same inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// The desired-state file.
    pub config_path: String,
    /// SHA-256 of its text.
    pub config_sha256: String,
    /// Files read by `file()`: path → SHA-256.
    pub files: BTreeMap<String, String>,
    /// Variable values; sensitive ones redacted (their value must be given again at apply).
    pub variables: Map,
    /// `--target` addresses.
    pub targets: Vec<String>,
    /// When data sources were read before expansion (clusters found live): the `for_each` keys
    /// of every block as the plan expanded them, which an apply of the saved plan must find
    /// again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub discovered_keys: BTreeMap<String, Vec<String>>,
}

/// A planned output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedOutput {
    /// Its value (unknown until apply, possibly).
    pub value: Value,
    /// Never shown.
    pub sensitive: bool,
}

/// A whole plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Normal or destroy.
    pub mode: Mode,
    /// State lineage the plan was made against.
    pub lineage: String,
    /// State serial the plan was made against.
    pub serial: u64,
    /// Changes, sorted by address; no-ops included.
    pub changes: Vec<Change>,
    /// Objects found changed outside meshform during refresh.
    pub drift: Vec<Drift>,
    /// What the refresh found that no change covers (unmanaged objects the mesh trusts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<crate::provider::Finding>,
    /// Outputs after apply.
    pub outputs: BTreeMap<String, PlannedOutput>,
    /// What the plan was made from.
    pub inputs: Inputs,
    /// Records moved by `[[moved]]` entries (from, to), made before anything else is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<(Addr, Addr)>,
    /// When the plan was made (RFC 3339, UTC).
    #[serde(default)]
    pub timestamp: String,
}

/// Counts of a plan's changes, as in "Plan: 1 to add, 2 to change, 0 to destroy."
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Creates and replacements.
    pub add: usize,
    /// In-place updates.
    pub change: usize,
    /// Deletes and replacements.
    pub destroy: usize,
    /// Existing objects taken into state.
    #[serde(default)]
    pub adopt: usize,
    /// Records removed from state, the objects left alone.
    #[serde(default)]
    pub forget: usize,
    /// Records moved to another address.
    #[serde(default, rename = "move")]
    pub moved: usize,
}

impl Plan {
    /// The counts.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
                Action::Adopt => s.adopt += 1,
                Action::Forget => s.forget += 1,
                Action::NoOp | Action::Read => {}
            }
        }
        s.moved = self.moves.len();
        s
    }

    /// Whether applying it would change anything (live, or only in state: moves, forgets, what
    /// a refresh-only plan records).
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action.is_change())
            || !self.moves.is_empty()
            || (self.mode == Mode::RefreshOnly && !self.drift.is_empty())
    }

    /// The changes that do something (for rendering).
    pub fn visible_changes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action != Action::NoOp)
    }
}

/// The attribute-level difference between two objects, in name order: (name, before, after).
pub fn attr_diff<'a>(
    before: Option<&'a Map>,
    after: Option<&'a Map>,
) -> Vec<(&'a str, Option<&'a Value>, Option<&'a Value>)> {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    names.extend(before.into_iter().flat_map(|m| m.keys().map(String::as_str)));
    names.extend(after.into_iter().flat_map(|m| m.keys().map(String::as_str)));
    names.into_iter().map(|n| (n, before.and_then(|m| m.get(n)), after.and_then(|m| m.get(n)))).collect()
}

/// Whether two optional attribute values are the same (absent equals null; unknown equals
/// nothing).
pub fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None | Some(Value::Null), None | Some(Value::Null)) => true,
        (Some(Value::Unknown), _) | (_, Some(Value::Unknown)) => false,
        (Some(x), Some(y)) => x.same_as(y),
        _ => false,
    }
}

/// Replaces the redacted (hash-only) attributes of `base` by the plaintext of `known` where that
/// plaintext is what the hash was made from. State keeps only salted hashes of sensitive values,
/// so an unchanged object's sensitive outputs are recovered this way, in memory, for the objects
/// that reference them; without it they would look unknown and be planned again on every run.
pub fn unredact(base: &mut Map, known: &Map) {
    for (name, v) in base.iter_mut() {
        if let (Value::Redacted(_), Some(k)) = (&*v, known.get(name))
            && !k.has_unknown()
            && !matches!(k, Value::Redacted(_))
            && v.same_as(k)
        {
            *v = k.clone();
        }
    }
}

/// Whether any attribute of `m` is known only by its hash.
pub fn has_redacted(m: &Map) -> bool {
    m.values().any(|v| matches!(v, Value::Redacted(_)))
}

/// Whether an actual value fulfils a planned one: unknown parts of the plan match anything,
/// known parts must be the same.
pub fn conforms(planned: &Value, actual: &Value) -> bool {
    match (planned, actual) {
        (Value::Unknown, _) => true,
        (Value::List(p), Value::List(a)) => p.len() == a.len() && p.iter().zip(a).all(|(x, y)| conforms(x, y)),
        (Value::Map(p), Value::Map(a)) => {
            p.len() == a.len() && p.iter().zip(a).all(|((kp, vp), (ka, va))| kp == ka && conforms(vp, va))
        }
        (p, a) => p.same_as(a),
    }
}
