//! `import`, `state list/show/rm` and `force-unlock`.

use std::path::{Path, PathBuf};

use meshform_engine::addr::Addr;
use meshform_engine::session::Failure;
use meshform_engine::state::State;
use meshform_engine::state::codec::Codec;
use meshform_engine::state::handle::Backend;
use meshform_engine::state::local::LocalStore;

use super::open::{backend_of, open, read};
use super::{Out, load, registry};
use crate::exit::OK;
use crate::{StateCommand, VarArgs};

pub(crate) async fn cmd_import(out: &Out, file: &Path, vars: &VarArgs, address: &str, id: &str) -> u8 {
    let mut s = match load(out, file, vars, Default::default()) {
        Ok(s) => s,
        Err(c) => return c,
    };
    if let Err(c) = super::discover(out, &mut s).await {
        return c;
    }
    let addr: Addr = match address.parse() {
        Ok(a) => a,
        Err(e) => return out.error(&e),
    };
    if let Err(d) = meshform_engine::import::check_address(&s, &addr) {
        return out.diags(&s, d);
    }
    let mut opened = match open(out, &s.cfg, "import", file).await {
        Ok(o) => o,
        Err(c) => return c,
    };
    let imported = match meshform_engine::import::import(&s, &mut opened.state, &addr, id).await {
        Ok(i) => i,
        Err(d) => return out.diags(&s, d),
    };
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    if let Err(m) = opened.write().await {
        return out.error(&m);
    }
    opened.close().await;
    println!(
        "Imported {id} as {addr}. Run `meshform plan {}` to see how it differs from the desired state.",
        file.display()
    );
    OK
}

fn config_of(out: &Out, file: &Path) -> Result<meshform_engine::config::Config, u8> {
    meshform_engine::config::load(file, &registry())
        .map_err(|(sources, diags)| out.failure(&Failure { sources, diags }))
}

pub(crate) async fn cmd_state(out: &Out, sc: StateCommand) -> u8 {
    match sc {
        StateCommand::List { file } => list(out, &file).await,
        StateCommand::Show { file, address } => show(out, &file, &address).await,
        StateCommand::Rm { file, address } => rm(out, &file, &address).await,
        StateCommand::Mv { file, from, to } => mv(out, &file, &from, &to).await,
        StateCommand::Pull { file } => pull(out, &file).await,
        StateCommand::Push { file, state_file, force } => push(out, &file, &state_file, force).await,
        StateCommand::History { file } => history(out, &file).await,
        StateCommand::Rollback { file, revision } => rollback(out, &file, &revision).await,
        StateCommand::Migrate { file, to } => migrate(out, &file, &to).await,
    }
}

pub(crate) async fn snapshot(out: &Out, file: &Path) -> Result<State, u8> {
    let cfg = config_of(out, file)?;
    read(out, &cfg).await.map(|(_, snap)| snap.state)
}

async fn list(out: &Out, file: &Path) -> u8 {
    match snapshot(out, file).await {
        Ok(s) => {
            for a in s.objects.keys() {
                println!("{a}");
            }
            OK
        }
        Err(c) => c,
    }
}

async fn show(out: &Out, file: &Path, address: &str) -> u8 {
    let addr: Addr = match address.parse() {
        Ok(a) => a,
        Err(e) => return out.error(&e),
    };
    let state = match snapshot(out, file).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    let Some(r) = state.objects.get(&addr) else { return out.error(&format!("{addr} is not in state")) };
    println!("# {addr} ({}), id {:?}", r.ty, r.id);
    let w = r.attributes.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in &r.attributes {
        let shown = if r.sensitive_attributes.contains(k) { "(sensitive)".to_string() } else { v.to_string() };
        println!("{k:<w$} = {shown}");
    }
    if !r.dependencies.is_empty() {
        println!("# depends on: {}", r.dependencies.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    }
    OK
}

async fn rm(out: &Out, file: &Path, address: &str) -> u8 {
    let cfg = match config_of(out, file) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let addr: Addr = match address.parse() {
        Ok(a) => a,
        Err(e) => return out.error(&e),
    };
    let mut opened = match open(out, &cfg, "state rm", file).await {
        Ok(o) => o,
        Err(c) => return c,
    };
    if opened.state.objects.remove(&addr).is_none() {
        opened.close().await;
        return out.error(&format!("{addr} is not in state"));
    }
    if let Err(m) = opened.write().await {
        return out.error(&m);
    }
    opened.close().await;
    println!("Removed {addr} from state (the object itself was not touched).");
    OK
}

/// `state mv FILE FROM TO`: moves records (dependencies that name them follow); the objects are
/// not touched.
async fn mv(out: &Out, file: &Path, from: &str, to: &str) -> u8 {
    let cfg = match config_of(out, file) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let (from, to): (Addr, Addr) = match (from.parse(), to.parse()) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return out.error(&e),
    };
    let mut opened = match open(out, &cfg, "state mv", file).await {
        Ok(o) => o,
        Err(c) => return c,
    };
    let moved = match meshform_engine::refactor::move_records(&mut opened.state, &from, &to) {
        Ok(m) if m.is_empty() => {
            opened.close().await;
            return out.error(&format!("{from} is not in state (`meshform state list` shows what is)"));
        }
        Ok(m) => m,
        Err(m) => {
            opened.close().await;
            return out.error(&format!("{m}; nothing was moved"));
        }
    };
    if let Err(m) = opened.write().await {
        return out.error(&m);
    }
    opened.close().await;
    for (f, t) in &moved {
        println!("Moved {f} to {t}.");
    }
    println!("{} record(s) moved (the objects themselves were not touched).", moved.len());
    OK
}

/// `state pull`: the state as JSON on stdout (decrypted; sensitive values stay hashes).
async fn pull(out: &Out, file: &Path) -> u8 {
    match snapshot(out, file).await {
        Ok(s) => match serde_json::to_string_pretty(&s) {
            Ok(text) => {
                println!("{text}");
                OK
            }
            Err(e) => out.error(&e.to_string()),
        },
        Err(c) => c,
    }
}

/// A state file to push: plain JSON (as `state pull` prints it), or sealed with this state's key
/// (a `meshform-conflict-N.state.json` rescue file).
fn read_state_file(out: &Out, cfg: &meshform_engine::config::Config, path: &Path) -> Result<State, u8> {
    let bytes = std::fs::read(path).map_err(|e| out.error(&format!("cannot read {}: {e}", path.display())))?;
    let codec = super::open::codec_of(cfg).map_err(|m| out.error(&m))?;
    codec.decode_state(&bytes, &path.display().to_string()).map_err(|m| out.error(&m))
}

/// Whether `incoming` may replace `current`: same lineage (or no state yet) and a newer serial.
fn may_replace(current: &State, incoming: &State) -> Result<(), String> {
    if !current.lineage.is_empty() && current.lineage != incoming.lineage {
        return Err(format!(
            "the destination holds another state (lineage {}, not {})",
            current.lineage, incoming.lineage
        ));
    }
    if !current.lineage.is_empty() && incoming.serial <= current.serial {
        return Err(format!(
            "the destination is at serial {}, not older than the incoming serial {}",
            current.serial, incoming.serial
        ));
    }
    Ok(())
}

/// `state push FILE STATE`: replaces the stored state with a state file, lineage and serial
/// checked (`--force`: not checked; the serial still moves past the stored one, so that no plan
/// saved before the push applies after it).
async fn push(out: &Out, file: &Path, state_file: &Path, force: bool) -> u8 {
    let cfg = match config_of(out, file) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let mut incoming = match read_state_file(out, &cfg, state_file) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut opened = match open(out, &cfg, "state push", file).await {
        Ok(o) => o,
        Err(c) => return c,
    };
    if let Err(m) = may_replace(&opened.state, &incoming) {
        if !force {
            opened.close().await;
            return out.error(&format!("{m}; nothing was pushed (--force overrides)"));
        }
        eprintln!("warning: {m}; pushing anyway (--force)");
    }
    incoming.serial = incoming.serial.max(opened.state.serial + 1);
    if let Err(m) = opened.locked.write_exact(&mut incoming).await {
        return out.error(&m);
    }
    opened.close().await;
    println!("Pushed {} to {} (serial {}).", state_file.display(), opened_location(&cfg, out).await, incoming.serial);
    OK
}

async fn opened_location(cfg: &meshform_engine::config::Config, out: &Out) -> String {
    backend_of(out, cfg).await.map(|b| b.location()).unwrap_or_default()
}

/// `state history`: the versions the store keeps, newest first.
async fn history(out: &Out, file: &Path) -> u8 {
    let cfg = match config_of(out, file) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let backend = match backend_of(out, &cfg).await {
        Ok(b) => b,
        Err(c) => return c,
    };
    let revs = match backend.store().history().await {
        Ok(r) => r,
        Err(e) => return out.error(&e.message),
    };
    if revs.is_empty() {
        println!("{} keeps no earlier versions.", backend.location());
        return OK;
    }
    println!("{:<24} {:<22} {:>10}  serial", "VERSION", "WRITTEN", "BYTES");
    for r in revs {
        let serial = match backend.store().get_version(&r.version).await {
            Ok(b) => backend.codec().decode_state(&b, "history").map_or("?".into(), |s| s.serial.to_string()),
            Err(_) => "?".into(),
        };
        let current = if r.current { "  (current)" } else { "" };
        println!("{:<24} {:<22} {:>10}  {serial}{current}", r.version, r.written, r.size);
    }
    OK
}

/// `state rollback VERSION`: writes an earlier version's objects as the next serial (same
/// lineage only).
async fn rollback(out: &Out, file: &Path, version: &str) -> u8 {
    let cfg = match config_of(out, file) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let mut opened = match open(out, &cfg, "state rollback", file).await {
        Ok(o) => o,
        Err(c) => return c,
    };
    let backend = opened.locked.backend().clone();
    let old = match backend.store().get_version(version).await {
        Ok(b) => backend.codec().decode_state(&b, version),
        Err(e) => Err(e.message),
    };
    let old = match old {
        Ok(s) if s.lineage == opened.state.lineage => s,
        Ok(s) => {
            let msg = format!(
                "version {version} belongs to another state (lineage {}, not {})",
                s.lineage, opened.state.lineage
            );
            opened.close().await;
            return out.error(&msg);
        }
        Err(m) => {
            opened.close().await;
            return out.error(&m);
        }
    };
    let from = old.serial;
    opened.state.objects = old.objects;
    opened.state.outputs = old.outputs;
    if let Err(m) = opened.write().await {
        return out.error(&m);
    }
    let serial = opened.state.serial;
    opened.close().await;
    println!("Rolled back to version {version} (serial {from}); written as serial {serial}.");
    OK
}

/// `state migrate FILE --to DEST`: copies the state of FILE's `[state]` to DEST's `[state]`,
/// keeping lineage and serial; refused when the destination holds another lineage or a serial
/// not older.
async fn migrate(out: &Out, file: &Path, to: &Path) -> u8 {
    let (src_cfg, dst_cfg) = match (config_of(out, file), config_of(out, to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let src = match open(out, &src_cfg, "state migrate", file).await {
        Ok(o) => o,
        Err(c) => return c,
    };
    let mut dst = match open(out, &dst_cfg, "state migrate", to).await {
        Ok(o) => o,
        Err(c) => return c,
    };
    let (from, dest) = (src.locked.backend().location(), dst.locked.backend().location());
    if from == dest {
        return out.error("the source and destination are the same state");
    }
    if let Err(m) = may_replace(&dst.state, &src.state) {
        return out.error(&format!("{m}; nothing was copied"));
    }
    let mut state = src.state.clone();
    if let Err(m) = dst.locked.write_exact(&mut state).await {
        return out.error(&m);
    }
    dst.close().await;
    src.close().await;
    println!("Copied the state (lineage {}, serial {}) from {from} to {dest}.", state.lineage, state.serial);
    println!("The source is left as it was; point the desired state's [state] at the new backend.");
    OK
}

/// `force-unlock ID [FILE]`: removes the lock `ID` of FILE's state (without FILE: of a local
/// state in the current directory).
pub(crate) async fn force_unlock(out: &Out, id: &str, file: Option<&Path>) -> u8 {
    let backends: Vec<Backend> = match file {
        Some(f) => {
            let cfg = match config_of(out, f) {
                Ok(c) => c,
                Err(c) => return c,
            };
            match backend_of(out, &cfg).await {
                Ok(b) => vec![b],
                Err(c) => return c,
            }
        }
        None => std::fs::read_dir(".")
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter_map(|p| p.to_str()?.strip_suffix(".lock").map(PathBuf::from))
                    .map(|state| Backend::new(std::sync::Arc::new(LocalStore::new(state)), Codec::plain()))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut last_err = format!("no lock with id {id} found; give the desired-state file as the second argument");
    for backend in backends {
        match backend.store().force_unlock(id).await {
            Ok(info) if info.who.is_empty() => {
                println!("Removed the broken lock {id} of {}.", backend.location());
                return OK;
            }
            Ok(info) => {
                println!(
                    "Removed the lock {id} held by {} (pid {}, operation `{}`) on {}.",
                    info.who,
                    info.pid,
                    info.operation,
                    backend.location()
                );
                return OK;
            }
            Err(e) => last_err = e.message,
        }
    }
    out.error(&last_err)
}

/// `workspace list`: the states beside this one (`NAME` is the default, `NAME.W` workspace W).
pub(crate) async fn workspace_list(out: &Out, file: &Path) -> u8 {
    let cfg = match config_of(out, file) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let backend = match backend_of(&Out { state: Default::default(), ..out.clone() }, &cfg).await {
        Ok(b) => b,
        Err(c) => return c,
    };
    let default = cfg.state.get("name").map_or_else(
        || cfg.path.file_stem().map_or("meshform".into(), |s| s.to_string_lossy().into_owned()),
        |n| n.value.clone(),
    );
    let names = match backend.store().names().await {
        Ok(n) => n,
        Err(e) => return out.error(&e.message),
    };
    let current = out.state.workspace.as_deref();
    let mark = |w: Option<&str>| if w == current { "*" } else { " " };
    println!("{} default", mark(None));
    let prefix = format!("{default}.");
    for n in &names {
        if let Some(w) = n.strip_prefix(&prefix) {
            println!("{} {w}", mark(Some(w)));
        }
    }
    OK
}
