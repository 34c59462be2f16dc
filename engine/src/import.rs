//! `meshform import`: adopting an existing object into state under a declared address.

use std::collections::BTreeSet;

use crate::addr::{Addr, Mode};
use crate::diag::{Diagnostic, Diagnostics};
use crate::session::{Session, Values};
use crate::state::{ObjectRecord, State};

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    /// The record added to the state.
    pub record: ObjectRecord,
    /// What the provider said the user should hear about.
    pub notes: Vec<String>,
}

/// Refuses an address the desired state does not declare as a managed instance (checked before
/// anything is locked or read, so bad input changes nothing).
pub fn check_address(s: &Session, addr: &Addr) -> Result<(), Diagnostics> {
    if addr.block.mode != Mode::Managed || !s.graph.index.contains_key(addr) {
        return Err(Diagnostic::global(format!(
            "{addr} is not a resource instance in {}; declare it first",
            s.cfg.path.display()
        ))
        .into());
    }
    Ok(())
}

/// Reads the object with provider id `id` and records it in `state` as `addr` (which the desired
/// state must declare and the state must not hold yet). The caller holds the lock and writes
/// the state.
pub async fn import(s: &Session, state: &mut State, addr: &Addr, id: &str) -> Result<Imported, Diagnostics> {
    let global = |m: String| Diagnostics::from(Diagnostic::global(m));
    check_address(s, addr)?;
    if state.objects.contains_key(addr) {
        return Err(global(format!(
            "{addr} is already in state; `meshform state rm` it first to import another object"
        )));
    }
    s.configure().await?;
    let clusters = s.read_clusters(&Values::for_session(s), &crate::state::State::new()).await?;
    let Some((p, schema)) = s.provider_of(addr) else { return Err(global("no provider for that type".into())) };
    let obj = p
        .import(&addr.block.ty, id, &s.ctx(p.as_ref(), &clusters))
        .await
        .map_err(|e| global(format!("cannot import {id} as {addr}: {e}")))?;
    let mut sensitive: BTreeSet<String> = schema.attrs.iter().filter(|a| a.sensitive).map(|a| a.name.clone()).collect();
    sensitive.extend(obj.sensitive);
    let deps = s.graph.instances[s.graph.index[addr]].deps.iter().map(|&d| s.graph.instances[d].addr.clone()).collect();
    let record = ObjectRecord::new(addr.clone(), &addr.block.ty, obj.attrs, &sensitive, deps);
    state.objects.insert(addr.clone(), record.clone());
    // How to reach the clusters it lives in, as apply records them.
    let declared = s.cluster_configs(&Values::for_session(s))?;
    for name in s.clusters_in(state) {
        if let Some(config) = declared.get(&name) {
            state.clusters.insert(name, config.clone());
        }
    }
    Ok(Imported { record, notes: obj.notes })
}
