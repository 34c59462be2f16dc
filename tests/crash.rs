//! kill -9 at seeded random moments of a 5-cluster ASM-guide apply against the simulator
//! (`--latency 50`): after every kill the next run takes the provably stale lock over by itself,
//! replays the journal and carries on; at the end the apply converges, the simulator holds no
//! duplicate or orphan object, and destroy restores every cluster's authorized networks and
//! global access exactly as the world had them. CI runs 2 kills; `cargo test --test crash --
//! --ignored` runs 20 (`MESHFORM_CRASH_SEED` picks the sequence).
//!
//! Needs gcloud and kubectl on PATH (a missing tool fails the test saying so; see .ci/run).

mod common;

use std::time::Duration;

use common::{Cloud, code, text};
use meshform_sim::SimOptions;
use meshform_sim::world::World;

const ZONES: [(&str, &str, &str); 5] = [
    ("us-central1-a", "us-central1", "10.128.0.0/20"),
    ("europe-west1-b", "europe-west1", "10.132.0.0/20"),
    ("us-east1-b", "us-east1", "10.142.0.0/20"),
    ("asia-east1-a", "asia-east1", "10.140.0.0/20"),
    ("europe-west4-a", "europe-west4", "10.164.0.0/20"),
];

/// Five private zonal clusters, each with an authorized network of its own (one with a display
/// name) and global access on for every other one.
fn world() -> World {
    let mut t = String::from("project = \"meshform-demo\"\nnetwork = \"default\"\n");
    for (_, region, cidr) in ZONES {
        t.push_str(&format!("\n[[subnets]]\nregion = \"{region}\"\ncidr = \"{cidr}\"\n"));
    }
    for (i, (zone, _, _)) in ZONES.iter().enumerate() {
        t.push_str(&format!(
            "\n[[clusters]]\nname = \"cluster-{}\"\nlocation = \"{zone}\"\npod_cidr = \"10.{}.0.0/14\"\nservices_cidr = \"10.96.{}.0/20\"\nauthorized_networks = [\"203.0.113.{}/32\"]\nglobal_access = {}\n",
            i + 1,
            i * 4,
            i * 16,
            i + 1,
            i % 2 == 1
        ));
    }
    World::from_toml(&t).unwrap()
}

/// A small seeded generator (xorshift64*), so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

async fn described(c: &Cloud, name: &str, zone: &str) -> (Vec<String>, bool) {
    let d = c.describe(&["container", "clusters", "describe", name, "--location", zone]).await;
    let nets = common::authorized_networks(&d);
    let ga = d["privateClusterConfig"]["masterGlobalAccessConfig"]["enabled"].as_bool().unwrap_or(false);
    (nets, ga)
}

/// Where the crash tests keep state: beside the plan, or in the simulator's bucket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    Gcs,
}

const GCS_STATE: &str = "\n[state]\nbackend = \"gcs\"\nbucket = \"meshform-demo-state\"\nprefix = \"crash\"\n";

/// Copies the plan files into the runner's working directory (as a fresh checkout would).
fn checkout(c: &Cloud, backend: Backend) {
    c.copy_plans();
    let dest = c.dir.path().join("plans");
    if backend == Backend::Gcs {
        let plan = dest.join("asm-multicluster.toml");
        let text = std::fs::read_to_string(&plan).unwrap();
        std::fs::write(&plan, format!("{text}{GCS_STATE}")).unwrap();
    }
}

/// The simulator, the plan files and a var file naming the world's clusters.
async fn setup(backend: Backend) -> (Cloud, World) {
    let w = world();
    let c = Cloud::start(SimOptions {
        world: w.clone(),
        latency: Duration::from_millis(50),
        lro_polls: 1,
        ..SimOptions::default()
    })
    .await;
    checkout(&c, backend);
    let map: Vec<String> = w.clusters.iter().map(|c| format!("\"{}\" = \"{}\"", c.name, c.location)).collect();
    std::fs::write(c.dir.path().join("clusters.toml"), format!("clusters = {{ {} }}\n", map.join(", "))).unwrap();
    (c, w)
}

const APPLY: [&str; 5] = ["apply", "plans/asm-multicluster.toml", "--auto-approve", "--var-file", "clusters.toml"];
const STATE: &str = "plans/asm-multicluster.state.json";
const JOURNAL: &str = "plans/asm-multicluster.state.json.journal";

/// How many journal entries the run in flight has made durable: lines of the local journal, or
/// objects under the bucket's journal prefix (each a group commit of one or more operations).
async fn journaled(c: &Cloud, backend: Backend, http: &reqwest::Client) -> usize {
    match backend {
        Backend::Local => std::fs::read_to_string(c.dir.path().join(JOURNAL)).map(|t| t.lines().count()).unwrap_or(0),
        Backend::Gcs => {
            let url = format!("{}/storage/v1/b/meshform-demo-state/o", c.sim.base_url());
            let r = http
                .get(url)
                .bearer_auth(&c.sim.token)
                .query(&[("prefix", "crash/asm-multicluster.journal/")])
                .send()
                .await;
            match r {
                Ok(r) => r.json::<serde_json::Value>().await.map_or(0, |j| j["items"].as_array().map_or(0, Vec::len)),
                Err(_) => 0,
            }
        }
    }
}

/// The state as recorded (the local file, or the bucket's object through `state pull`).
async fn recorded(c: &Cloud, backend: Backend) -> String {
    match backend {
        Backend::Local => std::fs::read_to_string(c.dir.path().join(STATE)).unwrap(),
        Backend::Gcs => {
            let o = c.mf(&["state", "pull", "plans/asm-multicluster.toml"]).await;
            assert_eq!(code(&o), 0, "{}", text(&o));
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
    }
}

/// Starts an apply and kills it (-9) once its journal holds `after` finished operations (plus
/// up to 40 ms more, so the kill also lands between the calls of one operation).
async fn apply_killed(c: &Cloud, backend: Backend, after: usize, extra: Duration) -> bool {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshform"));
    cmd.args(APPLY)
        .current_dir(c.dir.path())
        .env_clear()
        .envs(c.env.iter().cloned())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let http = reqwest::Client::new();
    // A GCS entry is a batch: kill after fewer of them.
    let after = if backend == Backend::Gcs { after.div_ceil(3) } else { after };
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false; // finished first
        }
        if journaled(c, backend, &http).await > after {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(extra).await;
    let killed = child.start_kill().is_ok();
    let _ = child.wait().await;
    killed
}

/// No duplicate or orphan: one firewall rule, and per cluster n-1 remote secrets and n-1 token
/// Secrets (one per pair), each recorded in state.
async fn nothing_duplicated_or_orphaned(c: &Cloud, backend: Backend, n: usize, what: &str) {
    let state = recorded(c, backend).await;
    let o = c
        .gcloud(&["compute", "firewall-rules", "list", "--filter=name=istio-multicluster-pods", "--format=value(name)"])
        .await;
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1, "{what}");
    for i in 0..n {
        let remote = c
            .kubectl(i, &["get", "secrets", "-n", "istio-system", "-l", "istio/multiCluster=true", "-o", "name"])
            .await;
        let remote = String::from_utf8_lossy(&remote.stdout).into_owned();
        assert_eq!(remote.lines().count(), n - 1, "{what}: cluster {i}: {remote}");
        let all = c.kubectl(i, &["get", "secrets", "-n", "istio-system", "-o", "name"]).await;
        let tokens: Vec<String> = String::from_utf8_lossy(&all.stdout)
            .lines()
            .filter(|l| l.contains("istio-remote-secret-token"))
            .map(|l| l.trim_start_matches("secret/").to_string())
            .collect();
        assert_eq!(tokens.len(), n - 1, "{what}: cluster {i}: orphan token Secrets {tokens:?}");
        for t in &tokens {
            assert!(state.contains(t.as_str()), "{what}: token Secret {t} is not in state");
        }
    }
}

/// Round 0 applies without a kill (to count the operations); each later round kills an apply
/// from empty after a seeded number of finished operations, reruns it (which must converge
/// without a force-unlock), checks for duplicates and orphans, destroys, and checks that every
/// cluster's authorized networks and global access are exactly as the world had them.
async fn kills_then_converge_then_destroy_restores(backend: Backend, kills: usize, seed: u64) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (c, w) = setup(backend).await;
    let n = w.clusters.len();
    let mut before = Vec::new();
    for k in &w.clusters {
        before.push((k.name.clone(), k.location.clone(), described(&c, &k.name, &k.location).await));
    }
    let mut rng = Rng(seed.max(1));
    let mut ops = 0;
    let mut killed = 0;
    for round in 0..=kills {
        let what = format!("round {round} (seed {seed})");
        if round > 0 {
            let after = 1 + rng.below(ops.max(2) as u64 - 1) as usize;
            let extra = Duration::from_millis(rng.below(40));
            let was_killed = apply_killed(&c, backend, after, extra).await;
            killed += usize::from(was_killed);
            if backend == Backend::Gcs {
                // A new runner: the working directory is gone, only the bucket remains.
                std::fs::remove_dir_all(c.dir.path().join("plans")).unwrap();
                checkout(&c, backend);
            }
        }
        let o = c.mf(&APPLY).await;
        assert_eq!(code(&o), 0, "{what}: the rerun did not converge:\n{}", text(&o));
        if backend == Backend::Gcs && round > 0 {
            let t = text(&o);
            let replayed =
                t.lines().find(|l| l.contains("finished operation(s) from an interrupted run")).unwrap_or("");
            println!("{what}: {}", if replayed.is_empty() { "no journal left to replay" } else { replayed });
        }
        let o =
            c.mf(&["plan", "plans/asm-multicluster.toml", "--detailed-exitcode", "--var-file", "clusters.toml"]).await;
        assert_eq!(code(&o), 0, "{what}: {}", text(&o));
        nothing_duplicated_or_orphaned(&c, backend, n, &what).await;
        if round == 0 {
            let s: serde_json::Value = serde_json::from_str(&recorded(&c, backend).await).unwrap();
            ops = s["objects"].as_array().map_or_else(|| s["objects"].as_object().map_or(0, |o| o.len()), |a| a.len());
            assert!(ops > 10, "{ops} objects");
        }
        let o =
            c.mf(&["destroy", "plans/asm-multicluster.toml", "--auto-approve", "--var-file", "clusters.toml"]).await;
        assert_eq!(code(&o), 0, "{what}: {}", text(&o));
        for (name, zone, was) in &before {
            assert_eq!(
                &described(&c, name, zone).await,
                was,
                "{what}: {name}: authorized networks / global access not restored"
            );
        }
    }
    // Kills land after a seeded number of finished operations, so nearly every apply dies mid-way.
    println!("crash: {killed} of {kills} applies killed mid-way (seed {seed})");
    assert!(killed * 4 >= kills * 3, "only {killed} of {kills} applies were killed before they finished");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_kills_during_a_five_cluster_apply_lose_nothing() {
    kills_then_converge_then_destroy_restores(Backend::Local, 2, 7).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_with_gcs_state_and_a_new_runner_loses_nothing() {
    kills_then_converge_then_destroy_restores(Backend::Gcs, 1, 11).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: 10 kills with GCS state (run with --ignored)"]
async fn ten_kills_with_gcs_state_and_new_runners_lose_nothing() {
    let seed = std::env::var("MESHFORM_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    kills_then_converge_then_destroy_restores(Backend::Gcs, 10, seed).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: 20 kills (run with --ignored)"]
async fn twenty_kills_during_a_five_cluster_apply_lose_nothing() {
    let seed = std::env::var("MESHFORM_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    kills_then_converge_then_destroy_restores(Backend::Local, 20, seed).await;
}
