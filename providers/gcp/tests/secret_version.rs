//! The `gcp_secret_version` data source against the simulator's Secret Manager: versions by
//! number and `latest`, full names, binary payloads, Google's errors named by secret and project,
//! and, through the engine's own plan and apply, that the payload stays out of state, saved plans
//! and renderings (read at plan time, and read only at apply when its inputs were unknown).

use std::collections::HashMap;
use std::sync::Arc;

use meshform_engine::apply::{ApplyOptions, Quiet, apply};
use meshform_engine::builtin::Builtin;
use meshform_engine::plan::planner::{PlanOptions, plan};
use meshform_engine::plan::{Action, json, markdown, render, saved};
use meshform_engine::provider::{CallContext, ErrorKind, Provider, Registry};
use meshform_engine::session::Session;
use meshform_engine::state::codec::Codec;
use meshform_engine::state::handle::Backend;
use meshform_engine::state::local::LocalStore;
use meshform_engine::value::{Map, Value};
use meshform_engine::vars::VarInputs;
use meshform_gcp::GcpProvider;
use meshform_sim::world::World;
use meshform_sim::{Sim, SimOptions};

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";

async fn sim() -> Sim {
    let world = World::from_toml(&format!(
        "[[secrets]]\nname = \"ingress-tls-key\"\nversions = [\"old-key\", {KEY:?}]\n\n[[secrets]]\nname = \"empty\"\nversions = []\n"
    ))
    .unwrap();
    Sim::start(SimOptions { world, retry_after_secs: 0, ..SimOptions::default() }).await.unwrap()
}

fn provider(sim: &Sim) -> GcpProvider {
    GcpProvider::with_env(HashMap::from([
        ("MESHFORM_GCP_ENDPOINT".to_string(), sim.base_url()),
        ("MESHFORM_GCP_ACCESS_TOKEN".to_string(), sim.token.clone()),
        ("MESHFORM_GCP_PROJECT".to_string(), sim.world.project.clone()),
    ]))
}

fn config(pairs: &[(&str, Value)]) -> Map {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

async fn read(p: &GcpProvider, pairs: &[(&str, Value)]) -> Result<Map, meshform_engine::provider::ProviderError> {
    let o = p.read_data("gcp_secret_version", &config(pairs), &CallContext::default()).await?;
    // The schema marks it; the engine applies the schema's marking at plan and at apply.
    let schema = p.schemas().into_iter().find(|t| t.name == "gcp_secret_version").expect("registered");
    assert!(schema.attrs.iter().any(|a| a.name == "secret_data" && a.sensitive), "secret_data is sensitive");
    Ok(o.attrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_read_by_number_latest_and_full_name() {
    let sim = sim().await;
    let p = provider(&sim);
    p.configure(&Map::new()).await.unwrap();
    let latest = read(&p, &[("secret", Value::str("ingress-tls-key"))]).await.unwrap();
    assert_eq!(latest["secret_data"], Value::str(KEY));
    assert_eq!(latest["version"], Value::str("2"));
    assert_eq!(latest["project"], Value::str("meshform-demo"));
    assert_eq!(latest["name"], Value::str("projects/469301857210/secrets/ingress-tls-key/versions/2"));
    let first = read(&p, &[("secret", Value::str("ingress-tls-key")), ("version", Value::str("1"))]).await.unwrap();
    assert_eq!((&first["secret_data"], &first["version"]), (&Value::str("old-key"), &Value::str("1")));
    let full = read(&p, &[("secret", Value::str("projects/meshform-demo/secrets/ingress-tls-key"))]).await.unwrap();
    assert_eq!(full["secret_data"], Value::str(KEY));
    // One call per read: `…/versions/V:access`, under the secretmanager base.
    let log = sim.log();
    let paths: Vec<&str> = log.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/secretmanager/v1/projects/meshform-demo/secrets/ingress-tls-key/versions/latest:access",
            "/secretmanager/v1/projects/meshform-demo/secrets/ingress-tls-key/versions/1:access",
            "/secretmanager/v1/projects/meshform-demo/secrets/ingress-tls-key/versions/latest:access",
        ]
    );

    // Binary data: an error unless asked for base64, and the error quotes no data.
    sim.shared.store.lock().unwrap().add_secret_version("ingress-tls-key", vec![0xff, 0x00, 0xfe], false);
    let e = read(&p, &[("secret", Value::str("ingress-tls-key"))]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("is_secret_data_base64") && e.message.contains("ingress-tls-key"), "{e}");
    let b64 = [("secret", Value::str("ingress-tls-key")), ("is_secret_data_base64", Value::Bool(true))];
    assert_eq!(read(&p, &b64).await.unwrap()["secret_data"], Value::str("/wD+"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secrets_and_unreadable_versions_are_clear_errors() {
    let sim = sim().await;
    let p = provider(&sim);
    p.configure(&Map::new()).await.unwrap();
    let missing = read(&p, &[("secret", Value::str("nope"))]).await.unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);
    assert!(
        missing.message.starts_with("secret `nope` (version latest) in project `meshform-demo`: Secret [")
            && missing.message.contains("not found"),
        "{missing}"
    );
    let other = [("secret", Value::str("ingress-tls-key")), ("project", Value::str("elsewhere"))];
    let e = read(&p, &other).await.unwrap_err();
    assert!(e.message.contains("project `elsewhere`"), "{e}");
    let none = read(&p, &[("secret", Value::str("empty"))]).await.unwrap_err();
    assert!(none.kind == ErrorKind::NotFound && none.message.contains("has no versions"), "{none}");
    let high = read(&p, &[("secret", Value::str("ingress-tls-key")), ("version", Value::str("9"))]).await;
    assert_eq!(high.unwrap_err().kind, ErrorKind::NotFound);

    sim.shared.store.lock().unwrap().set_version_state("ingress-tls-key", 1, "DISABLED");
    let disabled = read(&p, &[("secret", Value::str("ingress-tls-key"))]).await.unwrap_err();
    assert!(disabled.message.contains("is in DISABLED state"), "{disabled}");
    for e in [&missing, &e, &none, &disabled] {
        assert!(!e.message.contains("BEGIN PRIVATE KEY") && !e.message.contains("old-key"), "{e}");
    }

    // Refused before any call: a malformed secret or version, a full name naming another project.
    sim.clear_log();
    for bad in [
        vec![("secret", Value::str("a/b"))],
        vec![("secret", Value::str("x")), ("version", Value::str("0"))],
        vec![("secret", Value::str("x")), ("version", Value::str("../1"))],
        vec![("secret", Value::str("projects/p1/secrets/x")), ("project", Value::str("p2"))],
    ] {
        assert_eq!(read(&p, &bad).await.unwrap_err().kind, ErrorKind::Invalid, "{bad:?}");
    }
    assert!(sim.log().is_empty(), "{:?}", sim.log());
}

/// A desired state reading the key twice: once with known inputs (read at plan), once with an
/// input known only after apply (read during apply), each fed to a `meshform_data` and an output.
const DESIRED: &str = r#"
[resources.meshform_data.later]
input = "x"

[data.gcp_secret_version.tls]
secret = "ingress-tls-key"

[data.gcp_secret_version.deferred]
secret = '${replace(meshform_data.later.id, meshform_data.later.id, "")}ingress-tls-key'

[resources.meshform_data.uses_key]
input = { key = "${data.gcp_secret_version.tls.secret_data}", version = "${data.gcp_secret_version.tls.version}" }

[resources.meshform_data.uses_deferred]
input = "${data.gcp_secret_version.deferred.secret_data}"

[outputs.key]
value = "${data.gcp_secret_version.tls.secret_data}"

[outputs.deferred]
value = "${data.gcp_secret_version.deferred.secret_data}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_data_stays_out_of_state_saved_plans_and_renderings() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("main.toml");
    std::fs::write(&path, DESIRED).unwrap();
    let session = || {
        let mut r = Registry::new();
        r.register(Arc::new(Builtin));
        r.register(Arc::new(provider(&sim)));
        Session::load(&path, r, &VarInputs::default()).unwrap_or_else(|f| panic!("{}", f.render(false)))
    };
    let backend = Backend::new(Arc::new(LocalStore::new(dir.path().join("main.state.json"))), Codec::plain());
    let s = session();
    let snap = backend.read().await.unwrap();
    let p = plan(&s, &snap.state, &PlanOptions::default()).await.unwrap_or_else(|d| panic!("{d:?}")).plan;
    let action = |a: &str| p.changes.iter().find(|c| c.address.to_string() == a).map(|c| c.action);
    assert_eq!(action("data.gcp_secret_version.tls"), Some(Action::NoOp), "read at plan");
    assert_eq!(action("data.gcp_secret_version.deferred"), Some(Action::Read), "read at apply");
    let planfile = dir.path().join("p.plan");
    saved::save(&p, &planfile).unwrap();
    let mut texts = vec![
        render::render_plan(&p, false),
        json::render_json(&p),
        markdown::render_markdown(&p),
        std::fs::read_to_string(&planfile).unwrap(),
    ];
    // Applied from the saved plan, in a new session (hashes only on disk).
    let loaded = saved::load(&planfile).unwrap();
    let s = session();
    let (mut locked, mut state) = backend.open("apply", Default::default()).await.unwrap();
    let r = apply(&s, &loaded, &mut locked, &mut state, &ApplyOptions::default(), &Quiet).await.expect("apply runs");
    locked.release().await.unwrap();
    assert!(r.success(), "{r:?}");
    texts.push(std::fs::read_to_string(dir.path().join("main.state.json")).unwrap());
    for text in &texts {
        assert!(!text.contains("BEGIN PRIVATE KEY") && !text.contains("MIIEvQ"), "the key leaked into:\n{text}");
    }
    assert!(texts[0].contains("(sensitive)"), "{}", texts[0]);
    // The resources did get the plaintext (in memory), and the state knows them as sensitive.
    let state = backend.read().await.unwrap().state;
    for (name, attr) in [("uses_key", "input"), ("uses_deferred", "input")] {
        let rec = state.objects.iter().find(|(a, _)| a.to_string() == format!("meshform_data.{name}")).unwrap().1;
        assert!(rec.sensitive_set().contains(attr), "{name}: {:?}", rec.sensitive_set());
        assert!(matches!(rec.attributes.get("output"), Some(v) if !v.to_string().contains("BEGIN")), "{name}");
    }
    // A second plan reads the key again and changes nothing.
    let p = plan(&session(), &state, &PlanOptions::default()).await.unwrap_or_else(|d| panic!("{d:?}")).plan;
    assert!(!p.has_changes(), "{}", render::render_plan(&p, false));
}
