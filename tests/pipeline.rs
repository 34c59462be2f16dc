//! Pipelines and reviews: plans sized for a pull-request comment at fleet scale, the saved plan
//! shown in every format, and the CLI habits of Terraform users (issue 15).

mod common;

use common::{Cloud, code, text};
use meshform_sim::SimOptions;
use meshform_sim::world::World;

/// A copy of plans/ in the test directory and a var file naming the world's clusters.
fn setup(c: &Cloud, w: &World) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let dest = c.dir.path().join("plans");
    std::fs::create_dir_all(dest.join("manifests")).unwrap();
    for f in ["asm-multicluster.toml", "mci-istio.toml", "manifests/helloworld.yaml", "manifests/sleep.yaml"] {
        std::fs::copy(root.join(f), dest.join(f)).unwrap();
    }
    let map: Vec<String> = w.clusters.iter().map(|c| format!("\"{}\" = \"{}\"", c.name, c.location)).collect();
    std::fs::write(c.dir.path().join("clusters.toml"), format!("clusters = {{ {} }}\n", map.join(", "))).unwrap();
}

async fn mf(c: &Cloud, args: &[&str]) -> (i32, String, String) {
    let o = c.mf(args).await;
    (code(&o), String::from_utf8_lossy(&o.stdout).into_owned(), text(&o))
}

/// Every changed address of a plan JSON document.
fn changed_addresses(plan_json: &str) -> Vec<(String, Option<String>, String)> {
    let doc: serde_json::Value = serde_json::from_str(plan_json).unwrap();
    doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let a = c["address"].as_str().unwrap().to_string();
            let (block, key) = match a.split_once('[') {
                Some((b, k)) => (b.to_string(), Some(k.trim_end_matches(']').trim_matches('"').to_string())),
                None => (a.clone(), None),
            };
            (a, key, block)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_50_cluster_mci_plan_fits_a_pull_request_comment_and_names_every_change() {
    let w = World::fleet(50);
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    setup(&c, &w);
    let plan = "plans/mci-istio.toml";
    let (rc, md, err) = mf(&c, &["plan", plan, "--var-file", "clusters.toml", "--var", "config_cluster=c001", "--format", "markdown", "--out", "p.plan"]).await;
    assert_eq!(rc, 0, "{err}");
    if let Ok(p) = std::env::var("MESHFORM_TEST_KEEP_MARKDOWN") {
        std::fs::write(p, &md).unwrap();
    }
    assert!(md.chars().count() <= 65_536, "{} characters", md.chars().count());
    let (rc, json, err) = mf(&c, &["show", "p.plan", "--format", "json"]).await;
    assert_eq!(rc, 0, "{err}");
    let changes = changed_addresses(&json);
    assert!(changes.len() > 2500, "{} changes", changes.len());
    for (addr, key, block) in &changes {
        let named = md.contains(&format!("`{addr}`"))
            || key.as_ref().is_some_and(|k| md.contains(&format!("`{block}[*]`")) && md.contains(&format!("`{k}`")));
        assert!(named, "{addr} is not named in the Markdown plan");
    }
    assert!(md.contains("× 50"), "instances are grouped");
    // The full rendering (what the truncation note points at) has every detail.
    let (rc, full, _) = mf(&c, &["show", "p.plan", "--format", "markdown"]).await;
    assert_eq!(rc, 0);
    assert!(full.len() >= md.len());
    if md.contains("left out to fit") {
        assert!(md.contains("meshform show PLANFILE --format markdown"));
        assert!(!full.contains("left out to fit"));
    }
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("engine/schemas").join(name);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&doc).unwrap()
}

fn valid(v: &jsonschema::Validator, doc: &serde_json::Value, what: &str) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not match its schema: {errors:#?}\n{doc}");
}

/// The checked-in JSON Schema of the desired state is what `meshform schema --json-schema`
/// generates from the registry, and both guides' plans (and every valid test file) satisfy it.
#[tokio::test(flavor = "multi_thread")]
async fn the_desired_state_json_schema_is_current_and_the_plans_satisfy_it() {
    let c = Cloud::default().await;
    let (rc, generated, err) = mf(&c, &["schema", "--json-schema"]).await;
    assert_eq!(rc, 0, "{err}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let checked_in = std::fs::read_to_string(root.join("engine/schemas/desired-state.schema.json")).unwrap();
    assert_eq!(
        generated, checked_in,
        "engine/schemas/desired-state.schema.json is stale: `meshform schema --json-schema > engine/schemas/desired-state.schema.json`"
    );
    let v = schema("desired-state.schema.json");
    let mut files = vec![root.join("plans/asm-multicluster.toml"), root.join("plans/mci-istio.toml")];
    files.extend(std::fs::read_dir(root.join("testdata/valid")).unwrap().map(|e| e.unwrap().path()));
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "toml")) {
        let doc: toml::Value = toml::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        valid(&v, &serde_json::to_value(doc).unwrap(), &f.display().to_string());
    }
    // And it rejects what the loader rejects: an unknown attribute.
    let bad: toml::Value = toml::from_str("[resources.gcp_firewall.x]\nname = \"x\"\nnetwork = \"default\"\nbogus = 1\n").unwrap();
    assert!(!v.is_valid(&serde_json::to_value(bad).unwrap()));
    // `schema TYPE` lists a type's attributes and its import id.
    let (rc, t, _) = mf(&c, &["schema", "k8s_secret"]).await;
    assert_eq!(rc, 0);
    assert!(t.contains("import id: CLUSTER/NAMESPACE/NAME") && t.contains("data") && t.contains("sensitive"), "{t}");
    let (rc, _, err) = mf(&c, &["schema", "gcp_firewal"]).await;
    assert_eq!(rc, 1);
    assert!(err.contains("did you mean `gcp_firewall`"), "{err}");
}

/// A saved plan shown in all three formats; its JSON satisfies the plan schema.
#[tokio::test(flavor = "multi_thread")]
async fn show_renders_a_saved_plan_in_every_format() {
    let w = World::default();
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    setup(&c, &w);
    let (rc, _, err) = mf(&c, &["plan", "plans/asm-multicluster.toml", "-out=p.plan"]).await;
    assert_eq!(rc, 0, "{err}");
    let (rc, human, _) = mf(&c, &["show", "p.plan"]).await;
    assert_eq!(rc, 0);
    assert!(human.contains("+ gcp_firewall.istio_multicluster_pods") && human.contains("Plan: 13 to add"), "{human}");
    let (rc, md, _) = mf(&c, &["show", "p.plan", "--format", "markdown"]).await;
    assert_eq!(rc, 0);
    assert!(md.starts_with("### meshform plan") && md.contains("| `k8s_manifest` | 6 |"), "{md}");
    let (rc, json, _) = mf(&c, &["show", "p.plan", "--format", "json"]).await;
    assert_eq!(rc, 0);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    valid(&schema("plan-v1.schema.json"), &doc, "the plan JSON");
    assert_eq!(doc["variables"]["project"]["value"], "meshform-demo");
    assert!(doc["state"]["lineage"].is_null(), "no state yet");
    let fw = doc["changes"].as_array().unwrap().iter().find(|c| c["type"] == "gcp_firewall").unwrap();
    assert_eq!(fw["actions"], serde_json::json!(["create"]));
    assert_eq!(fw["after_unknown_nested"]["self_link"], true);
    // A manifest is shown once: its source while its objects are known only after apply.
    assert!(human.contains("+ file_text") && human.contains("+ objects   = (known after apply)"), "{human}");
    // Not a plan file: an error naming it, nothing on stdout.
    std::fs::write(c.dir.path().join("junk.plan"), "not a plan").unwrap();
    let (rc, stdout, err) = mf(&c, &["show", "junk.plan"]).await;
    assert_eq!(rc, 1, "{stdout}{err}");
}
