//! Opening the state: the one place every command finds the store of a desired state (`[state]`
//! and `--workspace`), reads it without the lock (plan, drift, state list/show) or takes the lock
//! (`--lock-timeout`) and replays an interrupted run's journal (apply, destroy, import, state rm).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshform_engine::config::Config;
use meshform_engine::diag::Diagnostic;
use meshform_engine::session::Failure;
use meshform_engine::state::State;
use meshform_engine::state::codec::{Codec, StateKey};
use meshform_engine::state::handle::{Backend, Locked, OpenError, Snapshot};
use meshform_engine::state::local::LocalStore;
use meshform_engine::state::lock::LockError;
use meshform_engine::state::store::StateStore;

use super::Out;

/// The state options every command shares (`--workspace`, `--lock-timeout`).
#[derive(Clone, Debug, Default)]
pub(crate) struct StateOpts {
    /// `--workspace`: a state beside the default one, named `NAME.WORKSPACE`.
    pub workspace: Option<String>,
    /// `--lock-timeout`: how long to wait for a held lock.
    pub lock_timeout: Duration,
}

/// An opened state: its lock held, its content.
pub(crate) struct Opened {
    /// The lock and the store, until [`Opened::close`].
    pub locked: Locked,
    /// The state, journal recovered.
    pub state: State,
}

impl Opened {
    /// Writes the state (the next serial).
    pub async fn write(&mut self) -> Result<(), String> {
        self.locked.write(&mut self.state).await
    }

    /// Releases the lock; a failure to is a warning (the lock expires, or `force-unlock` removes it).
    pub async fn close(self) {
        let id = self.locked.lock_info().id.clone();
        if let Err(m) = self.locked.release().await {
            eprintln!("warning: could not release the state lock {id}: {m}");
        }
    }
}

/// The state's name: `[state] name`, else the desired-state file's stem; with a workspace,
/// `NAME.WORKSPACE`.
fn state_name(cfg: &Config, opts: &StateOpts) -> Result<String, String> {
    let base = match cfg.state.get("name") {
        Some(s) => s.value.clone(),
        None => cfg.path.file_stem().map_or("meshform".into(), |s| s.to_string_lossy().into_owned()),
    };
    match &opts.workspace {
        None => Ok(base),
        Some(w) if !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') => {
            Ok(format!("{base}.{w}"))
        }
        Some(w) => Err(format!("--workspace {w:?}: a workspace name has lowercase letters, digits and `-` only")),
    }
}

/// The store of a desired state, built from its `[state]` settings without any network call.
pub(crate) async fn store_of(
    cfg: &Config,
    name: &str,
    workspace: bool,
) -> Result<Arc<dyn StateStore>, Vec<Diagnostic>> {
    let st = &cfg.state;
    match st.backend_name() {
        "local" => {
            let unknown = st.unknown("local", &["path", "name", "encryption_key_file"]);
            if !unknown.is_empty() {
                return Err(unknown);
            }
            Ok(Arc::new(match (st.get("path"), workspace) {
                (Some(p), false) => LocalStore::new(cfg.dir.join(&p.value)),
                (Some(p), true) => LocalStore::new(cfg.dir.join(&p.value).with_file_name(format!("{name}.state.json"))),
                (None, _) => LocalStore::beside(&cfg.path, name),
            }))
        }
        "gcs" => {
            let env: std::collections::HashMap<String, String> = std::env::vars().collect();
            Ok(Arc::new(meshform_gcp::state::GcsStore::configure(st, name, &env)?))
        }
        "kubernetes" => {
            let env: std::collections::HashMap<String, String> = std::env::vars().collect();
            let context = kube_context(cfg)?;
            let kubeconfig = env
                .get("KUBECONFIG")
                .filter(|k| !k.is_empty())
                .map(|k| std::path::PathBuf::from(k.split(':').next().unwrap_or(k)))
                .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".kube/config")));
            Ok(Arc::new(meshform_kube::state::KubeStore::configure(st, name, kubeconfig, context).await?))
        }
        other => {
            let span = st.backend.as_ref().map(|(_, s)| *s).unwrap_or_default();
            Err(vec![
                Diagnostic::error(format!("unsupported state backend `{other}`"), span)
                    .label("expected \"local\", \"gcs\" or \"kubernetes\""),
            ])
        }
    }
}

/// The kubeconfig context of the kubernetes backend: `context`, or that of `cluster` (a key of
/// `[clusters]` whose context is known without reading anything live: its `context`, or the
/// name gcloud gives it from literal `project`, `location` and `name`).
fn kube_context(cfg: &Config) -> Result<Option<String>, Vec<Diagnostic>> {
    use meshform_engine::addr::{BlockAddr, Mode as AddrMode};
    use meshform_engine::expr::ExprKind;
    let st = &cfg.state;
    if let Some(c) = st.get("context") {
        return Ok(Some(c.value.clone()));
    }
    let Some(cluster) = st.get("cluster") else { return Ok(None) };
    let key = BlockAddr { mode: AddrMode::Cluster, ty: "cluster".into(), name: cluster.value.clone() };
    let Some(block) = cfg.blocks.get(&key) else {
        return Err(vec![
            Diagnostic::error(format!("no cluster `{}` under [clusters]", cluster.value), cluster.span)
                .label("a key of [clusters]"),
        ]);
    };
    let literal = |k: &str| match block.attrs.get(k).map(|a| &a.expr.kind) {
        Some(ExprKind::Lit(v)) => v.as_str().map(String::from),
        _ => None,
    };
    if let Some(c) = literal("context") {
        return Ok(Some(c));
    }
    if literal("connect").is_some_and(|c| c != "kubeconfig") {
        return Err(vec![
            Diagnostic::error("the state backend reaches its cluster by a kubeconfig context", cluster.span)
                .label(format!("cluster `{}` connects through a GKE lookup", cluster.value))
                .help("set `context` in [state] (or give the cluster a literal `context`)"),
        ]);
    }
    match (literal("project"), literal("location"), literal("name").or(Some(cluster.value.clone()))) {
        (Some(p), Some(l), Some(n)) => Ok(Some(format!("gke_{p}_{l}_{n}"))),
        _ => Err(vec![
            Diagnostic::error("the state's cluster must be known without reading anything live", cluster.span)
                .label(format!("cluster `{}` has no literal `context`, or `project` and `location`", cluster.value))
                .help("set `context` in [state]"),
        ]),
    }
}

/// The codec of `cfg`'s state: sealing with the state key when one is given
/// (`MESHFORM_STATE_KEY`, else the first line of `[state] encryption_key_file`), older keys
/// (`MESHFORM_STATE_OLD_KEYS`, or the file's further lines) still opening. It also keys the
/// digests of sensitive values, for the whole run.
pub(crate) fn codec_of(cfg: &Config) -> Result<Codec, String> {
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    let mut texts: Vec<String> = Vec::new();
    if let Some(k) = env("MESHFORM_STATE_KEY") {
        texts.push(k);
    } else if let Some(f) = cfg.state.get("encryption_key_file") {
        let path = cfg.dir.join(&f.value);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the state key file {}: {e}", path.display()))?;
        texts.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
    }
    if texts.is_empty() {
        return Ok(Codec::plain());
    }
    if let Some(old) = env("MESHFORM_STATE_OLD_KEYS") {
        texts.extend(old.split([',', ' ', '\n']).filter(|k| !k.is_empty()).map(String::from));
    }
    let mut keys = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let which = if i == 0 { "the state key".to_string() } else { format!("old state key {i}") };
        keys.push(StateKey::parse(t).map_err(|m| format!("{which}: {m}"))?);
    }
    meshform_engine::value::set_digest_keys(keys.iter().map(|k| (k.id.clone(), k.digest)).collect());
    let current = keys.remove(0);
    Ok(Codec::with_keys(current, keys))
}

/// The backend of desired state `cfg`, or the error printed.
pub(crate) async fn backend_of(out: &Out, cfg: &Config) -> Result<Backend, u8> {
    let name = state_name(cfg, &out.state).map_err(|m| out.error(&m))?;
    let store = store_of(cfg, &name, out.state.workspace.is_some()).await.map_err(|diags| {
        out.failure(&Failure { sources: cfg.sources.clone(), diags: meshform_engine::diag::Diagnostics(diags) })
    })?;
    let codec = codec_of(cfg).map_err(|m| out.error(&m))?;
    Ok(Backend::new(store, codec))
}

/// Reads the state of `cfg` without the lock (one consistent version).
pub(crate) async fn read(out: &Out, cfg: &Config) -> Result<(Backend, Snapshot), u8> {
    let backend = backend_of(out, cfg).await?;
    let snap = backend.read().await.map_err(|m| out.error(&m))?;
    if snap.journaled > 0 {
        eprintln!(
            "note: includes {} finished operation(s) of an interrupted run, still in its journal (the next apply records them)",
            snap.journaled
        );
    }
    Ok((backend, snap))
}

/// Opens the state of desired state `cfg` (`file`) for operation `op`: lock, then read.
pub(crate) async fn open(out: &Out, cfg: &Config, op: &str, file: &Path) -> Result<Opened, u8> {
    let backend = backend_of(out, cfg).await?;
    let (locked, state) = backend.open(op, out.state.lock_timeout).await.map_err(|e| match e {
        OpenError::Lock(e) => out.error(&format!("{e}{}", lock_hint(&e, file))),
        OpenError::Other(m) => out.error(&m),
    })?;
    if let Some(b) = &locked.broke {
        if !meshform_engine::state::lock::provably_stale_here(b) {
            eprintln!(
                "note: removed an expired lock of {} (operation `{}`, since {}): it was not renewed for its {} s TTL",
                b.who, b.operation, b.created, b.ttl_seconds
            );
        } else {
            eprintln!(
                "note: removed a stale lock of pid {} on this host (operation `{}`, since {}): that process is gone",
                b.pid, b.operation, b.created
            );
        }
    }
    if locked.recovered > 0 {
        eprintln!(
            "note: recovered {} finished operation(s) from an interrupted run's journal into the state",
            locked.recovered
        );
    }
    Ok(Opened { locked, state })
}

fn lock_hint(e: &LockError, file: &Path) -> String {
    match e {
        LockError::Held { info, stale: true } => {
            format!("\n  run `meshform force-unlock {} {}` to remove it", info.id, file.display())
        }
        LockError::Held { info, .. } => format!(
            "\n  wait for that run to finish (or pass --lock-timeout); if it is gone, run `meshform force-unlock {} {}`",
            info.id,
            file.display()
        ),
        LockError::Broken { id, .. } => format!(
            "\n  if no other meshform run is using this state, remove it with `meshform force-unlock {id} {}`",
            file.display()
        ),
        LockError::Failed(_) => String::new(),
    }
}
