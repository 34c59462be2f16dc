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

/// `meshform sim --world` (the world's text) running in the foreground, in a directory of its own.
struct Running {
    child: std::process::Child,
    dir: tempfile::TempDir,
    simdir: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl Running {
    /// Starts it and waits for its ready line.
    fn start(world_toml: &str) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let world = dir.path().join("world.toml");
        std::fs::write(&world, world_toml).unwrap();
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
        let env = env_sh(&simdir.join("env.sh"));
        Running { child, dir, simdir, env }
    }

    /// Runs `tool` with env.sh's environment (less `SSL_CERT_FILE` unless `trust`), its own HOME,
    /// gcloud configuration and kubeconfig (`kc`).
    fn output(&self, tool: &str, args: &[&str], trust: bool) -> std::process::Output {
        Command::new(meshform_sim::tools::need(tool))
            .args(args)
            .env_clear()
            .envs(self.env.iter().filter(|(k, _)| trust || k != "SSL_CERT_FILE").cloned())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CLOUDSDK_CONFIG", self.dir.path().join("gcloud"))
            .env("KUBECONFIG", self.dir.path().join("kc"))
            .output()
            .unwrap()
    }

    /// [`Running::output`]: whether it succeeded, and its output and errors together.
    fn run(&self, tool: &str, args: &[&str], trust: bool) -> (bool, String) {
        let o = self.output(tool, args, trust);
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) {
        // SAFETY: sending SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

#[test]
fn meshform_sim_serves_gcloud_and_stops_on_sigterm() {
    let r = Running::start(
        "project = \"p3\"\n[[subnets]]\nregion = \"us-central1\"\ncidr = \"10.128.0.0/20\"\n\n[[clusters]]\nname = \"a\"\nlocation = \"us-central1-a\"\npod_cidr = \"10.0.0.0/14\"\n\n[[clusters]]\nname = \"b\"\nlocation = \"us-central1-b\"\npod_cidr = \"10.4.0.0/14\"\n\n[[clusters]]\nname = \"c\"\nlocation = \"us-central1\"\nautopilot = true\nprivate = false\npod_cidr = \"10.8.0.0/14\"\n",
    );
    let simdir = &r.simdir;

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

    let gcloud = |args: &[&str]| {
        let o = r.output("gcloud", args, true);
        assert!(o.status.success(), "gcloud {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let names = gcloud(&["container", "clusters", "list", "--format=value(name)"]);
    assert_eq!(names.lines().count(), 3);
    gcloud(&["container", "clusters", "get-credentials", "a", "--zone", "us-central1-a", "--internal-ip"]);
    let kc = std::fs::read_to_string(r.dir.path().join("kc")).unwrap();
    assert!(kc.contains("server: https://127.0.0.2:"), "{kc}");
    // Autopilot clusters have no node instances; GKE's firewall rules carry their target tag.
    let rules = gcloud(&["compute", "firewall-rules", "list", "--filter=name~^gke-c-", "--format=value(targetTags)"]);
    assert!(rules.trim().starts_with("gke-c-"), "{rules}");
    r.stop();
}

/// `meshform sim` with a runner outside the VPC: a private cluster without a public endpoint is
/// reached by kubectl only with the credentials gcloud makes for the fleet's Connect Gateway and
/// for the cluster's DNS-based endpoint, each trusted through the simulator's public root.
#[test]
fn kubectl_reaches_a_private_control_plane_through_the_connect_gateway_and_the_dns_endpoint() {
    let r = Running::start(
        "project = \"p3\"\nproject_number = \"3003\"\nrunner_in_vpc = false\n[[subnets]]\nregion = \"us-central1\"\ncidr = \"10.128.0.0/20\"\n\n[[clusters]]\nname = \"a\"\nlocation = \"us-central1-a\"\npod_cidr = \"10.0.0.0/14\"\npublic_endpoint = false\nfleet = true\n\n[[clusters]]\nname = \"b\"\nlocation = \"us-central1-b\"\npod_cidr = \"10.4.0.0/14\"\ndns_access = false\n",
    );
    meshform_sim::tools::need("gke-gcloud-auth-plugin");
    let run = |tool: &str, args: &[&str], trust: bool| r.run(tool, args, trust);
    let gateway = r.env.iter().find(|(k, _)| k == "MESHFORM_CONNECT_GATEWAY_ENDPOINT").unwrap().1.clone();
    let server = |kc: &str, name: &str| {
        let at = kc.find(&format!("  name: {name}\n")).unwrap_or_else(|| panic!("no cluster {name}:\n{kc}"));
        let entry = &kc[kc[..at].rfind("- cluster:").unwrap()..at];
        (entry.contains("certificate-authority-data"), entry.split("server: ").nth(1).unwrap().trim().to_string())
    };

    // The Connect Gateway: a kubeconfig generated by the server, with the project number.
    let (ok, out) = run(
        "gcloud",
        &["container", "fleet", "memberships", "get-credentials", "a", "--location", "us-central1"],
        true,
    );
    assert!(ok, "{out}");
    let kc = std::fs::read_to_string(r.dir.path().join("kc")).unwrap();
    let (ca, url) = server(&kc, "connectgateway_p3_us-central1_a");
    assert_eq!(
        (ca, url.as_str()),
        (false, format!("{gateway}/v1/projects/3003/locations/us-central1/gkeMemberships/a").as_str())
    );
    assert!(kc.contains("command: gke-gcloud-auth-plugin"), "{kc}");
    let (ok, out) = run("kubectl", &["create", "namespace", "via-gateway"], true);
    assert!(ok, "{out}");
    let (ok, out) = run("kubectl", &["get", "namespaces", "-o", "name"], true);
    assert!(ok && out.contains("namespace/via-gateway") && out.contains("namespace/istio-system"), "{out}");

    // The DNS-based endpoint of the same cluster: no CA in the kubeconfig, the system's roots.
    let (ok, out) = run(
        "gcloud",
        &["container", "clusters", "get-credentials", "a", "--location", "us-central1-a", "--dns-endpoint"],
        true,
    );
    assert!(ok, "{out}");
    let kc = std::fs::read_to_string(r.dir.path().join("kc")).unwrap();
    let (ca, url) = server(&kc, "gke_p3_us-central1-a_a");
    assert!(!ca && url.starts_with("https://localhost:"), "{kc}");
    let (ok, out) = run("kubectl", &["get", "namespace", "via-gateway", "-o", "name"], true);
    assert!(ok && out.trim() == "namespace/via-gateway", "{out}");
    // Trusted only through the public root: without it, kubectl refuses the certificate.
    let (ok, out) = run("kubectl", &["get", "namespaces"], false);
    assert!(!ok && out.contains("certificate signed by unknown authority"), "{out}");

    // The IP endpoints refuse a runner outside the VPC.
    let (ok, out) = run(
        "gcloud",
        &["container", "clusters", "get-credentials", "a", "--location", "us-central1-a", "--internal-ip"],
        true,
    );
    assert!(ok, "{out}");
    let (ok, out) = run("kubectl", &["get", "namespaces"], true);
    assert!(!ok && out.contains("refused"), "{out}");
    // A DNS endpoint closed to outside traffic, and a cluster that is not a fleet member.
    let (ok, out) = run(
        "gcloud",
        &["container", "clusters", "get-credentials", "b", "--location", "us-central1-b", "--dns-endpoint"],
        true,
    );
    assert!(!ok && out.contains("allowExternalTraffic is disabled for cluster b"), "{out}");
    let (ok, out) = run(
        "gcloud",
        &["container", "fleet", "memberships", "get-credentials", "b", "--location", "us-central1"],
        true,
    );
    assert!(!ok && out.contains("memberships/b not found"), "{out}");

    r.stop();
}
