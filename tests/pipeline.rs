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
