//! Cloud Storage's JSON API, the calls a state store needs: object metadata, pinned downloads,
//! uploads (multipart; resumable above [`RESUMABLE_ABOVE`]) with generation preconditions,
//! metadata patches, conditional deletes and paged lists. Only idempotent calls are retried
//! (reads, and writes and deletes that carry a generation precondition), on 429, 5xx and
//! connection failures, with jittered backoff. Tokens never appear in errors.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{Credentials, backoff, redact_error};

/// Uploads larger than this go resumable (one session, one PUT); smaller ones multipart.
pub const RESUMABLE_ABOVE: usize = 5 << 20;

/// An object's metadata, as the state store uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The object's name.
    pub name: String,
    /// Content version.
    pub generation: u64,
    /// Metadata version within the generation.
    pub metageneration: u64,
    /// Bytes.
    pub size: u64,
    /// Last update (RFC 3339).
    pub updated: String,
    /// Set when the generation is noncurrent (a versioned bucket's earlier version).
    pub deleted: bool,
    /// Custom metadata `meshform-renewal` (a lock's last renewal nonce), when set.
    pub renewal: String,
}

impl Meta {
    fn from_json(j: &Value) -> Meta {
        let n = |k: &str| j[k].as_str().and_then(|s| s.parse().ok()).or_else(|| j[k].as_u64()).unwrap_or(0);
        Meta {
            name: j["name"].as_str().unwrap_or_default().to_string(),
            generation: n("generation"),
            metageneration: n("metageneration"),
            size: n("size"),
            updated: j["updated"].as_str().unwrap_or_default().to_string(),
            deleted: j.get("timeDeleted").is_some_and(|t| !t.is_null()),
            renewal: j["metadata"]["meshform-renewal"].as_str().unwrap_or_default().to_string(),
        }
    }
}

/// How a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcsError {
    /// 404.
    NotFound,
    /// 412: a precondition did not hold.
    Precondition,
    /// Anything else, with its message.
    Failed(String),
}

impl std::fmt::Display for GcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GcsError::NotFound => f.write_str("not found"),
            GcsError::Precondition => f.write_str("a precondition did not hold (412)"),
            GcsError::Failed(m) => f.write_str(m),
        }
    }
}

/// Preconditions of a call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conditions {
    /// `ifGenerationMatch` (0: only if absent).
    pub generation: Option<u64>,
    /// `ifMetagenerationMatch`.
    pub metageneration: Option<u64>,
}

impl Conditions {
    /// Only if the object does not exist.
    pub fn absent() -> Conditions {
        Conditions { generation: Some(0), metageneration: None }
    }

    /// Only if the live generation is `g`.
    pub fn at(g: u64) -> Conditions {
        Conditions { generation: Some(g), metageneration: None }
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(g) = self.generation {
            q.push(("ifGenerationMatch", g.to_string()));
        }
        if let Some(m) = self.metageneration {
            q.push(("ifMetagenerationMatch", m.to_string()));
        }
        q
    }

    fn any(&self) -> bool {
        self.generation.is_some() || self.metageneration.is_some()
    }
}

/// A bucket's client.
pub struct Gcs {
    http: reqwest::Client,
    creds: Credentials,
    /// Base URL (`https://storage.googleapis.com`, or the simulator's).
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// CMEK key for new objects, if any.
    pub kms_key_name: Option<String>,
    /// Attempts per retryable call.
    pub max_attempts: u32,
}

/// Percent-encodes an object name for a path segment (`/` included).
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3 / 2);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// One request to send (built again for each attempt).
struct Call<'a> {
    method: Method,
    url: String,
    query: Vec<(&'static str, String)>,
    body: Option<(&'a [u8], String)>,
    headers: Vec<(&'static str, String)>,
    retry: bool,
}

impl Gcs {
    /// A client for `bucket` at `endpoint`.
    pub fn new(endpoint: &str, bucket: &str, creds: Credentials) -> Result<Gcs, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("meshform/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Gcs {
            http,
            creds,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            kms_key_name: None,
            max_attempts: 6,
        })
    }

    /// `gs://bucket/name`.
    pub fn url_of(&self, name: &str) -> String {
        format!("gs://{}/{name}", self.bucket)
    }

    fn object_url(&self, name: &str) -> String {
        format!("{}/storage/v1/b/{}/o/{}", self.endpoint, encode(&self.bucket), encode(name))
    }

    async fn send(&self, call: Call<'_>) -> Result<Reply, GcsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.creds.token().await.map_err(|e| GcsError::Failed(e.to_string()))?;
            let mut req = self.http.request(call.method.clone(), &call.url).bearer_auth(&token).query(&call.query);
            for (k, v) in &call.headers {
                req = req.header(*k, v);
            }
            if let Some((bytes, ct)) = &call.body {
                req = req.header("content-type", ct).body(bytes.to_vec());
            }
            let what = format!("{} {}", call.method, call.url.split('?').next().unwrap_or(&call.url));
            let failure = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                    match status.as_u16() {
                        200..=399 => return Ok(Reply { status, headers, body }),
                        404 => return Err(GcsError::NotFound),
                        412 => return Err(GcsError::Precondition),
                        429 | 500..=599 => format!("{what}: {} {}", status.as_u16(), message(&body)),
                        _ => return Err(GcsError::Failed(format!("{what}: {} {}", status.as_u16(), message(&body)))),
                    }
                }
                Err(e) => format!("{what}: {}", redact_error(&e)),
            };
            if !call.retry || attempt >= self.max_attempts {
                return Err(GcsError::Failed(failure));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// An object's metadata (`None`: no such object).
    pub async fn meta(&self, name: &str) -> Result<Option<Meta>, GcsError> {
        let call = Call {
            method: Method::GET,
            url: self.object_url(name),
            query: vec![("alt", "json".into())],
            body: None,
            headers: vec![],
            retry: true,
        };
        match self.send(call).await {
            Ok(r) => Ok(Some(Meta::from_json(&parse(&r.body)?))),
            Err(GcsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The bytes of one generation of an object.
    pub async fn download(&self, name: &str, generation: u64) -> Result<Vec<u8>, GcsError> {
        let call = Call {
            method: Method::GET,
            url: self.object_url(name),
            query: vec![("alt", "media".into()), ("generation", generation.to_string())],
            body: None,
            headers: vec![],
            retry: true,
        };
        self.send(call).await.map(|r| r.body)
    }

    /// The current generation's metadata and bytes, consistent (metadata, then the data pinned
    /// to its generation; again when that generation was replaced in between).
    pub async fn read(&self, name: &str) -> Result<Option<(Meta, Vec<u8>)>, GcsError> {
        for _ in 0..5 {
            let Some(meta) = self.meta(name).await? else { return Ok(None) };
            match self.download(name, meta.generation).await {
                Ok(bytes) => return Ok(Some((meta, bytes))),
                Err(GcsError::NotFound) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(GcsError::Failed(format!("{} kept changing while it was read", self.url_of(name))))
    }

    /// Uploads `bytes` as `name` under `cond`, with custom `metadata`; returns the new metadata.
    /// Retried only when conditional.
    pub async fn upload(
        &self,
        name: &str,
        bytes: &[u8],
        content_type: &str,
        cond: Conditions,
        metadata: &Value,
    ) -> Result<Meta, GcsError> {
        let mut resource = json!({"name": name, "contentType": content_type});
        if !metadata.is_null() {
            resource["metadata"] = metadata.clone();
        }
        let mut query = cond.query();
        if let Some(k) = &self.kms_key_name {
            query.push(("kmsKeyName", k.clone()));
        }
        let base = format!("{}/upload/storage/v1/b/{}/o", self.endpoint, encode(&self.bucket));
        if bytes.len() > RESUMABLE_ABOVE {
            return self.upload_resumable(&base, resource, bytes, content_type, query, cond.any()).await;
        }
        let boundary = format!("meshform-{}", uuid_like(bytes));
        let mut body = Vec::with_capacity(bytes.len() + 512);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(resource.to_string().as_bytes());
        body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        query.push(("uploadType", "multipart".into()));
        query.push(("alt", "json".into()));
        let call = Call {
            method: Method::POST,
            url: base,
            query,
            body: Some((&body, format!("multipart/related; boundary={boundary}"))),
            headers: vec![],
            retry: cond.any(),
        };
        let r = self.send(call).await?;
        Ok(Meta::from_json(&parse(&r.body)?))
    }

    async fn upload_resumable(
        &self,
        base: &str,
        resource: Value,
        bytes: &[u8],
        content_type: &str,
        mut query: Vec<(&'static str, String)>,
        retry: bool,
    ) -> Result<Meta, GcsError> {
        query.push(("uploadType", "resumable".into()));
        query.push(("alt", "json".into()));
        let start_body = resource.to_string().into_bytes();
        let start = Call {
            method: Method::POST,
            url: base.to_string(),
            query,
            body: Some((&start_body, "application/json; charset=UTF-8".into())),
            headers: vec![
                ("x-upload-content-type", content_type.to_string()),
                ("x-upload-content-length", bytes.len().to_string()),
            ],
            retry,
        };
        let r = self.send(start).await?;
        let Some(session) = r.headers.get("location").and_then(|v| v.to_str().ok()).map(str::to_string) else {
            return Err(GcsError::Failed("the resumable upload got no session URI".into()));
        };
        // Google's session URI names Google's host; keep its path and query on our endpoint.
        let session = match session.find("/upload/").or_else(|| session.find("/resumable/")) {
            Some(i) => format!("{}{}", self.endpoint, &session[i..]),
            None => session,
        };
        let put = Call {
            method: Method::PUT,
            url: session,
            query: vec![],
            body: Some((bytes, content_type.to_string())),
            headers: vec![("content-range", format!("bytes 0-{}/{}", bytes.len().saturating_sub(1), bytes.len()))],
            retry,
        };
        let r = self.send(put).await?;
        if r.status.as_u16() == 308 {
            return Err(GcsError::Failed("the resumable upload did not finish".into()));
        }
        Ok(Meta::from_json(&parse(&r.body)?))
    }

    /// Sets custom metadata keys under `cond` (a lock's renewal); returns the new metadata.
    pub async fn patch_metadata(&self, name: &str, cond: Conditions, metadata: &Value) -> Result<Meta, GcsError> {
        let body = json!({"metadata": metadata}).to_string().into_bytes();
        let mut query = cond.query();
        query.push(("alt", "json".into()));
        let call = Call {
            method: Method::PATCH,
            url: self.object_url(name),
            query,
            body: Some((&body, "application/json".into())),
            headers: vec![],
            retry: cond.any(),
        };
        let r = self.send(call).await?;
        Ok(Meta::from_json(&parse(&r.body)?))
    }

    /// Deletes an object under `cond` (or one `generation` of it).
    pub async fn delete(&self, name: &str, cond: Conditions, generation: Option<u64>) -> Result<(), GcsError> {
        let mut query = cond.query();
        if let Some(g) = generation {
            query.push(("generation", g.to_string()));
        }
        let call = Call {
            method: Method::DELETE,
            url: self.object_url(name),
            query,
            body: None,
            headers: vec![],
            retry: true,
        };
        self.send(call).await.map(|_| ())
    }

    /// Every object under `prefix` (all pages); with `delimiter`, also the common prefixes;
    /// with `versions`, noncurrent generations too.
    pub async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        versions: bool,
    ) -> Result<(Vec<Meta>, Vec<String>), GcsError> {
        let (mut items, mut prefixes) = (Vec::new(), Vec::new());
        let mut page: Option<String> = None;
        loop {
            let mut query = vec![("alt", "json".to_string()), ("prefix", prefix.to_string())];
            if let Some(d) = delimiter {
                query.push(("delimiter", d.to_string()));
            }
            if versions {
                query.push(("versions", "true".into()));
            }
            if let Some(p) = &page {
                query.push(("pageToken", p.clone()));
            }
            let url = format!("{}/storage/v1/b/{}/o", self.endpoint, encode(&self.bucket));
            let call = Call { method: Method::GET, url, query, body: None, headers: vec![], retry: true };
            let j = parse(&self.send(call).await?.body)?;
            items.extend(j["items"].as_array().into_iter().flatten().map(Meta::from_json));
            prefixes
                .extend(j["prefixes"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(String::from)));
            match j["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => page = Some(t.to_string()),
                _ => return Ok((items, prefixes)),
            }
        }
    }
}

fn parse(body: &[u8]) -> Result<Value, GcsError> {
    serde_json::from_slice(body).map_err(|e| GcsError::Failed(format!("Cloud Storage answered with no JSON: {e}")))
}

/// The error message of a Google error body (or its start).
fn message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(j) => j["error"]["message"].as_str().unwrap_or_default().to_string(),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// A boundary that does not occur in `bytes` (a digest of them, checked).
fn uuid_like(bytes: &[u8]) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut salt = 0u64;
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write(&bytes[..bytes.len().min(64)]);
        let b = format!("{:016x}", h.finish());
        if !bytes.windows(b.len()).any(|w| w == b.as_bytes()) {
            return b;
        }
        salt += 1;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_encoded_slashes_included() {
        assert_eq!(super::encode("a/b c.json"), "a%2Fb%20c.json");
    }
}
