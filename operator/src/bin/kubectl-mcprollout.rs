//! `kubectl mcprollout`: the user's command line for McpRollouts (a kubectl plugin).
//!
//! `validate` (the admission checks, run locally), `probe` (the operator's MCP probe and schema
//! diff against any URL) and `status` (a live view of a rollout). The manual controls (promote,
//! abort, …) arrive with the operator's second issue.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use mcp_rollout::{
    api::{ExpectedContent, HumanDuration, McpRollout, SchemaCompatibility, protocol},
    probe::{
        self, HeaderText, ProbeConfig, ProbeReport, SecretText, Snapshot, ToolCallCheck, TransportChoice,
    },
};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "kubectl-mcprollout", version, about = "Safe rollouts of MCP servers on Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check McpRollout manifests as the API server would (schema and CEL rules), offline.
    /// Other kinds in the files are skipped. Exits 1 when any manifest is invalid.
    Validate {
        /// YAML files (multi-document allowed); `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Probe an MCP server as the operator does before every traffic step: handshake (both
    /// protocol eras), every protocol version it serves, its tools, an optional tool call, and
    /// the tool-schema diff against a baseline. Exits 1 when the probe fails or the diff is
    /// blocked by the policy.
    Probe(Box<ProbeArgs>),
    /// Show a rollout: steps, desired and effective weight, the latest probe per revision, gate
    /// verdicts with their numbers, drain countdowns.
    Status(StatusArgs),
    /// Finish the current pause (canary), flip now (blue-green preview) or end the
    /// post-promotion window. Gates still apply. With --full, skip every remaining step.
    Promote {
        #[command(flatten)]
        target: Target,
        /// Skip every remaining step: straight to 100%.
        #[arg(long)]
        full: bool,
    },
    /// Stop advancing (rollbacks still happen).
    Pause(Target),
    /// Undo `pause`.
    Resume(Target),
    /// Roll back now.
    Abort(Target),
    /// Start a rolled-back revision again from the first step.
    Retry(Target),
    /// Open the approval gates (`spec.gates[].approval`) the rollout waits at now — all of
    /// them, or only --gate NAME. An approval counts for the point it is given at only.
    Approve {
        #[command(flatten)]
        target: Target,
        /// The gate to approve (default: every approval gate waiting now).
        #[arg(long)]
        gate: Option<String>,
    },
    /// Every McpRollout of the namespace (or all, with -A): phase, weights (desired/effective),
    /// step, revisions, age.
    List(ListArgs),
    /// Replace every pod through the rollout's own steps, probes and drains: sets the pod
    /// template's `mcprollout.dev/restartedAt`, a new revision (as `kubectl rollout restart`
    /// does to a Deployment; under GitOps, make the change in Git instead).
    Restart(Target),
    /// The templates that were stable, newest last (kept by the operator as ControllerRevisions,
    /// `spec.revisionHistoryLimit` of them).
    History(Target),
    /// Set `spec.template` back to the template that was stable before the current one (or to
    /// history entry --to-revision): a new rollout through the steps, probes and gates. Under
    /// GitOps, revert the change in Git instead (the tool would put the template back).
    Undo {
        #[command(flatten)]
        target: Target,
        /// The history entry's number (`kubectl mcprollout history`).
        #[arg(long)]
        to_revision: Option<i64>,
    },
}

/// Which cluster and namespace.
#[derive(Args)]
struct Cluster {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Kubeconfig to use (default: KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: its current context).
    #[arg(long)]
    context: Option<String>,
}

/// Which rollout, on which cluster.
#[derive(Args)]
struct Target {
    /// The McpRollout.
    name: String,
    #[command(flatten)]
    cluster: Cluster,
}

#[derive(Args)]
struct StatusArgs {
    /// The McpRollout.
    name: String,
    #[command(flatten)]
    cluster: Cluster,
    /// Keep the view up to date (every second) until interrupted.
    #[arg(short, long)]
    watch: bool,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    cluster: Cluster,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
    Auto,
    StreamableHttp,
    Sse,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    Strict,
    AllowAdditions,
    Off,
}

#[derive(Args)]
struct ProbeArgs {
    /// The MCP endpoint (e.g. http://127.0.0.1:8080/mcp), or the SSE stream URL of a legacy
    /// HTTP+SSE server.
    url: String,
    #[arg(long, value_enum, default_value = "auto")]
    transport: TransportArg,
    /// Protocol versions to offer and accept (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = protocol::default_accepted_versions())]
    protocol_versions: Vec<String>,
    /// Tools that must be listed (comma-separated).
    #[arg(long, value_delimiter = ',')]
    expect_tools: Vec<String>,
    /// Compare the tools and protocol versions with a snapshot saved by --save (or a --json
    /// report).
    #[arg(long, conflicts_with = "against")]
    baseline: Option<PathBuf>,
    /// Compare with another live server (e.g. the stable revision).
    #[arg(long)]
    against: Option<String>,
    /// Schema-compatibility policy for the diff.
    #[arg(long, value_enum, default_value = "strict")]
    policy: PolicyArg,
    /// Call this tool.
    #[arg(long)]
    call: Option<String>,
    /// Arguments of the call, a JSON object.
    #[arg(long, requires = "call", default_value = "{}")]
    args: String,
    /// Text the call's result must contain.
    #[arg(long, requires = "call")]
    expect: Option<String>,
    /// A regular expression the call's result text must match.
    #[arg(long, requires = "call")]
    expect_regex: Option<String>,
    /// JSON that must be a subset of the call's structured result.
    #[arg(long, requires = "call")]
    expect_json: Option<String>,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Bearer token for the Authorization header.
    #[arg(long, env = "MCP_PROBE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA bundle to trust (only these roots) for https.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Deadline for the whole probe (each request gets half).
    #[arg(long, default_value = "10s")]
    timeout: HumanDuration,
    /// Print the report (and diff) as JSON.
    #[arg(long)]
    json: bool,
    /// Write the tool snapshot (tools + protocol versions) for a later --baseline.
    #[arg(long)]
    save: Option<PathBuf>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { files } => validate(&files),
        Command::Promote { target, full } => request(&target, if full { "promote-full" } else { "promote" }),
        Command::Pause(target) => request(&target, "pause"),
        Command::Resume(target) => request(&target, "resume"),
        Command::Abort(target) => request(&target, "abort"),
        Command::Retry(target) => request(&target, "retry"),
        Command::Approve { target, gate } => match gate {
            Some(gate) => request(&target, &format!("approve={gate}")),
            None => request(&target, "approve"),
        },
        Command::List(args) => report("list", list(&args)),
        Command::Restart(target) => report("restart", restart(&target)),
        Command::History(target) => report("history", history(&target)),
        Command::Undo { target, to_revision } => report("undo", undo(&target, to_revision)),
        Command::Status(args) => report("status", status(&args)),
        Command::Probe(args) => match run_probe(*args) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("kubectl-mcprollout probe: {message}");
                ExitCode::from(2)
            }
        },
    }
}

fn probe_config(args: &ProbeArgs, url: &str) -> Result<ProbeConfig, String> {
    let mut config =
        ProbeConfig::new(url).with_timeout(args.timeout.as_std().max(Duration::from_millis(100)));
    config.transport = match args.transport {
        TransportArg::Auto => TransportChoice::Auto,
        TransportArg::StreamableHttp => TransportChoice::StreamableHttp,
        TransportArg::Sse => TransportChoice::Sse,
    };
    config.accepted_versions.clone_from(&args.protocol_versions);
    config.expected_tools.clone_from(&args.expect_tools);
    config.bearer_token = args.token.clone().map(SecretText);
    for header in &args.headers {
        let (name, value) =
            header.split_once(':').ok_or_else(|| format!("header {header:?} is not \"Name: value\""))?;
        config.headers.push((name.trim().to_owned(), HeaderText::Plain(value.trim().to_owned())));
    }
    if let Some(path) = &args.ca_file {
        config.ca_bundle_pem =
            Some(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?);
    }
    if let Some(name) = &args.call {
        let arguments = match serde_json::from_str::<Value>(&args.args) {
            Ok(Value::Object(map)) => map,
            _ => return Err(format!("--args {:?} is not a JSON object", args.args)),
        };
        let json = match &args.expect_json {
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Some(map),
                Ok(_) => {
                    return Err("--expect-json must be a JSON object (MCP structured content is one)".into());
                }
                Err(e) => return Err(format!("--expect-json is not JSON: {e}")),
            },
            None => None,
        };
        if let Some(pattern) = &args.expect_regex {
            regex_lite::Regex::new(pattern).map_err(|e| format!("--expect-regex: {e}"))?;
        }
        let expect =
            ExpectedContent { contains: args.expect.clone(), regex: args.expect_regex.clone(), json };
        let has_expectation = expect.contains.is_some() || expect.regex.is_some() || expect.json.is_some();
        config.tool_call =
            Some(ToolCallCheck { name: name.clone(), arguments, expect: has_expectation.then_some(expect) });
    }
    Ok(config)
}

fn run_probe(args: ProbeArgs) -> Result<ExitCode, String> {
    let config = probe_config(&args, &args.url)?;
    let baseline_config = args.against.as_deref().map(|url| probe_config(&args, url)).transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let (report, against) = runtime.block_on(async {
        match &baseline_config {
            Some(baseline) => {
                let (report, against) = tokio::join!(probe::probe(&config), probe::probe(baseline));
                (report, Some(against))
            }
            None => (probe::probe(&config).await, None),
        }
    });
    if let Some(path) = &args.save {
        let snapshot = serde_json::to_string_pretty(&report.snapshot()).map_err(|e| e.to_string())?;
        std::fs::write(path, snapshot + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let baseline: Option<(String, Snapshot)> = match (&args.baseline, &against) {
        (Some(path), _) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let snapshot = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not a probe snapshot: {e}", path.display()))?;
            Some((path.display().to_string(), snapshot))
        }
        (None, Some(against)) if against.passed => Some((against.url.clone(), against.snapshot())),
        _ => None,
    };
    let policy = match args.policy {
        PolicyArg::Strict => SchemaCompatibility::Strict,
        PolicyArg::AllowAdditions => SchemaCompatibility::AllowAdditions,
        PolicyArg::Off => SchemaCompatibility::Off,
    };
    let diff = baseline
        .as_ref()
        .filter(|_| report.passed)
        .map(|(_, snapshot)| probe::diff(snapshot, &report.snapshot()));
    let compatible = diff.as_ref().is_none_or(|d| d.is_compatible(policy));
    let against_failed = against.as_ref().is_some_and(|a| !a.passed);
    print_outcome(
        &args,
        &report,
        against.as_ref(),
        baseline.as_ref().map(|(name, _)| name.as_str()),
        diff.as_ref(),
        policy,
    );
    let ok = report.passed && compatible && !against_failed;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_outcome(
    args: &ProbeArgs,
    report: &ProbeReport,
    against: Option<&ProbeReport>,
    baseline_name: Option<&str>,
    diff: Option<&probe::SchemaDiff>,
    policy: SchemaCompatibility,
) {
    if args.json {
        let blocking: Vec<&probe::Change> = diff.map(|d| d.blocking(policy)).unwrap_or_default();
        let out = json!({
            "report": report,
            "against": against,
            "baseline": baseline_name,
            "diff": diff,
            "policy": policy,
            "blocking": blocking,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    print!("{}", probe::render::report(report));
    if let Some(against) = against.filter(|a| !a.passed) {
        println!("\nBaseline probe failed, no diff:\n{}", probe::render::report(against));
    }
    if let (Some(diff), Some(name)) = (diff, baseline_name) {
        print!("{}", probe::render::diff(diff, policy, name));
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut invalid = false;
    // The CEL rules compiled once for every file.
    let checker = mcp_rollout::validate::Checker::new();
    for path in files {
        let source = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        };
        let source = match source {
            Ok(text) => text,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", path.display());
                invalid = true;
                continue;
            }
        };
        let report = checker.check_yaml(&source);
        for problem in &report.problems {
            eprintln!("{}: {problem}", path.display());
        }
        invalid |= !report.problems.is_empty();
        println!(
            "{}: {} McpRollout(s) checked, {} other document(s) skipped, {} problem(s)",
            path.display(),
            report.checked,
            report.skipped,
            report.problems.len()
        );
    }
    if invalid { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// The client configuration: `--kubeconfig` or the usual places, at `--context` or the
/// kubeconfig's current one (in-cluster when there is no kubeconfig and no context named).
async fn client_config(cluster: &Cluster) -> Result<kube::Config, String> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions { context: cluster.context.clone(), ..KubeConfigOptions::default() };
    let config = match (&cluster.kubeconfig, &cluster.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options).await.map_err(|e| e.to_string())?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await.map_err(|e| e.to_string())?,
        (None, None) => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    let mut config = config;
    mcp_rollout::plugin::pin_api_server_address(&mut config).await?;
    Ok(config)
}

/// The McpRollout API in the target's namespace (default: the kubeconfig's), and that namespace.
async fn rollouts(cluster: &Cluster) -> Result<(kube::Api<McpRollout>, String), String> {
    let config = client_config(cluster).await?;
    let namespace = cluster.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    Ok((kube::Api::namespaced(client, &namespace), namespace))
}

/// Prints a command's error and sets the exit code.
fn report(command: &str, outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kubectl-mcprollout {command}: {message}");
            ExitCode::FAILURE
        }
    }
}

fn list(args: &ListArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        // One kubeconfig read: its client, namespaced or across all namespaces.
        let (api, _) = rollouts(&args.cluster).await?;
        let api = if args.all_namespaces { kube::Api::<McpRollout>::all(api.into_client()) } else { api };
        let mut items = api.list(&kube::api::ListParams::default()).await.map_err(|e| e.to_string())?.items;
        items.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        if items.is_empty() {
            println!("no McpRollouts");
        } else {
            print!(
                "{}",
                mcp_rollout::plugin::list_table(&items, jiff::Timestamp::now(), args.all_namespaces)
            );
        }
        Ok(())
    })
}

fn restart(target: &Target) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (api, namespace) = rollouts(&target.cluster).await?;
        let patch = mcp_rollout::plugin::restart_patch(jiff::Timestamp::now());
        let patched = api
            .patch(&target.name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => format!("no McpRollout {namespace}/{}", target.name),
                other => other.to_string(),
            })?;
        println!(
            "restart requested: revision {} replaces every pod through the rollout's steps and drains",
            mcp_rollout::api::revision_of(&patched.spec.template)
        );
        Ok(())
    })
}

/// The rollout and its history (oldest first).
async fn rollout_history(
    target: &Target,
) -> Result<(kube::Api<McpRollout>, McpRollout, Vec<mcp_rollout::controller::history::Entry>), String> {
    let (api, namespace) = rollouts(&target.cluster).await?;
    let rollout = api.get(&target.name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => format!("no McpRollout {namespace}/{}", target.name),
        other => other.to_string(),
    })?;
    let revisions: kube::Api<k8s_openapi::api::apps::v1::ControllerRevision> =
        kube::Api::namespaced(api.clone().into_client(), &namespace);
    let entries =
        mcp_rollout::controller::history::list(&revisions, &rollout).await.map_err(|e| e.to_string())?;
    Ok((api, rollout, entries))
}

fn history(target: &Target) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (_, rollout, entries) = rollout_history(target).await?;
        print!("{}", mcp_rollout::plugin::history_table(&rollout, &entries, jiff::Timestamp::now()));
        Ok(())
    })
}

fn undo(target: &Target, to: Option<i64>) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (api, rollout, entries) = rollout_history(target).await?;
        let current = mcp_rollout::api::revision_of(&rollout.spec.template);
        let stable = rollout.status.as_ref().and_then(|s| s.stable_revision.as_deref());
        let entry = mcp_rollout::controller::history::undo_target(&entries, &current, stable, to)
            .map_err(|e| e.to_string())?;
        if entry.revision == current {
            println!("spec.template is already revision {current} (history entry {})", entry.number);
            return Ok(());
        }
        let version = rollout.metadata.resource_version.clone().unwrap_or_default();
        // Tested against the version read: a template changed meanwhile is not overwritten.
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "replace", "path": "/spec/template", "value": entry.template},
        ]))
        .map_err(|e| e.to_string())?;
        let params = kube::api::PatchParams { field_manager: Some("kubectl-mcprollout".into()), ..Default::default() };
        api.patch(&target.name, &params, &kube::api::Patch::<()>::Json(patch)).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 422 || s.code == 409 => {
                "the McpRollout changed while undo read it; run undo again".to_owned()
            }
            other => other.to_string(),
        })?;
        println!(
            "undo: spec.template set back to revision {} (history entry {}, {}); it rolls out through the              steps, probes and gates",
            entry.revision,
            entry.number,
            entry.images().join(", ")
        );
        Ok(())
    })
}

/// Asks the operator for `action` through the request annotation (`<action>@<id>`): an
/// annotation, not a spec field, so Argo CD self-heal or Flux never undo it. Waits for the
/// operator to record the request as handled and prints what it says.
fn request(target: &Target, action: &str) -> ExitCode {
    let run = async {
        let (api, namespace) = rollouts(&target.cluster).await?;
        let not_found = |e: kube::Error| match e {
            kube::Error::Api(s) if s.code == 404 => format!("no McpRollout {namespace}/{}", target.name),
            other => other.to_string(),
        };
        let current = api.get(&target.name).await.map_err(not_found)?;
        // A request of ours still unhandled (an earlier run timed out): wait for it rather than
        // write a second id, which the operator would act on as a second promotion.
        let id = if let Some(pending) = mcp_rollout::plugin::pending_request(&current, action) {
            println!("{action} already requested ({pending}), not yet handled: waiting for it");
            pending
        } else {
            let id = format!("{action}@{}", jiff::Timestamp::now().as_nanosecond());
            let patch = json!({"metadata": {"annotations": {mcp_rollout::api::REQUEST_ANNOTATION: id}}});
            api.patch(&target.name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                .await
                .map_err(not_found)?;
            println!("{action} requested ({id})");
            id
        };
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let rollout = api.get(&target.name).await.map_err(|e| e.to_string())?;
            let status = rollout.status.unwrap_or_default();
            if status.last_handled_request.as_deref() == Some(id.as_str()) {
                println!("handled: {}", status.message.unwrap_or_default());
                return Ok(());
            }
        }
        Err(format!(
            "the operator has not handled {id} within 10 s (is it running?); running the command again waits \
             for this request and never sends a second"
        ))
    };
    report(action, tokio::runtime::Runtime::new().map_err(|e| e.to_string()).and_then(|rt| rt.block_on(run)))
}

fn status(args: &StatusArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (api, namespace) = rollouts(&args.cluster).await?;
        let mut last = String::new();
        loop {
            let rollout = api.get(&args.name).await.map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => format!("no McpRollout {namespace}/{}", args.name),
                other => other.to_string(),
            })?;
            let mut view = mcp_rollout::status_view::render(&rollout, jiff::Timestamp::now());
            // The pods under their revisions; a user who may not list pods gets the rest.
            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(api.clone().into_client(), &namespace);
            let selector = format!("{}={}", mcp_rollout::api::labels::ROLLOUT, args.name);
            match pods.list(&kube::api::ListParams::default().labels(&selector)).await {
                Ok(list) => view.push_str(&mcp_rollout::status_view::pods_tree(&rollout, &list.items)),
                Err(e) => view.push_str(&format!("Pods   cannot be listed: {e}\n")),
            }
            if !args.watch {
                print!("{view}");
                return Ok(());
            }
            if view != last {
                // Clear the screen and redraw, as `watch` does.
                print!("\x1b[2J\x1b[H{view}");
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                last = view;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
