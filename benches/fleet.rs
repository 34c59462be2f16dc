//! Fleet benchmark (not a timed test): the ASM guide's plan (`plans/asm-multicluster.toml`) on a
//! full mesh of N private zonal clusters in 10 regions, each with one pre-existing authorized
//! network, through the real `meshform` binary against `meshform sim --latency 50` (every API call,
//! Google's and every cluster's API server's, takes 50 ms). For each N it measures apply from
//! empty, a no-change plan and drift (checks included): wall time, peak memory, and the calls
//! each step made per API and method (from the simulator's request logs), beside the commands the
//! guide's hand procedure needs for the same end state.
//!
//!     cargo bench --bench fleet
//!     MESHFORM_BENCH_FLEET=10,50,100,250 MESHFORM_BENCH_LATENCY=50 cargo bench --bench fleet
//!
//! `MESHFORM_BENCH_BIN=/path/to/meshform` measures another build (an older one copied aside);
//! `MESHFORM_BENCH_FRESH=1` starts the clusters with no authorized networks.
//!
//! Targets on a 2-core machine: 50 clusters planned (no changes) and drift-checked in under 5 s
//! each, applied from empty in under 30 s; 250 clusters planned in under 15 s with under 500 MB.
//! The world is `World::fleet(N)` (pod ranges are /17s from 10.0.0.0: 250 of them fit in
//! 10.0.0.0/9 and aggregate to a few blocks); `MESHFORM_BENCH_DETAIL=1` prints every step's calls
//! per method.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

mod common;
use common::measure;
use meshform_sim::world::World;

/// The `clusters` variable: every cluster of the world.
fn var_file(w: &World) -> String {
    let entries: Vec<String> = w.clusters.iter().map(|c| format!("{} = \"{}\"", c.name, c.location)).collect();
    format!("clusters = {{ {} }}\n", entries.join(", "))
}

/// `meshform sim` in the background, and the environment its env.sh sets.
struct Simulator {
    child: Child,
    env: Vec<(String, String)>,
    base: String,
}

impl Simulator {
    fn start(bin: &str, dir: &Path, world: &Path, latency: &str) -> Simulator {
        let mut child = Command::new(bin)
            .args(["sim", "--latency", latency, "--world"])
            .arg(world)
            .arg("--dir")
            .arg(dir.join("sim"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start meshform sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("sim stdout")).read_line(&mut line).expect("sim ready line");
        assert!(line.contains("ready"), "the simulator did not start: {line}");
        let text = std::fs::read_to_string(dir.join("sim/env.sh")).expect("env.sh");
        let env: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        let base = env.iter().find(|(k, _)| k == "MESHFORM_GCP_ENDPOINT").expect("endpoint in env.sh").1.clone();
        Simulator { child, env, base }
    }

    fn http(&self, method: &str, path: &str) -> String {
        let host = self.base.trim_start_matches("http://");
        let mut s = TcpStream::connect(host).expect("connect to the simulator");
        write!(s, "{method} {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("reply");
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }

    /// Calls since the last clear: Google's per `api collection.verb`, the clusters' per
    /// `verb resource` (summed over clusters), and the clusters' total.
    fn calls(&self) -> Calls {
        let google: serde_json::Value = serde_json::from_str(&self.http("GET", "/__sim/requests")).expect("log");
        let kube: serde_json::Value = serde_json::from_str(&self.http("GET", "/__sim/kube/requests")).expect("log");
        let mut c = Calls::default();
        for e in google.as_array().into_iter().flatten() {
            let (m, p) = (e["method"].as_str().unwrap_or(""), e["path"].as_str().unwrap_or(""));
            if !p.starts_with("/token") && !p.starts_with("/__sim") {
                *c.google.entry(google_method(m, p)).or_default() += 1;
            }
        }
        for e in kube.as_array().into_iter().flatten() {
            let (m, p) = (e["method"].as_str().unwrap_or(""), e["path"].as_str().unwrap_or(""));
            *c.kube.entry(kube_method(m, p)).or_default() += 1;
            *c.per_cluster.entry(e["cluster"].as_str().unwrap_or("").to_string()).or_default() += 1;
        }
        c
    }

    fn clear(&self) {
        self.http("DELETE", "/__sim/requests");
        self.http("DELETE", "/__sim/kube/requests");
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Calls {
    google: BTreeMap<String, usize>,
    kube: BTreeMap<String, usize>,
    per_cluster: BTreeMap<String, usize>,
}

/// `compute firewalls.list`, `container clusters.get`, … from a Google API request.
fn google_method(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let api = segs.first().copied().unwrap_or("");
    let (mut coll, mut has_id, mut aggregated, mut custom) = ("", false, false, None);
    let mut i = 2;
    while i < segs.len() {
        match segs[i] {
            "global" => i += 1,
            "aggregated" => {
                aggregated = true;
                i += 1;
            }
            s => {
                let (name, verb) = s.split_once(':').map_or((s, None), |(a, b)| (a, Some(b)));
                coll = name;
                has_id = i + 1 < segs.len();
                if let Some(v) = segs.get(i + 1).and_then(|id| id.split_once(':')).map(|(_, v)| v).or(verb) {
                    custom = Some(v);
                }
                i += 2;
            }
        }
    }
    let verb = custom.unwrap_or(match (method, has_id) {
        ("GET", false) if aggregated => "aggregatedList",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "insert",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => method,
    });
    format!("{api} {coll}.{verb}")
}

/// `get secrets`, `list pods`, `apply namespaces`, `discovery`, … from a cluster API request.
fn kube_method(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return "discovery".into(),
    };
    let rest = match rest {
        ["namespaces", _, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    let (kind, named) = match rest {
        [] => return "discovery".into(),
        [k] => (*k, false),
        [k, ..] => (*k, true),
    };
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("PATCH", _) => "apply",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        (m, _) => m,
    };
    format!("{verb} {kind}")
}

/// Commands the ASM guide's procedure runs by hand for N clusters, the same end state (see
/// README "Fleet scale"): 1 `clusters list` and N `instances list` for pod ranges and tags, 1
/// `firewall-rules create`; per cluster a `clusters describe` (authorized networks, private
/// endpoint) and two `clusters update` (authorized networks, global access); per ordered pair an
/// `istioctl create-remote-secret` and a `kubectl apply`; per cluster a `kubectl get pods` (the
/// revision), `create namespace`, `label namespace`, and three `kubectl apply` of the samples.
fn hand_commands(n: usize) -> usize {
    2 + n + 3 * n + 2 * n * (n - 1) + 6 * n
}

fn main() {
    // MESHFORM_BENCH_BIN runs another build (a copy of an older one, for before and after).
    let bin = std::env::var("MESHFORM_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_meshform").into());
    let bin = bin.as_str();
    let sizes: Vec<usize> = std::env::var("MESHFORM_BENCH_FLEET")
        .unwrap_or_else(|_| "10,50,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| (2..=250).contains(n))
        .collect();
    let latency = std::env::var("MESHFORM_BENCH_LATENCY").unwrap_or_else(|_| "50".into());
    let detail = std::env::var_os("MESHFORM_BENCH_DETAIL").is_some();
    // MESHFORM_BENCH_FRESH=1: clusters with no authorized networks before (the first
    // measurement; with one each, a build that authorizes every cluster's own range fails at 50).
    let fresh = std::env::var_os("MESHFORM_BENCH_FRESH").is_some();
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    println!(
        "latency {latency} ms per call; plans/asm-multicluster.toml; private zonal clusters in 10 regions, {}; {bin}",
        if fresh { "no authorized networks before" } else { "one authorized network each before" }
    );
    println!(
        "{:>4} {:<14} {:>8} {:>9} {:>13} {:>13} {:>15} {:>14}",
        "N", "step", "seconds", "peak MiB", "Google calls", "kube calls", "kube/cluster≤", "hand commands"
    );
    for &n in &sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let mut world = World::fleet_toml(n);
        if fresh {
            world = world.replace("authorized_networks = [\"203.0.113.0/24\"]\n", "");
        }
        std::fs::write(d.join("world.toml"), world).expect("world");
        copy_dir(&plans, &d.join("plans"));
        std::fs::write(d.join("fleet.vars.toml"), var_file(&World::fleet(n))).expect("vars");
        let sim = Simulator::start(bin, d, &d.join("world.toml"), &latency);
        let steps: [(&str, &[&str], i32); 3] = [
            ("apply", &["apply", "--auto-approve"], 0),
            ("plan-nochange", &["plan", "--detailed-exitcode"], 0),
            ("drift", &["drift"], 0),
        ];
        for (step, args, want) in steps {
            sim.clear();
            let mut c = Command::new(bin);
            c.args(&args[..1])
                .arg("plans/asm-multicluster.toml")
                .args(&args[1..])
                .args(["--var-file", "fleet.vars.toml"])
                .current_dir(d)
                .env("HOME", d)
                .env("NO_COLOR", "1")
                .envs(sim.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join(format!("{step}.log"))).expect("log file"));
            let (secs, mib, code) = measure(&mut c);
            if code != want {
                let log = std::fs::read_to_string(d.join(format!("{step}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "{step} at N={n} exited {code}, not {want}:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            let calls = sim.calls();
            let google: usize = calls.google.values().sum();
            let kube: usize = calls.kube.values().sum();
            let hand = if step == "apply" { hand_commands(n).to_string() } else { String::new() };
            println!(
                "{n:>4} {step:<14} {secs:>8.2} {mib:>9.1} {google:>13} {kube:>13} {:>15} {hand:>14}",
                calls.per_cluster.values().max().copied().unwrap_or(0)
            );
            println!(
                "{{\"n\":{n},\"step\":\"{step}\",\"seconds\":{secs:.3},\"peak_mib\":{mib:.1},\"google\":{},\"kube\":{}}}",
                serde_json::json!(calls.google),
                serde_json::json!(calls.kube)
            );
            if detail {
                for (m, k) in calls.google.iter().chain(&calls.kube) {
                    println!("        {k:>7}  {m}");
                }
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read plans") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.path().extension().is_some_and(|x| x == "toml" || x == "yaml") {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}
