//! The commands: one module per group (`plan` for plan/apply/destroy, `drift`, `state` for
//! import, state and force-unlock), the state opened in one place (`open`). Each command loads
//! the desired state, opens the state, calls the engine, renders and chooses the exit code.

mod drift;
mod open;
mod plan;
mod show;
mod state;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use meshform_engine::addr::{Addr, Mode as AddrMode};
use meshform_engine::diag::Diagnostics;
use meshform_engine::plan::render::Style;
use meshform_engine::plan::{Mode, saved};
use meshform_engine::provider::Registry;
use meshform_engine::session::{Failure, Session};
use meshform_engine::vars::VarInputs;

use crate::exit::{ERROR, OK};
use crate::{Cli, Command, VarArgs, WorkspaceCommand, ui};

fn out_err(out: &Out) -> impl Fn(&str) -> u8 + '_ {
    move |m| out.error(m)
}

/// Where a command that was asked for JSON also reports its errors, so that a tool reading
/// stdout never gets nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum JsonErrors {
    /// Errors only on stderr.
    #[default]
    No,
    /// `--format json`: one JSON document `{"format_version", "error": true, "diagnostics"}`.
    Document,
    /// `--json`: a `diagnostic` event per error.
    Events,
}

/// What every command needs to print well.
#[derive(Clone)]
pub(crate) struct Out {
    color: bool,
    color_err: bool,
    /// `--workspace`, `--lock-timeout`.
    pub(crate) state: open::StateOpts,
    /// Errors as JSON on stdout too.
    pub(crate) json_errors: JsonErrors,
}

impl Out {
    /// This output, with errors also reported as JSON on stdout.
    pub(crate) fn with_json_errors(&self, how: JsonErrors) -> Out {
        Out { json_errors: how, ..self.clone() }
    }

    fn json_error(&self, diags: Vec<serde_json::Value>) {
        match self.json_errors {
            JsonErrors::No => {}
            JsonErrors::Document => {
                let doc = serde_json::json!({
                    "format_version": meshform_engine::plan::json::JSON_FORMAT_VERSION,
                    "error": true,
                    "diagnostics": diags,
                });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            JsonErrors::Events => {
                let ev = crate::events::Events::new();
                for d in diags {
                    ev.diagnostic(d);
                }
            }
        }
    }

    pub(crate) fn error(&self, msg: &str) -> u8 {
        let st = Style::new(self.color_err);
        eprintln!("{} {msg}", st.red("error:"));
        self.json_error(vec![meshform_engine::diag::Diagnostic::global(msg).to_json(&Default::default())]);
        ERROR
    }

    pub(crate) fn failure(&self, f: &Failure) -> u8 {
        eprint!("{}", f.render(self.color_err));
        self.json_error(f.diags.0.iter().map(|d| d.to_json(&f.sources)).collect());
        ERROR
    }

    /// The warnings of loading `s`, on stderr.
    pub(crate) fn warnings(&self, s: &Session) {
        if !s.warnings.0.is_empty() {
            eprint!("{}", s.warnings.render(&s.cfg.sources, self.color_err));
        }
    }

    pub(crate) fn diags(&self, s: &Session, d: Diagnostics) -> u8 {
        self.failure(&s.failure(d))
    }
}

/// The providers of this build.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(meshform_engine::builtin::Builtin));
    r.register(Arc::new(meshform_gcp::GcpProvider::from_env()));
    r.register(Arc::new(meshform_kube::KubeProvider::from_env()));
    r
}

/// Runs a command and returns its exit code.
pub async fn run(cli: Cli) -> u8 {
    let out = Out {
        color: ui::color_stdout(cli.no_color),
        color_err: ui::color_stderr(cli.no_color),
        state: open::StateOpts { workspace: cli.workspace, lock_timeout: cli.lock_timeout },
        json_errors: JsonErrors::No,
    };
    match cli.command {
        Command::Validate { file, vars } => validate(&out, &file, &vars).await,
        Command::Plan { file, vars, plan: p, out: save, format, detailed_exitcode, destroy } => {
            let mode = if destroy { Mode::Destroy } else { Mode::Normal };
            plan::cmd_plan(&out, &file, &vars, &p, save.as_deref(), format, detailed_exitcode, mode).await
        }
        Command::Apply { file, vars, plan: p, auto_approve } => {
            if saved::is_saved_plan(&file) {
                plan::apply_saved(&out, &file, &vars, &p).await
            } else {
                plan::cmd_apply(&out, &file, &vars, &p, auto_approve, Mode::Normal).await
            }
        }
        Command::Destroy { file, vars, plan: p, auto_approve } => {
            plan::cmd_apply(&out, &file, &vars, &p, auto_approve, Mode::Destroy).await
        }
        Command::Drift { file, vars, targets, parallelism, format, json } => {
            drift::cmd_drift(&out, &file, &vars, &targets, parallelism, format, json).await
        }
        Command::Show { file, format } => show::cmd_show(&out, &file, format).await,
        Command::Output { file, name, json, raw } => show::cmd_output(&out, &file, name.as_deref(), json, raw).await,
        Command::Version { json } => show::cmd_version(json),
        Command::Schema { ty, json, json_schema } => show::cmd_schema(&out, ty.as_deref(), json, json_schema),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "meshform", &mut std::io::stdout());
            OK
        }
        Command::Graph { file, vars } => match load(&out, &file, &vars, Default::default()) {
            Ok(s) => {
                print!("{}", meshform_engine::graph::to_dot(&s.graph));
                OK
            }
            Err(code) => code,
        },
        Command::Import { file, address, id, vars } => state::cmd_import(&out, &file, &vars, &address, &id).await,
        Command::State(sc) => state::cmd_state(&out, sc).await,
        Command::Workspace(WorkspaceCommand::List { file }) => state::workspace_list(&out, &file).await,
        Command::ForceUnlock { lock_id, file } => state::force_unlock(&out, &lock_id, file.as_deref()).await,
        Command::Demo => crate::demo::run(out.color).await,
        Command::Sim { dir, world, latency, fault_rate, lro_polls, seed, lro_seconds } => {
            let lro_time = (lro_seconds.is_finite() && lro_seconds > 0.0)
                .then(|| std::time::Duration::from_secs_f64(lro_seconds.min(86_400.0)));
            let opts = crate::sim::Options { latency, fault_rate, lro_polls, seed, lro_time };
            crate::sim::run(&out_err(&out), &dir, world.as_deref(), opts).await
        }
    }
}

pub(crate) fn load(out: &Out, file: &Path, vars: &VarArgs, fixed: meshform_engine::value::Map) -> Result<Session, u8> {
    let mut inputs = VarInputs::from_env(vars.vars.clone(), vars.var_files.clone());
    inputs.fixed = fixed;
    Session::load(file, registry(), &inputs).map_err(|f| out.failure(&f)).inspect(|s| out.warnings(s))
}

/// [`load`] for planning or applying `mode`: a destroy does not need the desired attributes.
pub(crate) fn load_for(out: &Out, file: &Path, vars: &VarArgs, mode: Mode) -> Result<Session, u8> {
    if mode != Mode::Destroy {
        return load(out, file, vars, Default::default());
    }
    let inputs = VarInputs::from_env(vars.vars.clone(), vars.var_files.clone());
    Session::load_for_destroy(file, registry(), &inputs).map_err(|f| out.failure(&f)).inspect(|s| out.warnings(s))
}

/// [`load_for`], the clusters and other `for_each` keys found live read (`Session::discover`;
/// not for destroying, which works from the state), and the `--target`s checked against what it
/// declares.
pub(crate) async fn load_targeted(
    out: &Out,
    file: &Path,
    vars: &VarArgs,
    mode: Mode,
    targets: &[String],
) -> Result<(Session, Vec<Addr>), u8> {
    let mut s = load_for(out, file, vars, mode)?;
    if mode != Mode::Destroy {
        discover(out, &mut s).await?;
    }
    let t = parse_targets(out, &s, targets)?;
    Ok((s, t))
}

/// Reads what `for_each` expressions wait on and expands the graph with it.
pub(crate) async fn discover(out: &Out, s: &mut Session) -> Result<(), u8> {
    match s.discover().await {
        Ok(()) => Ok(()),
        Err(d) => Err(out.diags(s, d)),
    }
}

pub(crate) fn parse_targets(out: &Out, s: &Session, targets: &[String]) -> Result<Vec<Addr>, u8> {
    parse_addresses(out, s, targets, "--target")
}

/// Addresses given with option `flag`, each naming something the desired state declares.
pub(crate) fn parse_addresses(out: &Out, s: &Session, targets: &[String], flag: &str) -> Result<Vec<Addr>, u8> {
    let mut v = Vec::new();
    for t in targets {
        let a: Addr = t.parse().map_err(|e: String| out.error(&format!("{flag}: {e}")))?;
        let known = s.graph.instances.iter().any(|i| meshform_engine::plan::planner::matches_target(&a, &i.addr));
        if !known {
            let all: Vec<String> = s
                .graph
                .instances
                .iter()
                .map(|i| i.addr.block.to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let hint = meshform_engine::config::suggest(&a.block.to_string(), all.iter().map(String::as_str))
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            return Err(out.error(&format!("{flag} {t}: no such object in the desired state{hint}")));
        }
        v.push(a);
    }
    Ok(v)
}

async fn validate(out: &Out, file: &Path, vars: &VarArgs) -> u8 {
    match load(out, file, vars, Default::default()) {
        Ok(s) => {
            if let Err(code) = open::backend_of(out, &s.cfg).await {
                return code;
            }
            let n = s.graph.instances.iter().filter(|i| i.addr.block.mode == AddrMode::Managed).count();
            println!(
                "{}: valid ({} objects, {} data sources, {} clusters)",
                file.display(),
                n,
                s.graph.instances.iter().filter(|i| i.addr.block.mode == AddrMode::Data).count(),
                s.graph.instances.iter().filter(|i| i.addr.block.mode == AddrMode::Cluster).count()
            );
            OK
        }
        Err(code) => code,
    }
}
