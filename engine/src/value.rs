//! Dynamic values: what expressions evaluate to, what providers read and write, what state holds.
//!
//! Two variants are special. [`Value::Unknown`] stands for a value that is known only after apply
//! ("(known after apply)"). [`Value::Redacted`] stands for a sensitive value of which only a salted
//! hash is kept (state and saved plans never hold the plaintext); it compares equal to a plaintext
//! value whose hash matches.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A map of attribute name to value, sorted so every rendering is deterministic.
pub type Map = BTreeMap<String, Value>;

/// A dynamic value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// No value.
    #[default]
    Null,
    /// true or false.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    String(String),
    /// An ordered list.
    List(Vec<Value>),
    /// A map with string keys (also objects with attributes).
    Map(Map),
    /// Known only after apply.
    Unknown,
    /// A sensitive value kept only as `sha256:SALT:DIGEST` (or `hmac:KEY:SALT:DIGEST`, keyed).
    Redacted(String),
}

impl Value {
    /// Builds a string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// The name of this value's type, as used in diagnostics.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Unknown => "unknown",
            Value::Redacted(_) => "sensitive value",
        }
    }

    /// The text, when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The map, when this is a map.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, when this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The boolean, when this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether this value or anything inside it is unknown.
    pub fn has_unknown(&self) -> bool {
        match self {
            Value::Unknown => true,
            Value::List(l) => l.iter().any(Value::has_unknown),
            Value::Map(m) => m.values().any(Value::has_unknown),
            _ => false,
        }
    }

    /// Text used when a value is interpolated into a string; `None` for lists, maps and unknowns.
    pub fn to_interpolated(&self) -> Option<String> {
        match self {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Converts to JSON for people and tools: unknown becomes null, redacted becomes null.
    pub fn to_plain_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Unknown | Value::Redacted(_) => J::Null,
            Value::List(l) => J::Array(l.iter().map(Value::to_plain_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_plain_json())).collect()),
            other => other.to_json(),
        }
    }

    /// Converts to JSON without loss: unknown and redacted values become marker objects.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Unknown => {
                let mut o = serde_json::Map::new();
                o.insert(UNKNOWN_KEY.into(), J::Bool(true));
                J::Object(o)
            }
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String(s) => J::String(s.clone()),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Value::Redacted(h) => {
                let mut o = serde_json::Map::new();
                o.insert(REDACTED_KEY.into(), J::String(h.clone()));
                J::Object(o)
            }
        }
    }

    /// Converts from JSON, recognising the redacted marker object.
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => n.as_i64().map(Value::Int).unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
            J::String(s) => Value::String(s.clone()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) => {
                if o.len() == 1 {
                    if let Some(J::String(h)) = o.get(REDACTED_KEY) {
                        return Value::Redacted(h.clone());
                    }
                    if o.get(UNKNOWN_KEY) == Some(&J::Bool(true)) {
                        return Value::Unknown;
                    }
                }
                Value::Map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect())
            }
        }
    }

    /// Replaces this value by its salted hash (no-op when already redacted).
    pub fn redact(&self) -> Value {
        match self {
            Value::Redacted(_) => self.clone(),
            Value::Unknown => Value::Unknown,
            v => {
                let mut salt = [0u8; 8];
                // An all-zero salt if the OS has no randomness left is still a valid hash.
                let _ = getrandom::fill(&mut salt);
                Value::Redacted(hash_with_salt(&hex(&salt), v))
            }
        }
    }

    /// Redacts a sensitive attribute's value: a map per key (its key names stay visible, as
    /// `kubectl describe secret` shows them), so an added, removed or changed key is a
    /// difference of its own; anything else whole.
    pub fn redact_keys(&self) -> Value {
        match self {
            Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), v.redact())).collect()),
            v => v.redact(),
        }
    }

    /// Redacts like [`Value::redact_keys`], but reuses `known`'s redaction wherever it stands for
    /// the same value, so two redacted versions of one attribute still compare key by key.
    pub fn redact_like(&self, known: Option<&Value>) -> Value {
        match (self, known) {
            (_, Some(k @ Value::Redacted(h))) if digest_is_current(h) && self.same_as(k) => k.clone(),
            (Value::Map(m), Some(Value::Map(k))) => Value::Map(
                m.iter()
                    .map(|(key, v)| {
                        let r = match k.get(key) {
                            Some(kv @ Value::Redacted(h)) if digest_is_current(h) && v.same_as(kv) => kv.clone(),
                            _ => v.redact(),
                        };
                        (key.clone(), r)
                    })
                    .collect(),
            ),
            (v, _) => v.redact_keys(),
        }
    }

    /// Equality that understands redacted values: a redacted value equals a plaintext one whose
    /// hash under the same salt matches, and two redacted values are equal when their hashes are.
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Redacted(a), Value::Redacted(b)) => a == b,
            (Value::Redacted(h), v) | (v, Value::Redacted(h)) => {
                if matches!(v, Value::Unknown) {
                    return false;
                }
                digest_matches(h, v)
            }
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => *a as f64 == *b,
            (Value::List(a), Value::List(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y)),
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && va.same_as(vb))
            }
            (a, b) => a == b,
        }
    }
}

/// The key of the JSON object that marks a redacted value in state and plan files.
pub const REDACTED_KEY: &str = "(sensitive)";

/// The key of the JSON object that marks an unknown value in saved plans.
pub const UNKNOWN_KEY: &str = "(known after apply)";

/// The keys of sensitive values' digests this process uses: the current one first (its id,
/// its bytes), then older ones that still verify. Empty: plain salted SHA-256.
static DIGEST_KEYS: std::sync::RwLock<Vec<(String, [u8; 32])>> = std::sync::RwLock::new(Vec::new());

/// Makes sensitive values' digests keyed (HMAC-SHA256, `hmac:KEY:SALT:DIGEST`) with `keys` (the
/// current first; older ones still verify, and a digest under one is recomputed under the current
/// key when its value is next redacted). The keys never enter the state: whoever reads it cannot
/// test guesses of a secret offline. Set once by the command, from the state key.
pub fn set_digest_keys(keys: Vec<(String, [u8; 32])>) {
    *DIGEST_KEYS.write().unwrap_or_else(|e| e.into_inner()) = keys;
}

fn digest_keys() -> Vec<(String, [u8; 32])> {
    DIGEST_KEYS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn keyed(key: &[u8; 32], salt: &str, v: &Value) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&k);
    ctx.update(salt.as_bytes());
    ctx.update(b"\0");
    ctx.update(v.to_json().to_string().as_bytes());
    hex(ctx.sign().as_ref())
}

fn hash_with_salt(salt: &str, v: &Value) -> String {
    if let Some((id, key)) = digest_keys().first() {
        return format!("hmac:{id}:{salt}:{}", keyed(key, salt, v));
    }
    plain_hash(salt, v)
}

fn plain_hash(salt: &str, v: &Value) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b"\0");
    h.update(v.to_json().to_string().as_bytes());
    format!("sha256:{salt}:{}", hex(&h.finalize()))
}

/// Whether redacted digest `h` stands for plaintext `v` (under any key given).
fn digest_matches(h: &str, v: &Value) -> bool {
    let parts: Vec<&str> = h.split(':').collect();
    match parts.as_slice() {
        ["sha256", salt, _] => plain_hash(salt, v) == h,
        ["hmac", id, salt, digest] => {
            digest_keys().iter().any(|(kid, key)| kid == id && keyed(key, salt, v) == *digest)
        }
        _ => false,
    }
}

/// Whether digest `h` is of the current kind (keyed with the current key, or plain when there is
/// no key): an older one is recomputed rather than reused.
fn digest_is_current(h: &str) -> bool {
    match digest_keys().first() {
        Some((id, _)) => h.strip_prefix("hmac:").is_some_and(|r| r.starts_with(&format!("{id}:"))),
        None => h.starts_with("sha256:"),
    }
}

/// Lower-case hexadecimal of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 of some bytes, as hexadecimal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 { format!("{}", f as i64) } else { f.to_string() }
}

impl fmt::Display for Value {
    /// Renders a value the way plans show it: strings quoted, lists and maps inline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&format_float(*x)),
            Value::String(s) => write!(f, "{s:?}"),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, " {} = {v}", render_key(k))?;
                }
                f.write_str(if m.is_empty() { "}" } else { " }" })
            }
            Value::Unknown => f.write_str("(known after apply)"),
            Value::Redacted(_) => f.write_str("(sensitive)"),
        }
    }
}

/// A map key as written in TOML: bare when it can be, quoted otherwise.
pub fn render_key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Value::from_json(&serde_json::Value::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_matches_its_plaintext_only() {
        let secret = Value::str("hunter2");
        let r = secret.redact();
        assert!(r.same_as(&secret));
        assert!(!r.same_as(&Value::str("hunter3")));
        assert!(!format!("{r:?}").contains("hunter2"));
        // Each redaction has its own salt, so two hashes of one value differ as text.
        assert_ne!(r, secret.redact());
    }

    #[test]
    fn json_round_trip_keeps_redaction() {
        let v = Value::Map(Map::from([
            ("a".into(), Value::Int(1)),
            ("s".into(), Value::str("x").redact()),
            ("u".into(), Value::List(vec![Value::Unknown])),
        ]));
        assert_eq!(Value::from_json(&v.to_json()), v);
    }
}
