//! Engine behaviour with the recording test provider: order, parallelism, failure isolation,
//! idempotence, stale plans, cycles, lifecycle rules, targeting, drift, secrets, cancellation.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Fixture;
use meshform_engine::addr::Addr;
use meshform_engine::apply::{ApplyOptions, NodeResult};
use meshform_engine::drift::detect_drift;
use meshform_engine::plan::planner::PlanOptions;
use meshform_engine::plan::{Action, Mode, saved};
use meshform_engine::value::Value;

fn chain() -> &'static str {
    r#"
[resources.test_object.a]
name = "a"

[resources.test_object.b]
name = "b"
value = "${test_object.a.id}"

[resources.test_object.c]
name = "c"
value = "${test_object.b.id}"

[resources.test_object.d]
name = "d"
depends_on = ["test_object.a"]
"#
}

#[tokio::test(start_paused = true)]
async fn dependencies_are_created_first_and_destroyed_last() {
    let f = Fixture::new(chain());
    let r = f.apply().await;
    assert!(r.success(), "{r:?}");
    let creates: Vec<String> = f.test.ops().into_iter().filter(|(op, _)| op == "create").map(|(_, n)| n).collect();
    let pos = |n: &str| creates.iter().position(|x| x == n).unwrap();
    assert!(pos("a") < pos("b") && pos("b") < pos("c") && pos("a") < pos("d"), "{creates:?}");
    // b's value is a's real id, resolved during apply.
    assert_eq!(f.test.live_by_name("b").unwrap()["value"], f.test.live_by_name("a").unwrap()["id"]);

    f.test.clear_calls();
    let p = f.plan_with(PlanOptions { mode: Mode::Destroy, ..Default::default() }).await.unwrap();
    assert_eq!(p.summary().destroy, 4);
    let r = f.apply_plan(&p, &ApplyOptions::default()).await;
    assert!(r.success());
    let deletes: Vec<String> = f.test.ops().into_iter().filter(|(op, _)| op == "delete").map(|(_, n)| n).collect();
    let pos = |n: &str| deletes.iter().position(|x| x == n).unwrap();
    assert!(pos("c") < pos("b") && pos("b") < pos("a") && pos("d") < pos("a"), "{deletes:?}");
    assert!(f.state().objects.is_empty());
    assert!(f.test.live.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn parallelism_bound_is_respected_and_used() {
    let mut toml = String::new();
    for i in 0..12 {
        toml.push_str(&format!("[resources.test_object.o{i}]\nname = \"o{i}\"\n\n"));
    }
    let f = Fixture::new(&toml);
    *f.test.latency.lock().unwrap() = Duration::from_millis(40);
    let p = f.plan().await;
    let r = f.apply_plan(&p, &ApplyOptions { parallelism: 4, ..Default::default() }).await;
    assert!(r.success());
    assert_eq!(
        f.test.max_in_flight.load(Ordering::SeqCst),
        4,
        "independent objects must overlap up to the bound, never beyond"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dependent_starts_when_its_dependency_finishes_not_a_whole_level() {
    // slow (a) and fast (b) are independent; fast_child depends on b only. It must start
    // before slow finishes: no level-by-level barrier.
    let f = Fixture::new(
        r#"
[resources.test_object.slow]
name = "slow"
[resources.test_object.fast]
name = "fast"
[resources.test_object.fast_child]
name = "fast_child"
value = "${test_object.fast.id}"
"#,
    );
    f.test.delays.lock().unwrap().insert("slow".into(), Duration::from_millis(300));
    assert!(f.apply().await.success());
    let calls = f.test.calls.lock().unwrap().clone();
    let creates: Vec<&str> = calls.iter().filter(|c| c.op == "create").map(|c| c.name.as_str()).collect();
    assert_eq!(creates, ["fast", "fast_child", "slow"], "fast_child must not wait for the unrelated slow object");
}

#[tokio::test(start_paused = true)]
async fn failure_skips_dependents_keeps_independent_work_and_state() {
    let f = Fixture::new(chain());
    f.test.fail_names.lock().unwrap().insert("b".into());
    let r = f.apply().await;
    assert!(!r.success());
    let result = |a: &str| r.results.iter().find(|(x, _, _)| x.to_string() == a).unwrap().2.clone();
    assert!(matches!(result("test_object.a"), NodeResult::Done { .. }));
    assert!(
        matches!(result("test_object.b"), NodeResult::Failed(m) if m.message.contains("injected failure") && m.kind == Some(meshform_engine::provider::ErrorKind::Invalid))
    );
    assert_eq!(result("test_object.c"), NodeResult::Skipped { because: "test_object.b".parse().unwrap() });
    assert!(matches!(result("test_object.d"), NodeResult::Done { .. }));
    let state: Vec<String> = f.state().objects.keys().map(|a| a.to_string()).collect();
    assert_eq!(state, ["test_object.a", "test_object.d"]);

    // Fixed: the next apply creates only what is missing.
    f.test.fail_names.lock().unwrap().clear();
    let p = f.plan().await;
    assert_eq!(Fixture::actions(&p), ["+ test_object.b", "+ test_object.c"]);
    assert!(f.apply_plan(&p, &ApplyOptions::default()).await.success());
}

#[tokio::test(start_paused = true)]
async fn apply_then_plan_is_empty() {
    let f = Fixture::new(&format!(
        "{}\n[resources.meshform_data.m]\ninput = {{ list = [1, 2], from = \"${{test_object.c.id}}\" }}\n",
        chain()
    ));
    assert!(f.apply().await.success());
    let p = f.plan().await;
    assert!(!p.has_changes(), "{:?}", Fixture::actions(&p));
    assert!(p.drift.is_empty());
}

#[tokio::test(start_paused = true)]
async fn update_in_place_and_replace_on_force_new() {
    let f = Fixture::new("[resources.test_object.a]\nname = \"a\"\nvalue = 1\n");
    f.apply().await;
    f.write("[resources.test_object.a]\nname = \"a\"\nvalue = 2\n");
    let p = f.plan().await;
    assert_eq!(Fixture::actions(&p), ["~ test_object.a"]);
    f.apply_plan(&p, &ApplyOptions::default()).await;
    assert_eq!(f.test.live_by_name("a").unwrap()["version"], Value::Int(2));
    f.write("[resources.test_object.a]\nname = \"a2\"\nvalue = 2\n");
    let p = f.plan().await;
    assert_eq!(p.changes[0].action, Action::Replace);
    assert_eq!(p.changes[0].replace_because, ["name"]);
}

#[tokio::test(start_paused = true)]
async fn stale_saved_plan_is_refused() {
    let f = Fixture::new("[resources.meshform_data.a]\ninput = 1\n");
    let planfile = f.dir.path().join("p.plan");
    let p = f.plan().await;
    saved::save(&p, &planfile).unwrap();
    // Someone else applies first: the state moves on.
    assert!(f.apply().await.success());
    let loaded = saved::load(&planfile).unwrap();
    let err = saved::check_fresh(&loaded, &f.state()).unwrap_err();
    assert!(err.contains("stale"), "{err}");
    // And apply itself refuses it without touching anything.
    let s = f.session();
    let (mut locked, mut state) = f.backend().open("apply", Default::default()).await.unwrap();
    let before = state.clone();
    let r = meshform_engine::apply::apply(
        &s,
        &loaded,
        &mut locked,
        &mut state,
        &ApplyOptions::default(),
        &meshform_engine::apply::Quiet,
    )
    .await;
    assert!(r.is_err());
    assert_eq!(state, before);
}

#[tokio::test(start_paused = true)]
async fn lock_contention_fails_at_once_naming_the_holder() {
    let f = Fixture::new("[resources.meshform_data.a]\ninput = 1\n");
    let b = f.backend();
    let (held, _) = b.open("apply", Default::default()).await.unwrap();
    // Without --lock-timeout a held lock is an error at once, not a wait.
    let err = b.open("plan", Default::default()).await.err().unwrap().to_string();
    assert!(err.contains("locked by") && err.contains(&held.lock_info().id) && err.contains("`apply`"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn cycle_is_reported_with_its_path() {
    let f = Fixture::new(
        r#"
[resources.test_object.b]
name = "b"
value = "${test_object.c.id}"
[resources.test_object.c]
name = "c"
value = "${test_object.a.id}"
[resources.test_object.a]
name = "a"
value = "${test_object.b.id}"
"#,
    );
    let err = f.load_error();
    assert!(err.contains("dependency cycle: test_object.a → test_object.b → test_object.c → test_object.a"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn prevent_destroy_blocks_destroy_and_replace() {
    let f = Fixture::new("[resources.test_object.a]\nname = \"a\"\nlifecycle = { prevent_destroy = true }\n");
    assert!(f.apply().await.success());
    let err = f.plan_with(PlanOptions { mode: Mode::Destroy, ..Default::default() }).await.unwrap_err();
    assert!(err.0[0].summary.contains("prevent_destroy"), "{err:?}");
    f.write("[resources.test_object.a]\nname = \"renamed\"\nlifecycle = { prevent_destroy = true }\n");
    let err = f.plan_with(PlanOptions::default()).await.unwrap_err();
    assert!(err.0[0].summary.contains("replaces it because name changed"), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn ignore_changes_hides_out_of_band_and_desired_changes() {
    let f = Fixture::new(
        "[resources.test_object.a]\nname = \"a\"\nvalue = 1\nlifecycle = { ignore_changes = [\"value\"] }\n",
    );
    assert!(f.apply().await.success());
    f.test.tamper("a", "value", Value::Int(99));
    f.write("[resources.test_object.a]\nname = \"a\"\nvalue = 2\nlifecycle = { ignore_changes = [\"value\"] }\n");
    let p = f.plan().await;
    assert!(!p.has_changes(), "{:?}", Fixture::actions(&p));
}

#[tokio::test(start_paused = true)]
async fn create_before_destroy_orders_the_replacement() {
    let cfg = |n: &str, cbd: bool| {
        format!("[resources.test_object.a]\nname = \"{n}\"\nlifecycle = {{ create_before_destroy = {cbd} }}\n")
    };
    let f = Fixture::new(&cfg("one", true));
    f.apply().await;
    f.test.clear_calls();
    f.write(&cfg("two", true));
    assert!(f.apply().await.success());
    let ops: Vec<(String, String)> = f.test.ops().into_iter().filter(|(op, _)| op != "read").collect();
    assert_eq!(ops, [("create".into(), "two".into()), ("delete".into(), "one".into())]);

    f.write(&cfg("three", false));
    f.test.clear_calls();
    assert!(f.apply().await.success());
    let ops: Vec<(String, String)> = f.test.ops().into_iter().filter(|(op, _)| op != "read").collect();
    assert_eq!(ops, [("delete".into(), "two".into()), ("create".into(), "three".into())]);
}

#[tokio::test(start_paused = true)]
async fn targeting_takes_the_target_and_its_dependencies() {
    let f = Fixture::new(chain());
    let target: Addr = "test_object.b".parse().unwrap();
    let p = f.plan_with(PlanOptions { targets: vec![target], ..Default::default() }).await.unwrap();
    assert_eq!(Fixture::actions(&p), ["+ test_object.a", "+ test_object.b"]);
    assert!(f.apply_plan(&p, &ApplyOptions::default()).await.success());
    assert_eq!(f.state().objects.len(), 2);
    // Destroy with a target takes what depends on it too.
    assert!(f.apply().await.success());
    let target: Addr = "test_object.b".parse().unwrap();
    let p =
        f.plan_with(PlanOptions { mode: Mode::Destroy, targets: vec![target], ..Default::default() }).await.unwrap();
    assert_eq!(Fixture::actions(&p), ["- test_object.b", "- test_object.c"]);
}

#[tokio::test(start_paused = true)]
async fn removed_objects_are_deleted_and_for_each_follows_its_keys() {
    let f = Fixture::new("[resources.test_object.x]\nfor_each = [\"p\", \"q\"]\nname = \"${each.key}\"\n");
    assert!(f.apply().await.success());
    f.write("[resources.test_object.x]\nfor_each = [\"q\", \"r\"]\nname = \"${each.key}\"\n");
    let p = f.plan().await;
    assert_eq!(Fixture::actions(&p), ["- test_object.x[\"p\"]", "+ test_object.x[\"r\"]"]);
    assert_eq!(
        p.changes.iter().find(|c| c.action == Action::Delete).unwrap().reason.as_deref(),
        Some("not in the desired state")
    );
}

#[tokio::test(start_paused = true)]
async fn drift_names_changed_attributes_deletions_and_pending_changes() {
    let f = Fixture::new(chain());
    assert!(f.apply().await.success());
    let s = f.session();
    let b = f.backend();
    let report = detect_drift(&s, &b.read().await.unwrap().state, &[], 4).await.unwrap();
    assert!(!report.found());
    f.test.tamper("a", "value", Value::str("changed by hand"));
    f.test.remove_live("d");
    f.write(&chain().replace("name = \"c\"", "name = \"c\"\ntags = { team = \"mesh\" }"));
    let s = f.session();
    let state = b.read().await.unwrap().state;
    let report = detect_drift(&s, &state, &[], 4).await.unwrap();
    assert!(report.found());
    let a = report.drift.iter().find(|d| d.address.to_string() == "test_object.a").unwrap();
    assert_eq!(a.attributes.len(), 1);
    assert_eq!(a.attributes[0].name, "value");
    assert_eq!(a.attributes[0].live, Some(Value::str("changed by hand")));
    assert!(report.drift.iter().any(|d| d.address.to_string() == "test_object.d" && d.deleted));
    let pending: Vec<String> = report.pending.iter().map(|c| c.address.to_string()).collect();
    assert_eq!(pending, ["test_object.c"]);
    // Drift does not change the state.
    assert_eq!(f.state(), state);
}

#[tokio::test(start_paused = true)]
async fn secrets_never_reach_state_plans_or_renderings() {
    let f = Fixture::new(
        r#"
[variables.password]
default = "correct-horse-battery"
sensitive = true

[resources.test_object.a]
name = "a"
secret = "literal-secret-value"

[resources.meshform_data.b]
input = { pw = "${var.password}" }

[outputs.pw]
value = "${meshform_data.b.output.pw}"
"#,
    );
    let p = f.plan().await;
    let planfile = f.dir.path().join("p.plan");
    saved::save(&p, &planfile).unwrap();
    let rendered = [
        meshform_engine::plan::render::render_plan(&p, false),
        meshform_engine::plan::json::render_json(&p),
        meshform_engine::plan::markdown::render_markdown(&p),
        std::fs::read_to_string(&planfile).unwrap(),
    ];
    assert!(f.apply().await.success());
    let state = std::fs::read_to_string(f.store().path()).unwrap();
    for text in rendered.iter().chain([&state]) {
        assert!(!text.contains("correct-horse") && !text.contains("literal-secret"), "secret leaked into:\n{text}");
    }
    assert!(rendered[0].contains("(sensitive)"));
    // A changed secret is still detected (salted hash in state).
    f.write(&std::fs::read_to_string(&f.path).unwrap().replace("literal-secret-value", "another-secret"));
    let p = f.plan().await;
    assert_eq!(Fixture::actions(&p), ["~ test_object.a"]);
    // And an unchanged one is not.
    f.write(&std::fs::read_to_string(&f.path).unwrap().replace("another-secret", "literal-secret-value"));
    assert!(!f.plan().await.has_changes());
}

#[tokio::test(start_paused = true)]
async fn sensitive_outputs_chained_through_unchanged_objects_plan_nothing_and_apply_from_a_saved_plan() {
    let file = |tail: &str| {
        format!(
            r#"
[variables.password]
default = "correct-horse-battery"
sensitive = true

[resources.meshform_data.a]
input = "${{var.password}}"

[resources.meshform_data.b]
input = "${{meshform_data.a.output}}"

[resources.test_object.c]
name = "c"
secret = "${{meshform_data.b.output}}{tail}"
"#
        )
    };
    let f = Fixture::new(&file(""));
    assert!(f.apply().await.success());
    // State holds only hashes, yet an unchanged chain is not "(known after apply)".
    let p = f.plan().await;
    assert!(!p.has_changes(), "{:?}", Fixture::actions(&p));
    // A change at the end of the chain, applied from a saved plan (hashes only on disk), gets
    // the plaintext of the unchanged objects it reads.
    f.write(&file("-2"));
    let planfile = f.dir.path().join("p.plan");
    saved::save(&f.plan().await, &planfile).unwrap();
    let loaded = saved::load(&planfile).unwrap();
    assert_eq!(Fixture::actions(&loaded), ["~ test_object.c"]);
    assert!(f.apply_plan(&loaded, &ApplyOptions::default()).await.success());
    assert_eq!(f.test.live_by_name("c").unwrap()["secret"], Value::String("correct-horse-battery-2".into()));
    let state = std::fs::read_to_string(f.store().path()).unwrap();
    assert!(!state.contains("correct-horse"), "{state}");
    assert!(!f.plan().await.has_changes());
}

#[tokio::test(start_paused = true)]
async fn templatefile_renders_references_in_dependency_order_and_saved_plans_record_the_template() {
    let f = Fixture::new(
        r#"
[variables.mesh]
default = "mesh1"

[resources.test_object.a]
name = "a"

[resources.meshform_data.m]
input = '${templatefile("cm.yaml")}'
"#,
    );
    let template =
        "kind: ConfigMap\ndata:\n  mesh: ${var.mesh}\n  from: ${test_object.a.id}\n  literal: $${not.a.reference}\n";
    std::fs::write(f.dir.path().join("cm.yaml"), template).unwrap();
    // Rebuild the session now that the template exists.
    let p = f.plan().await;
    let m = p.changes.iter().find(|c| c.address.to_string() == "meshform_data.m").unwrap();
    assert!(m.depends_on.iter().any(|d| d.to_string() == "test_object.a"), "{:?}", m.depends_on);
    assert!(p.inputs.files.contains_key("cm.yaml"));
    assert!(f.apply_plan(&p, &ApplyOptions::default()).await.success());
    let id = f.test.live_by_name("a").unwrap()["id"].to_interpolated().unwrap();
    let out =
        f.state().objects.values().find(|r| r.address.to_string() == "meshform_data.m").unwrap().attributes["output"]
            .clone();
    assert_eq!(
        out,
        Value::String(format!(
            "kind: ConfigMap\ndata:\n  mesh: mesh1\n  from: {id}\n  literal: ${{not.a.reference}}\n"
        ))
    );
    assert!(!f.plan().await.has_changes());
    // A saved plan records the template's hash (the CLI refuses the plan when it no longer
    // matches: tests/cli.rs).
    let planfile = f.dir.path().join("p.plan");
    std::fs::write(f.dir.path().join("cm.yaml"), template.replace("mesh:", "mesh-id:")).unwrap();
    let p = f.plan().await;
    assert_eq!(Fixture::actions(&p), ["~ meshform_data.m"]);
    saved::save(&p, &planfile).unwrap();
    let loaded = saved::load(&planfile).unwrap();
    let recorded = &loaded.inputs.files["cm.yaml"];
    let now = meshform_engine::value::sha256_hex(&std::fs::read(f.dir.path().join("cm.yaml")).unwrap());
    assert_eq!(recorded, &now);
}

#[tokio::test(start_paused = true)]
async fn a_resource_timeout_stops_a_slow_operation_and_nothing_is_recorded_for_it() {
    let f = Fixture::new(
        "[resources.test_object.slow]\nname = \"slow\"\ntimeouts = { create = \"1s\" }\n\n[resources.test_object.fast]\nname = \"fast\"\n",
    );
    *f.test.latency.lock().unwrap() = Duration::from_millis(1500);
    let r = f.apply().await;
    assert!(!r.success());
    let failed: Vec<String> = r
        .results
        .iter()
        .filter_map(|(a, _, res)| match res {
            NodeResult::Failed(m) => Some(format!("{a}: {m}")),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("test_object.slow") && failed[0].contains("timed out after 1s"), "{failed:?}");
    let st = f.state();
    assert!(st.objects.keys().any(|a| a.to_string() == "test_object.fast"), "the other object is kept");
    assert!(!st.objects.keys().any(|a| a.to_string() == "test_object.slow"));
    // Bad durations are refused when the file loads.
    f.write("[resources.test_object.x]\nname = \"x\"\ntimeouts = { create = \"soon\", remove = \"1m\" }\n");
    let e = f.load_error();
    assert!(
        e.contains("`timeouts.create` must be a duration") && e.contains("unknown attribute `remove` in `timeouts`"),
        "{e}"
    );
}

#[test]
fn the_load_time_check_leaves_guarded_and_unknown_expressions_alone() {
    // `x && y` does not evaluate y while x is unknown: y may be what x guards.
    let f = Fixture::new(
        r#"
[variables.nets]
default = { a = "10.0.0.0/8" }

[resources.test_object.a]
name = "a"

[resources.meshform_data.guarded]
input = '${test_object.a.id != "" && var.nets["missing"] == ""}'
"#,
    );
    f.session();
}

#[tokio::test(start_paused = true)]
async fn interrupt_starts_nothing_new_and_saves_what_finished() {
    let mut toml = String::new();
    for i in 0..10 {
        let dep = if i > 0 { format!("value = \"${{test_object.o{}.id}}\"\n", i - 1) } else { String::new() };
        toml.push_str(&format!("[resources.test_object.o{i}]\nname = \"o{i}\"\n{dep}\n"));
    }
    let f = Fixture::new(&toml);
    *f.test.latency.lock().unwrap() = Duration::from_millis(100);
    let p = f.plan().await;
    let opts = ApplyOptions::default();
    // Interrupt as soon as the first object exists (as Ctrl-C would, mid-apply).
    let r = f.apply_observed(&p, &opts, &CancelAfterFirst(opts.cancel.clone())).await;
    assert!(r.cancelled);
    let done = r.count(|x| matches!(x, NodeResult::Done { .. }));
    assert_eq!(done, 1, "the chain stops after the object in flight when interrupted: {r:?}");
    assert_eq!(f.state().objects.len(), done, "everything finished is in state");
    assert_eq!(f.test.live.lock().unwrap().len(), done, "nothing started after the interrupt");
    assert!(!f.store().journal_path().exists());
}

#[tokio::test(start_paused = true)]
async fn data_sources_and_clusters_feed_references() {
    let f = Fixture::new(
        r#"
[clusters.c1]
project = "p"
location = "europe-west1"

[clusters.c2]
project = "p"
location = "us-central1"

[data.test_lookup.l]
input = '${join(",", sort(clusters.*.pod_cidr))}'

[resources.test_object.fw]
name = "fw"
value = "${data.test_lookup.l.output}"
tags = { first = "${clusters.c1.node_tag}" }

[resources.test_object.pair]
for_each = "${pairs(clusters)}"
name = "${each.value[0]}-to-${each.value[1]}"

[[checks]]
name = "tags"
kind = "test_equal"
a = "${test_object.fw.tags.first}"
b = "gke-c1-node"
"#,
    );
    let r = f.apply().await;
    assert!(r.success(), "{r:?}");
    let fw = f.test.live_by_name("fw").unwrap();
    assert!(fw["value"].as_str().unwrap().contains("/14,"), "{fw:?}");
    assert!(f.test.live_by_name("c1-to-c2").is_some() && f.test.live_by_name("c2-to-c1").is_some());
    assert_eq!(r.checks.len(), 1);
    assert!(r.checks[0].passed, "{:?}", r.checks);
    let _ = Arc::clone(&f.test);
}

#[tokio::test(start_paused = true)]
async fn sensitive_values_stay_hidden_when_read_by_index_or_in_check_messages() {
    let f = Fixture::new(
        r#"
[variables.pw]
default = "s3cr3t-pw"
sensitive = true

[resources.meshform_data.a]
input = "${var.pw}"

[outputs.by_index]
value = '${meshform_data.a["output"]}'

[[checks]]
name = "leaky"
condition = "${false}"
error_message = "bad ${var.pw}"
"#,
    );
    let p = f.plan().await;
    assert!(p.outputs["by_index"].sensitive, "{:?}", p.outputs);
    let r = f.apply().await;
    assert_eq!(r.checks[0].message, "(sensitive)");
    let state = std::fs::read_to_string(f.store().path()).unwrap();
    assert!(!state.contains("s3cr3t-pw"), "{state}");
}

#[tokio::test(start_paused = true)]
async fn clusters_can_come_from_a_variable() {
    let f = Fixture::new(
        r#"
[variables.clusters]
default = { east = "us-east1-b", west = "us-west1-a", north = "europe-north1-a" }

[clusters.member]
for_each = "${var.clusters}"
project = "p"
location = "${each.value}"

[resources.test_object.pods]
name = "pods"
value = '${join(",", clusters.*.pod_cidr)}'
tags = { east = "${clusters.east.node_tag}" }

[resources.test_object.pair]
for_each = "${pairs(clusters)}"
name = "${each.value[0]}-${each.value[1]}"
"#,
    );
    let r = f.apply().await;
    assert!(r.success(), "{r:?}");
    let pods = f.test.live_by_name("pods").unwrap();
    assert_eq!(pods["value"].as_str().unwrap().split(',').count(), 3);
    assert_eq!(
        pods["tags"],
        meshform_engine::value::Value::Map(
            [("east".to_string(), meshform_engine::value::Value::str("gke-east-node"))].into()
        )
    );
    assert_eq!(f.test.live.lock().unwrap().len(), 1 + 6);
    assert!(!f.plan().await.has_changes());
}

/// Sets the cancel flag when the first operation finishes.
struct CancelAfterFirst(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl meshform_engine::apply::Observer for CancelAfterFirst {
    fn finished(&self, _c: &meshform_engine::plan::Change, _r: &NodeResult, _elapsed: Duration) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A data source whose `depends_on` changes in this plan is read at apply, after it (so it sees
/// what apply made, as the managed mesh's ControlPlaneRevision must be); once nothing it depends
/// on changes, it is read at plan again.
#[tokio::test(start_paused = true)]
async fn a_data_source_waits_for_what_it_depends_on_to_change() {
    let f = Fixture::new(
        r#"
[resources.test_object.first]
name = "first"

[data.test_lookup.after]
input = "constant"
depends_on = ["test_object.first"]

[resources.test_object.user]
name = "user"
value = "${data.test_lookup.after.output}"
"#,
    );
    let p = f.plan().await;
    let read = p.changes.iter().find(|c| c.address.to_string() == "data.test_lookup.after").unwrap();
    assert_eq!(read.action, meshform_engine::plan::Action::Read, "{read:?}");
    assert_eq!(read.reason.as_deref(), Some("what it depends on changes first"));
    let user = p.changes.iter().find(|c| c.address.to_string() == "test_object.user").unwrap();
    assert!(user.after.as_ref().unwrap()["value"].has_unknown(), "known only after apply: {user:?}");
    let ops = f.test.ops();
    assert!(!ops.iter().any(|(op, _)| op == "read_data"), "not read at plan: {ops:?}");
    assert!(f.apply().await.success());
    assert!(f.test.live_by_name("user").unwrap()["value"].as_str().unwrap().contains("constant"));
    let p = f.plan().await;
    let read = p.changes.iter().find(|c| c.address.to_string() == "data.test_lookup.after").unwrap();
    assert_eq!(read.action, meshform_engine::plan::Action::NoOp, "read at plan when nothing it depends on changes");
    assert!(!p.has_changes());
}
