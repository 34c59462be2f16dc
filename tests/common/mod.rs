//! Shared fixture of the integration tests: a simulator with its own gcloud configuration,
//! HOME and kubeconfig, and the real `meshform`, `gcloud` and `kubectl` run against it (tools
//! are found with `meshform_sim::tools::need`, which fails a test clearly without one).
#![allow(dead_code)]

use std::process::Output;

use meshform_sim::{Sim, SimOptions, files};

pub struct Cloud {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

pub const FAST: &str = "[providers.gcp]\nrequests_per_second = 2000\n\n";

impl Cloud {
    /// A simulator with `opts`, except that injected faults ask for no wait (`Retry-After: 0`):
    /// no test waits on a fixed second.
    pub async fn start(opts: SimOptions) -> Cloud {
        let sim = Sim::start(SimOptions { retry_after_secs: 0, ..opts }).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        files::write_all(&sim, dir.path()).unwrap();
        let mut env = files::env_vars(&sim, dir.path());
        env.extend([
            ("CLOUDSDK_CONFIG".to_string(), dir.path().join("gcloud").display().to_string()),
            ("HOME".to_string(), dir.path().display().to_string()),
            ("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK".to_string(), "1".to_string()),
            ("PATH".to_string(), std::env::var("PATH").unwrap_or_default()),
            ("NO_COLOR".to_string(), "1".to_string()),
        ]);
        Cloud { sim, dir, env }
    }

    pub async fn default() -> Cloud {
        Cloud::start(SimOptions { lro_polls: 1, ..SimOptions::default() }).await
    }

    pub fn write(&self, toml: &str) {
        std::fs::write(self.dir.path().join("main.toml"), format!("{FAST}{toml}")).unwrap();
    }

    /// Runs `prog` (a path, as meshform's, or a tool found on PATH: gcloud, kubectl) in the
    /// fixture's directory with its environment only (minus `drop`, plus `extra`).
    pub async fn run(&self, prog: &str, args: &[&str], drop: &[&str], extra: &[(&str, String)]) -> Output {
        let program = if prog.contains('/') { prog.into() } else { meshform_sim::tools::need(prog) };
        let mut c = tokio::process::Command::new(program);
        c.args(args).current_dir(self.dir.path()).env_clear().stdin(std::process::Stdio::null());
        for (k, v) in &self.env {
            if !drop.contains(&k.as_str()) {
                c.env(k, v);
            }
        }
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output().await.unwrap()
    }

    pub async fn mf(&self, args: &[&str]) -> Output {
        self.run(env!("CARGO_BIN_EXE_meshform"), args, &[], &[]).await
    }

    pub async fn gcloud(&self, args: &[&str]) -> Output {
        let o = self.run("gcloud", args, &[], &[]).await;
        assert_eq!(code(&o), 0, "gcloud {args:?}: {}", text(&o));
        o
    }

    pub async fn apply(&self) {
        let o = self.mf(&["apply", "main.toml", "--auto-approve"]).await;
        assert_eq!(code(&o), 0, "apply failed:\n{}", text(&o));
    }

    /// `plan --detailed-exitcode`: the exit code and the output.
    pub async fn plan(&self) -> (i32, String) {
        let o = self.mf(&["plan", "main.toml", "--detailed-exitcode"]).await;
        (code(&o), text(&o))
    }

    pub async fn assert_no_changes(&self) {
        let (c, t) = self.plan().await;
        assert_eq!(c, 0, "expected no changes:\n{t}");
    }

    pub async fn describe(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--format=json");
        let o = self.gcloud(&a).await;
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl Cloud {
    /// The kubeconfig context of cluster `i` of the world (named with its own project).
    pub fn context(&self, i: usize) -> String {
        let w = &self.sim.world;
        files::context_name(w.project_of(&w.clusters[i]), &w.clusters[i].location, &w.clusters[i].name)
    }

    /// Whether `kubectl get ARGS` finds the object in cluster `i` of the world.
    pub async fn exists(&self, i: usize, args: &[&str]) -> bool {
        let ctx = self.context(i);
        let mut a = vec!["--context", ctx.as_str(), "get"];
        a.extend_from_slice(args);
        code(&self.run("kubectl", &a, &[], &[]).await) == 0
    }

    /// kubectl against cluster `i` of the world.
    pub async fn kubectl(&self, i: usize, args: &[&str]) -> Output {
        let ctx = self.context(i);
        let mut a = vec!["--context", ctx.as_str()];
        a.extend_from_slice(args);
        let o = self.run("kubectl", &a, &[], &[]).await;
        assert_eq!(code(&o), 0, "kubectl {args:?}: {}", text(&o));
        o
    }
}

impl Cloud {
    /// A service-account key file (a fresh RSA key made by openssl) whose `token_uri` is the
    /// simulator's token endpoint, as GOOGLE_APPLICATION_CREDENTIALS names one.
    pub fn service_account_key(&self) -> std::path::PathBuf {
        let pem = std::process::Command::new(meshform_sim::tools::need("openssl"))
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .unwrap();
        assert!(pem.status.success(), "openssl genpkey failed");
        let key = serde_json::json!({
            "type": "service_account", "project_id": "meshform-demo", "private_key_id": "k1",
            "private_key": String::from_utf8(pem.stdout).unwrap(), "client_email": "deployer@meshform-demo.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": self.sim.token_uri(),
        });
        let path = self.dir.path().join("key.json");
        std::fs::write(&path, key.to_string()).unwrap();
        path
    }
}

/// The CIDRs of a cluster's master authorized networks, as `gcloud container clusters describe
/// --format=json` shows them, sorted.
pub fn authorized_networks(described: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = described["masterAuthorizedNetworksConfig"]["cidrBlocks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| b["cidrBlock"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

impl Cloud {
    /// A copy of the repository's plans/ (both guides and every file they read) in the
    /// fixture's directory.
    pub fn copy_plans(&self) {
        fn copy(from: &std::path::Path, to: &std::path::Path) {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                let name = e.file_name();
                if e.file_type().unwrap().is_dir() {
                    copy(&e.path(), &to.join(&name));
                } else if !name.to_string_lossy().contains(".state.json") {
                    std::fs::copy(e.path(), to.join(&name)).unwrap();
                }
            }
        }
        copy(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans"), &self.dir.path().join("plans"));
    }

    /// plans/ copied, and `clusters.toml`: a var file naming the world's clusters (name →
    /// location), as the guides' `clusters` variable takes them.
    pub fn setup_guides(&self, w: &meshform_sim::world::World) {
        self.copy_plans();
        let map: Vec<String> = w.clusters.iter().map(|c| format!("\"{}\" = \"{}\"", c.name, c.location)).collect();
        std::fs::write(self.dir.path().join("clusters.toml"), format!("clusters = {{ {} }}\n", map.join(", ")))
            .unwrap();
    }
}
