//! The `citystack` binary: `run` (the operator), `crds` (print the CRDs), `render` (print
//! the objects a stack becomes, offline).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// jemalloc returns freed memory to the system and keeps fragmentation low where glibc's
// per-thread arenas hold on to what watch lists and JSON parsing used once.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's `stats.allocated` and `stats.resident`, refreshed (an `epoch` advance) at each read.
fn heap() -> Option<citystack::telemetry::Heap> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let allocated = u64::try_from(stats::allocated::read().ok()?).ok()?;
    let resident = u64::try_from(stats::resident::read().ok()?).ok()?;
    Some(citystack::telemetry::Heap { allocated, resident })
}

#[derive(Parser)]
#[command(name = "citystack", version, about = "Kubernetes operator for smart-city solution stacks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(Box<citystack::run::RunArgs>),
    /// Print the CustomResourceDefinitions (YAML).
    Crds {
        /// Write one file per CRD into this folder instead (`<name>.yaml`).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
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
        Command::Run(args) => {
            citystack::telemetry::set_heap_probe(heap);
            citystack::run::run(*args).await.map_err(|e| e.to_string())
        }
        Command::Crds { out_dir: None } => {
            citystack::api::crds_yaml().map(|y| print!("{y}")).map_err(|e| e.to_string())
        }
        Command::Crds { out_dir: Some(dir) } => write_crds(&dir),
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

fn write_crds(dir: &PathBuf) -> Result<(), String> {
    let documents = citystack::api::crd_documents().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, yaml) in documents {
        let path = dir.join(name);
        std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn render(file: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    citystack::stack::render::render_documents(&text).map_err(|e| format!("{}: {e}", file.display()))
}
