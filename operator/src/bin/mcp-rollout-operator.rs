//! The mcp-rollout controller.
//!
//! `mcp-rollout-operator crd` prints the CustomResourceDefinitions to install. The controller
//! loop itself arrives with the operator issue; until then the binary says so and exits non-zero
//! rather than pretending to run.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("crd") => match mcp_rollout::crd::render_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Some("-h" | "--help") | None => {
            println!(
                "usage: mcp-rollout-operator crd    print the CustomResourceDefinitions (YAML)"
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("error: unknown command `{other}` (try --help)");
            ExitCode::from(2)
        }
    }
}
