//! Shared state through the real `meshform` binary against the simulator: a GCS state seen with
//! `gcloud storage`, encrypted, contended by two applies, read by plan and drift while locked,
//! a lock left by another runner (TTL, `force-unlock`), and a Kubernetes state whose Lease
//! `kubectl` shows during an apply.
//!
//! Needs gcloud and kubectl on PATH (see .ci/run).

mod common;

use std::time::Duration;

use common::{Cloud, code, text};
use meshform_sim::SimOptions;

/// A chain of `n` data objects (each apply journals them one after another) after `[state]`.
fn desired(state: &str, n: usize) -> String {
    let mut t = format!(
        "{state}\n[variables.greeting]\ndefault = \"hello\"\n\n[variables.password]\ndefault = \"hunter2\"\nsensitive = true\n\n"
    );
    t.push_str("[resources.meshform_data.o0]\ninput = \"${var.greeting}\"\n\n");
    for i in 1..n {
        t.push_str(&format!(
            "[resources.meshform_data.o{i}]\ninput = \"${{meshform_data.o{}.output}}-{i}\"\n\n",
            i - 1
        ));
    }
    t.push_str("[resources.meshform_data.secret]\ninput = \"${var.password}\"\n");
    t
}

const GCS: &str =
    "[state]\nbackend = \"gcs\"\nbucket = \"meshform-demo-state\"\nprefix = \"team/mesh\"\nlock_ttl = \"2s\"\n";
const OBJECT: &str = "gs://meshform-demo-state/team/mesh/main.state.json";
const LOCK: &str = "gs://meshform-demo-state/team/mesh/main.lock";

async fn cat(c: &Cloud, url: &str) -> String {
    String::from_utf8_lossy(&c.gcloud(&["storage", "cat", url]).await.stdout).into_owned()
}

fn serial(state: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(state).unwrap()["serial"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gcs_state_is_written_in_the_bucket_and_read_back_by_gcloud() {
    let c = Cloud::default().await;
    c.write(&desired(GCS, 3));
    c.apply().await;
    let state = cat(&c, OBJECT).await;
    assert!(state.contains("meshform_data.o2") && serial(&state) >= 1, "{state}");
    assert!(!state.contains("hunter2"), "a sensitive value in the bucket: {state}");
    assert!(!c.dir.path().join("main.state.json").exists(), "no local state");
    // Lock and journal are gone once the apply ends.
    let ls = c.gcloud(&["storage", "ls", "gs://meshform-demo-state/team/mesh/"]).await;
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), OBJECT);
    c.assert_no_changes().await;
    let o = c.mf(&["state", "list", "main.toml"]).await;
    assert!(text(&o).contains("meshform_data.o1"), "{}", text(&o));
    let o = c.mf(&["state", "pull", "main.toml"]).await;
    assert_eq!(serial(&String::from_utf8_lossy(&o.stdout)), serial(&state));
    // The bucket keeps versions: history lists them, rollback restores one as the next serial.
    c.write(&desired(GCS, 2));
    c.apply().await;
    let o = c.mf(&["state", "history", "main.toml"]).await;
    let h = text(&o);
    assert_eq!(code(&o), 0, "{h}");
    let first = h.lines().nth(2).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
    let o = c.mf(&["state", "rollback", "main.toml", &first]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(cat(&c, OBJECT).await.contains("meshform_data.o2"), "rolled back to the version with o2");
    // Wrong input: an unknown setting, a bad bucket name, at file, line and column.
    c.write("[state]\nbackend = \"gcs\"\nbuckt = \"x\"\n");
    let o = c.mf(&["validate", "main.toml"]).await;
    let t = text(&o);
    assert!(code(&o) == 1 && t.contains("unknown setting `buckt`") && t.contains("main.toml:6:1"), "{t}");
    assert!(t.contains("needs `bucket`"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_state_is_ciphertext_in_the_bucket_and_needs_its_key() {
    let c = Cloud::default().await;
    c.write(&desired(GCS, 2));
    let key = ("MESHFORM_STATE_KEY", "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=".to_string());
    let new = ("MESHFORM_STATE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string());
    let run = |args: &'static [&'static str], extra: Vec<(&'static str, String)>| {
        let c = &c;
        async move { c.run(env!("CARGO_BIN_EXE_meshform"), args, &[], &extra).await }
    };
    let o = run(&["apply", "main.toml", "--auto-approve"], vec![key.clone()]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let stored = cat(&c, OBJECT).await;
    assert!(stored.contains("meshform_encrypted") && !stored.contains("meshform_data"), "{stored}");
    let o = run(&["plan", "main.toml"], vec![]).await;
    assert!(code(&o) == 1 && text(&o).contains("set MESHFORM_STATE_KEY"), "{}", text(&o));
    let o = run(&["plan", "main.toml"], vec![new.clone()]).await;
    assert!(code(&o) == 1 && text(&o).contains("not among the keys"), "{}", text(&o));
    let o = run(&["state", "pull", "main.toml"], vec![key.clone()]).await;
    let pulled = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(pulled.contains("\"hmac:"), "sensitive digests are keyed: {pulled}");
    // Rotation: the new key seals, the old one still opens; no change is planned.
    let rotated = vec![new.clone(), ("MESHFORM_STATE_OLD_KEYS", key.1.clone())];
    let o = run(&["plan", "main.toml", "--detailed-exitcode"], rotated.clone()).await;
    assert_eq!(code(&o), 0, "a rotated key changes nothing live: {}", text(&o));
    let o = run(&["state", "rm", "main.toml", "meshform_data.o1"], rotated).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = run(&["state", "list", "main.toml"], vec![new]).await;
    assert_eq!(code(&o), 0, "the new key alone opens the rewritten state: {}", text(&o));
    // Tampering with the ciphertext is detected.
    let mut env: serde_json::Value = serde_json::from_str(&cat(&c, OBJECT).await).unwrap();
    let data = env["data"].as_str().unwrap().to_string();
    let flipped = if data.starts_with('A') { data.replacen('A', "B", 1) } else { format!("A{}", &data[1..]) };
    env["data"] = flipped.into();
    let path = c.dir.path().join("tampered.json");
    std::fs::write(&path, env.to_string()).unwrap();
    c.gcloud(&["storage", "cp", path.to_str().unwrap(), OBJECT]).await;
    let o = run(
        &["state", "list", "main.toml"],
        vec![("MESHFORM_STATE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into())],
    )
    .await;
    assert!(code(&o) == 1 && text(&o).contains("tampered"), "{}", text(&o));
}

/// Two applies started together on one GCS state, `rounds` times: exactly one fails with a
/// lock error naming the holder; the state is never corrupt and its serial strictly increases.
async fn contended(rounds: usize) {
    let c = Cloud::start(SimOptions { latency: Duration::from_millis(20), lro_polls: 1, ..Default::default() }).await;
    c.write(&desired(GCS, 6));
    c.apply().await;
    let mut last = serial(&cat(&c, OBJECT).await);
    for round in 0..rounds {
        let a = format!("greeting=a{round}");
        let b = format!("greeting=b{round}");
        let (args_a, args_b) = (
            ["apply", "main.toml", "--auto-approve", "--var", &a],
            ["apply", "main.toml", "--auto-approve", "--var", &b],
        );
        let (x, y) = tokio::join!(c.mf(&args_a), c.mf(&args_b));
        let failed: Vec<_> = [&x, &y].into_iter().filter(|o| code(o) != 0).collect();
        assert_eq!(failed.len(), 1, "round {round}: exactly one fails:\n{}\n---\n{}", text(&x), text(&y));
        let t = text(failed[0]);
        assert!(t.contains("state is locked by") && t.contains("lock id") && t.contains("`apply`"), "{t}");
        let now = serial(&cat(&c, OBJECT).await);
        assert!(now > last, "round {round}: serial {now} after {last}");
        last = now;
    }
    let o = c.mf(&["state", "list", "main.toml"]).await;
    assert!(code(&o) == 0 && text(&o).contains("meshform_data.o5"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_applies_on_one_gcs_state_one_fails_naming_the_holder() {
    contended(3).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: 20 rounds (run with --ignored)"]
async fn twenty_rounds_of_two_applies_on_one_gcs_state() {
    contended(20).await;
}

/// A lock object as another runner leaves it (its host is not this one).
fn foreign_lock(ttl: u64) -> String {
    serde_json::json!({"id": "0e1f", "operation": "apply", "who": "ci@runner-7", "pid": 4242,
        "host": "runner-7.example", "created": "2026-12-01T00:00:00Z", "ttl_seconds": ttl})
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_drift_read_while_locked_and_a_runners_lock_expires_or_is_force_unlocked() {
    let c = Cloud::default().await;
    c.write(&desired(GCS, 2));
    c.apply().await;
    let o = c.mf(&["plan", "main.toml", "--out", "before.plan"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let lock = c.dir.path().join("lock.json");
    std::fs::write(&lock, foreign_lock(300)).unwrap();
    c.gcloud(&["storage", "cp", lock.to_str().unwrap(), LOCK]).await;
    // Reads do not wait for (or fail on) the lock.
    let o = c.mf(&["plan", "main.toml", "--detailed-exitcode"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = c.mf(&["drift", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    // A write does: at once, naming the holder and the lock id (its generation).
    let o = c.mf(&["apply", "main.toml", "--auto-approve", "--var", "greeting=hi"]).await;
    let t = text(&o);
    assert!(code(&o) == 1 && t.contains("locked by ci@runner-7"), "{t}");
    let generation =
        c.describe(&["storage", "objects", "describe", LOCK]).await["generation"].as_str().unwrap().to_string();
    assert!(t.contains(&format!("meshform force-unlock {generation} main.toml")), "{t}");
    // A live lock is not broken by waiting less than its TTL.
    let o = c.mf(&["apply", "main.toml", "--auto-approve", "--lock-timeout", "1s"]).await;
    assert_eq!(code(&o), 1, "{}", text(&o));
    let o = c.mf(&["force-unlock", &generation, "main.toml"]).await;
    assert!(code(&o) == 0 && text(&o).contains("ci@runner-7"), "{}", text(&o));
    // A lock with a 1 s TTL that nobody renews is broken by a waiting run, which says so.
    std::fs::write(&lock, foreign_lock(1)).unwrap();
    c.gcloud(&["storage", "cp", lock.to_str().unwrap(), LOCK]).await;
    let o = c.mf(&["apply", "main.toml", "--auto-approve", "--var", "greeting=hi", "--lock-timeout", "30s"]).await;
    let t = text(&o);
    assert!(code(&o) == 0 && t.contains("removed an expired lock of ci@runner-7"), "{t}");
    // The plan saved before that apply is refused after it.
    let o = c.mf(&["apply", "before.plan"]).await;
    assert!(code(&o) == 1 && text(&o).contains("stale"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubernetes_state_keeps_a_lease_kubectl_shows_during_the_apply() {
    let c = Cloud::start(SimOptions { latency: Duration::from_millis(40), lro_polls: 1, ..Default::default() }).await;
    let k = &c.sim.clusters[0];
    let context = meshform_sim::files::context_name(&c.sim.world.project, &k.location, &k.name);
    let o = c.kubectl(0, &["create", "namespace", "meshform"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let state = format!("[state]\nbackend = \"kubernetes\"\ncontext = \"{context}\"\nnamespace = \"meshform\"\n");
    c.write(&desired(&state, 12));
    let mut apply = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshform"));
    apply
        .args(["apply", "main.toml", "--auto-approve"])
        .current_dir(c.dir.path())
        .env_clear()
        .envs(c.env.iter().cloned())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = apply.spawn().unwrap();
    let mut seen = None;
    for _ in 0..200 {
        let o = c.kubectl(0, &["get", "lease", "-n", "meshform"]).await;
        if text(&o).contains("meshform-lock-main") {
            seen = Some(text(&o));
            break;
        }
    }
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let seen = seen.expect("kubectl showed the lease during the apply");
    assert!(seen.contains("HOLDER"), "{seen}");
    let o = c.kubectl(0, &["get", "lease", "-n", "meshform"]).await;
    assert!(!text(&o).contains("meshform-lock-main"), "released: {}", text(&o));
    let o = c.kubectl(0, &["get", "secrets", "-n", "meshform", "-o", "name"]).await;
    assert!(text(&o).contains("secret/meshform-state-main"), "{}", text(&o));
    c.assert_no_changes().await;
    let o = c.mf(&["state", "history", "main.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
}

/// Copies the ASM guide's plan files into `c`'s directory, with `state` appended.
fn asm_plan(c: &Cloud, state: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let dest = c.dir.path().join("plans");
    std::fs::create_dir_all(dest.join("manifests")).unwrap();
    for f in ["manifests/helloworld.yaml", "manifests/sleep.yaml"] {
        std::fs::copy(root.join(f), dest.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(root.join("asm-multicluster.toml")).unwrap();
    std::fs::write(dest.join("asm-multicluster.toml"), format!("{text}\n{state}")).unwrap();
}

/// The closing note's numbers: the storage requests of one apply of the ASM guide on GCS state
/// (lock, reads, journal objects, final write, unlock) and its wall time against local state,
/// at 50 ms per request. `cargo test --test state_backends -- --ignored --nocapture measure`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement (run with --ignored --nocapture)"]
async fn measure_the_asm_apply_on_gcs_against_local_state() {
    let mut times = Vec::new();
    for state in ["", "[state]\nbackend = \"gcs\"\nbucket = \"meshform-demo-state\"\nprefix = \"measure\"\n"] {
        let c =
            Cloud::start(SimOptions { latency: Duration::from_millis(50), lro_polls: 1, ..Default::default() }).await;
        asm_plan(&c, state);
        c.sim.clear_log();
        let start = std::time::Instant::now();
        let o = c.mf(&["apply", "plans/asm-multicluster.toml", "--auto-approve"]).await;
        let took = start.elapsed();
        assert_eq!(code(&o), 0, "{}", text(&o));
        times.push(took);
        let storage: Vec<_> = c
            .sim
            .log()
            .into_iter()
            .filter(|e| ["/storage/", "/upload/", "/download/", "/resumable/"].iter().any(|p| e.path.starts_with(p)))
            .collect();
        let count = |f: &dyn Fn(&meshform_sim::LogEntry) -> bool| storage.iter().filter(|e| f(e)).count();
        let on_lock = count(&|e| e.path.ends_with(".lock"));
        let state_reads = count(&|e| e.method == "GET" && e.path.ends_with(".state.json"));
        let lists = count(&|e| e.method == "GET" && e.path.ends_with("/o"));
        let uploads = count(&|e| e.method == "POST" && e.path.starts_with("/upload/"));
        let deletes = count(&|e| e.method == "DELETE");
        // Uploads: the lock object, the journal objects, the final state write.
        println!(
            "{}: {:.2} s; {} storage requests: {uploads} uploads (lock 1, state 1, journal objects {}), {on_lock} other calls on the lock object (renewal, unlock's read, delete, check), {state_reads} state reads, {lists} lists, {deletes} deletes",
            if state.is_empty() { "local" } else { "gcs" },
            took.as_secs_f64(),
            storage.len(),
            uploads.saturating_sub(2),
        );
        for e in &storage {
            println!("  {} {} {}", e.method, e.path, e.query);
        }
    }
    println!("added wall time on GCS: {:.2} s", times[1].as_secs_f64() - times[0].as_secs_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_push_and_workspaces_keep_lineage_and_serial() {
    let c = Cloud::default().await;
    // Start local, then migrate to the bucket.
    c.write(&desired("", 2));
    c.apply().await;
    let local: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap()).unwrap();
    std::fs::write(c.dir.path().join("dest.toml"), GCS).unwrap();
    let o = c.mf(&["state", "migrate", "main.toml", "--to", "dest.toml"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let remote: serde_json::Value =
        serde_json::from_str(&cat(&c, "gs://meshform-demo-state/team/mesh/dest.state.json").await).unwrap();
    assert_eq!((&remote["lineage"], &remote["serial"]), (&local["lineage"], &local["serial"]));
    // Again: the destination is not older, so nothing is copied.
    let o = c.mf(&["state", "migrate", "main.toml", "--to", "dest.toml"]).await;
    assert!(code(&o) == 1 && text(&o).contains("not older"), "{}", text(&o));
    // Push: another lineage is refused without --force; a pushed state moves past the serial.
    let o = c.mf(&["state", "pull", "dest.toml"]).await;
    let mut pulled: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    pulled["lineage"] = "another-lineage".into();
    std::fs::write(c.dir.path().join("other.json"), pulled.to_string()).unwrap();
    let o = c.mf(&["state", "push", "dest.toml", "other.json"]).await;
    assert!(code(&o) == 1 && text(&o).contains("another state"), "{}", text(&o));
    let o = c.mf(&["state", "push", "dest.toml", "other.json", "--force"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let now: serde_json::Value =
        serde_json::from_str(&cat(&c, "gs://meshform-demo-state/team/mesh/dest.state.json").await).unwrap();
    assert!(now["serial"].as_u64() > remote["serial"].as_u64(), "{now}");
    // Workspaces: one state per workspace beside the default.
    c.write(&desired(GCS, 1));
    let o = c
        .run(
            env!("CARGO_BIN_EXE_meshform"),
            &["apply", "main.toml", "--auto-approve"],
            &[],
            &[("MESHFORM_WORKSPACE", "staging".into())],
        )
        .await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    cat(&c, "gs://meshform-demo-state/team/mesh/main.staging.state.json").await;
    let o = c.mf(&["workspace", "list", "main.toml", "--workspace", "staging"]).await;
    assert_eq!(text(&o).lines().collect::<Vec<_>>(), ["  default", "* staging"], "{}", text(&o));
    let o = c.mf(&["plan", "main.toml", "--workspace", "Bad_Name"]).await;
    assert!(code(&o) == 1 && text(&o).contains("lowercase letters"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_file_seals_the_state_and_the_saved_plan() {
    let c = Cloud::default().await;
    std::fs::write(c.dir.path().join("state.key"), "# the state key\nq83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=\n")
        .unwrap();
    c.write(&desired(&format!("{GCS}encryption_key_file = \"state.key\"\n"), 2));
    let o = c.mf(&["plan", "main.toml", "--out", "sealed.plan"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let saved = std::fs::read_to_string(c.dir.path().join("sealed.plan")).unwrap();
    assert!(saved.contains("meshform_plan_sealed") && !saved.contains("meshform_data"), "{saved}");
    let o = c.mf(&["apply", "sealed.plan"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(cat(&c, OBJECT).await.contains("meshform_encrypted"));
    std::fs::write(c.dir.path().join("state.key"), "short\n").unwrap();
    let o = c.mf(&["plan", "main.toml"]).await;
    let t = text(&o);
    assert!(code(&o) == 1 && t.contains("the state key:") && !t.contains("short"), "{t}");
}
