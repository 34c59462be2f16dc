//! Variable values: declared defaults, then `MESHFORM_VAR_name` environment variables, then
//! `--var-file` files (TOML), then `--var name=value`; later sources win.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
    from_env(cfg, &inputs.env, &mut set, &mut diags);
    for path in &inputs.files {
        from_var_file(cfg, path, &mut set, &mut diags);
    }
    from_cli(cfg, &inputs.cli, &mut set, &mut diags);
    for (k, v) in &inputs.fixed {
        if cfg.variables.contains_key(k) {
            set.insert(k.clone(), v.clone());
        }
    }
    let out = with_defaults(cfg, set, &mut diags);
    (out, diags)
}

/// `MESHFORM_VAR_NAME` environment variables of declared variables. The name matches exactly,
/// or else without regard to case when exactly one declared variable matches that way
/// (`MESHFORM_VAR_CLUSTERS` sets `clusters`); one that matches nothing is warned about, never
/// silently ignored.
fn from_env(cfg: &Config, env: &[(String, String)], set: &mut Map, diags: &mut Diagnostics) {
    let mut exact = Vec::new();
    let mut folded = Vec::new();
    for (k, v) in env {
        let Some(given) = k.strip_prefix("MESHFORM_VAR_") else { continue };
        if cfg.variables.contains_key(given) {
            exact.push((k, given.to_string(), v));
            continue;
        }
        let matches: Vec<&String> = cfg.variables.keys().filter(|n| n.eq_ignore_ascii_case(given)).collect();
        match matches.as_slice() {
            [one] => folded.push((k, (*one).clone(), v)),
            [] => diags.push(
                Diagnostic::global(format!("environment variable {k} sets no declared variable; it is ignored"))
                    .maybe_help(crate::config::suggest(given, cfg.variables.keys().map(String::as_str)))
                    .warning(),
            ),
            many => diags.push(Diagnostic::global(format!(
                "environment variable {k} matches {} without regard to case; use the exact name",
                many.iter().map(|n| format!("MESHFORM_VAR_{n}")).collect::<Vec<_>>().join(" and ")
            ))),
        }
    }
    // An exact name wins over a case-folded one for the same variable.
    for (k, name, v) in folded.into_iter().chain(exact) {
        let Some(decl) = cfg.variables.get(&name) else { continue };
        match from_text(decl.ty, v).map_err(|e| if decl.sensitive { hide(decl.ty) } else { e }) {
            Ok(val) => {
                set.insert(name, val);
            }
            Err(e) => diags.push(Diagnostic::global(format!("environment variable {k}: {e}"))),
        }
    }
}

/// One `--var-file`: a TOML table of declared variables, each value of its declared type.
fn from_var_file(cfg: &mut Config, path: &Path, set: &mut Map, diags: &mut Diagnostics) {
    let text = match crate::files::read_text(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::global(format!("cannot read var file {}: {e}", path.display())));
            return;
        }
    };
    let file = cfg.sources.add(path.display().to_string(), text.clone());
    let (table, errors) = DeTable::parse_recoverable(&text);
    for e in &errors {
        let span = e.span().map_or(Span::new(file, 0..0), |r| Span::new(file, r));
        diags.push(Diagnostic::error("invalid TOML", span).label(e.message().trim().to_string()));
    }
    if !errors.is_empty() {
        return;
    }
    for (k, v) in table.get_ref() {
        let name = k.get_ref().as_ref();
        let span = Span::new(file, k.span());
        match cfg.variables.get(name) {
            None => diags.push(
                Diagnostic::error(format!("var file sets undeclared variable `{name}`"), span)
                    .maybe_help(suggest(name, cfg.variables.keys().map(String::as_str))),
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

/// `--var NAME=VALUE` arguments, in order.
fn from_cli(cfg: &Config, args: &[String], set: &mut Map, diags: &mut Diagnostics) {
    for arg in args {
        let Some((name, raw)) = arg.split_once('=') else {
            diags.push(Diagnostic::global(format!("--var {arg:?}: expected NAME=VALUE")));
            continue;
        };
        match cfg.variables.get(name) {
            None => diags.push(
                Diagnostic::global(format!("--var sets undeclared variable `{name}`"))
                    .maybe_help(suggest(name, cfg.variables.keys().map(String::as_str))),
            ),
            Some(decl) => match from_text(decl.ty, raw).map_err(|e| if decl.sensitive { hide(decl.ty) } else { e }) {
                Ok(v) => {
                    set.insert(name.to_string(), v);
                }
                Err(e) => diags.push(Diagnostic::global(format!("--var {name}: {e}"))),
            },
        }
    }
}

/// Every declared variable's value: the one set, else its default, else unknown (reported as a
/// missing required variable).
fn with_defaults(cfg: &Config, mut set: Map, diags: &mut Diagnostics) -> Vars {
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
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Sources;
    use crate::provider::Registry;

    const DECLS: &str = r#"
[variables.name]
type = "string"
default = "d"

[variables.count]
type = "number"

[variables.tags]
type = "map"
default = {}

[variables.token]
type = "number"
sensitive = true
default = 1

[variables.anything]
"#;

    fn config() -> Config {
        let mut sources = Sources::default();
        let file = sources.add("vars.toml", DECLS);
        let (cfg, diags) =
            crate::config::parse(sources, file, "vars.toml".into(), ".".into(), &Registry::new()).unwrap();
        assert!(!diags.has_errors());
        cfg
    }

    fn messages(cfg: &Config, diags: &Diagnostics) -> String {
        diags.render(&cfg.sources, false)
    }

    #[test]
    fn later_sources_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.toml");
        std::fs::write(&file, "count = 2\nname = \"file\"\n").unwrap();
        let mut cfg = config();
        let env = vec![
            ("MESHFORM_VAR_count".to_string(), "1".to_string()),
            ("MESHFORM_VAR_name".to_string(), "env".to_string()),
            ("MESHFORM_VAR_anything".to_string(), "[1, 2]".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let mut fixed = Map::new();
        fixed.insert("tags".into(), Value::Map(Map::from([("a".into(), Value::str("b"))])));
        fixed.insert("undeclared".into(), Value::Int(1));
        let inputs = VarInputs { cli: vec!["name=cli".into()], files: vec![file], env, fixed };
        let (vars, diags) = resolve(&mut cfg, &inputs);
        assert!(diags.0.is_empty(), "{}", messages(&cfg, &diags));
        assert_eq!(vars.values["name"], Value::str("cli"));
        assert_eq!(vars.values["count"], Value::Int(2));
        assert_eq!(vars.values["anything"], Value::List(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(vars.values["tags"], Value::Map(Map::from([("a".into(), Value::str("b"))])));
        assert_eq!(vars.values["token"], Value::Int(1));
        assert!(!vars.values.contains_key("undeclared"));
        assert_eq!(vars.sensitive, BTreeSet::from(["token".to_string()]));
    }

    #[test]
    fn every_bad_input_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let bad_toml = dir.path().join("bad.toml");
        std::fs::write(&bad_toml, "count = \n").unwrap();
        let wrong = dir.path().join("wrong.toml");
        std::fs::write(&wrong, "count = \"x\"\nnmae = \"y\"\n").unwrap();
        let mut cfg = config();
        let inputs = VarInputs {
            cli: vec!["count".into(), "nmae=x".into(), "token=secret-text".into()],
            files: vec![bad_toml, wrong, dir.path().join("missing.toml")],
            env: vec![("MESHFORM_VAR_count".into(), "many".into())],
            fixed: Map::new(),
        };
        let (vars, diags) = resolve(&mut cfg, &inputs);
        let text = messages(&cfg, &diags);
        for expected in [
            "environment variable MESHFORM_VAR_count: expected a number, got \"many\"",
            "invalid TOML",
            "variable `count` must be a number",
            "var file sets undeclared variable `nmae`",
            "did you mean `name`?",
            "cannot read var file",
            "--var \"count\": expected NAME=VALUE",
            "--var sets undeclared variable `nmae`",
            "--var token: expected a number, got a value that is not one (sensitive, not shown)",
            "no value for required variable `count`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("secret-text"), "a sensitive value is never shown");
        assert_eq!(vars.values["count"], Value::Unknown);
        assert_eq!(diags.0.len(), 10, "{text}");
    }
}
