//! Shared test fixture: a desired-state file in a temporary directory, the built-in provider and
//! the recording test provider, and helpers to plan and apply.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use meshform_engine::apply::{ApplyOptions, ApplyReport, Quiet, apply};
use meshform_engine::builtin::Builtin;
use meshform_engine::diag::Diagnostics;
use meshform_engine::plan::Plan;
use meshform_engine::plan::planner::{PlanOptions, plan};
use meshform_engine::provider::Registry;
use meshform_engine::session::Session;
use meshform_engine::state::State;
use meshform_engine::state::codec::Codec;
use meshform_engine::state::handle::Backend;
use meshform_engine::state::local::LocalStore;
use meshform_engine::testing::TestProvider;
use meshform_engine::vars::VarInputs;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub test: Arc<TestProvider>,
}

impl Fixture {
    pub fn new(toml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.toml");
        std::fs::write(&path, toml).unwrap();
        Fixture { dir, path, test: TestProvider::new() }
    }

    pub fn write(&self, toml: &str) {
        std::fs::write(&self.path, toml).unwrap();
    }

    pub fn registry(&self) -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(Builtin));
        r.register(self.test.clone());
        r
    }

    pub fn session(&self) -> Session {
        match Session::load(&self.path, self.registry(), &VarInputs::default()) {
            Ok(s) => s,
            Err(f) => panic!("desired state does not load:\n{}", f.render(false)),
        }
    }

    pub fn load_error(&self) -> String {
        match Session::load(&self.path, self.registry(), &VarInputs::default()) {
            Ok(_) => panic!("expected the desired state to be rejected"),
            Err(f) => f.render(false),
        }
    }

    /// The local store the fixture's state is in (for its paths).
    pub fn store(&self) -> LocalStore {
        LocalStore::new(self.dir.path().join("main.state.json"))
    }

    pub fn backend(&self) -> Backend {
        Backend::new(Arc::new(self.store()), Codec::plain())
    }

    /// The state as stored.
    pub fn state(&self) -> State {
        match std::fs::read(self.store().path()) {
            Ok(b) => Codec::plain().decode_state(&b, "test").unwrap(),
            Err(_) => State::new(),
        }
    }

    pub async fn plan_with(&self, opts: PlanOptions) -> Result<Plan, Diagnostics> {
        let s = self.session();
        let snap = self.backend().read().await.unwrap();
        plan(&s, &snap.state, &opts).await.map(|o| o.plan)
    }

    pub async fn plan(&self) -> Plan {
        match self.plan_with(PlanOptions::default()).await {
            Ok(p) => p,
            Err(d) => panic!("plan failed: {d:?}"),
        }
    }

    /// Applies `p` (made by this fixture) with options.
    pub async fn apply_plan(&self, p: &Plan, opts: &ApplyOptions) -> ApplyReport {
        let s = self.session();
        let (mut locked, mut state) = self.backend().open("apply", Default::default()).await.unwrap();
        let r = apply(&s, p, &mut locked, &mut state, opts, &Quiet).await.expect("apply runs");
        locked.release().await.unwrap();
        r
    }

    /// Applies `p` with options, telling `observer` the progress.
    pub async fn apply_observed(
        &self,
        p: &Plan,
        opts: &ApplyOptions,
        observer: &dyn meshform_engine::apply::Observer,
    ) -> ApplyReport {
        let s = self.session();
        let (mut locked, mut state) = self.backend().open("apply", Default::default()).await.unwrap();
        let r = apply(&s, p, &mut locked, &mut state, opts, observer).await.expect("apply runs");
        locked.release().await.unwrap();
        r
    }

    /// Plans and applies with default options.
    pub async fn apply(&self) -> ApplyReport {
        let p = self.plan().await;
        self.apply_plan(&p, &ApplyOptions::default()).await
    }

    /// Actions of a plan as "symbol address" strings, no-ops left out.
    pub fn actions(p: &Plan) -> Vec<String> {
        p.visible_changes().map(|c| format!("{} {}", c.action.symbol(), c.address)).collect()
    }
}
