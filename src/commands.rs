//! One function per command: load, lock, call the engine, render, choose the exit code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshform_engine::addr::{Addr, Mode as AddrMode};
use meshform_engine::apply::{ApplyOptions, ApplyReport, NodeResult, apply};
use meshform_engine::diag::Diagnostics;
use meshform_engine::drift::{DriftReport, detect_drift};
use meshform_engine::plan::planner::{PlanOptions, plan};
use meshform_engine::plan::render::{Style, render_change, render_drift, render_plan};
use meshform_engine::plan::{Mode, Plan, json, markdown, saved};
use meshform_engine::provider::Registry;
use meshform_engine::session::{Failure, Session, Values};
use meshform_engine::state::local::LocalBackend;
use meshform_engine::state::lock::{self, LockError, LockGuard};
use meshform_engine::state::{ObjectRecord, State};
use meshform_engine::value::{Value, sha256_hex};
use meshform_engine::vars::VarInputs;

use crate::exit::{CHANGES, ERROR, INTERRUPTED, OK};
use crate::{Cli, Command, Format, PlanArgs, StateCommand, VarArgs, ui};

fn out_err(out: &Out) -> impl Fn(&str) -> u8 + '_ {
    move |m| out.error(m)
}

/// What every command needs to print well.
struct Out {
    color: bool,
    color_err: bool,
}

impl Out {
    fn error(&self, msg: &str) -> u8 {
        let st = Style::new(self.color_err);
        eprintln!("{} {msg}", st.red("error:"));
        ERROR
    }

    fn failure(&self, f: &Failure) -> u8 {
        eprint!("{}", f.render(self.color_err));
        ERROR
    }

    fn diags(&self, s: &Session, d: Diagnostics) -> u8 {
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
    let out = Out { color: ui::color_stdout(cli.no_color), color_err: ui::color_stderr(cli.no_color) };
    match cli.command {
        Command::Validate { file, vars } => validate(&out, &file, &vars),
        Command::Plan { file, vars, plan: p, out: save, format, detailed_exitcode, destroy } => {
            let mode = if destroy { Mode::Destroy } else { Mode::Normal };
            cmd_plan(&out, &file, &vars, &p, save.as_deref(), format, detailed_exitcode, mode).await
        }
        Command::Apply { file, vars, plan: p, auto_approve } => {
            if saved::is_saved_plan(&file) {
                apply_saved(&out, &file, &vars, &p).await
            } else {
                cmd_apply(&out, &file, &vars, &p, auto_approve, Mode::Normal).await
            }
        }
        Command::Destroy { file, vars, plan: p, auto_approve } => {
            cmd_apply(&out, &file, &vars, &p, auto_approve, Mode::Destroy).await
        }
        Command::Drift { file, vars, targets, parallelism, format } => {
            cmd_drift(&out, &file, &vars, &targets, parallelism, format).await
        }
        Command::Graph { file, vars } => match load(&out, &file, &vars, Default::default()) {
            Ok(s) => {
                print!("{}", meshform_engine::graph::to_dot(&s.graph));
                OK
            }
            Err(code) => code,
        },
        Command::Import { file, address, id, vars } => cmd_import(&out, &file, &vars, &address, &id).await,
        Command::State(sc) => cmd_state(&out, sc),
        Command::ForceUnlock { lock_id, file } => force_unlock(&out, &lock_id, file.as_deref()),
        Command::Demo => crate::demo::run(out.color).await,
        Command::Sim { dir, world, latency, fault_rate, lro_polls, seed, lro_seconds } => {
            let lro_time = (lro_seconds.is_finite() && lro_seconds > 0.0)
                .then(|| std::time::Duration::from_secs_f64(lro_seconds.min(86_400.0)));
            let opts = crate::sim::Options { latency, fault_rate, lro_polls, seed, lro_time };
            crate::sim::run(&out_err(&out), &dir, world.as_deref(), opts).await
        }
    }
}

fn load(out: &Out, file: &Path, vars: &VarArgs, fixed: meshform_engine::value::Map) -> Result<Session, u8> {
    let mut inputs = VarInputs::from_env(vars.vars.clone(), vars.var_files.clone());
    inputs.fixed = fixed;
    Session::load(file, registry(), &inputs).map_err(|f| out.failure(&f))
}

/// [`load`] for planning or applying `mode`: a destroy does not need the desired attributes.
fn load_for(out: &Out, file: &Path, vars: &VarArgs, mode: Mode) -> Result<Session, u8> {
    if mode != Mode::Destroy {
        return load(out, file, vars, Default::default());
    }
    let inputs = VarInputs::from_env(vars.vars.clone(), vars.var_files.clone());
    Session::load_for_destroy(file, registry(), &inputs).map_err(|f| out.failure(&f))
}

fn parse_targets(out: &Out, s: &Session, targets: &[String]) -> Result<Vec<Addr>, u8> {
    let mut v = Vec::new();
    for t in targets {
        let a: Addr = t.parse().map_err(|e: String| out.error(&format!("--target: {e}")))?;
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
            return Err(out.error(&format!("--target {t}: no such object in the desired state{hint}")));
        }
        v.push(a);
    }
    Ok(v)
}

fn take_lock(out: &Out, backend: &LocalBackend, op: &str, file: &Path) -> Result<LockGuard, u8> {
    backend.lock(op).map_err(|e| {
        let hint = match &e {
            LockError::Held { info, stale: true } => {
                format!("\n  run `meshform force-unlock {} {}` to remove it", info.id, file.display())
            }
            LockError::Held { info, .. } => format!(
                "\n  wait for that run to finish; if it is gone, run `meshform force-unlock {} {}`",
                info.id,
                file.display()
            ),
            LockError::Broken { id, .. } => format!(
                "\n  if no other meshform run is using this state, remove it with `meshform force-unlock {id} {}`",
                file.display()
            ),
            LockError::Io(_) => String::new(),
        };
        out.error(&format!("{e}{hint}"))
    })
    .inspect(|g| {
        if let Some(b) = &g.broke {
            eprintln!(
                "note: removed a stale lock of pid {} on this host (operation `{}`, since {}): that process is gone",
                b.pid, b.operation, b.created
            );
        }
    })
}

fn load_state(out: &Out, backend: &LocalBackend, guard: &LockGuard) -> Result<State, u8> {
    let (state, recovered) = backend.load(guard).map_err(|m| out.error(&m))?;
    if recovered > 0 {
        eprintln!("note: recovered {recovered} finished operation(s) from an interrupted run's journal into the state");
    }
    Ok(state)
}

fn validate(out: &Out, file: &Path, vars: &VarArgs) -> u8 {
    match load(out, file, vars, Default::default()) {
        Ok(s) => {
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

fn render(p: &Plan, format: Format, color: bool) -> String {
    match format {
        Format::Human => render_plan(p, color),
        Format::Json => json::render_json(p),
        Format::Markdown => markdown::render_markdown(p),
    }
}

#[allow(clippy::too_many_arguments)]
async fn cmd_plan(
    out: &Out,
    file: &Path,
    vars: &VarArgs,
    p: &PlanArgs,
    save: Option<&Path>,
    format: Format,
    detailed: bool,
    mode: Mode,
) -> u8 {
    let s = match load_for(out, file, vars, mode) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let targets = match parse_targets(out, &s, &p.targets) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let backend = LocalBackend::for_config(&s.cfg);
    let guard = match take_lock(out, &backend, "plan", file) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let state = match load_state(out, &backend, &guard) {
        Ok(st) => st,
        Err(c) => return c,
    };
    let opts = PlanOptions { mode, targets, refresh: p.refresh, parallelism: p.parallelism as usize };
    let outcome = match ui::while_reading(plan(&s, &state, &opts), &s, &state, p.refresh).await {
        Ok(o) => o,
        Err(d) => return out.diags(&s, d),
    };
    print!("{}", render(&outcome.plan, format, out.color));
    if let Some(path) = save {
        if let Err(m) = saved::save(&outcome.plan, path) {
            return out.error(&m);
        }
        if format == Format::Human {
            println!(
                "\nSaved the plan to {}. Apply exactly this plan with:\n    meshform apply {}",
                path.display(),
                path.display()
            );
        }
    }
    if detailed && outcome.plan.has_changes() { CHANGES } else { OK }
}

async fn cmd_apply(out: &Out, file: &Path, vars: &VarArgs, p: &PlanArgs, auto_approve: bool, mode: Mode) -> u8 {
    let s = match load_for(out, file, vars, mode) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let targets = match parse_targets(out, &s, &p.targets) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let backend = LocalBackend::for_config(&s.cfg);
    let op = if mode == Mode::Destroy { "destroy" } else { "apply" };
    let guard = match take_lock(out, &backend, op, file) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let mut state = match load_state(out, &backend, &guard) {
        Ok(st) => st,
        Err(c) => return c,
    };
    let opts = PlanOptions { mode, targets, refresh: p.refresh, parallelism: p.parallelism as usize };
    let outcome = match ui::while_reading(plan(&s, &state, &opts), &s, &state, p.refresh).await {
        Ok(o) => o,
        Err(d) => return out.diags(&s, d),
    };
    print!("{}", render_plan(&outcome.plan, out.color));
    if !outcome.plan.has_changes() {
        // Nothing to change live, but what the refresh saw is recorded (as Terraform's apply does).
        if meshform_engine::apply::record_refreshed(&outcome.plan, &mut state) > 0
            && let Err(m) = backend.write(&mut state)
        {
            return out.error(&m);
        }
        return OK;
    }
    if !auto_approve {
        let q = if mode == Mode::Destroy { "\nDestroy these objects?" } else { "\nApply these changes?" };
        match ui::confirm(q) {
            Ok(true) => {}
            Ok(false) => {
                println!("Cancelled: nothing was changed.");
                return ERROR;
            }
            Err(m) => return out.error(&m),
        }
    }
    println!();
    run_apply(out, &s, &outcome.plan, &backend, &guard, &mut state, p.parallelism as usize).await
}

async fn run_apply(
    out: &Out,
    s: &Session,
    plan: &Plan,
    backend: &LocalBackend,
    guard: &LockGuard,
    state: &mut State,
    parallelism: usize,
) -> u8 {
    let cancel = crate::signals::applying();
    let total = plan.changes.iter().filter(|c| c.action.is_change()).count() as u64;
    let progress = ui::ApplyProgress::new(total, out.color);
    let opts = ApplyOptions { parallelism, cancel };
    let result = apply(s, plan, backend, guard, state, &opts, &progress).await;
    crate::signals::applied();
    progress.bar.finish_and_clear();
    progress.flush();
    for note in s.notes.lock().map(|n| n.clone()).unwrap_or_default() {
        eprintln!("note: {note}");
    }
    match result {
        Ok(report) => summarize(out, plan, &report),
        Err(d) => out.diags(s, d),
    }
}

fn summarize(out: &Out, plan: &Plan, r: &ApplyReport) -> u8 {
    let st = Style::new(out.color);
    let done = |a: meshform_engine::plan::Action| {
        r.results.iter().filter(|(_, act, res)| *act == a && matches!(res, NodeResult::Done { .. })).count()
    };
    use meshform_engine::plan::Action as A;
    // A delete that keeps the object (an adopted namespace) is a release, not a destruction.
    let released = r
        .results
        .iter()
        .filter(|(a, act, res)| {
            *act == A::Delete
                && matches!(res, NodeResult::Done { .. })
                && plan.changes.iter().any(|c| c.address == *a && c.delete_effect.is_some())
        })
        .count();
    let (added, changed, destroyed) =
        (done(A::Create) + done(A::Replace), done(A::Update), done(A::Delete) + done(A::Replace) - released);
    let mut also = String::new();
    if done(A::Adopt) > 0 {
        also.push_str(&format!(", {} adopted", done(A::Adopt)));
    }
    if released > 0 {
        also.push_str(&format!(", {released} released (kept)"));
    }
    let failed: Vec<_> = r.results.iter().filter(|(_, _, res)| matches!(res, NodeResult::Failed(_))).collect();
    let skipped: Vec<_> = r.results.iter().filter(|(_, _, res)| matches!(res, NodeResult::Skipped { .. })).collect();
    let verb = if plan.mode == Mode::Destroy { "Destroy" } else { "Apply" };
    println!();
    if r.success() {
        println!(
            "{}",
            st.green(
                &st.bold(&format!("{verb} complete: {added} added, {changed} changed, {destroyed} destroyed{also}."))
            )
        );
    } else {
        for (a, _, res) in &failed {
            if let NodeResult::Failed(m) = res {
                eprintln!("{} {a}: {m}", st.red("error:"));
            }
        }
        for (a, _, res) in &skipped {
            if let NodeResult::Skipped { because } = res {
                eprintln!("skipped {a}: it depends on {because}, which failed");
            }
        }
        let not_started = r.count(|x| matches!(x, NodeResult::Cancelled));
        println!(
            "{}",
            st.red(&format!(
                "{verb} {}: {added} added, {changed} changed, {destroyed} destroyed{also}; {} failed, {} skipped, {not_started} not started. The state records everything that succeeded.",
                if r.cancelled { "interrupted" } else { "failed" },
                failed.len(),
                skipped.len()
            ))
        );
    }
    if !r.outputs.is_empty() {
        println!("\nOutputs:");
        for (k, v) in &r.outputs {
            println!("    {k} = {v}");
        }
    }
    let failed_checks = report_checks(out, &r.checks);
    if r.cancelled {
        INTERRUPTED
    } else if !r.success() || failed_checks > 0 {
        ERROR
    } else {
        OK
    }
}

fn report_checks(out: &Out, checks: &[meshform_engine::checks::CheckResult]) -> usize {
    if checks.is_empty() {
        return 0;
    }
    let st = Style::new(out.color);
    println!("\nChecks:");
    for c in checks {
        if c.passed {
            println!("    {} {}", st.green("ok  "), c.name);
        } else {
            println!("    {} {}: {}", st.red("FAIL"), c.name, c.message);
        }
    }
    checks.iter().filter(|c| !c.passed).count()
}

async fn apply_saved(out: &Out, planfile: &Path, vars: &VarArgs, p: &PlanArgs) -> u8 {
    let plan = match saved::load(planfile) {
        Ok(p) => p,
        Err(m) => return out.error(&m),
    };
    let fixed = plan
        .inputs
        .variables
        .iter()
        .filter(|(_, v)| !matches!(v, Value::Redacted(_)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let file = PathBuf::from(&plan.inputs.config_path);
    let s = match load(out, &file, vars, fixed) {
        Ok(s) => s,
        Err(c) => return c,
    };
    if let Err(m) = check_inputs(&s, &plan) {
        return out.error(&format!("{m}; the saved plan no longer describes this desired state: make a new plan"));
    }
    let backend = LocalBackend::for_config(&s.cfg);
    let guard = match take_lock(out, &backend, "apply", &file) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let mut state = match load_state(out, &backend, &guard) {
        Ok(st) => st,
        Err(c) => return c,
    };
    if let Err(m) = saved::check_fresh(&plan, &state) {
        return out.error(&m);
    }
    if !plan.has_changes() {
        println!("The saved plan has no changes.");
        return OK;
    }
    println!(
        "Applying the saved plan {}: {}\n",
        planfile.display(),
        meshform_engine::plan::render::summary_line(&plan)
    );
    run_apply(out, &s, &plan, &backend, &guard, &mut state, p.parallelism as usize).await
}

/// Checks the desired-state file, the files it reads and the variables against the plan's record.
fn check_inputs(s: &Session, plan: &Plan) -> Result<(), String> {
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

async fn cmd_drift(out: &Out, file: &Path, vars: &VarArgs, targets: &[String], parallelism: u32, format: Format) -> u8 {
    let s = match load(out, file, vars, Default::default()) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let targets = match parse_targets(out, &s, targets) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let backend = LocalBackend::for_config(&s.cfg);
    let guard = match take_lock(out, &backend, "drift", file) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let state = match load_state(out, &backend, &guard) {
        Ok(st) => st,
        Err(c) => return c,
    };
    let report = match ui::while_reading(
        detect_drift(&s, &state, &targets, parallelism.max(1) as usize),
        &s,
        &state,
        true,
    )
    .await
    {
        Ok(r) => r,
        Err(d) => return out.diags(&s, d),
    };
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "format_version": json::JSON_FORMAT_VERSION,
                "found": report.found(),
                "drift": serde_json::from_str::<serde_json::Value>(&json::render_json(&Plan { drift: report.drift.clone(), ..Plan::default() })).map(|v| v["drift"].clone()).unwrap_or_default(),
                "pending": report.pending.iter().map(json::change_json).collect::<Vec<_>>(),
                "checks": report.checks,
                "findings": report.findings,
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Markdown => print!("{}", markdown::render_drift_markdown(&report)),
        Format::Human => print!("{}", render_drift_report(&report, out.color)),
    }
    if report.found() { CHANGES } else { OK }
}

fn render_drift_report(r: &DriftReport, color: bool) -> String {
    let st = Style::new(color);
    let mut s = String::new();
    if !r.drift.is_empty() {
        s.push_str(&st.bold("Changed outside meshform since the last apply:\n\n"));
        render_drift(&r.drift, st, &mut s);
    }
    meshform_engine::plan::render::render_findings(&r.findings, st, &mut s);
    if !r.pending.is_empty() {
        s.push_str(&st.bold("Desired-state changes not applied yet:\n\n"));
        for c in &r.pending {
            render_change(c, st, &mut s);
        }
    }
    if !r.checks.is_empty() {
        s.push_str(&st.bold("Checks:\n"));
        for c in &r.checks {
            if c.passed {
                s.push_str(&format!("    {} {}\n", st.green("ok  "), c.name));
            } else {
                s.push_str(&format!("    {} {}: {}\n", st.red("FAIL"), c.name, c.message));
            }
        }
        s.push('\n');
    }
    let failed = r.checks.iter().filter(|c| !c.passed).count();
    if r.found() {
        s.push_str(&st.bold(&format!(
            "Drift found: {} object(s) changed outside meshform, {} desired change(s) not applied, {} failed check(s), {} finding(s).\n",
            r.drift.len(),
            r.pending.len(),
            failed,
            r.findings.len()
        )));
    } else {
        s.push_str(&st.green(&format!(
            "No drift: live objects match the state and the desired state ({} checks passed).\n",
            r.checks.len()
        )));
    }
    s
}

async fn cmd_import(out: &Out, file: &Path, vars: &VarArgs, address: &str, id: &str) -> u8 {
    let s = match load(out, file, vars, Default::default()) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let addr: Addr = match address.parse() {
        Ok(a) => a,
        Err(e) => return out.error(&e),
    };
    if addr.block.mode != AddrMode::Managed || !s.graph.index.contains_key(&addr) {
        return out.error(&format!("{addr} is not a resource instance in {}; declare it first", file.display()));
    }
    let backend = LocalBackend::for_config(&s.cfg);
    let guard = match take_lock(out, &backend, "import", file) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let mut state = match load_state(out, &backend, &guard) {
        Ok(st) => st,
        Err(c) => return c,
    };
    if state.objects.contains_key(&addr) {
        return out
            .error(&format!("{addr} is already in state; `meshform state rm` it first to import another object"));
    }
    if let Err(d) = s.configure().await {
        return out.diags(&s, d);
    }
    let values = Values::for_session(&s);
    let clusters = match s.read_clusters(&values).await {
        Ok(c) => c,
        Err(d) => return out.diags(&s, d),
    };
    let Some((p, schema)) = s.provider_of(&addr) else { return out.error("no provider for that type") };
    let attrs = match p.import(&addr.block.ty, id, &s.ctx(p.as_ref(), &clusters)).await {
        Ok(a) => a,
        Err(e) => return out.error(&format!("cannot import {id} as {addr}: {e}")),
    };
    let mut sensitive: std::collections::BTreeSet<String> =
        schema.attrs.iter().filter(|a| a.sensitive).map(|a| a.name.clone()).collect();
    sensitive.extend(p.sensitive_in(&addr.block.ty, &attrs));
    let deps =
        s.graph.instances[s.graph.index[&addr]].deps.iter().map(|&d| s.graph.instances[d].addr.clone()).collect();
    state.objects.insert(addr.clone(), ObjectRecord::new(addr.clone(), &addr.block.ty, attrs, &sensitive, deps));
    if let Err(m) = backend.write(&mut state) {
        return out.error(&m);
    }
    println!(
        "Imported {id} as {addr}. Run `meshform plan {}` to see how it differs from the desired state.",
        file.display()
    );
    OK
}

fn backend_of(out: &Out, file: &Path) -> Result<LocalBackend, u8> {
    match meshform_engine::config::load(file, &registry()) {
        Ok(cfg) => Ok(LocalBackend::for_config(&cfg)),
        Err((sources, diags)) => Err(out.failure(&Failure { sources, diags })),
    }
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

fn cmd_state(out: &Out, sc: StateCommand) -> u8 {
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
            let b = match backend_of(out, &file) {
                Ok(b) => b,
                Err(c) => return c,
            };
            let addr: Addr = match address.parse() {
                Ok(a) => a,
                Err(e) => return out.error(&e),
            };
            let guard = match take_lock(out, &b, "state rm", &file) {
                Ok(g) => g,
                Err(c) => return c,
            };
            let mut state = match load_state(out, &b, &guard) {
                Ok(s) => s,
                Err(c) => return c,
            };
            if state.objects.remove(&addr).is_none() {
                return out.error(&format!("{addr} is not in state"));
            }
            if let Err(m) = b.write(&mut state) {
                return out.error(&m);
            }
            println!("Removed {addr} from state (the object itself was not touched).");
            OK
        }
    }
}

fn force_unlock(out: &Out, id: &str, file: Option<&Path>) -> u8 {
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
