//! `kubectl mcprollout`: the user's command line for McpRollouts (a kubectl plugin).
//!
//! Today: `validate`, the admission checks run locally. The live commands (probe, status,
//! promote, abort, …) arrive with the probe and operator issues.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { files } => validate(&files),
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut invalid = false;
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
        let report = mcp_rollout::validate::validate_yaml(&source);
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
