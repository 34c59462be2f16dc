//! The Kubernetes state store against the simulator's API server: the conformance suite, a state
//! spread over several chunks, and a chunked write killed half-way.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, PostParams};
use meshform_engine::state::conformance;
use meshform_engine::state::store::StateStore;
use meshform_kube::state::KubeStore;
use meshform_sim::{Sim, SimOptions, files};

struct Cluster {
    _sim: Sim,
    _dir: tempfile::TempDir,
    client: kube::Client,
    context: String,
}

async fn cluster() -> Cluster {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    files::write_all(&sim, dir.path()).unwrap();
    let c = &sim.clusters[0];
    let context = files::context_name(&sim.world.project, &c.location, &c.name);
    let kc = kube::config::Kubeconfig::read_from(dir.path().join("kubeconfig")).unwrap();
    let opts = kube::config::KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let ns = Namespace {
        metadata: kube::api::ObjectMeta { name: Some("meshform".into()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
    Cluster { _sim: sim, _dir: dir, client, context }
}

fn store(c: &Cluster, name: &str) -> Arc<dyn StateStore> {
    Arc::new(KubeStore::new(c.client.clone(), "meshform", name, Duration::from_secs(2), &c.context))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_store_conforms() {
    let c = cluster().await;
    let make = |name: &str| store(&c, name);
    conformance::run_all(&make, true).await;
}

/// Bytes that gzip hardly shrinks (a xorshift stream), so that they need several chunks.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn chunks(c: &Cluster) -> Vec<String> {
    let lp = ListParams::default().labels("meshform.dev/part=chunk");
    let mut names: Vec<String> = Api::<Secret>::namespaced(c.client.clone(), "meshform")
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_chunk_state_round_trips_and_a_torn_write_leaves_the_previous_one() {
    let c = cluster().await;
    let s = store(&c, "big");
    let first = noise(3 * meshform_kube::state::CHUNK + 1000);
    let v1 = s.put(&first, None).await.unwrap();
    assert_eq!(chunks(&c).await.len(), 4, "{:?}", chunks(&c).await);
    assert_eq!(s.get().await.unwrap().unwrap().bytes, first);
    // A write killed after its first chunks: chunks of a new generation exist, the manifest
    // still names the old ones.
    let secrets = Api::<Secret>::namespaced(c.client.clone(), "meshform");
    let first_chunks = chunks(&c).await;
    let mut orphan: Secret = secrets.get(&first_chunks[0]).await.unwrap();
    orphan.metadata = kube::api::ObjectMeta {
        name: Some("meshform-state-big-g2xdead-0".into()),
        labels: orphan.metadata.labels.clone(),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &orphan).await.unwrap();
    let got = s.get().await.unwrap().unwrap();
    assert_eq!((got.bytes, got.version.clone()), (first.clone(), v1.clone()), "the previous version is read");
    // An edited chunk is detected, never read as a state.
    let mut edited: Secret = secrets.get(&first_chunks[1]).await.unwrap();
    let good = edited.clone();
    edited.data.as_mut().unwrap().insert("chunk".into(), k8s_openapi::ByteString(b"garbage".to_vec()));
    secrets.replace(&first_chunks[1], &PostParams::default(), &edited).await.unwrap();
    let e = s.get().await.unwrap_err();
    assert!(e.message.contains("do not match the manifest"), "{e}");
    let mut good = good;
    good.metadata.resource_version = None;
    secrets.replace(&first_chunks[1], &PostParams::default(), &good).await.unwrap();
    // A writer that read an old version loses and leaves the current one whole.
    assert!(s.put(&noise(10), None).await.is_err());
    assert_eq!(s.get().await.unwrap().unwrap().bytes, first);
    // The next write removes the orphan (what no version names).
    let second = noise(100);
    s.put(&second, Some(&got.version)).await.unwrap();
    assert_eq!(s.get().await.unwrap().unwrap().bytes, second);
    let left = chunks(&c).await;
    assert!(!left.iter().any(|n| n.contains("g2xdead")), "{left:?}");
    assert_eq!(left.len(), 5, "the two versions' chunks: {left:?}");
    assert_eq!(s.history().await.unwrap().len(), 2);
}
