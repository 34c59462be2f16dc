//! Cloud Storage's JSON API of the simulator, judged by the real gcloud 528 (`gcloud storage`
//! cp, cat, ls, objects describe, rm, with multipart and resumable uploads and generation
//! preconditions; gcloud checks the MD5 and CRC32C the simulator reports) and by direct
//! requests for what gcloud does not reach: both resumable paths chunk by chunk, every
//! precondition on every method, patches, list pages, versions, ranges, a 5 MiB object, error
//! bodies and injected faults.
//!
//! Needs gcloud on PATH (a missing tool fails the test saying so; see .ci/run).

mod common;

use common::Env;
use meshform_sim::SimOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BUCKET: &str = "meshform-demo-state";
/// 60 bytes; MD5 and CRC32C computed outside the simulator (Python's hashlib, a bitwise CRC32C).
const STATE: &str = "{\"version\": 4, \"serial\": 1, \"lineage\": \"meshform-sim-test\"}\n";
const STATE_MD5: &str = "K32AnNjRzk8SfbYuW1nt/A==";
const STATE_CRC32C: &str = "8l7exQ==";
const PRECONDITION: &str = "At least one of the pre-conditions you specified did not hold.";

/// Direct requests to a simulator's storage API, with its token, following no redirect (a 308
/// is an answer).
struct Gcs {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Gcs {
    fn of(e: &Env) -> Gcs {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Gcs { base: e.sim.base_url(), token: e.sim.token.clone(), http }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.base) };
        self.http.request(method, url).bearer_auth(&self.token)
    }

    fn obj(name: &str) -> String {
        format!("/storage/v1/b/{BUCKET}/o/{}", name.replace('/', "%2F"))
    }

    /// A media upload of `data` to `name` with `query` (e.g. `&ifGenerationMatch=0`).
    async fn put(&self, name: &str, data: impl Into<reqwest::Body>, query: &str) -> reqwest::Response {
        let path = format!("/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={}{query}", name.replace('/', "%2F"));
        self.req(reqwest::Method::POST, &path).header("content-type", "text/plain").body(data).send().await.unwrap()
    }

    async fn put_ok(&self, name: &str, data: &str) -> Value {
        let r = self.put(name, data.to_string(), "").await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.req(reqwest::Method::GET, path).send().await.unwrap()
    }

    async fn status(&self, method: reqwest::Method, path: &str) -> StatusCode {
        self.req(method, path).send().await.unwrap().status()
    }
}

fn gen_of(o: &Value) -> u64 {
    o["generation"].as_str().unwrap().parse().unwrap()
}

async fn body_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

fn precondition_body() -> Value {
    json!({"error": {"code": 412, "message": PRECONDITION, "errors": [{"domain": "global", "reason": "conditionNotMet",
           "message": PRECONDITION, "locationType": "header", "location": "If-Match"}]}})
}

/// The requests of the log as `METHOD path?query` lines.
fn requests(e: &Env) -> Vec<String> {
    e.sim.log().iter().map(|l| format!("{} {}?{} {}", l.method, l.path, l.query, l.status)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn gcloud_cp_cat_ls_describe_rm() {
    let e = Env::default().await;
    let local = e.dir.path().join("state.json");
    std::fs::write(&local, STATE).unwrap();
    let url = format!("gs://{BUCKET}/env/state.json");
    e.gcloud(&["storage", "cp", local.to_str().unwrap(), &url]).await.ok();
    assert!(
        requests(&e)
            .iter()
            .any(|r| r.starts_with(&format!("POST /upload/storage/v1/b/{BUCKET}/o?"))
                && r.contains("uploadType=multipart")),
        "{:#?}",
        requests(&e)
    );
    // Create-if-absent, twice: the second is refused with the 412 text.
    let lock = format!("gs://{BUCKET}/env/state.lock");
    e.gcloud(&["storage", "cp", "--if-generation-match=0", local.to_str().unwrap(), &lock]).await.ok();
    let again = e.gcloud(&["storage", "cp", "--if-generation-match=0", local.to_str().unwrap(), &lock]).await;
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("412") && again.stderr.contains(PRECONDITION), "{}", again.stderr);

    assert_eq!(e.gcloud(&["storage", "cat", &url]).await.ok().stdout, STATE);
    let ls = e.gcloud(&["storage", "ls", &format!("gs://{BUCKET}/env/")]).await;
    let mut lines: Vec<&str> = ls.ok().stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, [url.as_str(), lock.as_str()]);
    let long = e.gcloud(&["storage", "ls", "-l", &url]).await;
    let line = long.ok().stdout.lines().find(|l| l.contains(&url)).unwrap_or_default().to_string();
    assert!(line.trim_start().starts_with("60 ") && line.contains("T"), "{}", long.stdout);

    let d = Env::json(e.gcloud(&["storage", "objects", "describe", &url, "--format=json"]).await.ok());
    assert_eq!(d["md5_hash"], STATE_MD5, "{d:#}");
    assert_eq!(d["crc32c_hash"], STATE_CRC32C, "{d:#}");
    assert_eq!(d["size"], 60);
    let live = Gcs::of(&e).get(&Gcs::obj("env/state.json")).await.json::<Value>().await.unwrap();
    assert_eq!(d["generation"], live["generation"]);
    // gcloud shows the generation as a string, the metageneration and size as numbers.
    assert_eq!(d["metageneration"], 1);
    assert_eq!(d["storage_url"], format!("{url}#{}", live["generation"].as_str().unwrap()));

    // A download: gcloud checks both hashes against the bytes it got.
    let back = e.dir.path().join("back.json");
    e.gcloud(&["storage", "cp", &url, back.to_str().unwrap()]).await.ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), STATE);

    let wrong = e.gcloud(&["storage", "rm", "--if-generation-match=1", &url]).await;
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("412"), "{}", wrong.stderr);
    e.gcloud(&["storage", "rm", &url]).await.ok();
    let gone = e.gcloud(&["storage", "cat", &url]).await;
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("matched no objects"), "{}", gone.stderr);
    let missing = e.gcloud(&["storage", "objects", "describe", &url]).await;
    assert!(missing.stderr.contains("not found: 404"), "{}", missing.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn gcloud_resumable_upload_and_its_late_precondition() {
    let e = Env::default().await;
    let local = e.dir.path().join("state.json");
    std::fs::write(&local, STATE).unwrap();
    let url = format!("gs://{BUCKET}/big/state.json");
    let config = tempfile::tempdir().unwrap();
    let extra = [("CLOUDSDK_STORAGE_RESUMABLE_THRESHOLD", "1"), ("CLOUDSDK_CONFIG", config.path().to_str().unwrap())];
    e.gcloud_with(&["storage", "cp", "--if-generation-match=0", local.to_str().unwrap(), &url], &extra, &[]).await.ok();
    let log = requests(&e);
    assert!(log.iter().any(|r| r.starts_with(&format!("POST /resumable/upload/storage/v1/b/{BUCKET}/o?"))), "{log:#?}");
    assert!(log.iter().any(|r| r.starts_with("PUT ") && r.contains("upload_id=") && r.ends_with(" 200")), "{log:#?}");
    assert_eq!(e.gcloud(&["storage", "cat", &url]).await.ok().stdout, STATE);
    // The precondition goes on the start request and fails at the end; a fresh configuration
    // has no tracker file, so nothing is resumed.
    let config = tempfile::tempdir().unwrap();
    let extra = [("CLOUDSDK_STORAGE_RESUMABLE_THRESHOLD", "1"), ("CLOUDSDK_CONFIG", config.path().to_str().unwrap())];
    let again =
        e.gcloud_with(&["storage", "cp", "--if-generation-match=0", local.to_str().unwrap(), &url], &extra, &[]).await;
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("412"), "{}", again.stderr);
    let back = e.dir.path().join("back.json");
    e.gcloud(&["storage", "cp", &url, back.to_str().unwrap()]).await.ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), STATE);
}

/// A resumable upload of `data` in two chunks (256 KiB, then the rest) on `start_path`, with a
/// status query between; returns the object.
async fn two_chunks(g: &Gcs, start_path: &str, name: &str, data: &[u8]) -> Value {
    let start = g
        .req(reqwest::Method::POST, &format!("{start_path}?uploadType=resumable&ifGenerationMatch=0"))
        .header("x-upload-content-type", "application/octet-stream")
        .json(&json!({"name": name, "metadata": {"k": "v"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200);
    let session = start.headers()["location"].to_str().unwrap().to_string();
    assert!(session.contains("upload_id=") && session.contains(start_path), "{session}");
    let put = |range: String, body: Vec<u8>| {
        g.req(reqwest::Method::PUT, &session).header("content-range", range).body(body).send()
    };
    let none = put(format!("bytes */{}", data.len()), vec![]).await.unwrap();
    assert_eq!(none.status(), 308);
    assert!(none.headers().get("range").is_none(), "nothing is persisted yet");
    let cut = 256 * 1024;
    let first = put(format!("bytes 0-{}/*", cut - 1), data[..cut].to_vec()).await.unwrap();
    assert_eq!(first.status(), 308);
    assert_eq!(first.headers()["range"], format!("bytes=0-{}", cut - 1).as_str());
    let status = put("bytes */*".into(), vec![]).await.unwrap();
    assert_eq!(status.status(), 308);
    assert_eq!(status.headers()["range"], format!("bytes=0-{}", cut - 1).as_str());
    let last = put(format!("bytes {cut}-{}/{}", data.len() - 1, data.len()), data[cut..].to_vec()).await.unwrap();
    assert_eq!(last.status(), 200);
    let o: Value = last.json().await.unwrap();
    // A status query after the end answers with the object again.
    let after = put("bytes */*".into(), vec![]).await.unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(body_of(after).await["generation"], o["generation"]);
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn resumable_uploads_on_both_paths_chunk_by_chunk() {
    let e = Env::default().await;
    let g = Gcs::of(&e);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for (path, name) in [
        (format!("/resumable/upload/storage/v1/b/{BUCKET}/o"), "r/one"),
        (format!("/upload/storage/v1/b/{BUCKET}/o"), "r/two"),
    ] {
        let o = two_chunks(&g, &path, name, &data).await;
        assert_eq!(o["size"], "300000");
        assert_eq!(o["name"], name);
        assert_eq!(o["metadata"]["k"], "v");
        let media = g.get(&format!("{}?alt=media", Gcs::obj(name))).await;
        assert_eq!(
            media.headers()["x-goog-hash"],
            format!("crc32c={},md5={}", o["crc32c"].as_str().unwrap(), o["md5Hash"].as_str().unwrap()).as_str()
        );
        assert_eq!(media.bytes().await.unwrap().to_vec(), data);
        // The start's ifGenerationMatch=0 is checked when the upload ends.
        let start = g
            .req(reqwest::Method::POST, &format!("{path}?uploadType=resumable&ifGenerationMatch=0"))
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        let session = start.headers()["location"].to_str().unwrap().to_string();
        let end = g
            .req(reqwest::Method::PUT, &session)
            .header("content-range", "bytes 0-2/3")
            .body("abc")
            .send()
            .await
            .unwrap();
        assert_eq!(end.status(), 412);
        assert_eq!(body_of(end).await, precondition_body());
        let cancel = g.req(reqwest::Method::DELETE, &session).send().await.unwrap();
        assert_eq!(cancel.status().as_u16(), 499);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn preconditions_on_every_method() {
    let e = Env::default().await;
    let g = Gcs::of(&e);
    let one = body_of(g.put("p/lock", "one", "&ifGenerationMatch=0").await).await;
    let g1 = gen_of(&one);
    let dup = g.put("p/lock", "dup", "&ifGenerationMatch=0").await;
    assert_eq!(dup.status(), 412);
    assert_eq!(body_of(dup).await, precondition_body());
    assert_eq!(g.put("p/lock", "x", &format!("&ifGenerationNotMatch={g1}")).await.status(), 412);
    assert_eq!(g.put("p/lock", "x", "&ifMetagenerationMatch=2").await.status(), 412);
    assert_eq!(g.put("p/lock", "x", "&ifMetagenerationNotMatch=1").await.status(), 412);
    assert_eq!(g.put("p/absent", "x", "&ifGenerationNotMatch=0").await.status(), 412);
    let two = body_of(g.put("p/lock", "two", &format!("&ifGenerationMatch={g1}&ifMetagenerationMatch=1")).await).await;
    let g2 = gen_of(&two);
    assert!(g2 > g1);
    // Multipart, as gcloud sends it (single-quoted boundary, bare LF).
    let body = "--==b==\nContent-Type: application/json\nMIME-Version: 1.0\n\n{\"name\": \"p/lock\"}\n--==b==\nContent-Type: text/plain\nContent-Transfer-Encoding: binary\n\nthree\n--==b==--".to_string();
    let multi = |q: String| {
        g.req(reqwest::Method::POST, &format!("/upload/storage/v1/b/{BUCKET}/o?uploadType=multipart{q}"))
            .header("content-type", "multipart/related; boundary='==b=='")
            .body(body.clone())
            .send()
    };
    assert_eq!(multi(format!("&ifGenerationMatch={g1}")).await.unwrap().status(), 412);
    let three = body_of(multi(format!("&ifGenerationMatch={g2}")).await.unwrap()).await;
    let g3 = gen_of(&three);
    assert_eq!(three["contentType"], "text/plain");
    assert_eq!(three["size"], "5");
    let o = Gcs::obj("p/lock");
    use reqwest::Method as M;
    assert_eq!(g.status(M::GET, &format!("{o}?ifGenerationMatch={g2}")).await, 412);
    assert_eq!(g.status(M::GET, &format!("{o}?ifGenerationMatch={g3}&ifMetagenerationMatch=1")).await, 200);
    assert_eq!(g.status(M::GET, &format!("{o}?ifGenerationNotMatch={g3}")).await, 304);
    assert_eq!(g.status(M::GET, &format!("{o}?ifMetagenerationNotMatch=1&alt=media")).await, 304);
    assert_eq!(g.status(M::GET, &format!("{o}?ifMetagenerationMatch=5")).await, 412);
    let patch = |q: String| g.req(M::PATCH, &format!("{o}?{q}")).json(&json!({"metadata": {"holder": "a"}})).send();
    assert_eq!(patch("ifMetagenerationMatch=2".into()).await.unwrap().status(), 412);
    assert_eq!(patch(format!("ifGenerationNotMatch={g3}")).await.unwrap().status(), 412);
    assert_eq!(patch(format!("ifGenerationMatch={g3}&ifMetagenerationMatch=1")).await.unwrap().status(), 200);
    assert_eq!(g.status(M::DELETE, &format!("{o}?ifGenerationMatch={g2}")).await, 412);
    assert_eq!(g.status(M::DELETE, &format!("{o}?ifMetagenerationMatch=1")).await, 412);
    assert_eq!(g.status(M::DELETE, &format!("{o}?ifMetagenerationNotMatch=2")).await, 412);
    assert_eq!(g.status(M::DELETE, &format!("{o}?ifGenerationMatch={g3}&ifMetagenerationNotMatch=1")).await, 204);
    assert_eq!(g.status(M::GET, &o).await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_moves_the_metageneration_and_not_the_generation() {
    let e = Env::default().await;
    let g = Gcs::of(&e);
    let o = g.put_ok("lease/lock", "{}").await;
    let path = Gcs::obj("lease/lock");
    let renew = |meta: Value, m: &str| {
        g.req(reqwest::Method::PATCH, &format!("{path}?ifMetagenerationMatch={m}"))
            .json(&json!({"metadata": meta, "contentType": "application/json"}))
            .send()
    };
    let p = body_of(renew(json!({"holder": "a", "renewed": "1"}), "1").await.unwrap()).await;
    assert_eq!((&p["generation"], &p["metageneration"]), (&o["generation"], &json!("2")));
    assert_eq!(p["metadata"], json!({"holder": "a", "renewed": "1"}));
    assert_eq!(p["contentType"], "application/json");
    assert_ne!(p["etag"], o["etag"]);
    let p = body_of(renew(json!({"renewed": null}), "2").await.unwrap()).await;
    assert_eq!(p["metageneration"], "3");
    assert_eq!(p["metadata"], json!({"holder": "a"}));
    let media = g.get(&format!("{path}?alt=media")).await;
    assert_eq!(media.headers()["x-goog-metageneration"], "3");
    assert_eq!(media.headers()["x-goog-generation"], o["generation"].as_str().unwrap());
    assert_eq!(media.text().await.unwrap(), "{}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_roll_up_prefixes_and_show_versions() {
    let e = Env::default().await;
    let g = Gcs::of(&e);
    let list = format!("/storage/v1/b/{BUCKET}/o");
    assert_eq!(body_of(g.get(&format!("{list}?prefix=none/")).await).await, json!({"kind": "storage#objects"}));
    for n in ["l/a/1", "l/a/2", "l/b", "l/c/d/e", "l/f", "l/g"] {
        g.put_ok(n, n).await;
    }
    let (mut items, mut prefixes, mut pages, mut token) = (vec![], vec![], 0, String::new());
    loop {
        let page = body_of(g.get(&format!("{list}?prefix=l/&delimiter=/&maxResults=2&pageToken={token}")).await).await;
        pages += 1;
        for i in page["items"].as_array().into_iter().flatten() {
            items.push(i["name"].as_str().unwrap().to_string());
        }
        for p in page["prefixes"].as_array().into_iter().flatten() {
            prefixes.push(p.as_str().unwrap().to_string());
        }
        match page["nextPageToken"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(
        (items, prefixes, pages),
        (vec!["l/b".to_string(), "l/f".into(), "l/g".into()], vec!["l/a/".to_string(), "l/c/".into()], 3)
    );
    let offsets =
        body_of(g.get(&format!("{list}?startOffset=l/b&endOffset=l/f&includeFoldersAsPrefixes=True")).await).await;
    let names: Vec<&str> = offsets["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["l/b", "l/c/d/e"]);
    // The default bucket is versioned: an overwrite keeps the old generation, noncurrent.
    let old = g.put_ok("l/b", "second").await;
    let versions = body_of(g.get(&format!("{list}?prefix=l/b&versions=true")).await).await;
    let items = versions["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0]["timeDeleted"].is_string() && items[1].get("timeDeleted").is_none(), "{versions:#}");
    assert!(gen_of(&items[0]) < gen_of(&old));
    let first = format!("{}?generation={}&alt=media", Gcs::obj("l/b"), gen_of(&items[0]));
    assert_eq!(g.get(&first).await.text().await.unwrap(), "l/b");
    assert_eq!(g.status(reqwest::Method::DELETE, &Gcs::obj("l/b")).await, 204);
    assert_eq!(body_of(g.get(&format!("{list}?prefix=l/b")).await).await, json!({"kind": "storage#objects"}));
    let all = body_of(g.get(&format!("{list}?prefix=l/b&versions=true")).await).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert_eq!(g.get(&format!("{list}?maxResults=0")).await.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_ranges_and_a_five_mib_object() {
    let e = Env::default().await;
    let g = Gcs::of(&e);
    let o = g.put_ok("d/state.json", STATE).await;
    assert_eq!((o["md5Hash"].as_str(), o["crc32c"].as_str()), (Some(STATE_MD5), Some(STATE_CRC32C)));
    let link = o["mediaLink"].as_str().unwrap();
    assert!(link.contains("/download/storage/v1/b/meshform-demo-state/o/d%2Fstate.json?generation="), "{link}");
    let part = g.req(reqwest::Method::GET, link).header("range", "bytes=2-8").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 2-8/60");
    assert_eq!(part.headers()["x-goog-stored-content-length"], "60");
    assert_eq!(part.headers()["x-goog-hash"], format!("crc32c={STATE_CRC32C},md5={STATE_MD5}").as_str());
    assert_eq!(part.headers()["content-type"], "text/plain");
    assert_eq!(part.headers()["etag"], o["etag"].as_str().unwrap());
    assert_eq!(part.text().await.unwrap(), &STATE[2..=8]);
    let whole = g.get(link).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.text().await.unwrap(), STATE);
    let past = g.req(reqwest::Method::GET, link).header("range", "bytes=60-70").send().await.unwrap();
    assert_eq!(past.status(), 416);

    let big: Vec<u8> = (0..5u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let o = body_of(g.put("d/big.bin", big.clone(), "").await).await;
    assert_eq!(o["size"], (5u32 << 20).to_string());
    let back = g.get(o["mediaLink"].as_str().unwrap()).await;
    assert_eq!(
        back.headers()["x-goog-hash"],
        format!("crc32c={},md5={}", o["crc32c"].as_str().unwrap(), o["md5Hash"].as_str().unwrap()).as_str()
    );
    assert!(back.bytes().await.unwrap() == big, "the 5 MiB object comes back as it went");
}

#[tokio::test(flavor = "multi_thread")]
async fn not_found_bodies_and_the_bucket() {
    let e = Env::default().await;
    let g = Gcs::of(&e);
    let missing = g.get(&Gcs::obj("no/such")).await;
    assert_eq!(missing.status(), 404);
    let m = format!("No such object: {BUCKET}/no/such");
    assert_eq!(
        body_of(missing).await,
        json!({"error": {"code": 404, "message": m,
        "errors": [{"message": m, "domain": "global", "reason": "notFound"}]}})
    );
    let nb = body_of(g.get("/storage/v1/b/no-such-bucket/o").await).await;
    assert_eq!(nb["error"]["message"], "The specified bucket does not exist.");
    assert_eq!(nb["error"]["errors"][0]["reason"], "notFound");
    let b = body_of(g.get(&format!("/storage/v1/b/{BUCKET}")).await).await;
    assert_eq!(
        (&b["kind"], &b["name"], &b["versioning"]["enabled"]),
        (&json!("storage#bucket"), &json!(BUCKET), &json!(true))
    );
    assert_eq!(b["metageneration"], "1");
    let meta = g
        .req(reqwest::Method::POST, &format!("/storage/v1/b/{BUCKET}/o"))
        .json(&json!({"name": "empty", "contentType": "text/plain"}))
        .send()
        .await
        .unwrap();
    let meta = body_of(meta).await;
    assert_eq!((&meta["size"], &meta["md5Hash"]), (&json!("0"), &json!("1B2M2Y8AsgTpgAmY7PhCfg==")));
    let kms = g.put("k", "x", "&kmsKeyName=projects/p/locations/us/keyRings/r/cryptoKeys/k").await;
    assert_eq!(body_of(kms).await["kmsKeyName"], "projects/p/locations/us/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1");
    let anon = g.http.get(format!("{}/storage/v1/b/{BUCKET}", g.base)).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    assert_eq!(body_of(anon).await["error"]["errors"][0]["location"], "Authorization");
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_answer_in_cloud_storages_shape_and_lost_replies_are_made() {
    let e = Env::start(SimOptions { fault_rate: 0.5, seed: 7, ..Default::default() }).await;
    let g = Gcs::of(&e);
    let (mut limited, mut unavailable, mut written_lost, mut unwritten) = (0, 0, 0, 0);
    for i in 0..40 {
        let name = format!("f/{i}");
        let r = g.put(&name, "x", "").await;
        let status = r.status().as_u16();
        if status == 200 {
            continue;
        }
        let b = body_of(r).await;
        let exists = e.sim.shared.store.lock().unwrap().storage.buckets[BUCKET].live.contains_key(&name);
        match status {
            429 => {
                assert_eq!(b["error"]["errors"][0]["reason"], "rateLimitExceeded");
                assert_eq!(b["error"]["errors"][0]["domain"], "usageLimits");
                assert!(!exists, "a 429 comes before the change");
                limited += 1;
            }
            503 => {
                assert_eq!(
                    b,
                    json!({"error": {"code": 503, "message": "Backend Error",
                    "errors": [{"message": "Backend Error", "domain": "global", "reason": "backendError"}]}})
                );
                unavailable += 1;
                if exists { written_lost += 1 } else { unwritten += 1 }
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert!(
        limited > 0 && unavailable > 0 && written_lost > 0 && unwritten > 0,
        "{limited} {unavailable} {written_lost} {unwritten}"
    );
    // A reply lost on purpose: the object is written, the client sees 503.
    let e = Env::default().await;
    let g = Gcs::of(&e);
    e.sim.shared.lose_replies.store(1, std::sync::atomic::Ordering::SeqCst);
    let r = g.put("lost", "made", "&ifGenerationMatch=0").await;
    assert_eq!(r.status(), 503);
    assert_eq!(g.get(&format!("{}?alt=media", Gcs::obj("lost"))).await.text().await.unwrap(), "made");
    assert_eq!(g.put("lost", "again", "&ifGenerationMatch=0").await.status(), 412, "a retry finds it made");
}
