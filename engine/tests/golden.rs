//! Golden tests: plan renderings (human, JSON, Markdown), the exact diagnostics of every
//! invalid desired-state file under testdata/invalid (one snapshot each), the graph of every valid
//! one under testdata/valid, and clean failures for every prefix of them.

mod common;

use std::path::Path;

use common::Fixture;
use meshform_engine::builtin::Builtin;
use meshform_engine::diag::Sources;
use meshform_engine::provider::Registry;
use meshform_engine::session::{Failure, Session};
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

/// Each file of testdata/invalid is its own snapshot (`diagnostics@NAME.toml`): one failing
/// file does not hide the others, which are all checked and reported together.
#[test]
fn every_invalid_file_has_its_exact_diagnostics() {
    let mut count = 0;
    let mut unlocated = Vec::new();
    insta::glob!("../../testdata/invalid", "*.toml", |path| {
        count += 1;
        let rel = format!("testdata/invalid/{}", path.file_name().unwrap().to_string_lossy());
        let out = diagnostics_of(&rel);
        if !out.contains(&format!("{rel}:")) {
            unlocated.push(format!("{rel}: diagnostics must name file:line:col\n{out}"));
        }
        insta::assert_snapshot!("diagnostics", out);
    });
    assert!(count >= 15, "at least 15 invalid fixtures, found {count}");
    assert!(unlocated.is_empty(), "{}", unlocated.join("\n"));
}

/// An instance's address and the addresses of the instances it depends on.
type Node = (&'static str, &'static [&'static str]);

/// What each file of testdata/valid declares: every instance, in address order, with the
/// instances it depends on.
const VALID: &[(&str, &[Node])] = &[
    (
        "depends_on_each.toml",
        &[
            ("meshform_data.all", &["meshform_data.ns[\"a\"]", "meshform_data.ns[\"b\"]"]),
            ("meshform_data.app[\"a\"]", &["meshform_data.ns[\"a\"]"]),
            ("meshform_data.app[\"b\"]", &["meshform_data.ns[\"b\"]"]),
            ("meshform_data.ns[\"a\"]", &[]),
            ("meshform_data.ns[\"b\"]", &[]),
            ("meshform_data.pair[\"a,b\"]", &["meshform_data.ns[\"a\"]"]),
            ("meshform_data.pair[\"b,a\"]", &["meshform_data.ns[\"b\"]"]),
        ],
    ),
    (
        "showcase.toml",
        &[
            ("meshform_data.a", &[]),
            ("meshform_data.b", &["meshform_data.a"]),
            ("meshform_data.c[\"x\"]", &["meshform_data.a"]),
            ("meshform_data.c[\"y\"]", &["meshform_data.a"]),
            ("meshform_data.s", &[]),
        ],
    ),
];

/// Each valid file parses without a single diagnostic (not even a warning) and loads into exactly
/// the instances and edges it declares.
#[test]
fn every_valid_file_loads_into_its_graph() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/valid");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    let expected: Vec<&str> = VALID.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "every file of testdata/valid has its expected graph in VALID");
    for (name, instances) in VALID {
        let path = root.join(name);
        let (cfg, diags) = match meshform_engine::config::read(&path, &registry()) {
            Ok(parsed) => parsed,
            Err((sources, diags)) => panic!("{name} does not parse:\n{}", diags.render(&sources, false)),
        };
        assert!(diags.0.is_empty(), "{name}:\n{}", diags.render(&cfg.sources, false));
        let s = match Session::from_config(cfg, diags, registry(), &VarInputs::default()) {
            Ok(s) => s,
            Err(f) => panic!("{name} does not load:\n{}", f.render(false)),
        };
        let graph: Vec<(String, Vec<String>)> = s
            .graph
            .instances
            .iter()
            .map(|i| (i.addr.to_string(), i.deps.iter().map(|&d| s.graph.instances[d].addr.to_string()).collect()))
            .collect();
        let want: Vec<(String, Vec<String>)> =
            instances.iter().map(|(a, deps)| (a.to_string(), deps.iter().map(|d| d.to_string()).collect())).collect();
        assert_eq!(graph, want, "{name}: instances and their dependencies");
        let edges: usize = instances.iter().map(|(_, deps)| deps.len()).sum();
        assert_eq!(s.graph.dag.node_count(), instances.len(), "{name}");
        assert_eq!(s.graph.dag.edge_count(), edges, "{name}");
    }
}

/// Every prefix of every invalid and valid file (a file cut off while being written) loads or
/// fails cleanly: a failure has at least one error, every located diagnostic points inside the
/// file it names and is rendered with its file:line:col; a success is a well-formed graph.
#[test]
fn truncated_input_loads_or_fails_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.toml");
    let (mut loaded, mut failed) = (0, 0);
    for entry in std::fs::read_dir(root.join("invalid")).unwrap().chain(std::fs::read_dir(root.join("valid")).unwrap())
    {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for cut in (0..text.len()).filter(|i| text.is_char_boundary(*i)).step_by(7) {
            std::fs::write(&p, &text[..cut]).unwrap();
            let what = format!("{} cut at byte {cut}", path.display());
            match Session::load(&p, registry(), &VarInputs::default()) {
                Ok(s) => {
                    loaded += 1;
                    check_graph(&s, &what);
                }
                Err(f) => {
                    failed += 1;
                    check_failure(&f, &what);
                }
            }
        }
    }
    assert!(loaded > 0 && failed > 0, "prefixes both load and fail ({loaded} loaded, {failed} failed)");
}

/// A loaded graph: instances sorted by address, indexed, each depending on other instances only
/// (sorted, none on itself), the DAG holding the same edges.
fn check_graph(s: &Session, what: &str) {
    let g = &s.graph;
    assert!(g.instances.windows(2).all(|w| w[0].addr < w[1].addr), "{what}: instances sorted");
    let mut edges = 0;
    for (i, n) in g.instances.iter().enumerate() {
        assert_eq!(g.index.get(&n.addr), Some(&i), "{what}: {} indexed", n.addr);
        assert!(n.deps.windows(2).all(|w| w[0] < w[1]), "{what}: {} deps sorted", n.addr);
        assert!(n.deps.iter().all(|&d| d < g.instances.len() && d != i), "{what}: {} deps", n.addr);
        edges += n.deps.len();
    }
    assert_eq!((g.dag.node_count(), g.dag.edge_count()), (g.instances.len(), edges), "{what}: DAG");
}

/// A failure: at least one error, each located diagnostic inside its file and rendered there.
fn check_failure(f: &Failure, what: &str) {
    assert!(f.diags.has_errors(), "{what}: a failure has an error");
    let rendered = f.render(false);
    for d in &f.diags.0 {
        let Some(span) = d.span else { continue };
        let len = f.sources.text(span.file).len() as u32;
        assert!(span.start <= span.end && span.end <= len, "{what}: {} at {span:?} of {len} bytes", d.summary);
        let (line, col) = f.sources.line_col(span);
        let at = format!("{}:{line}:{col}: {}", f.sources.name(span.file), d.summary);
        assert!(rendered.contains(&at), "{what}: {at} not in\n{rendered}");
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
    p.timestamp = "TIMESTAMP".into();
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

/// 24 instances of one block (three different changes) and one other object: past 20 changes
/// the human plan groups them, and the Markdown always does, each group naming its keys.
#[tokio::test(start_paused = true)]
async fn grouped_renderings() {
    let keys: Vec<String> =
        (1..=24).map(|i| format!("\"c{i:02}\" = \"{}\"", if i <= 20 { "a" } else { "b" })).collect();
    let toml = format!(
        r#"
[variables.fleet]
default = {{ {} }}

[resources.test_object.member]
for_each = "${{var.fleet}}"
name = "member-${{each.key}}"
value = "${{each.value == \"a\" ? \"same\" : each.key}}"
tags = {{ cluster = "${{each.key}}" }}

[resources.test_object.alone]
name = "alone"
"#,
        keys.join(", ")
    );
    let f = Fixture::new(&toml);
    let mut p = f.plan().await;
    p.timestamp = "TIMESTAMP".into();
    let human = meshform_engine::plan::render::render_plan(&p, false);
    let verbose = meshform_engine::plan::render::render_plan_with(&p, false, true);
    let md = meshform_engine::plan::markdown::render_markdown(&p);
    assert!(human.contains("test_object.member[*] × 20"), "{human}");
    assert!(!verbose.contains("[*]") && verbose.contains("test_object.member[\"c20\"]"));
    // The other four differ from the twenty (their value is their key), not from each other.
    assert!(human.contains("test_object.member[*] × 4"), "{human}");
    assert!(human.contains("\"c21\", \"c22\", \"c23\", \"c24\""), "{human}");
    insta::assert_snapshot!("grouped_human", human);
    insta::assert_snapshot!("grouped_markdown", md);
}

/// A fleet's plan whose table of changes alone would pass GitHub's comment limit: key lists are
/// shortened first (one group of 5,000 instances), and past that rows are left out, each time
/// with a note; the comment always fits.
#[tokio::test(start_paused = true)]
async fn a_markdown_table_too_long_for_a_comment_is_shortened_with_a_note() {
    use meshform_engine::plan::markdown::{COMMENT_LIMIT, render_markdown, render_markdown_full};
    let fleet = |value: &str| {
        format!(
            r#"
[variables.fleet]
default = {{ {} }}

[resources.test_object.member]
for_each = "${{var.fleet}}"
name = "member-${{each.key}}"
value = "{value}"
"#,
            (0..5000).map(|i| format!("\"cluster-{i:04}\" = \"v{}\"", i * 7)).collect::<Vec<_>>().join(", ")
        )
    };
    // Identical but for the key: one group, its 5,000 keys too long to list.
    let p = Fixture::new(&fleet("${each.key}")).plan().await;
    let (md, full) = (render_markdown(&p), render_markdown_full(&p));
    assert!(full.len() > COMMENT_LIMIT && full.contains("`cluster-4999`"), "{}", full.len());
    assert!(md.len() <= COMMENT_LIMIT, "{}", md.len());
    assert!(md.contains("`test_object.member[*]` × 5000: `cluster-0000`"), "{md}");
    assert!(md.contains("more |") && md.contains("Key lists shortened"), "{md}");
    // 5,000 different changes: rows past the limit are left out, and counted.
    let p = Fixture::new(&fleet("${each.value}")).plan().await;
    let md = render_markdown(&p);
    assert!(md.len() <= COMMENT_LIMIT, "{}", md.len());
    let shown = md.lines().filter(|l| l.starts_with("| `+` |")).count();
    let note = format!("_{} more group(s) of changes left out", 5000 - shown);
    assert!(shown > 100 && md.contains(&note), "{shown} rows shown:\n{}", &md[md.len() - 600..]);
}
