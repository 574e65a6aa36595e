//! The `citystack` binary: `run` (the operator), `crds` (print the CRDs), `render` (print
//! the objects a stack becomes, offline).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "citystack", version, about = "Kubernetes operator for smart-city solution stacks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(citystack::run::RunArgs),
    /// Print the CustomResourceDefinitions (YAML).
    Crds,
    /// Print, offline, the objects a SolutionStack becomes (YAML).
    Render {
        /// File holding one or more SolutionStack documents; other kinds are skipped.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => citystack::run::run(args).await.map_err(|e| e.to_string()),
        Command::Crds => citystack::api::crds_yaml().map(|y| print!("{y}")).map_err(|e| e.to_string()),
        Command::Render { file } => render(&file).map(|y| print!("{y}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("citystack: {error}");
            ExitCode::FAILURE
        }
    }
}

fn render(file: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    citystack::stack::render::render_documents(&text).map_err(|e| format!("{}: {e}", file.display()))
}
