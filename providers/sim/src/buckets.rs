//! Cloud Storage as data: buckets, their objects' generations (live and, in a versioned bucket,
//! noncurrent), resumable upload sessions, and the rules the JSON API applies to them —
//! preconditions, versioning, list order, prefixes and pages — with the JSON resources it
//! returns. No HTTP here: `storage` serves it. Generations come from one counter (a large,
//! microsecond-like base plus a count), so they are strictly increasing and the same on every
//! run; times are the wall clock's, as the store's are.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::body::Bytes;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::errors::{ApiError, ApiResult, Style};
use crate::hashes::{crc32c_base64, md5_base64};
use crate::support::percent_encode;
use crate::world::BucketSpec;

/// The first generation handed out is just above this (about November 2023 in microseconds, as
/// real generations are microsecond timestamps).
pub const GENERATION_BASE: u64 = 1_700_000_000_000_000;
/// The most `maxResults` a list page holds (and its default).
pub const MAX_RESULTS: usize = 1000;
const ST: Style = Style::Storage;

/// One generation of an object.
#[derive(Clone, Debug)]
pub struct Version {
    /// Object name.
    pub name: String,
    /// Content version.
    pub generation: u64,
    /// Metadata version of this generation (1, then +1 per patch).
    pub metageneration: u64,
    /// The bytes.
    pub data: Bytes,
    /// `contentType`.
    pub content_type: String,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// `md5Hash` (base64).
    pub md5: String,
    /// `crc32c` (base64, big-endian).
    pub crc32c: String,
    /// `kmsKeyName` (with its `/cryptoKeyVersions/1`), when the insert named a key.
    pub kms_key_name: Option<String>,
    /// `timeCreated` (also `timeFinalized` and `timeStorageClassUpdated`).
    pub time_created: String,
    /// `updated`.
    pub updated: String,
    /// `timeDeleted`: when it stopped being live (noncurrent generations only).
    pub time_deleted: Option<String>,
}

/// A bucket and its objects.
#[derive(Clone, Debug)]
pub struct Bucket {
    /// Bucket name.
    pub name: String,
    /// Object versioning.
    pub versioning: bool,
    /// Location.
    pub location: String,
    /// `timeCreated`.
    pub time_created: String,
    /// The live generation of each object, by name.
    pub live: BTreeMap<String, Version>,
    /// Noncurrent generations by name, oldest first (versioned buckets only).
    pub noncurrent: BTreeMap<String, Vec<Version>>,
}

/// What an insert writes.
#[derive(Clone, Debug, Default)]
pub struct NewObject {
    /// Object name.
    pub name: String,
    /// `contentType` (`application/octet-stream` when none).
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// `kmsKeyName` as the request gave it (a key, or a key version).
    pub kms_key_name: Option<String>,
    /// `md5Hash` the client expects (checked against the data).
    pub md5: Option<String>,
    /// `crc32c` the client expects (checked against the data).
    pub crc32c: Option<String>,
}

/// The four preconditions (`ifGenerationMatch` ...); `None` is "not given".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `ifGenerationMatch` (0: no live object).
    pub generation_match: Option<u64>,
    /// `ifGenerationNotMatch` (0: a live object).
    pub generation_not_match: Option<u64>,
    /// `ifMetagenerationMatch`.
    pub metageneration_match: Option<u64>,
    /// `ifMetagenerationNotMatch`.
    pub metageneration_not_match: Option<u64>,
}

/// Whether a request reads (a failed `…NotMatch` is then 304, not 412).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// get.
    Read,
    /// insert, patch, delete.
    Write,
}

impl Conditions {
    /// The preconditions of a query; 400 when one is not a number.
    pub fn from_query(q: &HashMap<String, String>) -> ApiResult<Conditions> {
        let get = |k: &str| -> ApiResult<Option<u64>> {
            match q.get(k) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| ApiError::invalid(ST, format!("Invalid argument for {k}: '{v}' is not a number."))),
            }
        };
        Ok(Conditions {
            generation_match: get("ifGenerationMatch")?,
            generation_not_match: get("ifGenerationNotMatch")?,
            metageneration_match: get("ifMetagenerationMatch")?,
            metageneration_not_match: get("ifMetagenerationNotMatch")?,
        })
    }

    /// Checks them against `target` (its generation and metageneration; `None`: no object).
    pub fn check(&self, target: Option<(u64, u64)>, access: Access) -> ApiResult<()> {
        let gen_ok = self.generation_match.is_none_or(|n| match target {
            None => n == 0,
            Some((g, _)) => g == n,
        });
        let meta_ok = self.metageneration_match.is_none_or(|n| match target {
            None => n == 0,
            Some((_, m)) => m == n,
        });
        if !gen_ok || !meta_ok {
            return Err(ApiError::storage_condition_not_met());
        }
        let not_ok = self.generation_not_match.is_some_and(|n| target.is_none_or(|(g, _)| g == n))
            || self.metageneration_not_match.is_some_and(|n| target.is_none_or(|(_, m)| m == n));
        match (not_ok, access) {
            (false, _) => Ok(()),
            (true, Access::Read) => Err(ApiError::storage_not_modified()),
            (true, Access::Write) => Err(ApiError::storage_condition_not_met()),
        }
    }
}

/// What a list asks for.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Only names starting with this.
    pub prefix: String,
    /// Names with this after the prefix are rolled up into `prefixes`.
    pub delimiter: Option<String>,
    /// Page size (1..=1000).
    pub max_results: usize,
    /// Where the previous page stopped.
    pub page_token: Option<String>,
    /// Only names at or after this.
    pub start_offset: Option<String>,
    /// Only names before this.
    pub end_offset: Option<String>,
    /// Every generation, noncurrent ones included.
    pub versions: bool,
    /// An object whose name ends at the delimiter is listed as an item too, besides its prefix.
    pub include_trailing_delimiter: bool,
}

/// One page of a list.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Objects (generations), in name then generation order.
    pub items: Vec<Version>,
    /// Rolled-up prefixes, sorted.
    pub prefixes: Vec<String>,
    /// Where the next page starts, when there is one.
    pub next_page_token: Option<String>,
}

/// A resumable upload session.
#[derive(Clone, Debug)]
pub struct Upload {
    /// Target bucket.
    pub bucket: String,
    /// What the start request asked for.
    pub object: NewObject,
    /// The start request's preconditions, checked when the upload finishes.
    pub conditions: Conditions,
    /// Bytes received so far.
    pub data: Vec<u8>,
    /// The generation it wrote, once finished (a later PUT is answered with it).
    pub finished: Option<Version>,
}

/// A resumable upload's `PUT`, from its `Content-Range`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// `bytes */N` or `bytes */*` with no body: where is the upload (N: the total, declaring
    /// the upload complete when that much has arrived).
    Status {
        /// The total size, when given.
        total: Option<u64>,
    },
    /// `bytes A-B/N` (or `/*`) and B-A+1 bytes.
    Data {
        /// Offset of the first byte.
        first: u64,
        /// The total size, when given.
        total: Option<u64>,
    },
}

/// Where a resumable upload stands after a `PUT`.
#[derive(Clone, Debug)]
pub enum UploadState {
    /// Not finished: this many bytes persisted (308).
    Partial(u64),
    /// Finished: the object written (200).
    Done(Box<Version>),
}

/// Every bucket, the generation counter and the resumable sessions.
#[derive(Clone, Debug, Default)]
pub struct Buckets {
    /// Buckets by name.
    pub buckets: BTreeMap<String, Bucket>,
    /// Resumable sessions by upload id.
    pub uploads: BTreeMap<String, Upload>,
    generations: u64,
    upload_ids: u64,
}

fn no_bucket() -> ApiError {
    ApiError::not_found(ST, "The specified bucket does not exist.")
}

fn no_object(bucket: &str, name: &str) -> ApiError {
    ApiError::not_found(ST, format!("No such object: {bucket}/{name}"))
}

/// An object name the API accepts: 1 to 1024 bytes of UTF-8, no CR or LF, not `.` or `..`.
fn check_name(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(ApiError::invalid(ST, "Required"));
    }
    if name.len() > 1024 || name.contains(['\r', '\n']) || name == "." || name == ".." {
        return Err(ApiError::invalid(ST, "The specified object name is not valid."));
    }
    Ok(())
}

/// The `kmsKeyName` a real object shows: the key's first version.
fn kms_version(key: &str) -> String {
    if key.contains("/cryptoKeyVersions/") { key.to_string() } else { format!("{key}/cryptoKeyVersions/1") }
}

impl Bucket {
    /// A bucket's resource; `project_number` as Cloud Storage shows it.
    pub fn resource(&self, project_number: &str, base: &str) -> Value {
        json!({
            "kind": "storage#bucket", "id": self.name, "name": self.name,
            "selfLink": format!("{base}/storage/v1/b/{}", self.name),
            "projectNumber": project_number, "metageneration": "1", "location": self.location,
            "locationType": if self.location.contains('-') { "region" } else { "multi-region" },
            "storageClass": "STANDARD", "etag": "CAE=", "timeCreated": self.time_created,
            "updated": self.time_created, "versioning": {"enabled": self.versioning},
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true},
                                 "publicAccessPrevention": "enforced"},
            "rpo": "DEFAULT",
        })
    }

    fn version_mut(&mut self, name: &str, generation: Option<u64>) -> Option<&mut Version> {
        match generation {
            None => self.live.get_mut(name),
            Some(g) => match self.live.get_mut(name) {
                Some(v) if v.generation == g => Some(v),
                _ => self.noncurrent.get_mut(name)?.iter_mut().find(|v| v.generation == g),
            },
        }
    }

    /// Every generation of every object, in name then generation order (`versions=true`), or
    /// the live ones.
    fn all(&self, versions: bool) -> Vec<&Version> {
        if !versions {
            return self.live.values().collect();
        }
        let mut out: Vec<&Version> = self.live.values().chain(self.noncurrent.values().flatten()).collect();
        out.sort_by(|a, b| (&a.name, a.generation).cmp(&(&b.name, b.generation)));
        out
    }

    /// Makes `v` the live generation; the one it replaces is kept noncurrent when versioned.
    fn put_live(&mut self, v: Version, now: &str) {
        if let Some(mut old) = self.live.insert(v.name.clone(), v)
            && self.versioning
        {
            old.time_deleted = Some(now.to_string());
            self.noncurrent.entry(old.name.clone()).or_default().push(old);
        }
    }
}

impl Version {
    /// The object resource of this generation in `bucket`, links on `base`.
    pub fn resource(&self, bucket: &str, base: &str) -> Value {
        let enc = percent_encode(&self.name);
        let g = self.generation;
        let mut o = json!({
            "kind": "storage#object", "id": format!("{bucket}/{}/{g}", self.name),
            "selfLink": format!("{base}/storage/v1/b/{bucket}/o/{enc}"),
            "mediaLink": format!("{base}/download/storage/v1/b/{bucket}/o/{enc}?generation={g}&alt=media"),
            "name": self.name, "bucket": bucket, "generation": g.to_string(),
            "metageneration": self.metageneration.to_string(), "contentType": self.content_type,
            "storageClass": "STANDARD", "size": self.data.len().to_string(), "md5Hash": self.md5,
            "crc32c": self.crc32c, "etag": self.etag(), "timeCreated": self.time_created,
            "updated": self.updated, "timeStorageClassUpdated": self.time_created,
            "timeFinalized": self.time_created,
        });
        if !self.metadata.is_empty() {
            o["metadata"] = json!(self.metadata);
        }
        if let Some(k) = &self.kms_key_name {
            o["kmsKeyName"] = json!(k);
        }
        if let Some(t) = &self.time_deleted {
            o["timeDeleted"] = json!(t);
        }
        o
    }

    /// The etag real objects carry: base64 of the protobuf (generation = 1, metageneration = 2).
    pub fn etag(&self) -> String {
        fn varint(out: &mut Vec<u8>, mut n: u64) {
            while n >= 0x80 {
                out.push((n as u8 & 0x7f) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
        }
        let mut b = vec![0x08];
        varint(&mut b, self.generation);
        b.push(0x10);
        varint(&mut b, self.metageneration);
        base64::engine::general_purpose::STANDARD.encode(b)
    }
}

/// The sort key of a list entry: a prefix (generation 0) or an object generation.
type Key = (String, u64);

fn token_of(k: &Key) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}\n{}", k.0, k.1))
}

fn key_of_token(t: &str) -> ApiResult<Key> {
    let bad = || ApiError::invalid(ST, "Invalid page token.");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (name, g) = text.rsplit_once('\n').ok_or_else(bad)?;
    Ok((name.to_string(), g.parse().map_err(|_| bad())?))
}

impl Buckets {
    /// The buckets of a world.
    pub fn seed(specs: &[BucketSpec], now: &str) -> Buckets {
        let mut b = Buckets::default();
        for s in specs {
            b.buckets.insert(
                s.name.clone(),
                Bucket {
                    name: s.name.clone(),
                    versioning: s.versioning,
                    location: s.location.clone(),
                    time_created: now.to_string(),
                    live: BTreeMap::new(),
                    noncurrent: BTreeMap::new(),
                },
            );
        }
        b
    }

    /// A bucket, or the API's 404.
    pub fn bucket(&self, name: &str) -> ApiResult<&Bucket> {
        self.buckets.get(name).ok_or_else(no_bucket)
    }

    fn bucket_mut(&mut self, name: &str) -> ApiResult<&mut Bucket> {
        self.buckets.get_mut(name).ok_or_else(no_bucket)
    }

    fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        GENERATION_BASE + self.generations
    }

    /// Writes a new generation of `obj.name` (objects.insert, every upload kind), if `cond`
    /// holds against the live one.
    pub fn insert(
        &mut self,
        bucket: &str,
        obj: &NewObject,
        data: Bytes,
        cond: &Conditions,
        now: &str,
    ) -> ApiResult<Version> {
        check_name(&obj.name)?;
        let (md5, crc32c) = (md5_base64(&data), crc32c_base64(&data));
        if let Some(want) = obj.md5.as_ref().filter(|w| **w != md5) {
            return Err(ApiError::invalid(
                ST,
                format!("Provided MD5 hash \"{want}\" doesn't match calculated MD5 hash \"{md5}\"."),
            ));
        }
        if let Some(want) = obj.crc32c.as_ref().filter(|w| **w != crc32c) {
            return Err(ApiError::invalid(
                ST,
                format!("Provided CRC32C \"{want}\" doesn't match calculated CRC32C \"{crc32c}\"."),
            ));
        }
        let live = self.bucket(bucket)?.live.get(&obj.name).map(|v| (v.generation, v.metageneration));
        cond.check(live, Access::Write)?;
        let v = Version {
            name: obj.name.clone(),
            generation: self.next_generation(),
            metageneration: 1,
            data,
            content_type: obj.content_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
            metadata: obj.metadata.clone(),
            md5,
            crc32c,
            kms_key_name: obj.kms_key_name.as_deref().map(kms_version),
            time_created: now.to_string(),
            updated: now.to_string(),
            time_deleted: None,
        };
        self.bucket_mut(bucket)?.put_live(v.clone(), now);
        Ok(v)
    }

    /// A generation (the live one, or `generation`), if `cond` holds against it.
    pub fn get(&self, bucket: &str, name: &str, generation: Option<u64>, cond: &Conditions) -> ApiResult<Version> {
        let b = self.bucket(bucket)?;
        let v = match generation {
            None => b.live.get(name),
            Some(g) => b
                .live
                .get(name)
                .filter(|v| v.generation == g)
                .or_else(|| b.noncurrent.get(name).and_then(|vs| vs.iter().find(|v| v.generation == g))),
        };
        let v = v.ok_or_else(|| no_object(bucket, name))?;
        cond.check(Some((v.generation, v.metageneration)), Access::Read)?;
        Ok(v.clone())
    }

    /// objects.patch: `contentType` and `metadata` (a null value removes its key; a null map
    /// removes them all) of a generation; bumps its metageneration.
    pub fn patch(
        &mut self,
        (bucket, name): (&str, &str),
        generation: Option<u64>,
        cond: &Conditions,
        body: &Value,
        now: &str,
    ) -> ApiResult<Version> {
        let v = self.bucket_mut(bucket)?.version_mut(name, generation).ok_or_else(|| no_object(bucket, name))?;
        cond.check(Some((v.generation, v.metageneration)), Access::Write)?;
        if let Some(ct) = body.get("contentType") {
            v.content_type = ct.as_str().unwrap_or("application/octet-stream").to_string();
        }
        match body.get("metadata") {
            Some(Value::Null) => v.metadata.clear(),
            Some(Value::Object(m)) => {
                for (k, val) in m {
                    match val {
                        Value::Null => {
                            v.metadata.remove(k);
                        }
                        Value::String(s) => {
                            v.metadata.insert(k.clone(), s.clone());
                        }
                        other => {
                            v.metadata.insert(k.clone(), other.to_string());
                        }
                    }
                }
            }
            Some(_) => return Err(ApiError::invalid(ST, "Invalid value for metadata: not an object.")),
            None => {}
        }
        v.metageneration += 1;
        v.updated = now.to_string();
        Ok(v.clone())
    }

    /// objects.delete: the live generation (kept noncurrent when versioned) or, with
    /// `generation`, that one for good.
    pub fn delete(
        &mut self,
        (bucket, name): (&str, &str),
        generation: Option<u64>,
        cond: &Conditions,
        now: &str,
    ) -> ApiResult<()> {
        let b = self.bucket_mut(bucket)?;
        let v = b.version_mut(name, generation).ok_or_else(|| no_object(bucket, name))?;
        cond.check(Some((v.generation, v.metageneration)), Access::Write)?;
        let g = v.generation;
        if b.live.get(name).is_some_and(|l| l.generation == g) {
            let Some(mut old) = b.live.remove(name) else { return Ok(()) };
            if b.versioning && generation.is_none() {
                old.time_deleted = Some(now.to_string());
                b.noncurrent.entry(name.to_string()).or_default().push(old);
            }
        } else if let Some(vs) = b.noncurrent.get_mut(name) {
            vs.retain(|v| v.generation != g);
            if vs.is_empty() {
                b.noncurrent.remove(name);
            }
        }
        Ok(())
    }

    /// objects.list: one page.
    pub fn list(&self, bucket: &str, q: &ListQuery) -> ApiResult<ListPage> {
        let b = self.bucket(bucket)?;
        let after = q.page_token.as_deref().filter(|t| !t.is_empty()).map(key_of_token).transpose()?;
        let mut entries: BTreeMap<Key, Option<&Version>> = BTreeMap::new();
        for v in b.all(q.versions) {
            let Some(rest) = v.name.strip_prefix(q.prefix.as_str()) else { continue };
            if q.start_offset.as_ref().is_some_and(|s| v.name < *s)
                || q.end_offset.as_ref().is_some_and(|e| !e.is_empty() && v.name >= *e)
            {
                continue;
            }
            let cut = q.delimiter.as_deref().filter(|d| !d.is_empty()).and_then(|d| rest.find(d).map(|i| i + d.len()));
            if let Some(end) = cut {
                entries.insert((format!("{}{}", q.prefix, &rest[..end]), 0), None);
                if !(q.include_trailing_delimiter && end == rest.len()) {
                    continue;
                }
            }
            entries.insert((v.name.clone(), v.generation), Some(v));
        }
        let mut page = ListPage::default();
        let mut prefixes = BTreeSet::new();
        let mut remaining = entries.iter().filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a)).peekable();
        let mut last = None;
        for (k, v) in remaining.by_ref().take(q.max_results.clamp(1, MAX_RESULTS)) {
            match v {
                Some(v) => page.items.push((*v).clone()),
                None => {
                    prefixes.insert(k.0.clone());
                }
            }
            last = Some(k);
        }
        if remaining.peek().is_some() {
            page.next_page_token = last.map(token_of);
        }
        page.prefixes = prefixes.into_iter().collect();
        Ok(page)
    }

    /// Starts a resumable upload into `bucket`; its upload id.
    pub fn start_upload(&mut self, bucket: &str, object: NewObject, conditions: Conditions) -> ApiResult<String> {
        self.bucket(bucket)?;
        check_name(&object.name)?;
        self.upload_ids += 1;
        let id = format!("sim-upload-{:06}-{}", self.upload_ids, crate::world::short_hash(&object.name));
        self.uploads.insert(
            id.clone(),
            Upload { bucket: bucket.to_string(), object, conditions, data: Vec::new(), finished: None },
        );
        Ok(id)
    }

    /// A resumable upload's `PUT`: appends `bytes` at `first` (bytes already persisted are
    /// skipped), and finishes the upload once its declared total has arrived, checking the start
    /// request's preconditions then (a failure leaves the session as it was, as GCS does).
    pub fn put_chunk(&mut self, id: &str, chunk: &Chunk, bytes: &[u8], now: &str) -> ApiResult<UploadState> {
        let u = self.uploads.get_mut(id).ok_or_else(|| ApiError::not_found(ST, "No such upload."))?;
        if let Some(v) = &u.finished {
            return Ok(UploadState::Done(Box::new(v.clone())));
        }
        let have = u.data.len() as u64;
        let total = match *chunk {
            Chunk::Status { total } => total,
            Chunk::Data { first, total } => {
                if first > have {
                    return Err(ApiError::invalid(
                        ST,
                        format!(
                            "Invalid request. The content range starts at byte {first}, but {have} bytes were persisted."
                        ),
                    ));
                }
                let skip = ((have - first) as usize).min(bytes.len());
                u.data.extend_from_slice(&bytes[skip..]);
                total
            }
        };
        let have = u.data.len() as u64;
        match total {
            Some(t) if have > t => {
                Err(ApiError::invalid(ST, format!("Invalid request: {have} bytes exceed the total {t}.")))
            }
            Some(t) if have == t => {
                let (bucket, object, cond) = (u.bucket.clone(), u.object.clone(), u.conditions);
                let data = Bytes::from(u.data.clone());
                let v = self.insert(&bucket, &object, data, &cond, now)?;
                if let Some(u) = self.uploads.get_mut(id) {
                    u.finished = Some(v.clone());
                    u.data = Vec::new();
                }
                Ok(UploadState::Done(Box::new(v)))
            }
            _ => Ok(UploadState::Partial(have)),
        }
    }

    /// Cancels a resumable upload (`DELETE` of its session).
    pub fn cancel_upload(&mut self, id: &str) -> ApiResult<()> {
        self.uploads.remove(id).map(|_| ()).ok_or_else(|| ApiError::not_found(ST, "No such upload."))
    }
}

/// User metadata from a JSON `metadata` map (values that are not strings as their JSON text).
pub fn metadata_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m: &Map<String, Value>| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), String::from)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00.000Z";

    fn world(versioning: bool) -> Buckets {
        Buckets::seed(&[BucketSpec { name: "b".into(), versioning, location: "US".into() }], NOW)
    }

    fn put(b: &mut Buckets, name: &str, data: &str, cond: Conditions) -> ApiResult<Version> {
        let obj = NewObject { name: name.into(), ..Default::default() };
        b.insert("b", &obj, Bytes::from(data.to_string()), &cond, NOW)
    }

    fn gm(n: u64) -> Conditions {
        Conditions { generation_match: Some(n), ..Default::default() }
    }

    #[test]
    fn preconditions_on_presence_and_absence() {
        let read = Access::Read;
        let write = Access::Write;
        let c = |g, gn, m, mn| Conditions {
            generation_match: g,
            generation_not_match: gn,
            metageneration_match: m,
            metageneration_not_match: mn,
        };
        assert!(c(Some(0), None, None, None).check(None, write).is_ok());
        assert_eq!(c(Some(0), None, None, None).check(Some((5, 1)), write).unwrap_err().code, 412);
        assert!(c(Some(5), None, Some(1), None).check(Some((5, 1)), write).is_ok());
        assert_eq!(c(Some(5), None, None, None).check(None, write).unwrap_err().code, 412);
        assert_eq!(c(None, Some(5), None, None).check(Some((5, 1)), write).unwrap_err().code, 412);
        assert_eq!(c(None, Some(5), None, None).check(Some((5, 1)), read).unwrap_err().code, 304);
        assert_eq!(c(None, Some(0), None, None).check(None, write).unwrap_err().code, 412);
        assert!(c(None, Some(0), None, None).check(Some((5, 1)), write).is_ok());
        assert!(c(None, None, Some(0), None).check(None, write).is_ok());
        assert_eq!(c(None, None, Some(2), None).check(Some((5, 1)), read).unwrap_err().code, 412);
        assert_eq!(c(None, None, None, Some(1)).check(Some((5, 1)), read).unwrap_err().code, 304);
        assert!(c(None, None, None, Some(2)).check(Some((5, 1)), write).is_ok());
    }

    #[test]
    fn generations_increase_and_versioning_keeps_noncurrent() {
        let mut b = world(true);
        let one = put(&mut b, "s", "one", gm(0)).unwrap();
        assert!(one.generation > GENERATION_BASE);
        assert_eq!(put(&mut b, "s", "x", gm(0)).unwrap_err().code, 412);
        let two = put(&mut b, "s", "two", gm(one.generation)).unwrap();
        assert!(two.generation > one.generation);
        let old = b.get("b", "s", Some(one.generation), &Conditions::default()).unwrap();
        assert_eq!(&old.data[..], b"one");
        assert!(old.time_deleted.is_some());
        let all = b.list("b", &ListQuery { versions: true, max_results: 10, ..Default::default() }).unwrap();
        assert_eq!(all.items.iter().map(|v| v.generation).collect::<Vec<_>>(), [one.generation, two.generation]);
        b.delete(("b", "s"), None, &gm(two.generation), NOW).unwrap();
        assert_eq!(b.get("b", "s", None, &Conditions::default()).unwrap_err().code, 404);
        assert_eq!(b.get("b", "s", Some(two.generation), &Conditions::default()).unwrap().generation, two.generation);
        b.delete(("b", "s"), Some(one.generation), &Conditions::default(), NOW).unwrap();
        let left = b.list("b", &ListQuery { versions: true, max_results: 10, ..Default::default() }).unwrap();
        assert_eq!(left.items.len(), 1);
        let mut plain = world(false);
        let g = put(&mut plain, "s", "one", Conditions::default()).unwrap().generation;
        put(&mut plain, "s", "two", Conditions::default()).unwrap();
        assert_eq!(plain.get("b", "s", Some(g), &Conditions::default()).unwrap_err().code, 404);
    }

    #[test]
    fn patch_bumps_the_metageneration_only() {
        let mut b = world(false);
        let v = put(&mut b, "lock", "{}", gm(0)).unwrap();
        let body = json!({"metadata": {"a": "1", "b": "2"}});
        let p = b.patch(("b", "lock"), None, &Conditions::default(), &body, NOW).unwrap();
        assert_eq!((p.generation, p.metageneration), (v.generation, 2));
        let cond = Conditions { metageneration_match: Some(1), ..Default::default() };
        assert_eq!(b.patch(("b", "lock"), None, &cond, &body, NOW).unwrap_err().code, 412);
        let p = b.patch(("b", "lock"), None, &Conditions::default(), &json!({"metadata": {"a": null}}), NOW).unwrap();
        assert_eq!(p.metadata.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(p.resource("b", "http://h")["metageneration"], "3");
    }

    #[test]
    fn list_pages_prefixes_and_offsets() {
        let mut b = world(false);
        for n in ["a/1", "a/2", "b", "c/x/y", "d", "e"] {
            put(&mut b, n, "", Conditions::default()).unwrap();
        }
        let q = ListQuery { delimiter: Some("/".into()), max_results: 2, ..Default::default() };
        let mut seen = (Vec::new(), Vec::new());
        let mut token = None;
        loop {
            let page = b.list("b", &ListQuery { page_token: token.clone(), ..q.clone() }).unwrap();
            assert!(page.items.len() + page.prefixes.len() <= 2);
            seen.0.extend(page.items.iter().map(|v| v.name.clone()));
            seen.1.extend(page.prefixes);
            token = page.next_page_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen.0, ["b", "d", "e"]);
        assert_eq!(seen.1, ["a/", "c/"]);
        let q = ListQuery { prefix: "c/".into(), delimiter: Some("/".into()), max_results: 1000, ..Default::default() };
        assert_eq!(b.list("b", &q).unwrap().prefixes, ["c/x/"]);
        let q = ListQuery {
            start_offset: Some("b".into()),
            end_offset: Some("d".into()),
            max_results: 1000,
            ..Default::default()
        };
        let names: Vec<String> = b.list("b", &q).unwrap().items.into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["b", "c/x/y"]);
        assert_eq!(b.list("nope", &q).unwrap_err().code, 404);
    }

    #[test]
    fn resumable_uploads_finish_at_their_total_and_check_late() {
        let mut b = world(false);
        let obj = NewObject { name: "big".into(), ..Default::default() };
        let id = b.start_upload("b", obj.clone(), gm(0)).unwrap();
        let st = b.put_chunk(&id, &Chunk::Data { first: 0, total: None }, b"hello ", NOW).unwrap();
        assert!(matches!(st, UploadState::Partial(6)));
        assert!(matches!(b.put_chunk(&id, &Chunk::Status { total: None }, b"", NOW).unwrap(), UploadState::Partial(6)));
        // A resent overlap is skipped.
        let st = b.put_chunk(&id, &Chunk::Data { first: 3, total: Some(11) }, b"lo world", NOW).unwrap();
        let UploadState::Done(v) = st else { panic!("not done") };
        assert_eq!(&v.data[..], b"hello world");
        assert!(matches!(b.put_chunk(&id, &Chunk::Status { total: None }, b"", NOW).unwrap(), UploadState::Done(_)));
        // Preconditions of the start are checked at the end, and a failure can be asked again.
        let late = b.start_upload("b", obj, gm(0)).unwrap();
        let err = b.put_chunk(&late, &Chunk::Data { first: 0, total: Some(1) }, b"x", NOW).unwrap_err();
        assert_eq!(err.code, 412);
        assert_eq!(b.put_chunk(&late, &Chunk::Status { total: Some(1) }, b"", NOW).unwrap_err().code, 412);
    }

    #[test]
    fn resources_carry_links_strings_and_kms_versions() {
        let mut b = world(false);
        let obj = NewObject {
            name: "dir/state.json".into(),
            content_type: Some("application/json".into()),
            kms_key_name: Some("projects/p/locations/l/keyRings/r/cryptoKeys/k".into()),
            ..Default::default()
        };
        let v = b.insert("b", &obj, Bytes::from_static(b"123456789"), &Conditions::default(), NOW).unwrap();
        let r = v.resource("b", "http://h");
        let g = v.generation;
        assert_eq!(
            r["mediaLink"],
            format!("http://h/download/storage/v1/b/b/o/dir%2Fstate.json?generation={g}&alt=media")
        );
        assert_eq!(r["id"], format!("b/dir/state.json/{g}"));
        assert_eq!(r["size"], "9");
        assert_eq!(r["crc32c"], "4waSgw==");
        assert_eq!(r["kmsKeyName"], "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1");
        assert_eq!(r["generation"], g.to_string());
    }
}
