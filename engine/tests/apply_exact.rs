//! Apply carries out exactly the plan's decisions: one plan with every action kind, and the
//! provider calls apply makes for it; apply refuses an apply-time decision or a provider result
//! that contradicts the plan.

mod common;

use common::Fixture;
use meshform_engine::apply::{ApplyOptions, NodeResult};
use meshform_engine::plan::Action;
use meshform_engine::value::{Map, Value};

const V1: &str = r#"
[resources.test_object.keep]
name = "keep"

[resources.test_object.upd]
name = "upd"
value = "1"

[resources.test_object.rep]
name = "rep"
value = "1"

[resources.test_object.cbd]
name = "cbd-1"
lifecycle = { create_before_destroy = true }

[resources.test_object.gone]
name = "gone"
"#;

const V2: &str = r#"
[resources.test_object.keep]
name = "keep"

[resources.test_object.upd]
name = "upd"
value = "2"

[resources.test_object.rep]
name = "rep"
value = "2"

[resources.test_object.cbd]
name = "cbd-2"
lifecycle = { create_before_destroy = true }

[resources.test_object.new]
name = "new"

[resources.test_object.adopted]
name = "adopted"

[data.test_lookup.later]
input = "${test_object.new.id}"

[resources.test_object.late]
name = "late"
value = "${data.test_lookup.later.output}"
"#;

/// The provider calls that change something (and data reads), in a canonical order.
fn changing_calls(f: &Fixture) -> Vec<(String, String)> {
    let mut ops: Vec<(String, String)> =
        f.test.ops().into_iter().filter(|(op, _)| !matches!(op.as_str(), "read" | "check")).collect();
    ops.sort();
    ops
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn apply_makes_exactly_the_calls_of_every_planned_action() {
    let f = Fixture::new(V1);
    assert!(f.apply().await.success());
    // An object made outside meshform that the plan takes over.
    f.test.live.lock().unwrap().insert(
        "outside-1".into(),
        Map::from([("name".into(), Value::str("adopted")), ("id".into(), Value::str("outside-1"))]),
    );
    f.test.adopt_names.lock().unwrap().insert("adopted".into());
    f.test.replace_names.lock().unwrap().insert("rep".into());
    f.write(V2);

    let p = f.plan().await;
    let action = |a: &str| p.changes.iter().find(|c| c.address.to_string() == a).map(|c| c.action);
    assert_eq!(action("test_object.keep"), Some(Action::NoOp));
    assert_eq!(action("test_object.upd"), Some(Action::Update));
    assert_eq!(action("test_object.rep"), Some(Action::Replace));
    assert_eq!(action("test_object.cbd"), Some(Action::Replace));
    assert_eq!(action("test_object.gone"), Some(Action::Delete));
    assert_eq!(action("test_object.new"), Some(Action::Create));
    assert_eq!(action("test_object.adopted"), Some(Action::Adopt));
    assert_eq!(action("data.test_lookup.later"), Some(Action::Read));
    assert_eq!(action("test_object.late"), Some(Action::Create));

    f.test.clear_calls();
    f.test.plan_calls.lock().unwrap().clear();
    let r = f.apply_plan(&p, &ApplyOptions::default()).await;
    assert!(r.success(), "{r:?}");
    assert_eq!(
        changing_calls(&f),
        pairs(&[
            ("update", "upd"),
            ("delete", "rep"),
            ("create", "rep"),
            ("create", "cbd-2"),
            ("delete", "cbd-1"),
            ("delete", "gone"),
            ("create", "new"),
            ("create", "adopted"),
            ("read_data", ""),
            ("create", "late"),
        ])
    );
    // Decided again: the change with a value unknown at plan time, and the two replacements
    // (whose new objects are decided as the creates they are). The others ran the plan's
    // decisions as shown.
    let mut replanned = f.test.plan_calls.lock().unwrap().clone();
    replanned.sort();
    assert_eq!(replanned, ["cbd-2", "late", "rep"]);
    assert_eq!(r.notes, ["adopted adopted"]);
    // The destroy-then-create replacement deleted first; create_before_destroy created first.
    let ops = f.test.ops();
    let pos = |op: &str, n: &str| ops.iter().position(|(o, x)| o == op && x == n).unwrap();
    assert!(pos("delete", "rep") < pos("create", "rep"));
    assert!(pos("create", "cbd-2") < pos("delete", "cbd-1"));

    // And the result is what was planned: nothing left to do.
    let again = f.plan().await;
    assert!(!again.has_changes(), "{:?}", Fixture::actions(&again));
}

#[tokio::test(start_paused = true)]
async fn apply_refuses_a_decision_that_contradicts_the_plan() {
    let f = Fixture::new(V1);
    assert!(f.apply().await.success());
    f.write(V2);
    let p = f.plan().await;
    // Between plan and apply the provider's view changes: `late` (decided again at apply, its
    // value was unknown) now gets other tags, and would be replaced if it existed.
    f.test
        .plan_sets
        .lock()
        .unwrap()
        .insert("late".into(), Map::from([("tags".into(), Value::Map(Map::from([("x".into(), Value::str("y"))])))]));
    let r = f.apply_plan(&p, &ApplyOptions::default()).await;
    let late = r.results.iter().find(|(a, _, _)| a.to_string() == "test_object.late").map(|(_, _, r)| r.clone());
    match late {
        Some(NodeResult::Failed(e)) => {
            assert!(e.message.contains("`tags` of test_object.late was planned as null"), "{e}");
            assert_eq!(e.kind, None, "a refusal of the engine, not a provider error");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(f.test.live_by_name("late").is_none(), "nothing was created for the refused change");
    // Independent changes went on.
    assert!(f.test.live_by_name("new").is_some());
}

#[tokio::test(start_paused = true)]
async fn apply_refuses_an_action_other_than_the_planned_one() {
    let f = Fixture::new(
        r#"
[resources.test_object.a]
name = "a1"

[resources.test_object.b]
name = "b"
value = "old"
"#,
    );
    assert!(f.apply().await.success());
    f.write(
        r#"
[resources.test_object.a]
name = "a2"

[resources.test_object.b]
name = "b"
value = "${test_object.a.id}"
"#,
    );
    let p = f.plan().await;
    let b = p.changes.iter().find(|c| c.address.to_string() == "test_object.b").unwrap();
    assert_eq!(b.action, Action::Update);
    // At apply, b (decided again: its value was the replacement's id, unknown) would be
    // replaced instead.
    f.test.replace_names.lock().unwrap().insert("b".into());
    f.test.clear_calls();
    let r = f.apply_plan(&p, &ApplyOptions::default()).await;
    let failed: Vec<String> = r
        .results
        .iter()
        .filter_map(|(a, _, res)| match res {
            NodeResult::Failed(e) => Some(format!("{a}: {e}")),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("test_object.b") && failed[0].contains("as update, but now it would be replace"),
        "{failed:?}"
    );
    assert!(!f.test.ops().iter().any(|(op, n)| n == "b" && op != "read"), "b was not touched: {:?}", f.test.ops());
}

#[tokio::test(start_paused = true)]
async fn a_provider_result_that_contradicts_the_plan_fails_the_change_and_is_recorded() {
    let f = Fixture::new("[resources.test_object.a]\nname = \"a\"\nvalue = \"want\"\n");
    f.test.result_sets.lock().unwrap().insert("a".into(), Map::from([("value".into(), Value::str("other"))]));
    let r = f.apply().await;
    match &r.results[..] {
        [(_, Action::Create, NodeResult::Failed(e))] => {
            assert!(
                e.message.contains("returned test_object.a with `value` = \"other\" where the plan showed \"want\""),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The object exists, so it is in state as it came back, and the next plan repairs it.
    let st = f.state();
    let rec = st.objects.values().next().expect("recorded");
    assert_eq!(rec.attributes["value"], Value::str("other"));
    f.test.result_sets.lock().unwrap().clear();
    let p = f.plan().await;
    assert_eq!(Fixture::actions(&p), ["~ test_object.a"]);
}

#[tokio::test(start_paused = true)]
async fn a_replacement_keeps_ignored_attributes_as_planned() {
    let f = Fixture::new(
        "[resources.test_object.a]\nname = \"a1\"\nvalue = \"first\"\nlifecycle = { ignore_changes = [\"value\"] }\n",
    );
    assert!(f.apply().await.success());
    f.write(
        "[resources.test_object.a]\nname = \"a2\"\nvalue = \"second\"\nlifecycle = { ignore_changes = [\"value\"] }\n",
    );
    let p = f.plan().await;
    assert_eq!(Fixture::actions(&p), ["-/+ test_object.a"]);
    let r = f.apply_plan(&p, &ApplyOptions::default()).await;
    assert!(r.success(), "{r:?}");
    assert_eq!(f.test.live_by_name("a2").unwrap()["value"], Value::str("first"), "the ignored value, as planned");
}

#[tokio::test(start_paused = true)]
async fn a_value_its_dependency_changes_during_apply_is_refused_not_applied_stale() {
    let f = Fixture::new(
        "[resources.test_object.a]\nname = \"a\"\nvalue = \"1\"\n\n[resources.test_object.b]\nname = \"b\"\nvalue = \"${test_object.a.version}\"\n",
    );
    assert!(f.apply().await.success());
    // a's update bumps its version; the plan could only show b with the version a had.
    f.write(
        "[resources.test_object.a]\nname = \"a\"\nvalue = \"2\"\n\n[resources.test_object.b]\nname = \"b\"\nvalue = \"${test_object.a.version}\"\ntags = { x = \"y\" }\n",
    );
    let p = f.plan().await;
    assert_eq!(Fixture::actions(&p), ["~ test_object.a", "~ test_object.b"]);
    let r = f.apply_plan(&p, &ApplyOptions::default()).await;
    let b = r.results.iter().find(|(a, _, _)| a.to_string() == "test_object.b").map(|(_, _, r)| r.clone());
    match b {
        Some(NodeResult::Failed(e)) => {
            assert!(e.message.contains("`value` of test_object.b was planned as 1 but is now 2"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(f.test.live_by_name("b").unwrap()["value"], Value::Int(1), "b was not changed with a stale value");
}
