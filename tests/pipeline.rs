//! Pipelines and reviews: plans sized for a pull-request comment at fleet scale, the saved plan
//! shown in every format, and the CLI habits of Terraform users (issue 15).

mod common;

use common::{Cloud, code, text};
use meshform_sim::SimOptions;
use meshform_sim::world::World;

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
    c.setup_guides(&w);
    let plan = "plans/mci-istio.toml";
    let (rc, md, err) = mf(
        &c,
        &[
            "plan",
            plan,
            "--var-file",
            "clusters.toml",
            "--var",
            "config_cluster=c001",
            "--format",
            "markdown",
            "--out",
            "p.plan",
        ],
    )
    .await;
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
    let bad: toml::Value =
        toml::from_str("[resources.gcp_firewall.x]\nname = \"x\"\nnetwork = \"default\"\nbogus = 1\n").unwrap();
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
    c.setup_guides(&w);
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

const DATA: &str = r#"
[variables.greeting]
type = "string"
default = "hello"

[resources.meshform_data.a]
input = "${var.greeting}"

[outputs.said]
value = "${meshform_data.a.output}"

[outputs.all]
value = ["${meshform_data.a.output}", 2]
"#;

/// `output` (all, one, --json, --raw), `--replace`, `--refresh-only`, `state mv`, single-dash
/// options and `MESHFORM_VAR_` names in another case, on the built-in type.
#[tokio::test(flavor = "multi_thread")]
async fn terraform_habits_on_a_small_state() {
    let c = Cloud::default().await;
    c.write(DATA);
    // Single-dash options, and a variable named in upper case.
    let o = c
        .run(
            env!("CARGO_BIN_EXE_meshform"),
            &["apply", "main.toml", "-auto-approve", "-parallelism=2"],
            &[],
            &[("MESHFORM_VAR_GREETING", "hi".into())],
        )
        .await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let (_, raw, _) = mf(&c, &["output", "main.toml", "said", "-raw"]).await;
    assert_eq!(raw, "hi", "--raw prints the value alone");
    let (rc, all, _) = mf(&c, &["output", "main.toml", "--json"]).await;
    assert_eq!(rc, 0);
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all["all"]["value"], serde_json::json!(["hi", 2]));
    let (rc, _, err) = mf(&c, &["output", "main.toml", "all", "--raw"]).await;
    assert_eq!(rc, 1, "a list is not raw: {err}");
    let (rc, _, err) = mf(&c, &["output", "main.toml", "sad"]).await;
    assert!(rc == 1 && err.contains("did you mean `said`"), "{err}");
    // A name that matches nothing is warned about.
    let o = c
        .run(env!("CARGO_BIN_EXE_meshform"), &["plan", "main.toml"], &[], &[("MESHFORM_VAR_GREETINGS", "x".into())])
        .await;
    assert!(text(&o).contains("MESHFORM_VAR_GREETINGS sets no declared variable"), "{}", text(&o));

    // --replace: a replacement with a new id, nothing else changes.
    let id = |c: &Cloud| std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap();
    let before = id(&c);
    let (rc, plan, _) = mf(&c, &["plan", "main.toml", "--var", "greeting=hi", "--replace", "meshform_data.a"]).await;
    assert_eq!(rc, 0);
    assert!(plan.contains("-/+ meshform_data.a") && plan.contains("asked for with --replace"), "{plan}");
    let (rc, _, err) =
        mf(&c, &["apply", "main.toml", "--var", "greeting=hi", "-replace=meshform_data.a", "-auto-approve"]).await;
    assert_eq!(rc, 0, "{err}");
    assert_ne!(before, id(&c), "the object was replaced");
    let (rc, _, err) = mf(&c, &["plan", "main.toml", "--replace", "meshform_data.nope"]).await;
    assert!(rc == 1 && err.contains("--replace meshform_data.nope: no such object"), "{err}");
    // A --replace the plan cannot honour is an error naming why, never silently dropped.
    c.write(&format!("{DATA}\n[resources.meshform_data.fresh]\ninput = 1\n"));
    let replace = |extra: &'static [&'static str]| {
        let mut a = vec!["plan", "main.toml", "--var", "greeting=hi"];
        a.extend_from_slice(extra);
        a
    };
    for (args, why) in [
        (
            replace(&["--replace", "meshform_data.fresh"]),
            "--replace meshform_data.fresh: cannot replace it: it does not exist yet",
        ),
        (
            replace(&["--target", "meshform_data.fresh", "--replace", "meshform_data.a"]),
            "--replace meshform_data.a: cannot replace it: it is outside the --target selection",
        ),
        (
            replace(&["--destroy", "--replace", "meshform_data.a"]),
            "cannot --replace anything: drop --replace or --destroy",
        ),
    ] {
        let (rc, out, err) = mf(&c, &args).await;
        assert!(rc == 1 && err.contains(why), "{args:?}: {out}{err}");
    }
    c.write(DATA);

    // state mv, then a [[moved]] entry that finds it already moved (nothing to do).
    let (rc, out, err) = mf(&c, &["state", "mv", "main.toml", "meshform_data.a", "meshform_data.b"]).await;
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("Moved meshform_data.a to meshform_data.b."), "{out}");
    let (_, list, _) = mf(&c, &["state", "list", "main.toml"]).await;
    assert_eq!(list.trim(), "meshform_data.b");
    let (rc, _, err) = mf(&c, &["state", "mv", "main.toml", "meshform_data.a", "meshform_data.c"]).await;
    assert!(rc == 1 && err.contains("not in state"), "{err}");
}

/// `[[moved]]`, `[[removed]]` (destroy = false) and `[[import]]`, each planned with its own action
/// and applied.
#[tokio::test(flavor = "multi_thread")]
async fn refactoring_blocks_are_planned_and_applied() {
    let c = Cloud::default().await;
    c.write("[resources.meshform_data.old]\ninput = 1\n\n[resources.meshform_data.gone]\ninput = 2\n");
    assert_eq!(mf(&c, &["apply", "main.toml", "--auto-approve"]).await.0, 0);
    c.write(
        "[resources.meshform_data.new]\ninput = 1\n\n[[moved]]\nfrom = \"meshform_data.old\"\nto = \"meshform_data.new\"\n\n[[removed]]\nfrom = \"meshform_data.gone\"\ndestroy = false\n\n[resources.meshform_data.taken]\ninput = \"x\"\n\n[[import]]\nto = \"meshform_data.taken\"\nid = \"existing-1\"\n",
    );
    let (rc, plan, err) = mf(&c, &["plan", "main.toml", "--detailed-exitcode"]).await;
    assert_eq!(rc, 2, "{plan}{err}");
    assert!(plan.contains("> meshform_data.old  (moves to meshform_data.new"), "{plan}");
    assert!(plan.contains(". meshform_data.gone  (forget"), "{plan}");
    assert!(
        plan.contains("<+ meshform_data.taken  (adopt an existing object: imported by [[import]] from id existing-1)"),
        "{plan}"
    );
    assert!(plan.contains("1 to adopt") && plan.contains("1 to move") && plan.contains("1 to forget"), "{plan}");
    let (rc, _, err) = mf(&c, &["plan", "main.toml", "--replace", "meshform_data.taken"]).await;
    assert!(rc == 1 && err.contains("this plan imports it ([[import]])"), "{err}");
    let (rc, json, _) = mf(&c, &["plan", "main.toml", "--format", "json"]).await;
    assert_eq!(rc, 0);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    valid(&schema("plan-v1.schema.json"), &doc, "the plan JSON");
    assert_eq!(doc["moves"][0]["to"], "meshform_data.new");
    let taken = doc["changes"].as_array().unwrap().iter().find(|c| c["address"] == "meshform_data.taken").unwrap();
    assert_eq!(taken["importing"]["id"], "existing-1");
    let (rc, out, err) = mf(&c, &["apply", "main.toml", "--auto-approve"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("1 adopted") && out.contains("1 forgotten") && out.contains("1 moved"), "{out}");
    let (_, list, _) = mf(&c, &["state", "list", "main.toml"]).await;
    assert_eq!(list.lines().collect::<Vec<_>>(), ["meshform_data.new", "meshform_data.taken"]);
    let (rc, _, _) = mf(&c, &["plan", "main.toml", "--detailed-exitcode"]).await;
    assert_eq!(rc, 0, "nothing left to do");
    // A [[moved]] `from` that is still declared is refused at load, at its line.
    c.write("[resources.meshform_data.new]\ninput = 1\n\n[[moved]]\nfrom = \"meshform_data.new\"\nto = \"meshform_data.new\"\n");
    let (rc, _, err) = mf(&c, &["plan", "main.toml"]).await;
    assert!(rc == 1 && err.contains("main.toml:") && err.contains("still declared"), "{err}");
}

/// `--refresh-only`: what changed out of band is recorded, nothing live is changed.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_only_records_drift_and_changes_nothing_live() {
    let w = World::default();
    let c = Cloud::start(SimOptions { world: w, ..SimOptions::default() }).await;
    c.write("[resources.gcp_firewall.fw]\nname = \"fw\"\nnetwork = \"default\"\nsource_ranges = [\"10.0.0.0/8\"]\nallow = [{ protocol = \"tcp\" }]\n");
    assert_eq!(mf(&c, &["apply", "main.toml", "--auto-approve"]).await.0, 0);
    c.gcloud(&["compute", "firewall-rules", "update", "fw", "--priority=500"]).await;
    let (rc, plan, _) = mf(&c, &["plan", "main.toml", "--refresh-only", "--detailed-exitcode"]).await;
    assert_eq!(rc, 2, "{plan}");
    assert!(plan.contains("priority = 1000 -> 500") && plan.contains("refresh-only"), "{plan}");
    let (rc, md, _) =
        mf(&c, &["plan", "main.toml", "--refresh-only", "--format", "markdown", "--detailed-exitcode"]).await;
    assert_eq!(rc, 2, "{md}");
    assert!(!md.contains("No changes") && md.contains("refresh-only plan") && md.contains("`priority`"), "{md}");
    let (rc, out, err) = mf(&c, &["apply", "main.toml", "--refresh-only", "--auto-approve"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let live = c.describe(&["compute", "firewall-rules", "describe", "fw"]).await;
    assert_eq!(live["priority"], 500, "nothing live changed");
    let state = std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap();
    assert!(state.contains("\"priority\": 500"), "the state records what is live");
    // Now a normal plan wants the desired 1000 back, and drift sees no out-of-band change.
    let (rc, plan, _) = mf(&c, &["plan", "main.toml", "--detailed-exitcode"]).await;
    assert!(rc == 2 && plan.contains("priority = 500 -> 1000") && !plan.contains("changed outside"), "{plan}");
}

/// Completions for the three shells name the commands and options.
#[tokio::test(flavor = "multi_thread")]
async fn completions_for_bash_zsh_and_fish() {
    let c = Cloud::default().await;
    for shell in ["bash", "zsh", "fish"] {
        let (rc, out, err) = mf(&c, &["completions", shell]).await;
        assert_eq!(rc, 0, "{err}");
        for word in ["apply", "refresh-only", "auto-approve", "state"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let (rc, _, err) = mf(&c, &["completions", "tcsh"]).await;
    assert_eq!(rc, 2, "{err}");
    let (rc, v, _) = mf(&c, &["version", "--json"]).await;
    assert_eq!(rc, 0);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["meshform_version"], env!("CARGO_PKG_VERSION"));
    let (_, help, _) = mf(&c, &["output", "--help"]).await;
    assert!(help.contains("Examples:"), "{help}");
}

/// Asked for JSON, a failure still prints JSON on stdout: an error document, or diagnostic
/// events, each with the file, line and column.
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_asked_for_json_prints_json() {
    let c = Cloud::default().await;
    c.write("[resources.meshform_data.a]\ninputt = 1\n");
    let (rc, out, _) = mf(&c, &["drift", "main.toml", "--format", "json"]).await;
    assert_eq!(rc, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["error"], true);
    assert_eq!(doc["diagnostics"][0]["range"]["line"], 5, "{doc}");
    let (rc, out, _) = mf(&c, &["plan", "main.toml", "--json"]).await;
    assert_eq!(rc, 1);
    let v = schema("events-v1.schema.json");
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for e in &events {
        valid(&v, e, "an event");
    }
    assert_eq!(events[0]["type"], "version");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "diagnostic" && e["diagnostic"]["summary"].as_str().unwrap().contains("inputt")),
        "{out}"
    );
}

/// Starts meshform with stdout a pipe (no terminal), as a CI runner does.
fn spawn(c: &Cloud, args: &[&str], extra: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshform"));
    cmd.args(args).current_dir(c.dir.path()).env_clear().stdin(std::process::Stdio::null());
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    cmd.envs(c.env.iter().map(|(k, v)| (k.clone(), v.clone()))).envs(extra.iter().copied());
    cmd.spawn().unwrap()
}

const TWO_RULES: &str = "[resources.gcp_firewall.a]\nname = \"a\"\nnetwork = \"default\"\nsource_ranges = [\"10.0.0.0/8\"]\nallow = [{ protocol = \"tcp\" }]\n\n[resources.gcp_firewall.b]\nname = \"b-after-${gcp_firewall.a.name}\"\nnetwork = \"default\"\nsource_ranges = [\"10.0.0.0/8\"]\nallow = [{ protocol = \"tcp\" }]\n";

/// Without a terminal, the first operation's line is readable from the pipe while the apply
/// still runs (the second rule waits for it), and an operation running longer than the
/// heartbeat interval says so (`MESHFORM_HEARTBEAT_INTERVAL`, 1s here; every request takes
/// 1.2 s in this simulator).
#[tokio::test(flavor = "multi_thread")]
async fn ci_logs_stream_lines_and_heartbeats() {
    use tokio::io::AsyncBufReadExt;
    let w = World::default();
    let c =
        Cloud::start(SimOptions { world: w, latency: std::time::Duration::from_millis(1200), ..SimOptions::default() })
            .await;
    c.write(TWO_RULES);
    let mut child = spawn(&c, &["apply", "main.toml", "--auto-approve"], &[("MESHFORM_HEARTBEAT_INTERVAL", "1s")]);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut first_result_while_running = None;
    while let Some(l) = lines.next_line().await.unwrap() {
        if first_result_while_running.is_none() && l.contains("gcp_firewall.a: created") {
            // b depends on a: it has not started, so the process cannot have finished.
            first_result_while_running = Some(child.try_wait().unwrap().is_none());
        }
        seen.push(l);
    }
    assert_eq!(child.wait().await.unwrap().code(), Some(0), "{seen:#?}");
    assert_eq!(first_result_while_running, Some(true), "the first result line came only at exit: {seen:#?}");
    assert!(
        seen.iter().any(|l| l.starts_with("gcp_firewall.a: still creating... [") && l.ends_with("s elapsed]")),
        "{seen:#?}"
    );
}

/// `apply --json` streams events, each valid against the event schema, in order: the plan's
/// changes, each operation's start, progress and completion, the summary, the outputs.
#[tokio::test(flavor = "multi_thread")]
async fn apply_json_streams_schema_valid_events() {
    let w = World::default();
    let c =
        Cloud::start(SimOptions { world: w, latency: std::time::Duration::from_millis(1200), ..SimOptions::default() })
            .await;
    c.write(&format!("{TWO_RULES}\n[outputs.rule]\nvalue = \"${{gcp_firewall.b.name}}\"\n"));
    let o = c
        .run(
            env!("CARGO_BIN_EXE_meshform"),
            &["apply", "main.toml", "-json", "-auto-approve"],
            &[],
            &[("MESHFORM_HEARTBEAT_INTERVAL", "1s".into())],
        )
        .await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let v = schema("events-v1.schema.json");
    let events: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    for e in &events {
        valid(&v, e, "an event");
    }
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let at = |k: &str| kinds.iter().position(|x| *x == k).unwrap_or_else(|| panic!("no {k} in {kinds:?}"));
    assert_eq!(kinds[0], "version");
    assert!(at("planned_change") < at("apply_start") && at("apply_start") < at("apply_progress"));
    assert!(
        at("apply_progress") < at("apply_complete")
            && kinds.iter().rposition(|x| *x == "apply_complete").unwrap()
                < kinds.iter().rposition(|x| *x == "change_summary").unwrap()
    );
    assert_eq!(events.last().unwrap()["outputs"]["rule"]["value"], "b-after-a");
    let (rc, _, err) = mf(&c, &["destroy", "main.toml", "--json"]).await;
    assert!(rc == 1 && err.contains("--auto-approve"), "{err}");
}

/// In a terminal (tmux, stdout and stderr on one screen), an apply's result lines print above a
/// bar that is redrawn and cleared: nothing of the bar is left in the scrollback.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_keeps_no_stale_bar_lines() {
    let tmux = meshform_sim::tools::need("tmux");
    let w = World::default();
    let c =
        Cloud::start(SimOptions { world: w, latency: std::time::Duration::from_millis(300), ..SimOptions::default() })
            .await;
    c.write(TWO_RULES);
    let socket = format!("meshform-test-{}", std::process::id());
    let mut script = String::from("unset CI NO_COLOR\n");
    for (k, v) in c.env.iter().filter(|(k, _)| k != "NO_COLOR") {
        script.push_str(&format!("export {k}='{}'\n", v.replace('\'', "'\\''")));
    }
    script.push_str(&format!(
        "cd '{}' && '{}' apply main.toml --auto-approve --no-color; echo \"exit=$?\"; '{}' -L {socket} wait-for -S applied; sleep 60\n",
        c.dir.path().display(),
        env!("CARGO_BIN_EXE_meshform"),
        tmux.display()
    ));
    std::fs::write(c.dir.path().join("run.sh"), script).unwrap();
    let run = |args: Vec<String>| {
        let tmux = tmux.clone();
        async move { tokio::process::Command::new(tmux).args(args).output().await.unwrap() }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let script = c.dir.path().join("run.sh").display().to_string();
    let o =
        run(s(&["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30", "sh", &script])).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Wait until the script signals the apply ended (no polling, no sleep).
    run(s(&["-L", &socket, "wait-for", "applied"])).await;
    let shot = run(s(&["-L", &socket, "capture-pane", "-p", "-S", "-", "-E", "-"])).await;
    run(s(&["-L", &socket, "kill-server"])).await;
    let screen = String::from_utf8_lossy(&shot.stdout).into_owned();
    assert!(screen.contains("exit=0") && screen.contains("Apply complete"), "{screen}");
    assert!(screen.contains("gcp_firewall.a: created") && screen.contains("gcp_firewall.b: created"), "{screen}");
    for stale in ["[====", "] 0/2", "] 1/2", "] 2/2", "applying"] {
        assert!(!screen.contains(stale), "a bar line is left on the screen ({stale:?}):\n{screen}");
    }
}

/// Errors that help: an endpoint that refuses is named as such, with its setting and the
/// attempts, in seconds (not retried for a minute); missing credentials list the ways to give
/// them, once for all clusters.
#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_cause_and_the_way_out() {
    let w = World::default();
    let c = Cloud::start(SimOptions { world: w.clone(), ..SimOptions::default() }).await;
    c.setup_guides(&w);
    let o = c
        .run(
            env!("CARGO_BIN_EXE_meshform"),
            &["plan", "plans/asm-multicluster.toml"],
            &[],
            &[("MESHFORM_GCP_ENDPOINT", "http://127.0.0.1:1".into())],
        )
        .await;
    let t = text(&o);
    assert_eq!(code(&o), 1, "{t}");
    assert!(t.contains("connection refused") && t.contains("3 attempts") && t.contains("MESHFORM_GCP_ENDPOINT"), "{t}");
    assert!(t.contains("cannot look up clusters `cluster-1`, `cluster-2`"), "one error for both clusters: {t}");
    let missing = c.dir.path().join("no-such-key.json").display().to_string();
    let o = c
        .run(
            env!("CARGO_BIN_EXE_meshform"),
            &["plan", "plans/asm-multicluster.toml"],
            &["MESHFORM_GCP_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"],
            &[("GOOGLE_APPLICATION_CREDENTIALS", missing)],
        )
        .await;
    let t = text(&o);
    assert_eq!(code(&o), 1, "{t}");
    for way in [
        "MESHFORM_GCP_ACCESS_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "gcloud auth application-default login",
        "metadata server",
    ] {
        assert!(t.contains(way), "the error names {way}: {t}");
    }
    assert_eq!(t.matches("no Google credentials found").count(), 1, "once, not per cluster: {t}");
}
