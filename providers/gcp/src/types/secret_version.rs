//! Data source `gcp_secret_version`: one version of a Secret Manager secret, its payload as
//! `secret_data`, like Terraform's `google_secret_manager_secret_version` data source. One call,
//! `projects/P/secrets/S/versions/V:access` (whose reply names the version `latest` resolved to);
//! the payload's CRC32C is checked when the reply carries one (it always does from Google).
//!
//! `secret_data` is sensitive by the schema, and the provider glue also names it in the read's
//! `Object::sensitive`, so the engine keeps it out of state, saved plans and renderings on every
//! path it reads a data source by. No error quotes the payload.

use async_trait::async_trait;
use base64::Engine as _;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use serde_json::Value as J;

use super::GcpType;
use crate::client::{Api, Client};
use crate::convert::{req, s};

/// `gcp_secret_version`: `secret`, `version`, `project`, `is_secret_data_base64` →
/// `secret_data` (sensitive), `name`, `version`.
pub struct SecretVersion;

#[async_trait]
impl GcpType for SecretVersion {
    fn schema(&self) -> TypeSchema {
        TypeSchema::new("gcp_secret_version", TypeKind::Data, "One version of a Secret Manager secret and its data.")
            .attr(
                AttrSchema::new("secret", AttrType::String, Presence::Required)
                    .describe("The secret: its id, or `projects/PROJECT/secrets/ID`."),
            )
            .attr(AttrSchema::new("version", AttrType::String, Presence::OptionalComputed).describe(
                "A version number, or `latest` (the default: the most recently created version, which must be enabled); read back as the number it resolved to.",
            ))
            .attr(
                AttrSchema::new("project", AttrType::String, Presence::OptionalComputed)
                    .describe("The secret's project (default: the one in `secret`, else the provider's)."),
            )
            .attr(AttrSchema::new("is_secret_data_base64", AttrType::Bool, Presence::Optional).describe(
                "true: `secret_data` is the payload in base64 (for binary data); otherwise the payload must be UTF-8 text.",
            ))
            .attr(
                AttrSchema::new("secret_data", AttrType::String, Presence::Computed)
                    .sensitive()
                    .describe("The version's payload (sensitive: never shown, hashed in state and saved plans)."),
            )
            .attr(
                AttrSchema::new("name", AttrType::String, Presence::Computed)
                    .describe("The version's resource name as Google gives it: `projects/NUMBER/secrets/ID/versions/N`."),
            )
    }

    async fn read_data(&self, c: &Client, config: &Map) -> ProviderResult<Map> {
        let (project, secret) = secret_of(c, config)?;
        let version = s(config, "version").unwrap_or_else(|| "latest".into());
        if version != "latest" && !version.parse::<u64>().is_ok_and(|n| n > 0) {
            return Err(invalid(format!("`version` must be a version number or `latest`, not `{version}`")));
        }
        let path = format!("projects/{project}/secrets/{secret}/versions/{version}:access");
        let about = |e: ProviderError| ProviderError {
            message: format!("secret `{secret}` (version {version}) in project `{project}`: {}", e.message),
            ..e
        };
        let reply = c.get(Api::SecretManager, &path).await.map_err(about)?;
        let data = payload(&reply).map_err(about)?;
        let name = reply["name"].as_str().unwrap_or_default().to_string();
        let number = name.rsplit_once("/versions/").map(|(_, n)| n.to_string()).unwrap_or_else(|| version.clone());
        let base64 = config.get("is_secret_data_base64").and_then(Value::as_bool).unwrap_or(false);
        let text = if base64 {
            base64::engine::general_purpose::STANDARD.encode(&data)
        } else {
            String::from_utf8(data).map_err(|_| {
                about(invalid(
                    "the payload is not UTF-8 text; set `is_secret_data_base64 = true` to read it base64-encoded"
                        .into(),
                ))
            })?
        };
        let mut m = config.clone();
        m.insert("project".into(), Value::str(project.clone()));
        m.insert("version".into(), Value::str(number));
        m.insert("name".into(), Value::str(name));
        m.insert("secret_data".into(), Value::String(text));
        Ok(m)
    }
}

fn invalid(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, message)
}

/// Whether `id` is a valid secret id: 1 to 255 ASCII letters, digits, `-`, `_`.
fn valid_id(id: &str) -> bool {
    (1..=255).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The project and secret id of a lookup: `secret` as an id (project from `project` or the
/// provider), or as `projects/P/secrets/ID` (whose project a `project` given must equal).
fn secret_of(c: &Client, config: &Map) -> ProviderResult<(String, String)> {
    let secret = req(config, "secret")?;
    let (project, id) = match secret.strip_prefix("projects/").and_then(|r| r.split_once("/secrets/")) {
        Some((p, id)) => {
            if let Some(other) = s(config, "project").filter(|o| o != p) {
                return Err(invalid(format!(
                    "`secret` names project `{p}` but `project` is `{other}`: give one, or the same in both"
                )));
            }
            let valid_project =
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':');
            if !valid_project {
                return Err(invalid(format!("`secret`: `{p}` is not a project id")));
            }
            (p.to_string(), id.to_string())
        }
        None => (c.project(config)?, secret.clone()),
    };
    if !valid_id(&id) {
        return Err(invalid(format!(
            "`secret` must be a secret id (1 to 255 of A-Z, a-z, 0-9, `-`, `_`) or `projects/PROJECT/secrets/ID`, not `{secret}`"
        )));
    }
    Ok((project, id))
}

/// The bytes of an access reply's `payload.data` (base64, either alphabet), checked against
/// `payload.dataCrc32c` (an int64, as a decimal string or a number) when the reply has one.
fn payload(reply: &J) -> ProviderResult<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let p = &reply["payload"];
    let text = p["data"].as_str().unwrap_or_default().replace('+', "-").replace('/', "_");
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let data = engine
        .decode(text)
        .map_err(|_| ProviderError::new(ErrorKind::Other, "the reply's payload is not valid base64"))?;
    let given = match &p["dataCrc32c"] {
        J::Null => return Ok(data),
        J::String(t) => t.parse::<i64>().ok(),
        J::Number(n) => n.as_i64(),
        _ => None,
    };
    match given {
        Some(crc) if crc == i64::from(crc32c(&data)) => Ok(data),
        Some(_) => Err(ProviderError::new(
            ErrorKind::Transient,
            "the payload does not match its CRC32C (dataCrc32c): it was corrupted in transit; try again",
        )),
        None => Err(ProviderError::new(ErrorKind::Other, "the reply's dataCrc32c is not an integer")),
    }
}

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: payloads are at most 64 KiB.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
        }
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crc32c_is_castagnolis() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // What gcloud computed for "hello\n" (captured).
        assert_eq!(crc32c(b"hello\n"), 893_245_630);
    }

    #[test]
    fn payloads_are_checked_against_their_crc32c() {
        let ok = json!({"payload": {"data": "aGVsbG8K", "dataCrc32c": "893245630"}});
        assert_eq!(payload(&ok).unwrap(), b"hello\n");
        let number = json!({"payload": {"data": "aGVsbG8K", "dataCrc32c": 893_245_630}});
        assert_eq!(payload(&number).unwrap(), b"hello\n");
        let unchecked = json!({"payload": {"data": "-_8"}});
        assert_eq!(payload(&unchecked).unwrap(), [0xfb, 0xff]);
        let corrupted = json!({"payload": {"data": "aGVsbG8K", "dataCrc32c": "893245631"}});
        let e = payload(&corrupted).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transient);
        assert!(!e.message.contains("hello") && !e.message.contains("aGVsbG8K"), "{e}");
        assert!(payload(&json!({"payload": {"data": "!!"}})).is_err());
        assert!(payload(&json!({"payload": {"data": "aGk=", "dataCrc32c": "x"}})).is_err());
    }
}
