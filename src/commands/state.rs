//! `import`, `state list/show/rm` and `force-unlock`.

use std::path::{Path, PathBuf};

use meshform_engine::addr::Addr;
use meshform_engine::session::Failure;
use meshform_engine::state::State;
use meshform_engine::state::local::LocalBackend;
use meshform_engine::state::lock;

use super::open::open;
use super::{Out, load, registry};
use crate::exit::OK;
use crate::{StateCommand, VarArgs};

pub(crate) async fn cmd_import(out: &Out, file: &Path, vars: &VarArgs, address: &str, id: &str) -> u8 {
    let s = match load(out, file, vars, Default::default()) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let addr: Addr = match address.parse() {
        Ok(a) => a,
        Err(e) => return out.error(&e),
    };
    if let Err(d) = meshform_engine::import::check_address(&s, &addr) {
        return out.diags(&s, d);
    }
    let mut opened = match open(out, &s.cfg, "import", file) {
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
    if let Err(m) = opened.backend.write(&mut opened.state) {
        return out.error(&m);
    }
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

fn backend_of(out: &Out, file: &Path) -> Result<LocalBackend, u8> {
    config_of(out, file).map(|cfg| LocalBackend::for_config(&cfg))
}

/// The state as `state list/show` show it: with an interrupted run's journal, said so.
fn read_state_for_show(b: &LocalBackend) -> Result<State, String> {
    let (state, journaled) = b.read_with_journal()?;
    if journaled > 0 {
        eprintln!(
            "note: includes {journaled} finished operation(s) of an interrupted run, still in its journal (the next apply, plan or drift records them)"
        );
    }
    Ok(state)
}

pub(crate) fn cmd_state(out: &Out, sc: StateCommand) -> u8 {
    match sc {
        StateCommand::List { file } => {
            let b = match backend_of(out, &file) {
                Ok(b) => b,
                Err(c) => return c,
            };
            match read_state_for_show(&b) {
                Ok(s) => {
                    for a in s.objects.keys() {
                        println!("{a}");
                    }
                    OK
                }
                Err(m) => out.error(&m),
            }
        }
        StateCommand::Show { file, address } => {
            let b = match backend_of(out, &file) {
                Ok(b) => b,
                Err(c) => return c,
            };
            let addr: Addr = match address.parse() {
                Ok(a) => a,
                Err(e) => return out.error(&e),
            };
            let state = match read_state_for_show(&b) {
                Ok(s) => s,
                Err(m) => return out.error(&m),
            };
            let Some(r) = state.objects.get(&addr) else { return out.error(&format!("{addr} is not in state")) };
            println!("# {addr} ({}), id {:?}", r.ty, r.id);
            let w = r.attributes.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in &r.attributes {
                let shown = if r.sensitive_attributes.contains(k) { "(sensitive)".to_string() } else { v.to_string() };
                println!("{k:<w$} = {shown}");
            }
            if !r.dependencies.is_empty() {
                println!(
                    "# depends on: {}",
                    r.dependencies.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                );
            }
            OK
        }
        StateCommand::Rm { file, address } => {
            let cfg = match config_of(out, &file) {
                Ok(c) => c,
                Err(c) => return c,
            };
            let addr: Addr = match address.parse() {
                Ok(a) => a,
                Err(e) => return out.error(&e),
            };
            let mut opened = match open(out, &cfg, "state rm", &file) {
                Ok(o) => o,
                Err(c) => return c,
            };
            if opened.state.objects.remove(&addr).is_none() {
                return out.error(&format!("{addr} is not in state"));
            }
            if let Err(m) = opened.backend.write(&mut opened.state) {
                return out.error(&m);
            }
            println!("Removed {addr} from state (the object itself was not touched).");
            OK
        }
    }
}

pub(crate) fn force_unlock(out: &Out, id: &str, file: Option<&Path>) -> u8 {
    let candidates: Vec<PathBuf> = match file {
        Some(f) => match backend_of(out, f) {
            Ok(b) => vec![b.lock_path()],
            Err(c) => return c,
        },
        None => std::fs::read_dir(".")
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "lock"))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut last_err = format!("no lock with id {id} found; give the desired-state file as the second argument");
    for p in candidates {
        match lock::force_unlock(&p, id) {
            Ok(info) if info.who.is_empty() => {
                println!("Removed the broken lock file {} ({id}).", p.display());
                return OK;
            }
            Ok(info) => {
                println!(
                    "Removed the lock {id} held by {} (pid {}, operation `{}`).",
                    info.who, info.pid, info.operation
                );
                return OK;
            }
            Err(m) => last_err = m,
        }
    }
    out.error(&last_err)
}
