//! Golden tests: plan renderings (human, JSON, Markdown) and the exact diagnostics of every
//! invalid desired-state file under testdata/invalid.

mod common;

use std::path::Path;

use common::Fixture;
use meshform_engine::builtin::Builtin;
use meshform_engine::diag::Sources;
use meshform_engine::provider::Registry;
use meshform_engine::session::Session;
use meshform_engine::vars::VarInputs;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(std::sync::Arc::new(Builtin));
    r
}

/// Loads a file with its path shown relative to the repository, so snapshots are stable.
fn diagnostics_of(rel: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(rel)).unwrap();
    let mut sources = Sources::default();
    let file = sources.add(rel, text);
    let dir = root.join(rel).parent().unwrap().to_path_buf();
    let parsed = meshform_engine::config::parse(sources, file, rel.into(), dir, &registry());
    match parsed {
        Err((sources, diags)) => diags.render(&sources, false),
        Ok((cfg, diags)) => match Session::from_config(cfg, diags, registry(), &VarInputs::default()) {
            Err(f) => f.render(false),
            Ok(_) => panic!("{rel} is valid, but it is meant to be invalid"),
        },
    }
}

#[test]
fn every_invalid_file_has_its_exact_diagnostics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/invalid");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 15, "at least 15 invalid fixtures");
    for name in names {
        let rel = format!("testdata/invalid/{name}");
        let out = diagnostics_of(&rel);
        assert!(out.contains(&format!("{rel}:")), "{rel}: diagnostics must name file:line:col\n{out}");
        insta::assert_snapshot!(name.trim_end_matches(".toml"), out);
    }
}

#[test]
fn loading_never_panics_on_truncated_input() {
    // Every prefix of every invalid file (and of a valid one) loads or fails cleanly.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root.join("invalid")).unwrap().chain(std::fs::read_dir(root.join("valid")).unwrap())
    {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for cut in (0..text.len()).filter(|i| text.is_char_boundary(*i)).step_by(7) {
            let p = dir.path().join("cut.toml");
            std::fs::write(&p, &text[..cut]).unwrap();
            let _ = Session::load(&p, registry(), &VarInputs::default());
        }
    }
}

const SHOWCASE: &str = r#"
[variables.token]
default = "t0ps3cret"
sensitive = true

[resources.test_object.keep]
name = "keep"
value = 1

[resources.test_object.grow]
name = "grow"
value = 1
tags = { team = "mesh" }

[resources.test_object.rename]
name = "old-name"

[resources.test_object.gone]
name = "gone"

[resources.test_object.secret]
name = "secret"
secret = "${var.token}"

[resources.test_object.manifest]
name = "manifest"
value = """
apiVersion: v1
kind: Namespace
metadata:
  name: sample
  labels:
    istio.io/rev: asm-173-3
"""
"#;

async fn showcase_plan() -> meshform_engine::plan::Plan {
    let f = Fixture::new(SHOWCASE);
    assert!(f.apply().await.success());
    f.write(
        &SHOWCASE
            .replace("value = 1\ntags = { team = \"mesh\" }", "value = 2\ntags = { team = \"mesh\", tier = \"gold\" }")
            .replace("old-name", "new-name")
            .replace(
                "[resources.test_object.gone]\nname = \"gone\"\n",
                "[resources.test_object.fresh]\nname = \"fresh\"\nvalue = \"${test_object.keep.id}\"\n",
            )
            .replace("istio.io/rev: asm-173-3", "istio.io/rev: asm-173-6")
            .replace("t0ps3cret", "n3ws3cret"),
    );
    f.test.tamper("keep", "value", meshform_engine::value::Value::Int(7));
    let mut p = f.plan().await;
    p.lineage = "LINEAGE".into();
    p
}

#[tokio::test(start_paused = true)]
async fn plan_renderings() {
    let p = showcase_plan().await;
    let human = meshform_engine::plan::render::render_plan(&p, false);
    let json = meshform_engine::plan::json::render_json(&p);
    let md = meshform_engine::plan::markdown::render_markdown(&p);
    for text in [&human, &json, &md] {
        assert!(!text.contains("t0ps3cret") && !text.contains("n3ws3cret"));
    }
    insta::assert_snapshot!("plan_human", human);
    insta::assert_snapshot!("plan_json", json);
    insta::assert_snapshot!("plan_markdown", md);
}
