//! State: what meshform last knew of every object it manages. One JSON document with a format
//! version, a lineage (UUID, fixed for the life of the state) and a serial (incremented by every
//! write). Sensitive attributes are stored only as salted hashes.
//!
//! State is read and written only through this module: [`handle`] holds the rules (lock, read,
//! conditional write, journal replay) over a [`store::StateStore`], which only moves bytes; the
//! local file store is [`local::LocalStore`], the others live with their provider families;
//! [`codec`] turns a state into stored bytes and back.

pub mod codec;
pub mod conformance;
pub mod handle;
pub mod journal;
pub mod local;
pub mod lock;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::addr::Addr;
use crate::value::{Map, Value};

/// The state format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// One object recorded in state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Its address in the desired state.
    pub address: Addr,
    /// Its resource type.
    #[serde(rename = "type")]
    pub ty: String,
    /// The provider's id for it (`attributes.id`).
    pub id: String,
    /// Its attributes; sensitive ones redacted.
    pub attributes: Map,
    /// Names of its sensitive attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_attributes: Vec<String>,
    /// Addresses it depended on when last applied (deletion runs in the reverse order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Addr>,
}

impl ObjectRecord {
    /// A record of `attrs`, redacting every attribute named in `sensitive`.
    pub fn new(address: Addr, ty: &str, mut attrs: Map, sensitive: &BTreeSet<String>, dependencies: Vec<Addr>) -> Self {
        for name in sensitive {
            if let Some(v) = attrs.get_mut(name)
                && !matches!(v, Value::Null)
            {
                *v = v.redact_keys();
            }
        }
        let id = attrs.get("id").and_then(Value::to_interpolated).unwrap_or_default();
        ObjectRecord {
            address,
            ty: ty.to_string(),
            id,
            attributes: attrs,
            sensitive_attributes: sensitive.iter().cloned().collect(),
            dependencies,
        }
    }

    /// The sensitive attribute names as a set.
    pub fn sensitive_set(&self) -> BTreeSet<String> {
        self.sensitive_attributes.iter().cloned().collect()
    }
}

/// The state document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Identity of this state's history; a saved plan only applies to the same lineage.
    pub lineage: String,
    /// Incremented by every write.
    pub serial: u64,
    /// The meshform version that wrote it.
    pub meshform_version: String,
    /// Objects by address.
    #[serde(with = "objects_as_list")]
    pub objects: BTreeMap<Addr, ObjectRecord>,
    /// Output values after the last apply (sensitive ones redacted).
    #[serde(default)]
    pub outputs: Map,
    /// How to look up again each cluster objects of this state live in (its `[clusters.NAME]`
    /// settings as last declared), so that objects in a cluster that left `[clusters]` can still
    /// be read and deleted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, Map>,
}

impl State {
    /// A new, empty state. Its lineage is assigned when it is first written, so that a plan
    /// made against "no state yet" still applies to it.
    pub fn new() -> State {
        State {
            format_version: FORMAT_VERSION,
            lineage: String::new(),
            serial: 0,
            meshform_version: env!("CARGO_PKG_VERSION").to_string(),
            objects: BTreeMap::new(),
            outputs: Map::new(),
            clusters: BTreeMap::new(),
        }
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

mod objects_as_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<Addr, ObjectRecord>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Addr, ObjectRecord>, D::Error> {
        let v: Vec<ObjectRecord> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|r| (r.address.clone(), r)).collect())
    }
}

/// One change to the objects of a state, as journaled during apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// The object now exists with this record.
    Put {
        /// The record.
        record: ObjectRecord,
    },
    /// The object no longer exists.
    Remove {
        /// Its address.
        address: Addr,
    },
}

impl Change {
    /// Applies the change to a state's objects.
    pub fn apply_to(self, objects: &mut BTreeMap<Addr, ObjectRecord>) {
        match self {
            Change::Put { record } => {
                objects.insert(record.address.clone(), record);
            }
            Change::Remove { address } => {
                objects.remove(&address);
            }
        }
    }
}
