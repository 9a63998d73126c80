//! The mcp-rollout controller.
//!
//! `mcp-rollout-operator crd` prints the CustomResourceDefinitions to install;
//! `mcp-rollout-operator api-reference` prints the API reference and `update-readme README.md`
//! rewrites the README's generated sections (API reference, state diagram). The controller loop itself arrives with the operator issue; until
//! then running it without a command says so and exits non-zero instead of pretending to run.

use std::process::ExitCode;

const USAGE: &str = "usage:
  mcp-rollout-operator crd                      print the CustomResourceDefinitions (YAML)
  mcp-rollout-operator api-reference            print the API reference (Markdown)
  mcp-rollout-operator update-readme README     rewrite README's generated sections";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["crd"] => match mcp_rollout::crd::render_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("cannot render the CRDs: {e}")),
        },
        ["api-reference"] => {
            println!("{}", mcp_rollout::reference::render_markdown());
            ExitCode::SUCCESS
        }
        ["update-readme", readme] => {
            let current = match std::fs::read_to_string(readme) {
                Ok(text) => text,
                Err(e) => return fail(&format!("cannot read {readme}: {e}")),
            };
            let Some(updated) = mcp_rollout::reference::update_readme(&current) else {
                return fail(&format!("{readme} lacks the markers of a generated section"));
            };
            match std::fs::write(readme, updated) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("cannot write {readme}: {e}")),
            }
        }
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        [] => fail("the controller is not implemented yet; see README.md (status)"),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
