//! What `[[moved]]`, `[[removed]]`, `[[import]]` and `meshform state mv` do: moving records
//! between addresses (dependencies that named them follow), and the checks of those tables
//! against the desired state. The planner lays the moves over the state it plans against, so a
//! plan shows each move and what else changes; apply makes the moves durable before anything
//! else runs.

use crate::addr::Addr;
use crate::diag::{Diagnostic, Diagnostics};
use crate::eval::eval;
use crate::session::{Session, Values};
use crate::state::State;

/// One record moved from one address to another.
pub type Move = (Addr, Addr);

/// Moves what `state` records under `from` to `to`. `from` names an instance, or (without a key,
/// when no such single instance is recorded) every instance of a block, each keeping its key
/// under `to`'s block. Nothing recorded under `from` is no move; a record already under a
/// destination is an error (which object is meant is ambiguous), and nothing moves then.
pub fn move_records(state: &mut State, from: &Addr, to: &Addr) -> Result<Vec<Move>, String> {
    let pairs: Vec<Move> = if from.key.is_some() || state.objects.contains_key(from) {
        state.objects.contains_key(from).then(|| (from.clone(), to.clone())).into_iter().collect()
    } else {
        if to.key.is_some() {
            return Err(format!("{from} names a whole block; move it to a block address, not the instance {to}"));
        }
        state
            .objects
            .keys()
            .filter(|a| a.block == from.block)
            .map(|a| (a.clone(), to.block.instance(a.key.clone())))
            .collect()
    };
    if let Some((f, t)) = pairs.iter().find(|(_, t)| state.objects.contains_key(t)) {
        return Err(format!("cannot move {f} to {t}: state already records an object at {t}"));
    }
    if let Some((f, t)) = pairs.iter().find(|(f, t)| f.block.ty != t.block.ty) {
        return Err(format!("cannot move {f} to {t}: an object keeps its type"));
    }
    for (f, t) in &pairs {
        if let Some(mut r) = state.objects.remove(f) {
            r.address = t.clone();
            state.objects.insert(t.clone(), r);
        }
    }
    for r in state.objects.values_mut() {
        for d in &mut r.dependencies {
            if let Some((_, t)) = pairs.iter().find(|(f, _)| f == d) {
                *d = t.clone();
            }
        }
    }
    Ok(pairs)
}

/// The desired state's `[[moved]]` entries applied to a copy of `state`, in order (so chains
/// `a → b`, `b → c` work), with every move made.
pub fn planned_moves(s: &Session, state: &State) -> Result<(State, Vec<Move>), Diagnostics> {
    let mut moved = state.clone();
    let mut all = Vec::new();
    let mut diags = Diagnostics::default();
    for m in &s.cfg.moved {
        match move_records(&mut moved, &m.from, &m.to) {
            Ok(v) => all.extend(v),
            Err(e) => diags.push(Diagnostic::error(e, m.span).label("this [[moved]] entry")),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    Ok((moved, all))
}

/// Checks the refactoring tables against the desired state: a move's `to` and an import's `to`
/// are declared, a move's `from` and a removal's `from` are not, and no address is imported
/// twice.
pub fn check(s: &Session) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let declared_instance = |a: &Addr| s.graph.index.contains_key(a);
    let declared_block = |a: &Addr| s.cfg.blocks.contains_key(&a.block);
    for m in &s.cfg.moved {
        let to_ok = declared_instance(&m.to) || (m.to.key.is_none() && declared_block(&m.to));
        if !to_ok {
            diags.push(
                Diagnostic::error(format!("[[moved]] `to` = {} is not declared in the desired state", m.to), m.span)
                    .label("declare the object's new address, then move it there"),
            );
        }
        if declared_instance(&m.from) || (m.from.key.is_none() && declared_block(&m.from) && m.from.block != m.to.block)
        {
            diags.push(
                Diagnostic::error(
                    format!("[[moved]] `from` = {} is still declared in the desired state", m.from),
                    m.span,
                )
                .label("an object moves away from an address the desired state no longer has"),
            );
        }
    }
    for r in &s.cfg.removed {
        let still = if r.from.key.is_some() { declared_instance(&r.from) } else { declared_block(&r.from) };
        if still {
            diags.push(
                Diagnostic::error(
                    format!("[[removed]] `from` = {} is still declared in the desired state", r.from),
                    r.span,
                )
                .label("remove the block as well, or drop this entry"),
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for i in &s.cfg.imports {
        if !declared_instance(&i.to) {
            diags.push(
                Diagnostic::error(
                    format!("[[import]] `to` = {} is not a resource instance of the desired state", i.to),
                    i.span,
                )
                .label("declare it first: the import takes the object in under it"),
            );
        }
        if !seen.insert(i.to.clone()) {
            diags.push(
                Diagnostic::error(format!("{} is imported twice", i.to), i.span).label("a second [[import]] of it"),
            );
        }
    }
    diags
}

/// The id an `[[import]]` entry gives for `addr`, evaluated (variables only).
pub fn import_id(s: &Session, addr: &Addr) -> Option<Result<String, Diagnostics>> {
    let i = s.cfg.imports.iter().find(|i| &i.to == addr)?;
    let values = Values::for_session(s);
    Some(match eval(&i.id, &s.scope(None, &values)) {
        Ok(r) => match r.value.to_interpolated() {
            Some(id) if !id.is_empty() && !r.value.has_unknown() => Ok(id),
            _ => Err(Diagnostic::error("the import `id` must be a known, non-empty string", i.span)
                .label("it may use variables, not objects known only after apply")
                .into()),
        },
        Err(d) => Err(d.into()),
    })
}

/// What a `[[removed]]` entry says of a recorded address: `Some(destroy)` when one covers it.
pub fn removal(s: &Session, addr: &Addr) -> Option<bool> {
    s.cfg
        .removed
        .iter()
        .find(|r| &r.from == addr || (r.from.key.is_none() && r.from.block == addr.block))
        .map(|r| r.destroy)
}
