//! A simulator with its own gcloud configuration directory, and a way to run the real gcloud
//! against it.
#![allow(dead_code)]

use meshform_sim::{Sim, SimOptions, files};

pub struct Env {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "gcloud failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

impl Env {
    /// A simulator with `opts`, except that injected faults ask for no wait (`Retry-After: 0`).
    pub async fn start(opts: SimOptions) -> Env {
        let sim = Sim::start(SimOptions { retry_after_secs: 0, ..opts }).await.expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        files::write_all(&sim, dir.path()).unwrap();
        let mut vars = files::env_vars(&sim, dir.path());
        vars.extend([
            ("CLOUDSDK_CONFIG".to_string(), dir.path().join("gcloud").display().to_string()),
            ("HOME".to_string(), dir.path().display().to_string()),
            ("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK".to_string(), "1".to_string()),
            ("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING".to_string(), "true".to_string()),
            ("PATH".to_string(), std::env::var("PATH").unwrap_or_default()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ]);
        Env { sim, dir, vars }
    }

    pub async fn default() -> Env {
        Env::start(SimOptions::default()).await
    }

    /// Runs gcloud with this simulator's environment (and nothing else from ours).
    pub async fn gcloud(&self, args: &[&str]) -> Out {
        self.gcloud_with(args, &[], &[]).await
    }

    pub async fn gcloud_with(&self, args: &[&str], extra: &[(&str, &str)], remove: &[&str]) -> Out {
        let mut c = tokio::process::Command::new(meshform_sim::tools::need("gcloud"));
        c.args(args).env_clear();
        for (k, v) in &self.vars {
            if !remove.contains(&k.as_str()) {
                c.env(k, v);
            }
        }
        for (k, v) in extra {
            c.env(k, v);
        }
        let o = c.output().await.expect("gcloud runs");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn json(out: &Out) -> serde_json::Value {
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
    }
}

impl Env {
    /// Runs kubectl against cluster `i` through the kubeconfig the simulator wrote.
    pub async fn kubectl(&self, i: usize, args: &[&str]) -> Out {
        let c = &self.sim.clusters[i];
        let ctx = files::context_name(&self.sim.world.project, &c.location, &c.name);
        let mut cmd = tokio::process::Command::new(meshform_sim::tools::need("kubectl"));
        cmd.arg("--context").arg(ctx).args(args).env_clear();
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd.env("KUBECONFIG", self.dir.path().join("kubeconfig"));
        let o = cmd.output().await.expect("kubectl runs");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}
