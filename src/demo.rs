//! `meshform demo`: the whole job against an in-process simulator, narrated. It validates, plans,
//! applies, plans again (nothing to do), changes something behind meshform's back through the
//! API as a person with gcloud would, shows the drift, repairs it, and destroys everything.

use std::collections::HashMap;
use std::sync::Arc;

use meshform_engine::apply::{ApplyOptions, apply};
use meshform_engine::drift::detect_drift;
use meshform_engine::plan::Mode;
use meshform_engine::plan::planner::{PlanOptions, plan};
use meshform_engine::plan::render::{Style, render_drift, render_plan};
use meshform_engine::provider::Registry;
use meshform_engine::session::Session;
use meshform_engine::state::codec::Codec;
use meshform_engine::state::handle::Backend;
use meshform_engine::vars::VarInputs;
use meshform_gcp::state::GcsStore;
use meshform_sim::{Sim, SimOptions, files};

use crate::exit::{ERROR, OK};
use crate::ui;

const PLAN: &str = include_str!("../plans/asm-multicluster.toml");
const HELLOWORLD: &str = include_str!("../plans/manifests/helloworld.yaml");
const SLEEP: &str = include_str!("../plans/manifests/sleep.yaml");

fn say(st: Style, n: u32, text: &str) {
    println!("\n{}\n", st.bold(&format!("── {n}. {text}")));
}

/// Runs the demo; returns the exit code.
pub async fn run(color: bool) -> u8 {
    match demo(color).await {
        Ok(()) => OK,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ERROR
        }
    }
}

fn registry(env: &HashMap<String, String>) -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(meshform_engine::builtin::Builtin));
    r.register(Arc::new(meshform_gcp::GcpProvider::with_env(env.clone())));
    r.register(Arc::new(meshform_kube::KubeProvider::with_env(env.clone())));
    r
}

async fn demo(color: bool) -> Result<(), String> {
    let st = Style::new(color);
    let started = std::time::Instant::now();
    say(st, 1, "Start a simulator of Google Cloud and of two private GKE clusters in two regions, no mesh installed");
    let mut world = meshform_sim::world::World::default();
    for c in &mut world.clusters {
        c.istio_revision.clear();
    }
    let sim = Sim::start(SimOptions { world, ..SimOptions::default() }).await?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    files::write_all(&sim, dir.path()).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir.path().join("manifests")).map_err(|e| e.to_string())?;
    for (name, text) in
        [("asm-multicluster.toml", PLAN), ("manifests/helloworld.yaml", HELLOWORLD), ("manifests/sleep.yaml", SLEEP)]
    {
        std::fs::write(dir.path().join(name), text).map_err(|e| e.to_string())?;
    }
    // The state goes in the simulator's bucket, as a team's would.
    let with_state = format!("{PLAN}\n{DEMO_STATE}");
    std::fs::write(dir.path().join("asm-multicluster.toml"), with_state).map_err(|e| e.to_string())?;
    let env: HashMap<String, String> = files::env_vars(&sim, dir.path()).into_iter().collect();
    println!(
        "Google Cloud APIs at {}; clusters: {}.",
        sim.base_url(),
        sim.clusters.iter().map(|c| format!("{} ({})", c.name, c.location)).collect::<Vec<_>>().join(", ")
    );
    println!(
        "The desired state is the Anthos Service Mesh multi-cluster guide: plans/asm-multicluster.toml, with the managed Cloud Service Mesh (--var managed_mesh=true)."
    );

    let file = dir.path().join("asm-multicluster.toml");
    let vars = VarInputs { cli: vec!["managed_mesh=true".into()], ..VarInputs::default() };
    let load = || Session::load(&file, registry(&env), &vars).map_err(|f| f.render(color));

    say(st, 2, "Validate the desired state (nothing live is touched)");
    let s = load()?;
    let store = GcsStore::configure(&s.cfg.state, "asm-multicluster", &env)
        .map_err(|d| s.failure(meshform_engine::diag::Diagnostics(d)).render(color))?;
    let backend = Backend::new(Arc::new(store), Codec::plain());
    println!(
        "valid: {} objects, {} data sources, {} clusters",
        s.graph.instances.iter().filter(|i| i.addr.block.mode == meshform_engine::addr::Mode::Managed).count(),
        s.graph.instances.iter().filter(|i| i.addr.block.mode == meshform_engine::addr::Mode::Data).count(),
        s.graph.cluster_names.len()
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let networks_before = authorized_networks(&sim, &http).await?;

    say(st, 3, "Plan: read what is live, show what would change");
    let (mut lock, mut state) = backend.open("demo", Default::default()).await.map_err(|e| e.to_string())?;
    println!("The state lives in {}; this run holds its lock object:", backend.location());
    storage(&env, dir.path(), &["objects", "describe", LOCK_URL, "--format=value(name,generation,metageneration)"])?;
    let outcome = plan(&s, &state, &PlanOptions::default()).await.map_err(|d| s.failure(d).render(color))?;
    print!("{}", render_plan(&outcome.plan, color));

    say(st, 4, "Apply it, in dependency order, in parallel where the graph allows");
    let total = outcome.plan.changes.iter().filter(|c| c.action.is_change()).count() as u64;
    let progress = ui::ApplyProgress::new(total, color, false, None);
    let report = apply(&s, &outcome.plan, &mut lock, &mut state, &ApplyOptions::default(), &progress).await;
    // Cleared on every path, so no bar is left on the screen.
    progress.bar.finish_and_clear();
    let report = report.map_err(|d| s.failure(d).render(color))?;
    progress.flush();
    if !report.success() {
        return Err("apply did not complete".into());
    }
    for c in &report.checks {
        println!("check {}: {}", c.name, if c.passed { "ok" } else { &c.message });
    }
    println!("\nThe fleet's service mesh, as `gcloud container fleet mesh describe` shows it:");
    let mesh = http
        .get(format!(
            "{}/gkehub/v1/projects/{}/locations/global/features/servicemesh",
            sim.base_url(),
            sim.world.project
        ))
        .bearer_auth(&sim.token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mesh: serde_json::Value = mesh.json().await.map_err(|e| e.to_string())?;
    for (membership, state) in mesh["membershipStates"].as_object().into_iter().flatten() {
        let cp = &state["servicemesh"]["controlPlaneManagement"];
        println!(
            "{membership}: control plane {} ({})",
            cp["state"].as_str().unwrap_or("?"),
            cp["details"][0]["details"].as_str().unwrap_or("")
        );
        if cp["state"] != "ACTIVE" {
            return Err(format!("the control plane of {membership} is not ACTIVE"));
        }
    }

    println!("\nThe state object, one generation per write (the bucket keeps them: `meshform state history`):");
    storage(&env, dir.path(), &["ls", "-a", STATE_URL])?;

    say(st, 5, "Plan again: nothing to do");
    let s = load()?;
    let again = plan(&s, &state, &PlanOptions::default()).await.map_err(|d| s.failure(d).render(color))?;
    print!("{}", render_plan(&again.plan, color));
    if again.plan.has_changes() {
        return Err("the second plan is not empty".into());
    }

    say(
        st,
        6,
        "Someone changes the firewall rule by hand (the API call `gcloud compute firewall-rules update --priority=1000` makes)",
    );
    let url = firewall_url(&sim);
    let resp = http
        .patch(&url)
        .bearer_auth(&sim.token)
        .json(&serde_json::json!({"priority": 1000}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    println!("PATCH {url} → {}", resp.status());

    say(st, 7, "Drift: a cheap refresh says exactly what changed (exit code 2 on a schedule)");
    let report = detect_drift(&s, &state, &[], 10).await.map_err(|d| s.failure(d).render(color))?;
    let mut out = String::new();
    render_drift(&report.drift, st, &mut out);
    print!("{out}");
    if report.drift.is_empty() {
        return Err("the change was not detected".into());
    }

    say(st, 8, "Apply repairs it");
    let repair = plan(&s, &state, &PlanOptions::default()).await.map_err(|d| s.failure(d).render(color))?;
    print!("{}", render_plan(&repair.plan, color));
    let report =
        apply(&s, &repair.plan, &mut lock, &mut state, &ApplyOptions::default(), &meshform_engine::apply::Quiet)
            .await
            .map_err(|d| s.failure(d).render(color))?;
    if !report.success() {
        return Err("the repair did not apply".into());
    }
    let after = detect_drift(&s, &state, &[], 10).await.map_err(|d| s.failure(d).render(color))?;
    if after.found() {
        return Err("drift remains after the repair".into());
    }
    println!("drift after the repair: none (`meshform drift` would exit 0)");

    say(st, 9, "Destroy everything meshform created (and nothing that was there before)");
    let gone = plan(&s, &state, &PlanOptions { mode: Mode::Destroy, ..Default::default() })
        .await
        .map_err(|d| s.failure(d).render(color))?;
    let report = apply(&s, &gone.plan, &mut lock, &mut state, &ApplyOptions::default(), &meshform_engine::apply::Quiet)
        .await
        .map_err(|d| s.failure(d).render(color))?;
    if !report.success() || !state.objects.is_empty() {
        return Err("destroy did not complete".into());
    }
    let firewall = http.get(firewall_url(&sim)).bearer_auth(&sim.token).send().await.map_err(|e| e.to_string())?;
    if firewall.status() != reqwest::StatusCode::NOT_FOUND {
        return Err(format!("the firewall rule is still there ({})", firewall.status()));
    }
    if authorized_networks(&sim, &http).await? != networks_before {
        return Err(format!(
            "the clusters' authorized networks differ from before the demo: {networks_before:?} → {:?}",
            authorized_networks(&sim, &http).await?
        ));
    }
    println!(
        "destroyed {} objects; the firewall rule is gone and every cluster's authorized networks are as they were.",
        report.results.len()
    );
    lock.release().await?;
    println!("The lock object is gone once the run releases it:");
    storage(&env, dir.path(), &["ls", "gs://meshform-demo-state/demo/"])?;
    sim.stop().await;
    println!("\n{}", st.green(&format!("Demo complete in {:.1}s. Try it by hand: `meshform sim`, then `meshform apply plans/asm-multicluster.toml`.", started.elapsed().as_secs_f64())));
    Ok(())
}

const DEMO_STATE: &str = "[state]\nbackend = \"gcs\"\nbucket = \"meshform-demo-state\"\nprefix = \"demo\"\n";
const LOCK_URL: &str = "gs://meshform-demo-state/demo/asm-multicluster.lock";
const STATE_URL: &str = "gs://meshform-demo-state/demo/asm-multicluster.state.json";

/// Shows the bucket with `gcloud storage ARGS` against the simulator, when gcloud is installed
/// (else says how to look).
fn storage(env: &HashMap<String, String>, dir: &std::path::Path, args: &[&str]) -> Result<(), String> {
    let shown = format!("gcloud storage {}", args.join(" "));
    let Some(gcloud) = meshform_sim::tools::find("gcloud") else {
        println!("  (install gcloud to see `{shown}` here)");
        return Ok(());
    };
    // A short blocking call in a demo that does one thing at a time.
    let o = std::process::Command::new(gcloud)
        .arg("storage")
        .args(args)
        .envs(env)
        .env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if !o.status.success() {
        return Err(format!("{shown}: {}", String::from_utf8_lossy(&o.stderr)));
    }
    println!("  $ {shown}");
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        println!("  {line}");
    }
    Ok(())
}

fn firewall_url(sim: &Sim) -> String {
    format!("{}/compute/v1/projects/{}/global/firewalls/istio-multicluster-pods", sim.base_url(), sim.world.project)
}

/// Every cluster's master authorized networks, read through the API as gcloud would.
async fn authorized_networks(sim: &Sim, http: &reqwest::Client) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    for c in &sim.clusters {
        let url = format!(
            "{}/container/v1/projects/{}/locations/{}/clusters/{}",
            sim.base_url(),
            sim.world.project,
            c.location,
            c.name
        );
        let resp = http.get(&url).bearer_auth(&sim.token).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("GET {url} → {}", resp.status()));
        }
        let j: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
        out.push(j["masterAuthorizedNetworksConfig"].clone());
    }
    Ok(out)
}
