//! How a state becomes bytes in a store and back: JSON, with the format version checked on the
//! way in; with a state key, sealed with AES-256-GCM. One home for it, so every store writes the
//! same document, the same sealed envelope and the same journal lines.
//!
//! A key is 32 random bytes (base64 or hex). From it two keys are derived (HMAC-SHA256 with
//! fixed labels): one seals, the other keys the digests of sensitive values
//! ([`crate::value::set_digest_keys`]); the key itself is never stored. Sealed forms name the
//! key's id (a digest of the derived keys), so after a rotation (the new key first, the old ones
//! after it) old versions still open and every write uses the new key.
//! - State: `{"meshform_encrypted": 1, "lineage", "serial", "key", "data"}`, `data` the base64
//!   of nonce ‖ ciphertext ‖ tag; lineage and serial are in the clear (a reader needs them to
//!   order versions) and bound as associated data, and checked against the plaintext.
//! - Journal lines and saved plans: `e1:KEY:BASE64` with their own associated data.

use std::sync::Arc;

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use serde_json::Value as J;

use super::{FORMAT_VERSION, State};

/// One state key, as derived from its secret.
#[derive(Clone)]
pub struct StateKey {
    /// Names the key in sealed forms (not secret).
    pub id: String,
    seal: [u8; 32],
    /// The key of sensitive values' digests.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateKey({})", self.id)
    }
}

fn derive(secret: &[u8], label: &str) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&k, label.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

impl StateKey {
    /// A key from its text: base64 or hex of at least 32 bytes.
    pub fn parse(text: &str) -> Result<StateKey, String> {
        let t = text.trim();
        let bytes = if t.len() >= 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..t.len() / 2).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
                .map_err(|_| {
                    "a state key is base64 (or hex) of 32 random bytes, e.g. from `openssl rand -base64 32`".to_string()
                })?
        };
        if bytes.len() < 32 {
            return Err(format!("a state key needs at least 32 bytes of randomness, this one has {}", bytes.len()));
        }
        Ok(StateKey::from_secret(&bytes))
    }

    /// A key from its secret bytes.
    pub fn from_secret(secret: &[u8]) -> StateKey {
        let seal = derive(secret, "meshform state sealing v1");
        let digest = derive(secret, "meshform sensitive digests v1");
        let id = crate::value::sha256_hex(&[seal.as_slice(), digest.as_slice()].concat())[..12].to_string();
        StateKey { id, seal, digest }
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte key is always a valid AES-256 key.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.seal).unwrap_or_else(|_| unreachable!()))
    }
}

/// Turns states, journal lines and saved plans into stored bytes and back.
#[derive(Clone, Debug, Default)]
pub struct Codec {
    /// The key that seals (first) and the older ones that still open.
    keys: Arc<Vec<StateKey>>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Codec {
    /// Plain JSON.
    pub fn plain() -> Codec {
        Codec::default()
    }

    /// Sealing with `current`; `old` keys still open what they sealed.
    pub fn with_keys(current: StateKey, old: Vec<StateKey>) -> Codec {
        let mut keys = vec![current];
        keys.extend(old);
        Codec { keys: Arc::new(keys) }
    }

    /// Whether this codec seals.
    pub fn encrypts(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The keys, the sealing one first.
    pub fn keys(&self) -> &[StateKey] {
        &self.keys
    }

    fn seal(&self, key: &StateKey, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness for a nonce: {e}"))?;
        let mut buf = plain.to_vec();
        key.aead()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|_| "sealing failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open(&self, key_id: &str, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, String> {
        let Some(key) = self.keys.iter().find(|k| k.id == key_id) else {
            return Err(if self.keys.is_empty() {
                format!("{what} is encrypted (key {key_id}): set MESHFORM_STATE_KEY (or [state] encryption_key_file)")
            } else {
                format!("{what} is encrypted with key {key_id}, which is not among the keys given (a wrong key?)")
            });
        };
        if sealed.len() < NONCE_LEN {
            return Err(format!("{what} is damaged: too short to be sealed"));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| format!("{what} is damaged"))?;
        let mut buf = ct.to_vec();
        let plain = key
            .aead()
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| format!("{what} does not open with key {key_id}: it was changed (tampered) or damaged"))?;
        Ok(plain.to_vec())
    }

    fn seal_text(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
        match self.keys.first() {
            None => Ok(plain.to_vec()),
            Some(k) => Ok(format!("e1:{}:{}", k.id, b64().encode(self.seal(k, plain, aad)?)).into_bytes()),
        }
    }

    fn open_text(&self, bytes: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, String> {
        let Some(rest) = bytes.strip_prefix(b"e1:") else {
            return Ok(bytes.to_vec());
        };
        let text = std::str::from_utf8(rest).map_err(|_| format!("{what} is damaged"))?;
        let (key_id, data) = text.trim_end().split_once(':').ok_or_else(|| format!("{what} is damaged"))?;
        let sealed = b64().decode(data).map_err(|_| format!("{what} is damaged (torn?)"))?;
        self.open(key_id, &sealed, aad, what)
    }

    /// A journal line as stored.
    pub fn seal_line(&self, line: &[u8]) -> Result<Vec<u8>, String> {
        self.seal_text(line, b"meshform-journal")
    }

    /// A stored journal line's content.
    pub fn open_line(&self, line: &[u8]) -> Result<Vec<u8>, String> {
        self.open_text(line, b"meshform-journal", "a journal line")
    }

    /// A saved plan's bytes as written.
    pub fn seal_plan(&self, plan: &[u8]) -> Result<Vec<u8>, String> {
        self.seal_text(plan, b"meshform-plan")
    }

    /// A saved plan's content.
    pub fn open_plan(&self, bytes: &[u8], what: &str) -> Result<Vec<u8>, String> {
        self.open_text(bytes, b"meshform-plan", what)
    }

    /// The bytes a store keeps for `state`.
    pub fn encode_state(&self, state: &State) -> Result<Vec<u8>, String> {
        let mut body = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        body.push(b'\n');
        let Some(key) = self.keys.first() else { return Ok(body) };
        let aad = format!("meshform-state\0{}\0{}", state.lineage, state.serial);
        let sealed = self.seal(key, &body, aad.as_bytes())?;
        let envelope = serde_json::json!({
            "meshform_encrypted": 1,
            "lineage": state.lineage,
            "serial": state.serial,
            "key": key.id,
            "data": b64().encode(sealed),
        });
        let mut out = serde_json::to_vec_pretty(&envelope).map_err(|e| e.to_string())?;
        out.push(b'\n');
        Ok(out)
    }

    /// The state stored as `bytes` at `location`.
    pub fn decode_state(&self, bytes: &[u8], location: &str) -> Result<State, String> {
        let what = format!("state {location}");
        let plain = match serde_json::from_slice::<J>(bytes) {
            Ok(env) if env.get("meshform_encrypted").is_some() => {
                let lineage = env["lineage"].as_str().unwrap_or_default();
                let serial = env["serial"].as_u64().unwrap_or_default();
                let key = env["key"].as_str().unwrap_or_default();
                let data =
                    b64().decode(env["data"].as_str().unwrap_or_default()).map_err(|_| format!("{what} is damaged"))?;
                let aad = format!("meshform-state\0{lineage}\0{serial}");
                let plain = self.open(key, &data, aad.as_bytes(), &what)?;
                let state = parse_state(&plain, &what)?;
                if state.lineage != lineage || state.serial != serial {
                    return Err(format!("{what}: its envelope does not match its content (tampered)"));
                }
                return Ok(state);
            }
            _ => bytes,
        };
        parse_state(plain, &what)
    }

    /// Whether `bytes` are a sealed state.
    pub fn is_sealed_state(bytes: &[u8]) -> bool {
        serde_json::from_slice::<J>(bytes).is_ok_and(|j| j.get("meshform_encrypted").is_some())
    }
}

fn parse_state(bytes: &[u8], what: &str) -> Result<State, String> {
    let state: State = serde_json::from_slice(bytes).map_err(|e| format!("{what} is not valid: {e}"))?;
    if state.format_version > FORMAT_VERSION {
        return Err(format!(
            "{what} has format version {}, newer than this meshform understands ({FORMAT_VERSION})",
            state.format_version
        ));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> StateKey {
        StateKey::from_secret(&[b; 32])
    }

    #[test]
    fn a_sealed_state_opens_with_its_key_only_and_detects_tampering() {
        let mut s = State::new();
        s.lineage = "L".into();
        s.serial = 7;
        let c = Codec::with_keys(key(1), vec![]);
        let bytes = c.encode_state(&s).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        assert!(!text.contains("format_version") && text.contains("\"serial\": 7"), "{text}");
        assert_eq!(c.decode_state(&bytes, "x").unwrap(), s);
        let e = Codec::plain().decode_state(&bytes, "x").unwrap_err();
        assert!(e.contains("set MESHFORM_STATE_KEY"), "{e}");
        let e = Codec::with_keys(key(2), vec![]).decode_state(&bytes, "x").unwrap_err();
        assert!(e.contains("not among the keys"), "{e}");
        // Flip one byte of the ciphertext; then change the clear serial.
        let mut env: J = serde_json::from_slice(&bytes).unwrap();
        let mut data = b64().decode(env["data"].as_str().unwrap()).unwrap();
        data[20] ^= 1;
        env["data"] = b64().encode(&data).into();
        let e = c.decode_state(&serde_json::to_vec(&env).unwrap(), "x").unwrap_err();
        assert!(e.contains("tampered"), "{e}");
        let mut env: J = serde_json::from_slice(&bytes).unwrap();
        env["serial"] = 8.into();
        assert!(c.decode_state(&serde_json::to_vec(&env).unwrap(), "x").unwrap_err().contains("tampered"));
    }

    #[test]
    fn rotation_opens_old_and_seals_new() {
        let old = Codec::with_keys(key(1), vec![]);
        let line = old.seal_line(b"{\"op\":\"remove\"}").unwrap();
        let rotated = Codec::with_keys(key(2), vec![key(1)]);
        assert_eq!(rotated.open_line(&line).unwrap(), b"{\"op\":\"remove\"}");
        let new = rotated.seal_line(b"x").unwrap();
        assert!(String::from_utf8_lossy(&new).contains(&key(2).id));
        assert!(old.open_line(&new).is_err());
        assert!(StateKey::parse("c2hvcnQ=").unwrap_err().contains("at least 32 bytes"));
        assert_eq!(StateKey::parse(&"ab".repeat(32)).unwrap().id, StateKey::from_secret(&[0xab; 32]).id);
    }
}
