//! `plan`, `apply` (of a desired state or a saved plan) and `destroy`.

use std::path::{Path, PathBuf};

use meshform_engine::apply::{ApplyOptions, ApplyReport, NodeResult, apply};
use meshform_engine::plan::planner::{PlanOptions, Reads, plan};
use meshform_engine::plan::render::Style;
use meshform_engine::plan::{Mode, Plan, json, markdown, saved};
use meshform_engine::session::Session;

use super::JsonErrors;
use super::open::{Opened, open, read};
use super::{Out, load, load_targeted};
use crate::events::Events;
use crate::exit::{CHANGES, ERROR, INTERRUPTED, OK};
use crate::{Format, PlanArgs, VarArgs, ui};

/// The plan options of `p` for `mode`, the `--replace` addresses checked against the desired
/// state.
fn plan_options(
    out: &Out,
    s: &Session,
    p: &PlanArgs,
    mode: Mode,
    targets: Vec<meshform_engine::addr::Addr>,
) -> Result<PlanOptions, u8> {
    let replace = super::parse_addresses(out, s, &p.replace, "--replace")?;
    let mode = if p.refresh_only { Mode::RefreshOnly } else { mode };
    if p.refresh_only && !p.refresh {
        return Err(out.error("--refresh-only needs the refresh: drop --refresh=false"));
    }
    if mode == Mode::Destroy && !replace.is_empty() {
        return Err(out
            .error("a destroy plan deletes everything, so it cannot --replace anything: drop --replace or --destroy"));
    }
    if p.refresh_only && !replace.is_empty() {
        return Err(out.error("--refresh-only changes nothing live, so it cannot --replace anything"));
    }
    Ok(PlanOptions { mode, targets, refresh: p.refresh, parallelism: s.parallelism(p.parallelism), replace })
}

/// A plan as `--json` events: each change, each drift, the summary and the planned outputs.
pub(crate) fn plan_events(ev: &Events, plan: &Plan) {
    for d in &plan.drift {
        let msg = format!("{}: {} outside meshform", d.address, if d.deleted { "deleted" } else { "changed" });
        ev.emit("info", "resource_drift", &msg, serde_json::json!({ "change": json::drift_json(d) }));
    }
    for c in plan.visible_changes() {
        let msg = format!("{}: plan to {}", c.address, c.action.verb());
        ev.emit("info", "planned_change", &msg, serde_json::json!({ "change": json::change_json(c) }));
    }
    let summary = meshform_engine::plan::render::summary_line(plan);
    ev.emit(
        "info",
        "change_summary",
        &summary,
        serde_json::json!({ "changes": plan.summary(), "operation": "plan", "mode": plan.mode }),
    );
}

/// A plan in `format`; `verbose`: the human plan shows every change, and the Markdown every
/// detail (not cut to a pull-request comment's limit).
pub(crate) fn render(p: &Plan, format: Format, color: bool, verbose: bool) -> String {
    match format {
        Format::Human => meshform_engine::plan::render::render_plan_with(p, color, verbose),
        Format::Json => json::render_json(p),
        Format::Markdown if verbose => markdown::render_markdown_full(p),
        Format::Markdown => markdown::render_markdown(p),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn cmd_plan(
    out: &Out,
    file: &Path,
    vars: &VarArgs,
    p: &PlanArgs,
    save: Option<&Path>,
    format: Format,
    detailed: bool,
    mode: Mode,
) -> u8 {
    let events = p.json.then(Events::new);
    let out = &match (&events, format) {
        (Some(ev), _) => {
            ev.version();
            out.with_json_errors(JsonErrors::Events)
        }
        (None, Format::Json) => out.with_json_errors(JsonErrors::Document),
        _ => out.clone(),
    };
    let (s, targets) = match load_targeted(out, file, vars, mode, &p.targets).await {
        Ok(x) => x,
        Err(c) => return c,
    };
    let opts = match plan_options(out, &s, p, mode, targets) {
        Ok(o) => o,
        Err(c) => return c,
    };
    // One consistent version, read without the lock: a plan neither waits for nor blocks an
    // apply (a saved plan records the serial, and applying it is refused once the state moved).
    let state = match read(out, &s.cfg).await {
        Ok((_, snap)) => snap.state,
        Err(c) => return c,
    };
    let state = &state;
    let outcome = match ui::while_reading(plan(&s, state, &opts), &s, state, p.refresh).await {
        Ok(o) => o,
        Err(d) => return out.diags(&s, d),
    };
    match &events {
        Some(ev) => plan_events(ev, &outcome.plan),
        None => print!("{}", render(&outcome.plan, format, out.color, p.verbose)),
    }
    if let Some(path) = save {
        let codec = match super::open::codec_of(&s.cfg) {
            Ok(c) => c,
            Err(m) => return out.error(&m),
        };
        if let Err(m) = saved::save_with(&outcome.plan, path, &codec) {
            return out.error(&m);
        }
        if format == Format::Human && events.is_none() {
            println!(
                "\nSaved the plan to {}. Apply exactly this plan with:\n    meshform apply {}",
                path.display(),
                path.display()
            );
        }
    }
    if detailed && outcome.plan.has_changes() { CHANGES } else { OK }
}

pub(crate) async fn cmd_apply(
    out: &Out,
    file: &Path,
    vars: &VarArgs,
    p: &PlanArgs,
    auto_approve: bool,
    mode: Mode,
) -> u8 {
    let events = p.json.then(|| std::sync::Arc::new(Events::new()));
    let out = &match &events {
        Some(ev) => {
            ev.version();
            out.with_json_errors(JsonErrors::Events)
        }
        None => out.clone(),
    };
    if events.is_some() && !auto_approve {
        return out.error("--json streams events for tools and asks no questions: add --auto-approve");
    }
    let (s, targets) = match load_targeted(out, file, vars, mode, &p.targets).await {
        Ok(x) => x,
        Err(c) => return c,
    };
    let opts = match plan_options(out, &s, p, mode, targets) {
        Ok(o) => o,
        Err(c) => return c,
    };
    let op = if mode == Mode::Destroy { "destroy" } else { "apply" };
    let mut opened = match open(out, &s.cfg, op, file).await {
        Ok(o) => o,
        Err(c) => return c,
    };
    let outcome = match ui::while_reading(plan(&s, &opened.state, &opts), &s, &opened.state, p.refresh).await {
        Ok(o) => o,
        Err(d) => return out.diags(&s, d),
    };
    match &events {
        Some(ev) => plan_events(ev, &outcome.plan),
        None => print!("{}", meshform_engine::plan::render::render_plan_with(&outcome.plan, out.color, p.verbose)),
    }
    if !outcome.plan.has_changes() {
        // Nothing to change live, but what the refresh saw is recorded (as Terraform's apply does).
        if meshform_engine::apply::record_refreshed(&outcome.plan, &mut opened.state) > 0
            && let Err(m) = opened.write().await
        {
            return out.error(&m);
        }
        opened.close().await;
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
    if events.is_none() {
        println!();
    }
    run_apply(out, &s, &outcome.plan, opened, s.parallelism(p.parallelism), Some(outcome.reads), events).await
}

async fn run_apply(
    out: &Out,
    s: &Session,
    plan: &Plan,
    mut opened: Opened,
    parallelism: usize,
    reads: Option<std::sync::Arc<Reads>>,
    events: Option<std::sync::Arc<Events>>,
) -> u8 {
    let cancel = crate::signals::applying();
    let total = plan.changes.iter().filter(|c| c.action.is_change()).count() as u64;
    let progress =
        std::sync::Arc::new(ui::ApplyProgress::new(total, out.color, plan.mode == Mode::Destroy, events.clone()));
    let beats = progress.heartbeats(ui::heartbeat_interval());
    let opts = ApplyOptions { parallelism, cancel, reads };
    let result = apply(s, plan, &mut opened.locked, &mut opened.state, &opts, progress.as_ref()).await;
    beats.abort();
    crate::signals::applied();
    progress.bar.finish_and_clear();
    progress.flush();
    if let Some(m) = opened.locked.lost() {
        eprintln!(
            "warning: the state lock could not be renewed during the apply ({m}); the state was written only because nobody else wrote it since"
        );
    }
    opened.close().await;
    match result {
        Ok(report) => {
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            match &events {
                Some(ev) => summarize_events(ev, plan, &report),
                None => summarize(out, plan, &report),
            }
        }
        Err(d) => out.diags(s, d),
    }
}

/// The end of an apply as events: the counts, the outputs and the checks.
fn summarize_events(ev: &Events, plan: &Plan, r: &ApplyReport) -> u8 {
    let (added, changed, destroyed, adopted, forgotten) = counts(plan, r);
    let failed = r.count(|x| matches!(x, NodeResult::Failed(_)));
    let verb = if plan.mode == Mode::Destroy { "destroy" } else { "apply" };
    let msg = format!("{verb}: {added} added, {changed} changed, {destroyed} destroyed, {failed} failed");
    let level = if r.success() { "info" } else { "error" };
    ev.emit(
        level,
        "change_summary",
        &msg,
        serde_json::json!({
            "operation": verb,
            "changes": { "add": added, "change": changed, "remove": destroyed, "adopt": adopted, "forget": forgotten, "failed": failed },
            "complete": r.success(),
            "interrupted": r.cancelled,
        }),
    );
    if !r.outputs.is_empty() {
        let outputs: serde_json::Map<String, serde_json::Value> = r
            .outputs
            .iter()
            .map(|(k, v)| {
                let sensitive = matches!(v, meshform_engine::value::Value::Redacted(_));
                (k.clone(), serde_json::json!({ "value": v.to_plain_json(), "sensitive": sensitive }))
            })
            .collect();
        ev.emit("info", "outputs", "outputs", serde_json::json!({ "outputs": outputs }));
    }
    for c in &r.checks {
        let level = if c.passed { "info" } else { "error" };
        ev.emit(level, "check", &c.name, serde_json::json!({ "check": c }));
    }
    if r.cancelled {
        INTERRUPTED
    } else if !r.success() || r.checks.iter().any(|c| !c.passed) {
        ERROR
    } else {
        OK
    }
}

/// Added, changed, destroyed, adopted and forgotten by an apply.
fn counts(plan: &Plan, r: &ApplyReport) -> (usize, usize, usize, usize, usize) {
    use meshform_engine::plan::Action as A;
    let done =
        |a: A| r.results.iter().filter(|(_, act, res)| *act == a && matches!(res, NodeResult::Done { .. })).count();
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
    (
        done(A::Create) + done(A::Replace),
        done(A::Update),
        done(A::Delete) + done(A::Replace) - released,
        done(A::Adopt),
        done(A::Forget),
    )
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
    if done(A::Forget) > 0 {
        also.push_str(&format!(", {} forgotten", done(A::Forget)));
    }
    if !plan.moves.is_empty() {
        also.push_str(&format!(", {} moved", plan.moves.len()));
    }
    if released > 0 {
        also.push_str(&format!(", {released} released (kept)"));
    }
    let failed: Vec<_> = r.results.iter().filter(|(_, _, res)| matches!(res, NodeResult::Failed(_))).collect();
    let skipped: Vec<_> = r.results.iter().filter(|(_, _, res)| matches!(res, NodeResult::Skipped { .. })).collect();
    let verb = if plan.mode == Mode::Destroy { "Destroy" } else { "Apply" };
    println!();
    if plan.mode == Mode::RefreshOnly {
        println!("{}", st.green(&st.bold(&format!("Refresh-only apply complete: state records what is live ({} record(s) updated, {} forgotten); nothing live was changed.", plan.drift.iter().filter(|d| !d.deleted).count(), done(A::Forget)))));
        return OK;
    }
    if r.success() {
        println!(
            "{}",
            st.green(
                &st.bold(&format!("{verb} complete: {added} added, {changed} changed, {destroyed} destroyed{also}."))
            )
        );
    } else {
        for (a, _, res) in &failed {
            if let NodeResult::Failed(e) = res {
                match e.message.contains(&a.to_string()) {
                    true => eprintln!("{} {e}", st.red("error:")),
                    false => eprintln!("{} {a}: {e}", st.red("error:")),
                }
                if let Some(h) = &e.hint {
                    eprintln!("  hint: {h}");
                }
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

pub(crate) async fn apply_saved(out: &Out, planfile: &Path, vars: &VarArgs, p: &PlanArgs) -> u8 {
    let plan = match super::show::load_saved(out, planfile) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let fixed = saved::fixed_variables(&plan);
    let file = PathBuf::from(&plan.inputs.config_path);
    let mut s = match load(out, &file, vars, fixed) {
        Ok(s) => s,
        Err(c) => return c,
    };
    if plan.mode != Mode::Destroy
        && let Err(c) = super::discover(out, &mut s).await
    {
        return c;
    }
    if let Err(m) = saved::check_inputs(&s, &plan) {
        return out.error(&format!("{m}; the saved plan no longer describes this desired state: make a new plan"));
    }
    let opened = match open(out, &s.cfg, "apply", &file).await {
        Ok(o) => o,
        Err(c) => return c,
    };
    if let Err(m) = saved::check_fresh(&plan, &opened.state) {
        return out.error(&m);
    }
    if !plan.has_changes() {
        println!("The saved plan has no changes.");
        opened.close().await;
        return OK;
    }
    println!(
        "Applying the saved plan {}: {}\n",
        planfile.display(),
        meshform_engine::plan::render::summary_line(&plan)
    );
    run_apply(out, &s, &plan, opened, s.parallelism(p.parallelism), None, None).await
}
