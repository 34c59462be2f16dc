//! A session: one desired-state file loaded, its variables resolved, its graph built and its
//! providers configured, plus the shared machinery plan and apply both use: evaluating an
//! instance's attributes against known values, and reading the clusters. (Deciding a change is
//! `plan::decide`.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use crate::addr::{Addr, BlockAddr, Mode};
use crate::config::{self, Config};
use crate::diag::{Diagnostic, Diagnostics, Sources};
use crate::eval::{ObjectValue, Objects, Scope, eval, for_each_instances};
use crate::graph::{self, Graph};
use crate::provider::{CallContext, Provider, Registry, TypeSchema};
use crate::value::{Map, Value};
use crate::vars::{self, VarInputs, Vars};

/// Diagnostics with the sources they point into.
#[derive(Debug, Default)]
pub struct Failure {
    /// The files.
    pub sources: Sources,
    /// The problems.
    pub diags: Diagnostics,
}

impl Failure {
    /// Renders every diagnostic.
    pub fn render(&self, color: bool) -> String {
        self.diags.render(&self.sources, color)
    }
}

/// A loaded desired-state file, ready to plan.
pub struct Session {
    /// The parsed file.
    pub cfg: Config,
    /// Variable values.
    pub vars: Vars,
    /// The instance graph.
    pub graph: Graph,
    /// The providers.
    pub registry: Registry,
    /// Files read by `file()`, path → SHA-256.
    pub files_read: Mutex<BTreeMap<String, String>>,
    provider_configs: RwLock<HashMap<String, Arc<Map>>>,
    for_each: Mutex<HashMap<BlockAddr, Arc<BTreeMap<String, Value>>>>,
    /// Warnings of loading (a `MESHFORM_VAR_` name that sets nothing), for the caller to show.
    pub warnings: Diagnostics,
    /// Data sources [`Session::discover`] read before expansion: the configuration read with and
    /// what came back (the run's plan answers from them instead of reading again).
    pub discovered: BTreeMap<Addr, (Map, crate::provider::Object)>,
    /// Clusters that left the desired set and no longer exist (their lookup found nothing):
    /// objects living in them went with them (see [`Session::gone_home`]).
    gone: Mutex<BTreeSet<String>>,
}

impl Session {
    /// Loads, resolves variables and builds the graph. Reads local files only.
    pub fn load(path: &Path, registry: Registry, inputs: &VarInputs) -> Result<Session, Failure> {
        let (cfg, diags) = config::read(path, &registry).map_err(|(sources, diags)| Failure { sources, diags })?;
        Session::from_config(cfg, diags, registry, inputs)
    }

    /// Like [`Session::load`] for destroying: the desired attributes are not needed, so an
    /// expression that cannot be evaluated (a file since removed) does not stand in the way.
    pub fn load_for_destroy(path: &Path, registry: Registry, inputs: &VarInputs) -> Result<Session, Failure> {
        let (cfg, diags) = config::read(path, &registry).map_err(|(sources, diags)| Failure { sources, diags })?;
        Session::build(cfg, diags, registry, inputs, false)
    }

    /// Resolves variables and builds the graph of a parsed file, reporting every problem of
    /// every stage together (`diags` are the parser's).
    pub fn from_config(
        cfg: Config,
        diags: Diagnostics,
        registry: Registry,
        inputs: &VarInputs,
    ) -> Result<Session, Failure> {
        Session::build(cfg, diags, registry, inputs, true)
    }

    fn build(
        mut cfg: Config,
        mut diags: Diagnostics,
        registry: Registry,
        inputs: &VarInputs,
        check: bool,
    ) -> Result<Session, Failure> {
        let (vars, var_diags) = vars::resolve(&mut cfg, inputs);
        diags.0.extend(var_diags.0);
        let graph = match graph::build(&cfg, &vars, &registry) {
            Ok(g) => Some(g),
            Err(d) => {
                diags.0.extend(d.0);
                None
            }
        };
        if diags.has_errors() {
            diags.sort();
            return Err(Failure { sources: cfg.sources.clone(), diags });
        }
        let graph = graph.unwrap_or_default();
        let warnings = diags;
        let s = Session {
            cfg,
            vars,
            graph,
            registry,
            files_read: Mutex::new(BTreeMap::new()),
            provider_configs: RwLock::new(HashMap::new()),
            for_each: Mutex::new(HashMap::new()),
            warnings,
            discovered: BTreeMap::new(),
            gone: Mutex::new(BTreeSet::new()),
        };
        let mut diags = if check { s.check_expressions() } else { Diagnostics::default() };
        diags.0.extend(crate::refactor::check(&s).0);
        if diags.has_errors() {
            diags.sort();
            return Err(Failure { sources: s.cfg.sources.clone(), diags });
        }
        Ok(s)
    }

    /// Evaluates every expression with nothing live known yet (live values are "known after
    /// apply"), so that what does not depend on them is checked before anything is read: a
    /// function given a wrong argument, a missing file, a value of the wrong type.
    pub fn check_expressions(&self) -> Diagnostics {
        let values = Values::for_session(self);
        let mut diags = Diagnostics::default();
        for inst in &self.graph.instances {
            match self.eval_instance(&inst.addr, &values) {
                Ok((attrs, _)) => self.check_cluster_names(&inst.addr, &attrs, &mut diags),
                Err(d) => diags.0.extend(d.0),
            }
        }
        let scope = self.scope(None, &values);
        let exprs = self
            .cfg
            .outputs
            .values()
            .map(|o| &o.value)
            .chain(self.cfg.providers.values().flat_map(|b| b.attrs.values().map(|a| &a.expr)))
            .chain(self.cfg.checks.iter().filter(|c| c.for_each.is_none()).flat_map(|c| c.condition.iter()));
        for e in exprs {
            if let Err(d) = eval(e, &scope) {
                diags.push(d);
            }
        }
        diags
    }

    /// Every attribute whose schema says it names clusters (`cluster`, `source`, `clusters`, …)
    /// names keys of `[clusters]`; a miss is reported at the attribute, with the closest key, and
    /// with the key whose GKE `name` it is when it is one.
    fn check_cluster_names(&self, addr: &Addr, attrs: &Map, diags: &mut Diagnostics) {
        let (Some(block), Some((_, schema))) = (self.graph.block_of(&self.cfg, addr), self.provider_of(addr)) else {
            return;
        };
        for a in schema.attrs.iter().filter(|a| a.names_cluster) {
            let (Some(v), Some(at)) = (attrs.get(&a.name), block.attrs.get(&a.name)) else { continue };
            let named: Vec<&str> = match v {
                Value::String(s) => vec![s.as_str()],
                Value::List(l) => {
                    l.iter().filter_map(|x| if let Value::String(s) = x { Some(s.as_str()) } else { None }).collect()
                }
                _ => vec![],
            };
            let known = &self.graph.cluster_names;
            for n in named.into_iter().filter(|n| !known.iter().any(|k| k == n)) {
                let mut d = Diagnostic::error(
                    format!("`{}` names cluster `{n}`, which is not a key of [clusters]", a.name),
                    at.expr.span,
                )
                .label("not declared under [clusters]");
                let help = match self.key_with_gke_name(n) {
                    Some(k) => Some(format!(
                        "`{n}` is the GKE name of the cluster declared as [clusters.{k}]: use the key `{k}`"
                    )),
                    None => crate::config::suggest(n, known.iter().map(String::as_str)),
                };
                if let Some(h) = help {
                    d = d.help(h);
                } else if known.is_empty() {
                    d = d.help("declare it as [clusters.NAME] with its location");
                }
                diags.push(d);
            }
        }
    }

    /// The `[clusters]` key whose literal `name` (the GKE cluster name) is `gke_name`.
    fn key_with_gke_name(&self, gke_name: &str) -> Option<String> {
        let scope_values = Values::default();
        self.cfg.blocks.iter().filter(|(b, _)| b.mode == Mode::Cluster).find_map(|(b, block)| {
            let e = &block.attrs.get("name")?.expr;
            let v = eval(e, &self.scope(None, &scope_values)).ok()?.value;
            (v.to_interpolated().as_deref() == Some(gke_name)).then(|| b.name.clone())
        })
    }

    /// A failure pointing into this session's files.
    pub fn failure(&self, diags: Diagnostics) -> Failure {
        Failure { sources: self.cfg.sources.clone(), diags }
    }

    /// Evaluates every `[providers.NAME]` table and hands it to its provider.
    pub async fn configure(&self) -> Result<(), Diagnostics> {
        let mut diags = Diagnostics::default();
        let empty = Values::default();
        for p in self.registry.providers() {
            let mut m = Map::new();
            if let Some(block) = self.cfg.providers.get(p.name()) {
                for (name, attr) in &block.attrs {
                    match eval(&attr.expr, &self.scope(None, &empty)) {
                        Ok(r) if r.value.has_unknown() => diags
                            .push(Diagnostic::error("provider settings must be known before planning", attr.expr.span)),
                        Ok(r) => {
                            m.insert(name.clone(), r.value);
                        }
                        Err(d) => diags.push(d),
                    }
                }
            }
            if let Err(e) = p.configure(&m).await {
                let d = match self.cfg.providers.get(p.name()) {
                    Some(b) => Diagnostic::error(format!("provider {} rejected its settings", p.name()), b.span)
                        .label(e.to_string()),
                    None => Diagnostic::global(format!("provider {}: {e}", p.name())),
                };
                diags.push(d);
            }
            self.provider_configs.write().unwrap_or_else(|e| e.into_inner()).insert(p.name().to_string(), Arc::new(m));
        }
        if diags.has_errors() { Err(diags) } else { Ok(()) }
    }

    /// Operations at once when `--parallelism` is not given: 10 per cluster of `[clusters]` (at
    /// least 10), so a fleet is worked on as wide as its API servers allow, each of which the
    /// provider holds to its own budget (`max_requests_per_cluster`), and Google's APIs to
    /// their rate limits.
    pub fn default_parallelism(&self) -> usize {
        let clusters = self.graph.instances.iter().filter(|i| i.addr.block.mode == crate::addr::Mode::Cluster).count();
        (10 * clusters).clamp(10, 10_000)
    }

    /// The parallelism to use: the one given, else [`Session::default_parallelism`].
    pub fn parallelism(&self, given: Option<u32>) -> usize {
        given.map_or_else(|| self.default_parallelism(), |n| n.max(1) as usize)
    }

    /// The call context for a provider.
    pub fn ctx(&self, provider: &dyn Provider, clusters: &Arc<BTreeMap<String, Map>>) -> CallContext {
        let config = self
            .provider_configs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(provider.name())
            .cloned()
            .unwrap_or_default();
        CallContext {
            config,
            clusters: clusters.clone(),
            dir: self.cfg.dir.clone(),
            timeout: None,
            create_before_destroy: false,
        }
    }

    /// The provider and schema of an instance's type.
    pub fn provider_of(&self, addr: &Addr) -> Option<(&Arc<dyn Provider>, &Arc<TypeSchema>)> {
        self.registry.lookup(addr.block.mode != Mode::Managed, &addr.block.ty)
    }

    /// The provider and schema of a managed type by name (for objects only in state).
    pub fn managed_type(&self, ty: &str) -> Option<(&Arc<dyn Provider>, &Arc<TypeSchema>)> {
        self.registry.lookup(false, ty)
    }

    /// A scope over `objects`, with `each` for a `for_each` instance.
    pub fn scope<'a>(&'a self, each: Option<(&'a Value, &'a Value)>, objects: &'a dyn Objects) -> Scope<'a> {
        Scope {
            vars: &self.vars.values,
            sensitive_vars: &self.vars.sensitive,
            each,
            objects,
            dir: &self.cfg.dir,
            files: Some(&self.files_read),
        }
    }

    /// Evaluates the attributes of instance `addr` against `objects`: the values, and the names
    /// of attributes that read something sensitive.
    pub fn eval_instance(&self, addr: &Addr, objects: &dyn Objects) -> Result<(Map, BTreeSet<String>), Diagnostics> {
        let mut diags = Diagnostics::default();
        let Some(block) = self.graph.block_of(&self.cfg, addr) else {
            return Err(Diagnostic::global(format!("{addr} is not in the desired state")).into());
        };
        // A cluster made by for_each is keyed by its name.
        let each_key = match self.graph.sources.get(addr) {
            Some(_) => Some(addr.block.name.clone()),
            None => addr.key.clone(),
        };
        let each_value = match (&block.for_each, &each_key) {
            (Some(fe), Some(k)) => {
                let cached = self.for_each.lock().unwrap_or_else(|e| e.into_inner()).get(&block.addr).cloned();
                let all = match cached {
                    Some(a) => a,
                    None => {
                        let r = eval(fe, &self.scope(None, objects)).map_err(Diagnostics::from)?;
                        let inst = for_each_instances(&r.value).map_err(|m| {
                            Diagnostics::from(Diagnostic::error("invalid `for_each`", fe.span).label(m))
                        })?;
                        let a: Arc<BTreeMap<String, Value>> = Arc::new(inst.into_iter().collect());
                        // Values still unknown (at plan time) must be evaluated again at apply.
                        if !a.values().any(Value::has_unknown) {
                            self.for_each
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(block.addr.clone(), a.clone());
                        }
                        a
                    }
                };
                Some(all.get(k).cloned().unwrap_or(Value::Unknown))
            }
            _ => None,
        };
        let key = each_key.map(Value::String);
        let each = match (&key, &each_value) {
            (Some(k), Some(v)) => Some((k, v)),
            _ => None,
        };
        let scope = self.scope(each, objects);
        let mut out = Map::new();
        let mut sensitive = BTreeSet::new();
        for (name, attr) in &block.attrs {
            match eval(&attr.expr, &scope) {
                Ok(r) => {
                    if r.sensitive {
                        sensitive.insert(name.clone());
                    }
                    out.insert(name.clone(), r.value);
                }
                Err(d) => diags.push(d),
            }
        }
        if let Some((_, schema)) = self.provider_of(addr) {
            for (name, v) in &out {
                if let Some(a) = schema.get(name)
                    && !crate::provider::type_fits(&a.ty, v)
                {
                    let span = block.attrs.get(name).map(|a| a.expr.span).unwrap_or(block.span);
                    diags.push(
                        Diagnostic::error(format!("wrong type for `{name}`: expected {}", a.ty), span)
                            .label(format!("this evaluates to a {}", v.type_name())),
                    );
                }
            }
        }
        if diags.has_errors() { Err(diags) } else { Ok((out, sensitive)) }
    }

    /// Reads the data sources that `for_each` expressions wait on (`Graph::deferred`; the rule is
    /// in `graph::expand`) and builds the graph again with their values, until nothing waits;
    /// then checks the expressions against the instances found. Configures the providers when
    /// there is anything to read; a graph without deferred blocks is left as it is.
    pub async fn discover(&mut self) -> Result<(), Diagnostics> {
        if self.graph.deferred.is_empty() {
            return Ok(());
        }
        self.configure().await?;
        let empty = Arc::new(BTreeMap::new());
        // Each round reads what the deferred blocks wait on; a data source whose own inputs came
        // from an earlier read waits a round. The number of data blocks bounds the rounds.
        for _ in 0..=self.cfg.blocks.len() {
            let waiting: BTreeSet<BlockAddr> = self.graph.deferred.values().flatten().cloned().collect();
            if waiting.is_empty() {
                break;
            }
            let values = Values::for_session(self);
            let mut data = self.graph.data.clone();
            for b in waiting {
                let addr = b.instance(None);
                let span = self.cfg.blocks.get(&b).map_or(Default::default(), |blk| blk.span);
                let (config, _) = self.eval_instance(&addr, &values)?;
                let Some((p, schema)) = self.provider_of(&addr) else {
                    return Err(Diagnostic::error(format!("{addr}: no provider for its type"), span).into());
                };
                let ctx = self.ctx(p.as_ref(), &empty);
                let obj = crate::provider::retry_read(|| p.read_data(&b.ty, &config, &ctx)).await.map_err(|e| {
                    Diagnostics::from(
                        Diagnostic::error(format!("cannot read {addr}, which a for_each needs"), span)
                            .label(e.to_string()),
                    )
                })?;
                let mut sensitive: BTreeSet<String> =
                    schema.attrs.iter().filter(|a| a.sensitive).map(|a| a.name.clone()).collect();
                sensitive.extend(obj.sensitive.iter().cloned());
                data.insert(addr.clone(), ObjectValue { attrs: obj.attrs.clone(), sensitive: Arc::new(sensitive) });
                self.discovered.insert(addr, (config, obj));
            }
            self.graph = graph::build_with(&self.cfg, &self.vars, &self.registry, &data)?;
        }
        if let Some(b) = self.graph.deferred.keys().next() {
            let span =
                self.cfg.blocks.get(b).and_then(|blk| blk.for_each.as_ref()).map_or(Default::default(), |e| e.span);
            return Err(Diagnostic::error("invalid `for_each`", span)
                .label("its data sources never became known")
                .into());
        }
        let mut diags = self.check_expressions();
        if diags.has_errors() {
            diags.sort();
            return Err(diags);
        }
        Ok(())
    }

    /// The settings of every declared cluster, evaluated (its name defaulting to its key); they
    /// must be known before planning.
    pub fn cluster_configs(&self, values: &Values) -> Result<BTreeMap<String, Map>, Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut out = BTreeMap::new();
        for addr in self.graph.instances.iter().map(|i| &i.addr).filter(|a| a.block.mode == Mode::Cluster) {
            let (mut config, _) = match self.eval_instance(addr, values) {
                Ok(c) => c,
                Err(d) => {
                    diags.0.extend(d.0);
                    continue;
                }
            };
            config.entry("name".to_string()).or_insert_with(|| Value::String(addr.block.name.clone()));
            if config.values().any(Value::has_unknown) {
                let span = self.graph.block_of(&self.cfg, addr).map_or(Default::default(), |b| b.span);
                diags.push(
                    Diagnostic::error("cluster settings must be known before planning", span)
                        .help("use variables and literals in [clusters] tables"),
                );
                continue;
            }
            out.insert(addr.block.name.clone(), config);
        }
        if diags.has_errors() { Err(diags) } else { Ok(out) }
    }

    /// Reads every declared cluster (concurrently), and every cluster that left `[clusters]` while
    /// objects of `state` still live in it (looked up with its recorded settings, so they can be
    /// read and deleted); they are the context of every provider call.
    pub async fn read_clusters(
        &self,
        values: &Values,
        state: &crate::state::State,
    ) -> Result<Arc<BTreeMap<String, Map>>, Diagnostics> {
        let declared = self.cluster_configs(values)?;
        let mut departed: Vec<(String, Map)> = Vec::new();
        for name in self.clusters_in(state).into_iter().filter(|n| !declared.contains_key(n)) {
            match state.clusters.get(&name) {
                Some(config) => departed.push((name, config.clone())),
                None => {
                    return Err(Diagnostics::from(Diagnostic::global(format!(
                        "objects in state live in cluster `{name}`, which is not declared under [clusters] and whose settings the state does not record (it was written before meshform recorded them): declare it again so its objects can be removed, or, if the cluster is gone, `meshform state rm` them"
                    ))));
                }
            }
        }
        let empty = Arc::new(BTreeMap::new());
        let Some((p, _)) = self.registry.lookup(true, crate::addr::CLUSTER_TYPE) else {
            return if declared.is_empty() && departed.is_empty() {
                Ok(empty)
            } else {
                Err(Diagnostics::from(Diagnostic::global("no cluster provider")))
            };
        };
        // The block that declares a cluster (a `for_each` one declares many, each under its key).
        let span_of = |name: &str| {
            let instance =
                self.graph.instances.iter().find(|i| i.addr.block.mode == Mode::Cluster && i.addr.block.name == name);
            instance.and_then(|i| self.graph.block_of(&self.cfg, &i.addr)).map_or(Default::default(), |b| b.span)
        };
        let reads = declared.iter().map(|(n, c)| (n, c, true)).chain(departed.iter().map(|(n, c)| (n, c, false))).map(
            |(name, config, is_declared)| {
                let (p, empty) = (p.clone(), empty.clone());
                async move {
                    let ctx = self.ctx(p.as_ref(), &empty);
                    match p.read_data(crate::addr::CLUSTER_TYPE, config, &ctx).await {
                        Ok(obj) => Ok((name.clone(), Some(obj.attrs))),
                        // A departed cluster that no longer exists: its objects went with it.
                        Err(e) if !is_declared && e.kind == crate::provider::ErrorKind::NotFound => {
                            Ok((name.clone(), None))
                        }
                        Err(e) if is_declared => Err(Diagnostics::from(
                            Diagnostic::error(format!("cannot look up cluster `{name}`"), span_of(name))
                                .label(e.to_string()),
                        )),
                        Err(e) => Err(Diagnostics::from(Diagnostic::global(format!(
                            "cluster `{name}` left [clusters] but objects in state still live in it, and it cannot be looked up with the settings recorded for it ({}): {e}; declare it again so its objects can be removed, or, if the cluster is gone, `meshform state rm` them",
                            describe_config(config)
                        )))),
                    }
                }
            },
        );
        let results = futures::future::join_all(reads).await;
        let mut diags = Diagnostics::default();
        let mut out = BTreeMap::new();
        let mut gone = BTreeSet::new();
        for r in results {
            match r {
                Ok((name, Some(attrs))) => {
                    out.insert(name, attrs);
                }
                Ok((name, None)) => {
                    gone.insert(name);
                }
                Err(d) => diags.0.extend(d.0),
            }
        }
        *self.gone.lock().unwrap_or_else(|e| e.into_inner()) = gone;
        if diags.has_errors() {
            return Err(collapse_same(diags));
        }
        let declared_only: BTreeMap<String, Map> =
            out.iter().filter(|(n, _)| declared.contains_key(*n)).map(|(n, a)| (n.clone(), a.clone())).collect();
        self.set_clusters(values, &declared_only);
        Ok(Arc::new(out))
    }

    /// The clusters objects of `state` live in (name), by the attributes their types' schemas
    /// mark as naming clusters.
    pub fn clusters_in(&self, state: &crate::state::State) -> std::collections::BTreeSet<String> {
        state.objects.values().flat_map(|r| self.clusters_named(r, false)).collect()
    }

    /// The clusters a recorded object names, by the attributes its type's schema marks
    /// `names_cluster` (only `lives_in`: the one it lives in).
    fn clusters_named(&self, r: &crate::state::ObjectRecord, lives_in: bool) -> Vec<String> {
        let Some((_, schema)) = self.registry.lookup(false, &r.ty) else { return Vec::new() };
        let attrs = schema.attrs.iter().filter(|a| a.names_cluster && (a.lives_in || !lives_in));
        let values = attrs.filter_map(|a| r.attributes.get(&a.name));
        let names = values.flat_map(|v| match v {
            Value::List(l) => l.iter().collect(),
            one => vec![one],
        });
        names.filter_map(|v| v.as_str().map(str::to_string)).collect()
    }

    /// The clusters found gone by this run's cluster reads.
    pub fn gone_clusters(&self) -> BTreeSet<String> {
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a recorded object names a gone cluster in any attribute (it cannot be looked at
    /// in bulk, only read on its own).
    pub fn names_gone(&self, r: &crate::state::ObjectRecord) -> bool {
        let gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        !gone.is_empty() && self.clusters_named(r, false).iter().any(|c| gone.contains(c))
    }

    /// The gone cluster a recorded object lived in (by the attribute its schema marks
    /// `lives_in`), if it is one: the object went with it.
    pub fn gone_home(&self, r: &crate::state::ObjectRecord) -> Option<String> {
        let gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        if gone.is_empty() {
            return None;
        }
        self.clusters_named(r, true).into_iter().find(|c| gone.contains(c))
    }

    /// Makes clusters read earlier in this run the values of `[clusters.NAME]` references.
    pub fn set_clusters(&self, values: &Values, clusters: &BTreeMap<String, Map>) {
        for (name, attrs) in clusters {
            let block = BlockAddr { mode: Mode::Cluster, ty: crate::addr::CLUSTER_TYPE.into(), name: name.clone() };
            values.set(Addr { block, key: None }, ObjectValue { attrs: attrs.clone(), sensitive: Default::default() });
        }
    }
}

/// A cluster's recorded settings, for a message: `key value` pairs.
fn describe_config(config: &Map) -> String {
    config.iter().filter_map(|(k, v)| v.to_interpolated().map(|v| format!("{k} {v}"))).collect::<Vec<_>>().join(", ")
}

/// The values of instances known so far in a run; what references resolve to.
#[derive(Default)]
pub struct Values {
    map: RwLock<HashMap<Addr, ObjectValue>>,
    keys: BTreeMap<BlockAddr, Vec<String>>,
    clusters: Vec<String>,
}

impl Values {
    /// An empty store for a session's graph.
    pub fn for_session(s: &Session) -> Values {
        // The data sources read before expansion are known from the start.
        let mut map = HashMap::with_capacity(s.graph.instances.len());
        map.extend(s.graph.data.iter().map(|(a, v)| (a.clone(), v.clone())));
        Values { map: RwLock::new(map), keys: s.graph.keys.clone(), clusters: s.graph.cluster_names.clone() }
    }

    /// Records an instance's value.
    pub fn set(&self, addr: Addr, v: ObjectValue) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).insert(addr, v);
    }

    /// An instance's value, if known.
    pub fn get(&self, addr: &Addr) -> Option<ObjectValue> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).get(addr).cloned()
    }
}

impl Objects for Values {
    fn instance(&self, addr: &Addr) -> Option<ObjectValue> {
        self.get(addr)
    }
    fn keys(&self, block: &BlockAddr) -> Option<Vec<String>> {
        self.keys.get(block).cloned()
    }
    fn cluster_names(&self) -> Vec<String> {
        self.clusters.clone()
    }
}

/// Cluster lookups that failed the same way (no credentials, an endpoint that refuses) are one
/// diagnostic naming every cluster, not one per cluster.
fn collapse_same(diags: Diagnostics) -> Diagnostics {
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut names: Vec<Vec<String>> = Vec::new();
    // Compared without the cluster's own name and without URLs (which name it and its location).
    let mut keys: Vec<Option<String>> = Vec::new();
    for d in diags.0 {
        let name = d.summary.strip_prefix("cannot look up cluster ").map(str::to_string);
        let key = name.as_ref().zip(d.label.as_ref()).map(|(n, l)| {
            let l = l.replace(n.trim_matches('`'), "\u{0}");
            l.split(' ').filter(|w| !w.starts_with("http")).collect::<Vec<_>>().join(" ")
        });
        let same = (0..out.len()).find(|&i| key.is_some() && keys[i] == key && out[i].span == d.span);
        if same.is_none() {
            keys.push(key);
        }
        match (same, name) {
            (Some(i), Some(n)) => names[i].push(n),
            (_, n) => {
                names.push(n.into_iter().collect());
                out.push(d);
            }
        }
    }
    for (d, n) in out.iter_mut().zip(&names) {
        if n.len() > 1 {
            d.summary = format!("cannot look up clusters {}", n.join(", "));
        }
    }
    Diagnostics(out)
}
