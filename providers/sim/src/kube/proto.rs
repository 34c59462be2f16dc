//! Decoding the protobuf request bodies `kubectl create` sends (`k8s\0` + runtime.Unknown) for
//! Namespace, Secret, ServiceAccount, ConfigMap and TokenRequest, into the JSON the store keeps.

use base64::Engine as _;
use serde_json::{Map, Value, json};

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i)?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn next(&mut self) -> Option<(u32, Field<'a>)> {
        if self.i >= self.b.len() {
            return None;
        }
        let key = self.varint()?;
        let (num, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => Some((num, Field::Varint(self.varint()?))),
            2 => {
                let len = self.varint()? as usize;
                let s = self.b.get(self.i..self.i + len)?;
                self.i += len;
                Some((num, Field::Bytes(s)))
            }
            1 => {
                self.i += 8;
                Some((num, Field::Varint(0)))
            }
            5 => {
                self.i += 4;
                Some((num, Field::Varint(0)))
            }
            _ => None,
        }
    }
}

fn fields(b: &[u8]) -> Vec<(u32, Field<'_>)> {
    let mut r = Reader { b, i: 0 };
    std::iter::from_fn(|| r.next()).collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn map_entry(b: &[u8]) -> (String, Vec<u8>) {
    let mut k = String::new();
    let mut v = Vec::new();
    for (n, f) in fields(b) {
        if let Field::Bytes(x) = f {
            match n {
                1 => k = text(x),
                2 => v = x.to_vec(),
                _ => {}
            }
        }
    }
    (k, v)
}

fn object_meta(b: &[u8]) -> Value {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for (n, f) in fields(b) {
        if let Field::Bytes(x) = f {
            match n {
                1 if !x.is_empty() => {
                    m.insert("name".into(), json!(text(x)));
                }
                2 if !x.is_empty() => {
                    m.insert("generateName".into(), json!(text(x)));
                }
                3 if !x.is_empty() => {
                    m.insert("namespace".into(), json!(text(x)));
                }
                11 => {
                    let (k, v) = map_entry(x);
                    labels.insert(k, json!(text(&v)));
                }
                12 => {
                    let (k, v) = map_entry(x);
                    annotations.insert(k, json!(text(&v)));
                }
                _ => {}
            }
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    Value::Object(m)
}

/// Decodes a protobuf body into JSON, or explains why not.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body.strip_prefix(b"k8s\0").ok_or("not a Kubernetes protobuf envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(rest) {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (m, g) in fields(tm) {
                    if let Field::Bytes(x) = g {
                        match m {
                            1 => api_version = text(x),
                            2 => kind = text(x),
                            _ => {}
                        }
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    let b64 = base64::engine::general_purpose::STANDARD;
    for (n, f) in fields(raw) {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(x)) => obj["metadata"] = object_meta(x),
            ("Secret", 2, Field::Bytes(x)) | ("ConfigMap", 2, Field::Bytes(x)) => {
                let (k, v) = map_entry(x);
                let enc = if kind == "Secret" { json!(b64.encode(&v)) } else { json!(text(&v)) };
                if !obj["data"].is_object() {
                    obj["data"] = json!({});
                }
                obj["data"][k] = enc;
            }
            ("Secret", 3, Field::Bytes(x)) if !x.is_empty() => obj["type"] = json!(text(x)),
            ("Secret", 4, Field::Bytes(x)) => {
                let (k, v) = map_entry(x);
                if !obj["stringData"].is_object() {
                    obj["stringData"] = json!({});
                }
                obj["stringData"][k] = json!(text(&v));
            }
            ("Secret", 5, Field::Varint(v)) | ("ConfigMap", 4, Field::Varint(v)) => obj["immutable"] = json!(v != 0),
            ("ServiceAccount", 4, Field::Varint(v)) => obj["automountServiceAccountToken"] = json!(v != 0),
            ("TokenRequest", 2, Field::Bytes(x)) => {
                let mut spec = json!({"audiences": []});
                for (m, g) in fields(x) {
                    match (m, g) {
                        (1, Field::Bytes(a)) => {
                            spec["audiences"].as_array_mut().map(|l| l.push(json!(text(a)))).unwrap_or(())
                        }
                        (4, Field::Varint(s)) => spec["expirationSeconds"] = json!(s),
                        _ => {}
                    }
                }
                obj["spec"] = spec;
            }
            _ => {}
        }
    }
    Ok(obj)
}
