//! Variable values: declared defaults, then `MESHFORM_VAR_name` environment variables, then
//! `--var-file` files (TOML), then `--var name=value`; later sources win.

use std::collections::BTreeSet;
use std::path::PathBuf;

use toml::de::DeTable;

use crate::config::{Config, VarType, literal, suggest};
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::value::{Map, Value};

/// Where variable values come from, besides defaults.
#[derive(Clone, Debug, Default)]
pub struct VarInputs {
    /// `--var name=value`, in order.
    pub cli: Vec<String>,
    /// `--var-file FILE`, in order.
    pub files: Vec<PathBuf>,
    /// Environment variables (name, value); only `MESHFORM_VAR_*` are used.
    pub env: Vec<(String, String)>,
    /// Values that win over everything (a saved plan's variables).
    pub fixed: Map,
}

impl VarInputs {
    /// Inputs with the process environment.
    pub fn from_env(cli: Vec<String>, files: Vec<PathBuf>) -> VarInputs {
        VarInputs { cli, files, env: std::env::vars().collect(), fixed: Map::new() }
    }
}

/// The resolved variables: values and the names of sensitive ones.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    /// name → value.
    pub values: Map,
    /// Sensitive variable names.
    pub sensitive: BTreeSet<String>,
}

/// Resolves every declared variable. Var files are added to `cfg.sources` so their errors point
/// into them. A variable without a value is reported and set to unknown so later checks go on.
pub fn resolve(cfg: &mut Config, inputs: &VarInputs) -> (Vars, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut set: Map = Map::new();
    let names: Vec<String> = cfg.variables.keys().cloned().collect();
    for (k, v) in &inputs.env {
        if let Some(name) = k.strip_prefix("MESHFORM_VAR_")
            && let Some(decl) = cfg.variables.get(name)
        {
            match from_text(decl.ty, v).map_err(|e| if decl.sensitive { hide(decl.ty) } else { e }) {
                Ok(val) => {
                    set.insert(name.to_string(), val);
                }
                Err(e) => diags.push(Diagnostic::global(format!("environment variable {k}: {e}"))),
            }
        }
    }
    for path in &inputs.files {
        let text = match crate::files::read_text(path) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::global(format!("cannot read var file {}: {e}", path.display())));
                continue;
            }
        };
        let file = cfg.sources.add(path.display().to_string(), text.clone());
        let (table, errors) = DeTable::parse_recoverable(&text);
        for e in &errors {
            let span = e.span().map_or(Span::new(file, 0..0), |r| Span::new(file, r));
            diags.push(Diagnostic::error("invalid TOML", span).label(e.message().trim().to_string()));
        }
        if !errors.is_empty() {
            continue;
        }
        for (k, v) in table.get_ref() {
            let name = k.get_ref().as_ref();
            let span = Span::new(file, k.span());
            match cfg.variables.get(name) {
                None => diags.push(
                    Diagnostic::error(format!("var file sets undeclared variable `{name}`"), span)
                        .maybe_help(suggest(name, names.iter().map(String::as_str))),
                ),
                Some(decl) => {
                    let val = literal(v.get_ref());
                    if decl.ty.fits(&val) {
                        set.insert(name.to_string(), val);
                    } else {
                        diags.push(
                            Diagnostic::error(
                                format!("variable `{name}` must be a {}", decl.ty.name()),
                                Span::new(file, v.span()),
                            )
                            .label(format!("this is a {}", val.type_name())),
                        );
                    }
                }
            }
        }
    }
    for arg in &inputs.cli {
        let Some((name, raw)) = arg.split_once('=') else {
            diags.push(Diagnostic::global(format!("--var {arg:?}: expected NAME=VALUE")));
            continue;
        };
        match cfg.variables.get(name) {
            None => diags.push(
                Diagnostic::global(format!("--var sets undeclared variable `{name}`"))
                    .maybe_help(suggest(name, names.iter().map(String::as_str))),
            ),
            Some(decl) => match from_text(decl.ty, raw).map_err(|e| if decl.sensitive { hide(decl.ty) } else { e }) {
                Ok(v) => {
                    set.insert(name.to_string(), v);
                }
                Err(e) => diags.push(Diagnostic::global(format!("--var {name}: {e}"))),
            },
        }
    }
    for (k, v) in &inputs.fixed {
        if cfg.variables.contains_key(k) {
            set.insert(k.clone(), v.clone());
        }
    }
    let mut out = Vars::default();
    for (name, decl) in &cfg.variables {
        match set.remove(name).or_else(|| decl.default.clone()) {
            Some(v) => {
                out.values.insert(name.clone(), v);
            }
            None => {
                diags.push(
                    Diagnostic::error(format!("no value for required variable `{name}`"), decl.span)
                        .help(format!("set it with --var {name}=..., --var-file, or MESHFORM_VAR_{name}")),
                );
                out.values.insert(name.clone(), Value::Unknown);
            }
        }
        if decl.sensitive {
            out.sensitive.insert(name.clone());
        }
    }
    (out, diags)
}

/// The error for a sensitive value of the wrong type (its value is not repeated).
fn hide(ty: VarType) -> String {
    format!("expected a {}, got a value that is not one (sensitive, not shown)", ty.name())
}

/// Interprets a command-line or environment value according to the declared type.
fn from_text(ty: VarType, raw: &str) -> Result<Value, String> {
    let parsed = || -> Option<Value> {
        let doc = format!("v = {raw}");
        let t = DeTable::parse(&doc).ok()?;
        t.get_ref().iter().next().map(|(_, v)| literal(v.get_ref()))
    };
    match ty {
        VarType::String => Ok(Value::str(raw)),
        VarType::Any => Ok(parsed().filter(|v| !matches!(v, Value::String(_))).unwrap_or_else(|| Value::str(raw))),
        _ => match parsed() {
            Some(v) if ty.fits(&v) => Ok(v),
            _ => Err(format!("expected a {}, got {raw:?}", ty.name())),
        },
    }
}
