//! Saved plans (`plan --out FILE`): the plan with every sensitive value redacted, bound to the
//! state's lineage and serial and to a hash of its inputs. Apply executes a saved plan exactly,
//! or refuses it as stale.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Plan;
use crate::state::State;
use crate::state::codec::Codec;
use crate::state::local::atomic_write;

/// The saved-plan file format version.
pub const SAVED_PLAN_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File {
    meshform_plan: u32,
    meshform_version: String,
    plan: Plan,
}

/// Writes a plan (redacted) to `path`, mode 0600.
pub fn save(plan: &Plan, path: &Path) -> Result<(), String> {
    save_with(plan, path, &Codec::plain())
}

/// A sealed saved plan: the desired-state file it was made from in the clear (to find its state
/// key), the plan sealed.
#[derive(Serialize, Deserialize)]
struct Sealed {
    meshform_plan_sealed: u32,
    config_path: String,
    data: String,
}

/// Writes a plan (redacted) to `path`, mode 0600, sealed when `codec` encrypts.
pub fn save_with(plan: &Plan, path: &Path, codec: &Codec) -> Result<(), String> {
    let mut p = plan.clone();
    p.changes = p.changes.iter().map(|c| c.redacted()).collect();
    for o in p.outputs.values_mut() {
        if o.sensitive {
            o.value = o.value.redact();
        }
    }
    let f = File { meshform_plan: SAVED_PLAN_VERSION, meshform_version: env!("CARGO_PKG_VERSION").into(), plan: p };
    let mut body = serde_json::to_vec(&f).map_err(|e| e.to_string())?;
    if codec.encrypts() {
        let data = String::from_utf8(codec.seal_plan(&body)?).map_err(|e| e.to_string())?;
        let sealed = Sealed { meshform_plan_sealed: 1, config_path: plan.inputs.config_path.clone(), data };
        body = serde_json::to_vec(&sealed).map_err(|e| e.to_string())?;
    }
    atomic_write(path, &body).map_err(|e| format!("cannot write plan {}: {e}", path.display()))
}

/// Whether `path` holds a saved plan (rather than a desired-state file).
pub fn is_saved_plan(path: &Path) -> bool {
    std::fs::read(path)
        .is_ok_and(|b| b.starts_with(b"{\"meshform_plan\"") || b.starts_with(b"{\"meshform_plan_sealed\""))
}

/// The desired-state file a sealed saved plan was made from (`None`: the plan is not sealed).
pub fn sealed_config(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<Sealed>(&bytes).ok().map(|s| s.config_path)
}

/// Reads a saved plan.
pub fn load(path: &Path) -> Result<Plan, String> {
    load_with(path, &Codec::plain())
}

/// Reads a saved plan, opening it with `codec` when it is sealed.
pub fn load_with(path: &Path, codec: &Codec) -> Result<Plan, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read plan {}: {e}", path.display()))?;
    if let Ok(sealed) = serde_json::from_slice::<Sealed>(&bytes) {
        bytes = codec.open_plan(sealed.data.as_bytes(), &format!("the saved plan {}", path.display()))?;
        if bytes.starts_with(b"e1:") {
            return Err(format!("the saved plan {} is encrypted: set MESHFORM_STATE_KEY", path.display()));
        }
    }
    let f: File =
        serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a meshform plan: {e}", path.display()))?;
    if f.meshform_plan != SAVED_PLAN_VERSION {
        return Err(format!(
            "{} has plan format {}, this meshform reads {SAVED_PLAN_VERSION}",
            path.display(),
            f.meshform_plan
        ));
    }
    Ok(f.plan)
}

/// Refuses a plan made against another state, or when the state moved since.
pub fn check_fresh(plan: &Plan, state: &State) -> Result<(), String> {
    if plan.lineage.is_empty() && !state.lineage.is_empty() {
        return Err(format!(
            "the saved plan is stale: it was made before the state existed, and the state is now at serial {}; make a new plan",
            state.serial
        ));
    }
    if plan.lineage != state.lineage {
        return Err(format!(
            "the saved plan was made for another state (lineage {}, this state is {}); make a new plan",
            plan.lineage, state.lineage
        ));
    }
    if plan.serial != state.serial {
        return Err(format!(
            "the saved plan is stale: it was made at state serial {}, and the state is now at serial {}; make a new plan",
            plan.serial, state.serial
        ));
    }
    Ok(())
}

/// Checks the desired-state file, the files it reads and the variables of session `s` against
/// what the plan recorded: a saved plan describes only the inputs it was made from.
pub fn check_inputs(s: &crate::session::Session, plan: &Plan) -> Result<(), String> {
    use crate::value::{Value, sha256_hex};
    let text = s.cfg.sources.text(s.cfg.file);
    if sha256_hex(text.as_bytes()) != plan.inputs.config_sha256 {
        return Err(format!("{} changed since the plan was made", plan.inputs.config_path));
    }
    for (rel, hash) in &plan.inputs.files {
        let now = std::fs::read(s.cfg.dir.join(rel)).map(|b| sha256_hex(&b)).unwrap_or_default();
        if &now != hash {
            return Err(format!("{rel} (read with file() or templatefile()) changed since the plan was made"));
        }
    }
    if crate::plan::planner::discovered_keys(s) != plan.inputs.discovered_keys {
        return Err("the clusters (or other for_each keys) found live are not those the plan was made with".to_string());
    }
    for (k, planned) in &plan.inputs.variables {
        match s.vars.values.get(k) {
            Some(v) if planned.same_as(v) => {}
            _ if matches!(planned, Value::Redacted(_)) => {
                return Err(format!(
                    "sensitive variable `{k}` is not the value the plan was made with (give it again with --var or MESHFORM_VAR_{k})"
                ));
            }
            _ => return Err(format!("variable `{k}` differs from the plan's")),
        }
    }
    Ok(())
}

/// The variables a saved plan fixes for loading its desired state again (sensitive ones, kept
/// only as hashes, must be given again).
pub fn fixed_variables(plan: &Plan) -> crate::value::Map {
    plan.inputs
        .variables
        .iter()
        .filter(|(_, v)| !matches!(v, crate::value::Value::Redacted(_)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
