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
    /// Print, offline, the objects a SolutionStack becomes (YAML), expanded from its
    /// SolutionBlueprint when it names one.
    Render {
        /// Files (or folders of .yaml files) holding SolutionStack and SolutionBlueprint
        /// documents (repeat -f); other kinds are skipped.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Show which instances a blueprint revision would move and what it would change in each
    /// (objects added, changed with the fields that differ, removed), before it rolls out.
    Plan {
        /// Files (or folders) holding the SolutionBlueprint (with the revision) and, offline,
        /// its instances.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// The blueprint (default: the only one in the files).
        #[arg(long)]
        blueprint: Option<String>,
        /// The revision (default: the highest published in the file).
        #[arg(long)]
        version: Option<String>,
        /// Take the instances from the cluster (every namespace) instead of the files.
        #[arg(long)]
        live: bool,
        /// Kubeconfig for --live (default: KUBECONFIG, then ~/.kube/config, then in-cluster).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
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
        Command::Render { files } => {
            read(&files).and_then(|d| citystack::blueprint::offline::render(&d)).map(|y| print!("{y}"))
        }
        Command::Plan { files, blueprint, version, live, kubeconfig } => {
            plan(&files, blueprint, version.as_deref(), live.then_some(kubeconfig)).await.map(|out| print!("{out}"))
        }
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

fn read(files: &[PathBuf]) -> Result<citystack::blueprint::offline::Documents, String> {
    let mut documents = citystack::blueprint::offline::Documents::default();
    for given in files {
        // A folder: its .yaml and .yml files, in name order (as `kubectl apply -f` reads one).
        let mut paths = vec![given.clone()];
        if given.is_dir() {
            let entries = std::fs::read_dir(given).map_err(|e| format!("{}: {e}", given.display()))?;
            paths = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            paths.sort();
        }
        for file in paths {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            documents.read(&file.display().to_string(), &text)?;
        }
    }
    Ok(documents)
}

async fn plan(
    files: &[PathBuf],
    blueprint: Option<String>,
    version: Option<&str>,
    live: Option<Option<PathBuf>>,
) -> Result<String, String> {
    let mut documents = read(files)?;
    let name = match blueprint {
        Some(name) => name,
        None if documents.blueprints.len() == 1 => documents.blueprints.keys().next().cloned().unwrap_or_default(),
        None => return Err("name the blueprint with --blueprint (the files hold none or several)".into()),
    };
    if let Some(kubeconfig) = live {
        let metrics = citystack::telemetry::Metrics::new();
        let client = citystack::run::client(kubeconfig.as_ref(), &metrics).await.map_err(|e| e.to_string())?;
        let stacks: kube::Api<citystack::api::SolutionStack> = kube::Api::all(client);
        let list = stacks.list(&Default::default()).await.map_err(|e| format!("list SolutionStacks: {e}"))?;
        documents.stacks = list.items;
    }
    citystack::blueprint::offline::plan(&documents, &name, version)
}
