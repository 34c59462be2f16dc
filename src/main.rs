//! The `meshform` command: argument parsing, provider wiring, exit codes. The work is in the
//! engine and the providers; this is glue.

mod commands;
mod demo;
mod events;
mod exit;
mod signals;
mod sim;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Desired state for multi-cluster service meshes on Google Cloud.
#[derive(Parser, Debug)]
#[command(name = "meshform", version, about, propagate_version = true)]
pub struct Cli {
    /// Never colour output (NO_COLOR does the same).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Use the state `NAME.WORKSPACE` beside the default one (env MESHFORM_WORKSPACE).
    #[arg(long, global = true, env = "MESHFORM_WORKSPACE", value_name = "NAME")]
    pub workspace: Option<String>,
    /// Wait this long for a held state lock (e.g. 30s, 5m) instead of failing at once.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_lock_timeout, default_value = "0s")]
    pub lock_timeout: std::time::Duration,
    #[command(subcommand)]
    pub command: Command,
}

/// Variable inputs shared by commands that read a desired-state file.
#[derive(Args, Debug, Clone, Default)]
pub struct VarArgs {
    /// Set a variable: NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read variables from a TOML file (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

/// Options of commands that plan.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Only this object (with what it depends on; with what depends on it for destroy). Repeatable.
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// At most this many operations at once, across all clusters and APIs [default: 10 per cluster
    /// of [clusters], at least 10]; each cluster's API server and each Google API also has a
    /// budget of its own.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub parallelism: Option<u32>,
    /// Read live objects before planning (false: trust the state).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub refresh: bool,
    /// Replace this object even if nothing forces it (repeatable), e.g. a certificate to rotate.
    #[arg(long = "replace", value_name = "ADDRESS")]
    pub replace: Vec<String>,
    /// Change nothing live: record in state what changed outside meshform (the drift shown).
    #[arg(long)]
    pub refresh_only: bool,
    /// Stream machine-readable events, one JSON object per line, instead of the human output
    /// (schema: engine/schemas/events-v1.schema.json). Implies --auto-approve's absence of
    /// questions: apply and destroy then need --auto-approve.
    #[arg(long)]
    pub json: bool,
    /// Show every change on its own (a plan of many changes groups identical ones of a
    /// block's instances; Markdown also keeps every detail past a comment's size).
    #[arg(long)]
    pub verbose: bool,
}

/// Plan renderings.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For people at a terminal or reading a log.
    Human,
    /// For tools; schema in the README.
    Json,
    /// For a pull-request comment.
    Markdown,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a desired-state file without touching anything live.
    #[command(
        after_help = "Examples:\n  meshform validate plans/asm-multicluster.toml\n  meshform validate mesh.toml --var-file prod.toml"
    )]
    Validate {
        /// The desired-state file.
        file: PathBuf,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Show what apply would change.
    #[command(
        after_help = "Examples:\n  meshform plan mesh.toml\n  meshform plan mesh.toml -out=mesh.plan --format markdown > plan.md   # for a pull request\n  meshform plan mesh.toml --detailed-exitcode   # exit 2 when there are changes\n  meshform plan mesh.toml --replace 'mesh_ca.root' --target 'k8s_namespace.sample[\"cluster-1\"]'\n  meshform plan mesh.toml --refresh-only        # what changed outside meshform, to record"
    )]
    Plan {
        /// The desired-state file.
        file: PathBuf,
        #[command(flatten)]
        vars: VarArgs,
        #[command(flatten)]
        plan: PlanArgs,
        /// Save the plan for `meshform apply PLANFILE`.
        #[arg(long, value_name = "PLANFILE")]
        out: Option<PathBuf>,
        /// How to render the plan.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Exit 2 when there are changes, 0 when there are none.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Plan the destruction of everything (or the targets).
        #[arg(long)]
        destroy: bool,
    },
    /// Make live objects match the desired state (or run a saved plan exactly).
    #[command(
        after_help = "Examples:\n  meshform apply mesh.toml\n  meshform apply mesh.toml -auto-approve --json   # a pipeline: events, one JSON object per line\n  meshform apply mesh.plan --lock-timeout 10m      # a saved plan, after review"
    )]
    Apply {
        /// A desired-state file, or a plan saved with `plan --out`.
        file: PathBuf,
        #[command(flatten)]
        vars: VarArgs,
        #[command(flatten)]
        plan: PlanArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
    },
    /// Destroy everything meshform manages for this file (or the targets and their dependents).
    #[command(
        after_help = "Examples:\n  meshform destroy mesh.toml\n  meshform destroy mesh.toml --target k8s_namespace.sample --auto-approve"
    )]
    Destroy {
        /// The desired-state file.
        file: PathBuf,
        #[command(flatten)]
        vars: VarArgs,
        #[command(flatten)]
        plan: PlanArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
    },
    /// Report what changed outside meshform; exit 2 when anything differs.
    #[command(
        after_help = "Examples:\n  meshform drift mesh.toml                     # exit 0: nothing differs, 2: drift, 1: error\n  meshform drift mesh.toml --format json > drift.json || notify-oncall drift.json\n  meshform drift mesh.toml --format markdown"
    )]
    Drift {
        /// The desired-state file.
        file: PathBuf,
        #[command(flatten)]
        vars: VarArgs,
        /// Only these objects (with what they depend on).
        #[arg(long = "target", value_name = "ADDRESS")]
        targets: Vec<String>,
        /// At most this many reads and checks at once [default: 10 per cluster of [clusters], at
        /// least 10].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10000))]
        parallelism: Option<u32>,
        /// How to render the report.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Stream events, one JSON object per line (see `plan --json`).
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Show a saved plan, or the state of a desired-state file.
    #[command(
        after_help = "Examples:\n  meshform plan mesh.toml --out mesh.plan && meshform show mesh.plan --format markdown\n  meshform show mesh.toml            # what the state records\n  meshform show mesh.plan --format json | jq '.changes[].address'"
    )]
    Show {
        /// A plan saved with `plan --out`, or a desired-state file (its state is shown).
        file: PathBuf,
        /// How to render it.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the outputs recorded by the last apply.
    #[command(
        after_help = "Examples:\n  meshform output mesh.toml\n  meshform output mesh.toml ingress_ip --raw\n  meshform output mesh.toml --json"
    )]
    Output {
        /// The desired-state file.
        file: PathBuf,
        /// Only this output.
        name: Option<String>,
        /// As JSON (`{name: {value, sensitive}}`, or the value alone with NAME).
        #[arg(long, conflicts_with = "raw")]
        json: bool,
        /// The value alone, without quotes (a string, number or bool; needs NAME).
        #[arg(long, requires = "name")]
        raw: bool,
    },
    /// Print meshform's version (and the formats it reads and writes).
    #[command(after_help = "Examples:\n  meshform version\n  meshform version --json")]
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the resource and data types with their attributes, or print the JSON Schema of a
    /// desired-state file.
    #[command(
        after_help = "Examples:\n  meshform schema                      # every type, one table each\n  meshform schema k8s_manifest\n  meshform schema --json | jq '.[].name'\n  meshform schema --json-schema > meshform.schema.json   # for editors (taplo, Even Better TOML)"
    )]
    Schema {
        /// Only this type.
        #[arg(value_name = "TYPE")]
        ty: Option<String>,
        /// As JSON: name, kind, description, import id and attributes of each type.
        #[arg(long, conflicts_with = "json_schema")]
        json: bool,
        /// The JSON Schema of the desired-state TOML (the one checked in as
        /// engine/schemas/desired-state.schema.json).
        #[arg(long)]
        json_schema: bool,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  meshform completions bash > ~/.local/share/bash-completion/completions/meshform\n  meshform completions zsh > \"${fpath[1]}/_meshform\"\n  meshform completions fish > ~/.config/fish/completions/meshform.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the dependency graph in Graphviz DOT.
    #[command(after_help = "Examples:\n  meshform graph mesh.toml | dot -Tsvg > graph.svg")]
    Graph {
        /// The desired-state file.
        file: PathBuf,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Adopt an existing object into state.
    #[command(
        after_help = "Examples:\n  meshform import mesh.toml gcp_firewall.pods istio-multicluster-pods\n  meshform import mesh.toml 'k8s_namespace.sample[\"cluster-1\"]' cluster-1/sample\n\nThe import id of each type: `meshform schema TYPE`. An [[import]] table does the same through a reviewed plan."
    )]
    Import {
        /// The desired-state file.
        file: PathBuf,
        /// The address it takes, e.g. gcp_firewall.pods.
        address: String,
        /// The provider's id of the object.
        id: String,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Inspect or edit the state.
    #[command(subcommand)]
    State(StateCommand),
    /// Workspaces: several states of one desired state in one backend (`--workspace NAME`).
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// The whole job against an in-process simulator, narrated (validate, plan, apply, drift, repair, destroy).
    #[command(after_help = "Examples:\n  meshform demo\n  NO_COLOR=1 meshform demo > demo.log")]
    Demo,
    /// Run the simulator of Google Cloud (and the clusters' API servers) in the foreground.
    #[command(
        after_help = "Examples:\n  meshform sim --dir .meshform-sim > sim.log 2>&1 &\n  until grep -q ready sim.log; do sleep 0.2; done; source .meshform-sim/env.sh\n  meshform sim --world testdata/worlds/three-clusters.toml --latency 50 --fault-rate 0.05"
    )]
    Sim {
        /// Where to write env.sh, kubeconfig and world.json.
        #[arg(long, default_value = ".meshform-sim")]
        dir: PathBuf,
        /// A TOML world description (default: two private clusters in two regions).
        #[arg(long)]
        world: Option<PathBuf>,
        /// Delay added to every request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency: u64,
        /// Fraction of requests answered with 429 or 503 (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Polls a long-running operation takes to finish.
        #[arg(long, default_value_t = 1)]
        lro_polls: u32,
        /// Seed of the fault sequence.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Operations also finish this many seconds after they start, polled or not, as GKE's do
        /// (0: nothing happens by time: operations finish only by polls, a deleted namespace at
        /// once).
        #[arg(long, default_value_t = 10.0)]
        lro_seconds: f64,
    },
    /// Remove a state lock left by a run that did not finish.
    #[command(
        after_help = "Examples:\n  meshform force-unlock 6f1c0f6e-... mesh.toml   # the id the lock error printed"
    )]
    ForceUnlock {
        /// The lock id, as printed in the lock error.
        lock_id: String,
        /// The desired-state file whose state is locked (default: search this directory).
        file: Option<PathBuf>,
    },
}

/// `state` subcommands.
fn parse_lock_timeout(s: &str) -> Result<std::time::Duration, String> {
    meshform_engine::config::duration::parse_duration(s)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. 30s, 5m, 1h)"))
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Move a record to another address (a rename; a block address moves every instance).
    #[command(
        after_help = "Examples:\n  meshform state mv mesh.toml gcp_firewall.pods gcp_firewall.mesh_pods\n  meshform state mv mesh.toml 'k8s_namespace.sample[\"cluster-1\"]' 'k8s_namespace.sample[\"prod-us\"]'\n\nA [[moved]] table in the desired state does the same through a reviewed plan."
    )]
    Mv {
        /// The desired-state file.
        file: PathBuf,
        /// The address the record has.
        from: String,
        /// The address it takes.
        to: String,
    },
    /// List the addresses in state.
    #[command(after_help = "Examples:\n  meshform state list mesh.toml")]
    List {
        /// The desired-state file.
        file: PathBuf,
    },
    /// Show one object (sensitive values hidden).
    #[command(after_help = "Examples:\n  meshform state show mesh.toml gcp_firewall.pods")]
    Show {
        /// The desired-state file.
        file: PathBuf,
        /// The address.
        address: String,
    },
    /// Forget an object without deleting it.
    #[command(after_help = "Examples:\n  meshform state rm mesh.toml 'k8s_namespace.sample[\"cluster-1\"]'")]
    Rm {
        /// The desired-state file.
        file: PathBuf,
        /// The address.
        address: String,
    },
    /// Print the state as JSON (sensitive values stay salted hashes).
    #[command(after_help = "Examples:\n  meshform state pull mesh.toml > backup.json")]
    Pull {
        /// The desired-state file.
        file: PathBuf,
    },
    /// Replace the stored state with a state file (lineage and serial checked).
    #[command(after_help = "Examples:\n  meshform state push mesh.toml backup.json")]
    Push {
        /// The desired-state file.
        file: PathBuf,
        /// The state file to push (as `state pull` prints it).
        state_file: PathBuf,
        /// Push even when the lineage differs or the serial is not newer.
        #[arg(long)]
        force: bool,
    },
    /// List the earlier versions the backend keeps.
    #[command(after_help = "Examples:\n  meshform state history mesh.toml")]
    History {
        /// The desired-state file.
        file: PathBuf,
    },
    /// Restore an earlier version (as `state history` lists it) as the next serial.
    #[command(after_help = "Examples:\n  meshform state rollback mesh.toml 1733140000123456")]
    Rollback {
        /// The desired-state file.
        file: PathBuf,
        /// The version to restore.
        #[arg(value_name = "VERSION")]
        revision: String,
    },
    /// Copy the state to the backend another file's `[state]` describes, lineage and serial kept.
    #[command(after_help = "Examples:\n  meshform state migrate mesh.toml --to gcs-state.toml")]
    Migrate {
        /// The desired-state file whose state is copied.
        file: PathBuf,
        /// A file whose `[state]` table is the destination (it may hold nothing else).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// List the states kept beside this one (the default first).
    #[command(
        after_help = "Examples:\n  meshform workspace list mesh.toml\n  meshform plan mesh.toml --workspace staging"
    )]
    List {
        /// The desired-state file.
        file: PathBuf,
    },
}

/// Ends the process by SIGPIPE, as if it had not been ignored, when printing to a closed stdout
/// or stderr panics; any other panic is reported as usual.
fn quiet_on_closed_output() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        let closed = (msg.starts_with("failed printing to stdout") || msg.starts_with("failed printing to stderr"))
            && msg.contains("Broken pipe");
        if closed {
            // SAFETY: restoring the default action and raising the signal ends the process as a
            // closed pipe ends any command-line tool.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
        }
        report(info);
    }));
}

/// Long options Terraform users type with one dash (`-auto-approve`, `-out=FILE`): accepted as
/// the same options with two.
const SINGLE_DASH_LONG: &[&str] = &[
    "auto-approve",
    "out",
    "var",
    "var-file",
    "target",
    "parallelism",
    "detailed-exitcode",
    "destroy",
    "refresh",
    "refresh-only",
    "replace",
    "lock-timeout",
    "no-color",
    "json",
    "format",
    "workspace",
    "raw",
];

/// Options of [`SINGLE_DASH_LONG`] that take a value (`-var x`: `x` is that value).
const TAKES_VALUE: &[&str] =
    &["out", "var", "var-file", "target", "parallelism", "replace", "lock-timeout", "format", "workspace"];

/// The arguments with Terraform's single-dash long options rewritten to two dashes. Only whole
/// option names in [`SINGLE_DASH_LONG`] are rewritten (`-var=x`, `-var x`), never the value of
/// an option given as the next argument (`--var -raw` keeps `-raw`), nor anything after `--`.
fn terraform_style(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut rest_are_values = false;
    let mut next_is_value = false;
    for a in args {
        let was_value = std::mem::take(&mut next_is_value);
        let rewritten = match a.to_str() {
            Some(_) if was_value || rest_are_values => None,
            Some("--") => {
                rest_are_values = true;
                None
            }
            Some(s) if s.starts_with('-') => {
                let name = s.trim_start_matches('-');
                next_is_value = !name.contains('=') && TAKES_VALUE.contains(&name);
                let single = !s.starts_with("--") && SINGLE_DASH_LONG.contains(&name.split('=').next().unwrap_or(""));
                single.then(|| std::ffi::OsString::from(format!("-{s}")))
            }
            _ => None,
        };
        out.push(rewritten.unwrap_or(a));
    }
    out
}

fn main() -> ExitCode {
    // A closed pipe on stdout or stderr (`meshform plan x.toml | head`) ends the process quietly
    // by SIGPIPE, as it does other command-line tools, instead of a panic in `println!`. Only
    // there: SIGPIPE itself stays ignored (Rust's default), because a write to a network
    // connection the server closed raises it too, and that must be an error to retry, not the
    // death of an apply (found by the fleet benchmark: a run killed mid-drift, locks unreleased).
    quiet_on_closed_output();
    let cli = Cli::parse_from(terraform_style(std::env::args_os()));
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let code = rt.block_on(async {
        signals::install();
        let code = commands::run(cli).await;
        // Locks dropped on an early return are released in the background: finish that.
        meshform_engine::state::handle::settle().await;
        code
    });
    ExitCode::from(signals::exit_code(code))
}

#[cfg(test)]
mod tests {
    use super::terraform_style;

    fn rewrite(args: &[&str]) -> Vec<String> {
        terraform_style(args.iter().map(std::ffi::OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_options_are_rewritten_but_never_a_value() {
        assert_eq!(
            rewrite(&["meshform", "apply", "x.toml", "-auto-approve", "-out=p", "-var", "-raw", "-replace", "a.b"]),
            ["meshform", "apply", "x.toml", "--auto-approve", "--out=p", "--var", "-raw", "--replace", "a.b"]
        );
        assert_eq!(
            rewrite(&["meshform", "-var=-raw", "-raw", "--", "-raw"]),
            ["meshform", "--var=-raw", "--raw", "--", "-raw"]
        );
        assert_eq!(rewrite(&["meshform", "--target", "-out", "-x"]), ["meshform", "--target", "-out", "-x"]);
    }
}
