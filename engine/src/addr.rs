//! Addresses of blocks and of their instances: `TYPE.NAME`, `TYPE.NAME["key"]`,
//! `data.TYPE.NAME`, `clusters.NAME`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What kind of block an address names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// `[resources.TYPE.NAME]`: an object meshform creates and owns.
    Managed,
    /// `[data.TYPE.NAME]`: a read-only lookup.
    Data,
    /// `[clusters.NAME]`: a GKE cluster looked up live.
    Cluster,
}

/// The type name clusters are read with (a data type a provider registers).
pub const CLUSTER_TYPE: &str = "cluster";

/// A block: one table of the desired-state file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockAddr {
    /// Managed, data or cluster.
    pub mode: Mode,
    /// The resource type (`cluster` for clusters).
    pub ty: String,
    /// The block's name.
    pub name: String,
}

/// One instance of a block (blocks with `for_each` have one per key).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    /// The block.
    pub block: BlockAddr,
    /// The `for_each` key, if any.
    pub key: Option<String>,
}

impl BlockAddr {
    /// A managed resource block.
    pub fn managed(ty: &str, name: &str) -> BlockAddr {
        BlockAddr { mode: Mode::Managed, ty: ty.into(), name: name.into() }
    }

    /// The instance with `key`.
    pub fn instance(&self, key: Option<String>) -> Addr {
        Addr { block: self.clone(), key }
    }
}

impl Addr {
    /// Whether this instance belongs to `block`.
    pub fn is_in(&self, block: &BlockAddr) -> bool {
        &self.block == block
    }
}

impl fmt::Display for BlockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            Mode::Managed => write!(f, "{}.{}", self.ty, self.name),
            Mode::Data => write!(f, "data.{}.{}", self.ty, self.name),
            Mode::Cluster => write!(f, "clusters.{}", self.name),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.block)?;
        if let Some(k) = &self.key {
            write!(f, "[{k:?}]")?;
        }
        Ok(())
    }
}

impl FromStr for Addr {
    type Err = String;

    /// Parses `TYPE.NAME`, `TYPE.NAME["key"]`, `data.TYPE.NAME`, `clusters.NAME`.
    fn from_str(s: &str) -> Result<Addr, String> {
        let bad = || {
            format!("`{s}` is not an address; expected TYPE.NAME, TYPE.NAME[\"KEY\"], data.TYPE.NAME or clusters.NAME")
        };
        let (head, key) = match s.find('[') {
            Some(i) => {
                let inner = s[i..].strip_prefix('[').and_then(|r| r.strip_suffix(']')).ok_or_else(bad)?;
                let key = if let Some(q) = inner.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                    q.replace("\\\"", "\"").replace("\\\\", "\\")
                } else {
                    inner.to_string()
                };
                (&s[..i], Some(key))
            }
            None => (s, None),
        };
        let parts: Vec<&str> = head.split('.').collect();
        let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !parts.iter().all(|p| ok(p)) {
            return Err(bad());
        }
        let block = match parts.as_slice() {
            ["data", ty, name] => BlockAddr { mode: Mode::Data, ty: ty.to_string(), name: name.to_string() },
            ["clusters", name] => BlockAddr { mode: Mode::Cluster, ty: CLUSTER_TYPE.into(), name: name.to_string() },
            [ty, name] => BlockAddr::managed(ty, name),
            _ => return Err(bad()),
        };
        Ok(Addr { block, key })
    }
}

impl Serialize for Addr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in ["meshform_data.a", "k8s_secret.x[\"c1,c2\"]", "data.gcp_instances.n", "clusters.c1"] {
            assert_eq!(s.parse::<Addr>().unwrap().to_string(), s);
        }
        assert!("a".parse::<Addr>().is_err());
        assert!("a.b.c".parse::<Addr>().is_err());
    }
}
