//! `meshform sim` as a newcomer runs it: the binary in the foreground, its files, the real gcloud
//! pointed at it through env.sh, and a clean stop on SIGTERM.
//!
//! Needs gcloud on PATH (a missing tool fails the test saying so; see .ci/run).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn env_sh(path: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

#[test]
fn meshform_sim_serves_gcloud_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.toml");
    std::fs::write(
        &world,
        "project = \"p3\"\n[[subnets]]\nregion = \"us-central1\"\ncidr = \"10.128.0.0/20\"\n\n[[clusters]]\nname = \"a\"\nlocation = \"us-central1-a\"\npod_cidr = \"10.0.0.0/14\"\n\n[[clusters]]\nname = \"b\"\nlocation = \"us-central1-b\"\npod_cidr = \"10.4.0.0/14\"\n\n[[clusters]]\nname = \"c\"\nlocation = \"us-central1\"\nautopilot = true\nprivate = false\npod_cidr = \"10.8.0.0/14\"\n",
    )
    .unwrap();
    let simdir = dir.path().join("sim");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshform"))
        .args(["sim", "--dir"])
        .arg(&simdir)
        .arg("--world")
        .arg(&world)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert!(ready.starts_with("meshform sim ready"), "{ready}");

    let w: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(simdir.join("world.json")).unwrap()).unwrap();
    assert_eq!(w["project"], "p3");
    assert_eq!(w["clusters"].as_array().unwrap().len(), 3);
    assert_eq!(w["clusters"][0]["context"], "gke_p3_us-central1-a_a");
    assert!(w["clusters"][0]["private_endpoint"].as_str().unwrap().starts_with("127.0.0.2:"));
    assert!(w["clusters"][2]["private_endpoint"].is_null());
    let kubeconfig = std::fs::read_to_string(simdir.join("kubeconfig")).unwrap();
    for ctx in ["gke_p3_us-central1-a_a", "gke_p3_us-central1-b_b", "gke_p3_us-central1_c"] {
        assert!(kubeconfig.contains(&format!("name: {ctx}")), "{kubeconfig}");
    }
    assert!(kubeconfig.contains("certificate-authority-data:"));

    let env = env_sh(&simdir.join("env.sh"));
    let gcloud = |args: &[&str]| {
        let o = Command::new(meshform_sim::tools::need("gcloud"))
            .args(args)
            .env_clear()
            .envs(env.iter().cloned())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("CLOUDSDK_CONFIG", dir.path().join("gcloud"))
            .env("KUBECONFIG", dir.path().join("kc"))
            .output()
            .unwrap();
        assert!(o.status.success(), "gcloud {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let names = gcloud(&["container", "clusters", "list", "--format=value(name)"]);
    assert_eq!(names.lines().count(), 3);
    gcloud(&["container", "clusters", "get-credentials", "a", "--zone", "us-central1-a", "--internal-ip"]);
    let kc = std::fs::read_to_string(dir.path().join("kc")).unwrap();
    assert!(kc.contains("server: https://127.0.0.2:"), "{kc}");
    // Autopilot clusters have no node instances; GKE's firewall rules carry their target tag.
    let rules = gcloud(&["compute", "firewall-rules", "list", "--filter=name~^gke-c-", "--format=value(targetTags)"]);
    assert!(rules.trim().starts_with("gke-c-"), "{rules}");

    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
