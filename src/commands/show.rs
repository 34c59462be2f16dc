//! `show` (a saved plan, or the state), `output` and `version`.

use std::path::Path;

use meshform_engine::plan::{Plan, saved};
use meshform_engine::state::State;
use meshform_engine::value::Value;
use serde_json::json;

use super::Out;
use crate::Format;
use crate::exit::{ERROR, OK};

/// A saved plan, unsealed with its desired state's key when it is sealed.
pub(crate) fn load_saved(out: &Out, planfile: &Path) -> Result<Plan, u8> {
    // A sealed plan names its desired-state file in the clear, whose [state] gives the key.
    let codec = match saved::sealed_config(planfile) {
        None => Ok(meshform_engine::state::codec::Codec::plain()),
        Some(cfg_path) => meshform_engine::config::load(Path::new(&cfg_path), &super::registry())
            .map_err(|_| format!("cannot read {cfg_path}, the desired state of the saved plan"))
            .and_then(|cfg| super::open::codec_of(&cfg)),
    };
    codec.and_then(|c| saved::load_with(planfile, &c)).map_err(|m| out.error(&m))
}

/// `show FILE`: a saved plan in any format, or what the state of a desired-state file records.
pub(crate) async fn cmd_show(out: &Out, file: &Path, format: Format) -> u8 {
    if saved::is_saved_plan(file) {
        return match load_saved(out, file) {
            Ok(p) => {
                // The whole plan: the place a truncated pull-request comment points to.
                print!("{}", super::plan::render(&p, format, out.color, true));
                OK
            }
            Err(c) => c,
        };
    }
    let state = match super::state::snapshot(out, file).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    print!("{}", render_state(&state, format));
    OK
}

fn shown(sensitive: bool, v: &Value) -> String {
    if sensitive && !matches!(v, Value::Null) { "(sensitive)".into() } else { v.to_string() }
}

/// The state for people (every object's attributes, sensitive ones hidden), for tools (the
/// state document, sensitive values as their salted hashes) or for a pull request (a table).
fn render_state(state: &State, format: Format) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    match format {
        Format::Json => {
            s = serde_json::to_string_pretty(state).unwrap_or_default();
            s.push('\n');
        }
        Format::Markdown => {
            let _ = writeln!(s, "### State: {} object(s), serial {}\n", state.objects.len(), state.serial);
            let _ = writeln!(s, "| address | type | id |\n| --- | --- | --- |");
            for r in state.objects.values() {
                let _ = writeln!(s, "| `{}` | `{}` | `{}` |", r.address, r.ty, r.id.replace('|', "\\|"));
            }
        }
        Format::Human => {
            if state.objects.is_empty() {
                let _ = writeln!(s, "The state is empty: nothing has been applied yet.");
            }
            for r in state.objects.values() {
                let _ = writeln!(s, "# {} ({})", r.address, r.ty);
                let w = r.attributes.keys().map(String::len).max().unwrap_or(0);
                for (k, v) in &r.attributes {
                    let _ = writeln!(s, "    {k:<w$} = {}", shown(r.sensitive_attributes.contains(k), v));
                }
                s.push('\n');
            }
            if !state.outputs.is_empty() {
                let _ = writeln!(s, "Outputs:");
                for (k, v) in &state.outputs {
                    let _ = writeln!(s, "    {k} = {}", shown(matches!(v, Value::Redacted(_)), v));
                }
            }
        }
    }
    s
}

/// `output FILE [NAME] [--json | --raw]`: the outputs the last complete apply recorded.
pub(crate) async fn cmd_output(out: &Out, file: &Path, name: Option<&str>, as_json: bool, raw: bool) -> u8 {
    let state = match super::state::snapshot(out, file).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    let outputs = &state.outputs;
    let Some(name) = name else {
        if as_json {
            let all: serde_json::Map<String, serde_json::Value> = outputs
                .iter()
                .map(|(k, v)| {
                    let sensitive = matches!(v, Value::Redacted(_));
                    (k.clone(), json!({ "value": v.to_plain_json(), "sensitive": sensitive }))
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        } else if outputs.is_empty() {
            eprintln!("No outputs recorded: declare [outputs.NAME] and apply.");
        } else {
            for (k, v) in outputs {
                println!("{k} = {}", shown(matches!(v, Value::Redacted(_)), v));
            }
        }
        return OK;
    };
    let Some(v) = outputs.get(name) else {
        let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
        let hint = meshform_engine::config::suggest(name, names.iter().copied())
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        return out.error(&format!(
            "no output `{name}` in the state{hint}; recorded: {}",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        ));
    };
    if matches!(v, Value::Redacted(_)) {
        return out
            .error(&format!("output `{name}` is sensitive: the state keeps only its salted hash, never the value"));
    }
    if raw {
        return match v {
            Value::String(s) => {
                print!("{s}");
                OK
            }
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                print!("{v}");
                OK
            }
            _ => {
                eprintln!(
                    "error: output `{name}` is a {}; --raw prints only strings, numbers and bools (use --json)",
                    v.type_name()
                );
                ERROR
            }
        };
    }
    if as_json {
        println!("{}", serde_json::to_string(&v.to_plain_json()).unwrap_or_default());
    } else {
        println!("{v}");
    }
    OK
}

/// `version [--json]`.
pub(crate) fn cmd_version(as_json: bool) -> u8 {
    let v = env!("CARGO_PKG_VERSION");
    if as_json {
        let doc = json!({
            "meshform_version": v,
            "plan_json_format_version": meshform_engine::plan::json::JSON_FORMAT_VERSION,
            "events_format_version": crate::events::FORMAT_VERSION,
            "state_format_version": meshform_engine::state::FORMAT_VERSION,
            "providers": ["gcp", "kubernetes", "meshform"],
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!("meshform {v}");
        println!(
            "plan JSON format {}, event stream format {}, state format {}",
            meshform_engine::plan::json::JSON_FORMAT_VERSION,
            crate::events::FORMAT_VERSION,
            meshform_engine::state::FORMAT_VERSION
        );
    }
    OK
}

/// `schema [TYPE] [--json | --json-schema]`.
pub(crate) fn cmd_schema(out: &Out, ty: Option<&str>, as_json: bool, json_schema: bool) -> u8 {
    use meshform_engine::typedoc;
    let r = super::registry();
    if json_schema {
        println!("{}", serde_json::to_string_pretty(&typedoc::desired_state_schema(&r)).unwrap_or_default());
        return OK;
    }
    let all = typedoc::types(&r);
    let chosen: Vec<_> = match ty {
        None => all,
        Some(t) => match all.iter().find(|s| s.name == t) {
            Some(s) => vec![s.clone()],
            None => {
                let hint = meshform_engine::config::suggest(t, all.iter().map(|s| s.name.as_str()))
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                return out.error(&format!("no type `{t}`{hint}; `meshform schema` lists them all"));
            }
        },
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&typedoc::types_json(&chosen)).unwrap_or_default());
    } else {
        let texts: Vec<String> = chosen.iter().map(typedoc::render_type).collect();
        print!("{}", texts.join("\n"));
    }
    OK
}
