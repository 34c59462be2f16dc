//! The `meshform` command end to end with the built-in `meshform_data` type: exit codes, saved
//! plans, locking, refusal without a terminal, renderings, state commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(toml: &str) -> Dir {
        let d = Dir { dir: tempfile::tempdir().unwrap() };
        d.write("main.toml", toml);
        d
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_meshform"))
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env_remove("NO_COLOR")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("main.state.json")).unwrap()).unwrap()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

const CHAIN: &str = r#"
[variables.greeting]
default = "hello"

[resources.meshform_data.a]
input = "${var.greeting}"

[resources.meshform_data.b]
input = "${meshform_data.a.output}-b"

[outputs.b]
value = "${meshform_data.b.output}"
"#;

#[test]
fn validate_plan_apply_plan_destroy() {
    let d = Dir::new(CHAIN);
    let o = d.run(&["validate", "main.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = d.run(&["plan", "main.toml", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("Plan: 2 to add, 0 to change, 0 to destroy."));
    assert!(!d.path("main.state.json").exists(), "plan must not write state");
    let o = d.run(&["apply", "main.toml", "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("b = \"hello-b\""), "{}", text(&o));
    assert_eq!(d.state()["objects"].as_array().unwrap().len(), 2);
    let o = d.run(&["plan", "main.toml", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = d.run(&["destroy", "main.toml", "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(d.state()["objects"].as_array().unwrap().is_empty());
    assert!(!text(&o).contains('\u{1b}'), "no colour when not on a terminal");
}

#[test]
fn apply_without_a_terminal_or_approval_refuses_and_changes_nothing() {
    let d = Dir::new(CHAIN);
    let o = d.run(&["apply", "main.toml"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("--auto-approve"), "{}", text(&o));
    assert!(!d.path("main.state.json").exists());
}

#[test]
fn invalid_input_points_at_the_file_and_writes_nothing() {
    let d = Dir::new("[resources.meshform_data.a]\ninptu = 1\n");
    for cmd in ["validate", "plan", "apply"] {
        let o = d.run(
            &[cmd, "main.toml", "--auto-approve"]
                .into_iter()
                .filter(|a| cmd == "apply" || *a != "--auto-approve")
                .collect::<Vec<_>>(),
        );
        assert_eq!(code(&o), 1);
        assert!(text(&o).contains("main.toml:2:1: unknown attribute `inptu`"), "{}", text(&o));
    }
    assert!(!d.path("main.state.json").exists());
    let o = d.run(&["validate", "missing.toml"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("cannot read missing.toml"));
}

#[test]
fn saved_plan_applies_exactly_once_and_then_is_stale() {
    let d = Dir::new(CHAIN);
    let o = d.run(&["plan", "main.toml", "--out", "p.plan"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = d.run(&["apply", "p.plan"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("Apply complete: 2 added"), "{}", text(&o));
    let o = d.run(&["apply", "p.plan"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("stale"), "{}", text(&o));
    // A plan whose desired state changed since is refused too.
    d.write("main.toml", &CHAIN.replace("hello", "howdy"));
    d.run(&["plan", "main.toml", "--out", "q.plan"]);
    d.write("main.toml", &CHAIN.replace("hello", "hi"));
    let o = d.run(&["apply", "q.plan"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("changed since the plan was made"), "{}", text(&o));
    assert_eq!(d.state()["serial"], 1);
    // And so is one whose template file changed.
    d.write("cm.yaml", "mode: ${meshform_data.a.output}\n");
    d.write("main.toml", &format!("{CHAIN}\n[resources.meshform_data.t]\ninput = '${{templatefile(\"cm.yaml\")}}'\n"));
    let o = d.run(&["plan", "main.toml", "--out", "t.plan"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    d.write("cm.yaml", "mode: other\n");
    let o = d.run(&["apply", "t.plan"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("cm.yaml (read with file() or templatefile()) changed since the plan was made"),
        "{}",
        text(&o)
    );
    assert_eq!(d.state()["serial"], 1);
}

#[test]
fn destroy_works_when_a_file_the_desired_state_reads_is_gone() {
    let d = Dir::new("[resources.meshform_data.a]\ninput = '${file(\"note.txt\")}'\n");
    d.write("note.txt", "hello");
    assert_eq!(code(&d.run(&["apply", "main.toml", "--auto-approve"])), 0);
    std::fs::remove_file(d.path("note.txt")).unwrap();
    let o = d.run(&["plan", "main.toml"]);
    assert_eq!(code(&o), 1, "planning needs the file: {}", text(&o));
    assert!(text(&o).contains("note.txt"), "{}", text(&o));
    let o = d.run(&["destroy", "main.toml", "--auto-approve"]);
    assert_eq!(code(&o), 0, "destroying does not: {}", text(&o));
    assert_eq!(d.state()["objects"].as_array().unwrap().len(), 0);
}

#[test]
fn a_held_lock_fails_at_once_and_a_provably_stale_one_is_taken_over() {
    let d = Dir::new(CHAIN);
    // This boot and pid namespace, as the lock records them.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap().display().to_string();
    let space = format!("{}/{ns}", boot.trim());
    let lock = |pid: u32| {
        serde_json::json!({"id": "LOCK-1", "operation": "apply", "who": "ci@builder", "pid": pid,
            "host": hostname(), "created": "2026-11-22T00:00:00Z", "pid_space": space})
        .to_string()
    };
    d.write("main.state.json.lock", &lock(std::process::id()));
    // A plan reads one consistent version without the lock: it neither waits nor fails.
    let o = d.run(&["plan", "main.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = d.run(&["apply", "main.toml", "--auto-approve"]);
    assert_eq!(code(&o), 1);
    let t = text(&o);
    assert!(t.contains("locked by ci@builder") && t.contains("LOCK-1") && !t.contains("stale"), "{t}");
    let o = d.run(&["force-unlock", "WRONG", "main.toml"]);
    assert_eq!(code(&o), 1);
    // Another host's lock is never broken by itself, whatever its pid.
    let other = serde_json::json!({"id": "LOCK-2", "operation": "apply", "who": "ci@elsewhere", "pid": 0x7fff_fff0u32,
        "host": "elsewhere.example", "created": "2026-11-22T00:00:00Z"});
    d.write("main.state.json.lock", &other.to_string());
    let o = d.run(&["apply", "main.toml", "--auto-approve"]);
    assert!(code(&o) == 1 && text(&o).contains("meshform force-unlock LOCK-2"), "{}", text(&o));
    // Same host name but no pid namespace recorded (another container, an older meshform):
    // never taken over by itself.
    let unproven = serde_json::json!({"id": "LOCK-3", "operation": "apply", "who": "ci@builder", "pid": 0x7fff_fff0u32,
        "host": hostname(), "created": "2026-11-22T00:00:00Z"});
    d.write("main.state.json.lock", &unproven.to_string());
    let o = d.run(&["apply", "main.toml", "--auto-approve"]);
    assert!(code(&o) == 1 && text(&o).contains("meshform force-unlock LOCK-3"), "{}", text(&o));
    // A lock of this host whose process is gone is provably stale: taken over, and said so.
    d.write("main.state.json.lock", &lock(0x7fff_fff0));
    let o = d.run(&["apply", "main.toml", "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("removed a stale lock of pid 2147483632"), "{}", text(&o));
    assert!(!d.path("main.state.json.lock").exists());
}

fn hostname() -> String {
    String::from_utf8(Command::new("hostname").output().unwrap().stdout).unwrap().trim().to_string()
}

#[test]
fn drift_exits_2_for_unapplied_changes_and_0_when_in_sync() {
    let d = Dir::new(CHAIN);
    assert_eq!(code(&d.run(&["apply", "main.toml", "--auto-approve"])), 0);
    let o = d.run(&["drift", "main.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    d.write("main.toml", &CHAIN.replace("hello", "howdy"));
    let o = d.run(&["drift", "main.toml"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("meshform_data.a"), "{}", text(&o));
    let o = d.run(&["drift", "main.toml", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["found"], true);
    assert_eq!(j["pending"][0]["address"], "meshform_data.a");
    let o = d.run(&["drift", "main.toml", "--format", "markdown"]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 2);
    assert!(md.starts_with("### meshform drift") && md.contains("**Drift found:**"), "{md}");
    assert!(md.contains("| `~` | `meshform_data.a` |") && md.contains("```diff"), "{md}");
}

#[test]
fn renderings_graph_and_state_commands() {
    let d = Dir::new(CHAIN);
    let o = d.run(&["plan", "main.toml", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["summary"]["add"], 2);
    assert_eq!(j["changes"][1]["after_unknown"], serde_json::json!(["id"]));
    let o = d.run(&["plan", "main.toml", "--format", "markdown"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("| `+` | `meshform_data.a` | create |"));
    let o = d.run(&["graph", "main.toml"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"meshform_data.a\" -> \"meshform_data.b\";"));

    assert_eq!(code(&d.run(&["apply", "main.toml", "--auto-approve"])), 0);
    let o = d.run(&["state", "list", "main.toml"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "meshform_data.a\nmeshform_data.b\n");
    let o = d.run(&["state", "show", "main.toml", "meshform_data.b"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("output = \"hello-b\""));
    let o = d.run(&["state", "rm", "main.toml", "meshform_data.b"]);
    assert_eq!(code(&o), 0);
    let o = d.run(&["plan", "main.toml", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2);
    let o = d.run(&["import", "main.toml", "meshform_data.b", "some-id"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = d.run(&["state", "show", "main.toml", "meshform_data.b"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"some-id\""));
}

#[test]
fn variables_from_flags_files_and_environment() {
    let d = Dir::new(CHAIN);
    d.write("vars.toml", "greeting = \"from-file\"\n");
    let plan_input = |extra: &[&str], env: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_meshform"));
        c.args(["plan", "main.toml", "--format", "json"]).args(extra).current_dir(d.dir.path());
        if let Some(v) = env {
            c.env("MESHFORM_VAR_greeting", v);
        }
        let o = c.output().unwrap();
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        j["changes"][0]["after"]["input"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(plan_input(&[], None), "hello");
    assert_eq!(plan_input(&[], Some("from-env")), "from-env");
    assert_eq!(plan_input(&["--var-file", "vars.toml"], Some("from-env")), "from-file");
    assert_eq!(plan_input(&["--var-file", "vars.toml", "--var", "greeting=from-flag"], None), "from-flag");
    let o = d.run(&["plan", "main.toml", "--var", "greting=x"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("did you mean `greeting`?"), "{}", text(&o));
}

#[test]
fn every_file_in_plans_and_testdata_valid_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = Vec::new();
    for dir in ["plans", "testdata/valid"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let o = Command::new(env!("CARGO_BIN_EXE_meshform")).args(["validate"]).arg(&p).output().unwrap();
                assert_eq!(code(&o), 0, "{}: {}", p.display(), text(&o));
                assert!(text(&o).contains(": valid ("), "{}", text(&o));
                checked.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    for must in ["plans/asm-multicluster.toml", "plans/mci-istio.toml", "testdata/valid/showcase.toml"] {
        assert!(checked.iter().any(|c| c == must), "{must} was not validated: {checked:?}");
    }
}

#[test]
fn a_cluster_that_is_not_a_key_of_clusters_is_caught_by_validate_at_its_line() {
    let d = Dir::new(
        "[clusters.prod-us]\nname = \"cluster-1\"\nlocation = \"us-central1-a\"\n\n[clusters.prod-eu]\nlocation = \"europe-west1-b\"\n\n[resources.k8s_namespace.a]\ncluster = \"cluster-1\"\nname = \"a\"\n\n[resources.mesh_remote_secret.r]\nsource = \"prod-us\"\ntarget = \"prod-ue\"\n\n[resources.mesh_ca.ca]\nclusters = [\"prod-us\", \"nowhere\"]\n",
    );
    let o = d.run(&["validate", "main.toml"]);
    let t = text(&o);
    assert_eq!(code(&o), 1, "{t}");
    // The GKE name instead of the key, with the key to use.
    assert!(t.contains("main.toml:9:11") && t.contains("`cluster` names cluster `cluster-1`"), "{t}");
    assert!(t.contains("the GKE name of the cluster declared as [clusters.prod-us]: use the key"), "{t}");
    // A typo, with the closest key.
    assert!(t.contains("main.toml:14:10") && t.contains("did you mean `prod-eu`?"), "{t}");
    // A list entry.
    assert!(t.contains("main.toml:17:12") && t.contains("`clusters` names cluster `nowhere`"), "{t}");
    assert!(!d.path("main.state.json").exists());
}

#[test]
fn hostile_input_is_an_error_at_its_position_never_a_crash_or_a_hang() {
    let deep = format!("${{{}1{}}}", "(".repeat(5000), ")".repeat(5000));
    let nots = format!("${{{}true}}", "!".repeat(5000));
    for (toml, want) in [
        (format!("[resources.meshform_data.a]\ninput = \"{deep}\"\n"), "nested too deeply (more than 32 levels)"),
        (format!("[resources.meshform_data.a]\ninput = \"{nots}\"\n"), "nested too deeply"),
        (format!("[resources.meshform_data.a]\ninput = \"${{1{}}}\"\n", " + 1".repeat(5000)), "nested too deeply"),
        ("[resources.meshform_data.a]\ninput = \"${1.0/0}\"\n".to_string(), "not a finite number"),
        ("[resources.meshform_data.a]\ninput = \"${9223372036854775807 + 1}\"\n".to_string(), "overflow"),
        ("[resources.meshform_data.a]\ninput = \"${file(\\\"/dev/zero\\\")}\"\n".to_string(), "only regular files"),
        ("[resources.meshform_data.a]\ninput = \"${file(\\\"big.txt\\\")}\"\n".to_string(), "4 MiB limit"),
        ("[resources.meshform_data.a]\ninput = \"${file(\\\"bad.txt\\\")}\"\n".to_string(), "line 2, column 3"),
    ] {
        let d = Dir::new(&toml);
        d.write("big.txt", &"x".repeat(4 * 1024 * 1024 + 1));
        std::fs::write(d.path("bad.txt"), b"ok\nab\xffc").unwrap();
        let o = d.run(&["validate", "main.toml"]);
        let t = text(&o);
        assert_eq!(code(&o), 1, "{toml}: {t}");
        assert!(t.contains(want), "expected `{want}`:\n{t}");
        assert!(t.contains("main.toml:2:"), "the error must point at the line:\n{t}");
    }
    // The desired-state file itself not UTF-8: line and column.
    let d = Dir::new("");
    std::fs::write(d.path("main.toml"), b"# ok\n[resources.meshform_data.a]\ninput = \"\xfe\"\n").unwrap();
    let o = d.run(&["validate", "main.toml"]);
    assert!(code(&o) == 1 && text(&o).contains("line 3, column 10"), "{}", text(&o));
}

#[test]
fn a_fleet_of_one_cluster_validates_both_guides_with_no_pairs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for plan in ["plans/mci-istio.toml", "plans/asm-multicluster.toml"] {
        let o = Command::new(env!("CARGO_BIN_EXE_meshform"))
            .args(["validate", plan, "--var", "clusters={cluster-1 = \"us-central1-a\"}"])
            .current_dir(root)
            .env("HOME", std::env::temp_dir())
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{plan}: an empty for_each is a declared block with no instances:\n{}", text(&o));
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    let mut toml = String::new();
    for i in 0..400 {
        toml.push_str(&format!("[resources.meshform_data.d{i}]\ninput = \"{}\"\n\n", "x".repeat(200)));
    }
    let d = Dir::new(&toml);
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshform"))
        .args(["plan", "main.toml"])
        .current_dir(d.dir.path())
        .env("HOME", d.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, as `head -c1` would, then close the pipe.
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE: {:?} {err}", out.status);
}

/// `for_each` keys must be known without reading or making anything: one that depends on an
/// object's value known only after apply fails validate at the expression, saying why and what
/// it may use, and nothing is written.
#[test]
fn a_for_each_known_only_after_apply_fails_validate_at_its_expression() {
    let d = Dir::new(
        "[resources.meshform_data.a]\ninput = \"x\"\n\n[resources.meshform_data.per_item]\nfor_each = \"${meshform_data.a.output}\"\ninput = \"${each.key}\"\n\n[resources.meshform_data.per_key]\nfor_each = \"${[meshform_data.a.output]}\"\ninput = \"${each.key}\"\n",
    );
    for cmd in ["validate", "plan"] {
        let o = d.run(&[cmd, "main.toml"]);
        let t = text(&o);
        assert_eq!(code(&o), 1, "{t}");
        assert!(
            t.contains("main.toml:5:15: invalid `for_each`")
                && t.contains("for_each depends on values known only after apply; it may use variables, literals and the cluster set"),
            "{t}"
        );
        assert!(
            t.contains("main.toml:9:15: invalid `for_each`")
                && t.contains("for_each holds a value known only after apply"),
            "{t}"
        );
    }
    assert!(!d.path("main.state.json").exists());
}
