//! `make bench` scale run: what users feel at fleet size, on the local control plane.
//!
//! 1. bare: the stacks' rendered Deployments and Services server-side-applied by a bare client
//!    (no operator), timed until every Deployment is available: the physical limit;
//! 2. operator: the same stacks created as SolutionStacks, timed create→Ready; the ratio to 1;
//!    RSS and CPU at converge; writes and CPU in a quiet window; create→Ready of single stacks
//!    on the idle cluster; writes after a restart;
//! 3. azure: N AzureResources against the ARM simulator: time to Ready, ARM requests per
//!    resource while provisioning and per resource-hour at steady state, 429s.
//!
//! One JSON line per figure (stdout and `--out`), then a Markdown table. Nothing here asserts a
//! figure: this measures, the README reports.

mod azure;
mod fleet;
mod process;
mod report;
mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use process::Operators;
use report::{Report, quantile};

#[derive(Parser, Debug)]
#[command(about = "citystack scale benchmark (run by `make bench` against a local control plane)")]
struct Args {
    /// Admin kubeconfig of the cluster to measure on.
    #[arg(long, env = "CITYSTACK_BENCH_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The operator binary (a release build).
    #[arg(long, default_value = "target/release/citystack")]
    operator: PathBuf,
    /// Stacks in the fleet (0 skips the stack run).
    #[arg(long, default_value_t = 1000)]
    stacks: usize,
    /// Stacks per namespace.
    #[arg(long, default_value_t = 10)]
    per_namespace: usize,
    /// AzureResources in the Azure run (0 skips it).
    #[arg(long, default_value_t = 500)]
    azure: usize,
    /// Reconciles (operator) and stacks in flight (bare client) at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds of the quiet window after convergence.
    #[arg(long, default_value_t = 60)]
    quiet: u64,
    /// Stacks created one at a time on the idle cluster for create→Ready latency.
    #[arg(long, default_value_t = 20)]
    singles: usize,
    /// Azure resync (seconds) of the operator restarted after provisioning (which runs at the
    /// default 1 h); steady-state reads are counted over two of these and scaled to one hour.
    #[arg(long, default_value_t = 60)]
    azure_resync: u64,
    /// Skip the bare client (the ratio is then not reported).
    #[arg(long)]
    skip_bare: bool,
    /// Deadline of each wait, seconds; a stack fleet not Ready by then reports how many stacks
    /// were (`ready_at_deadline`) and skips its steady-state phases.
    #[arg(long, default_value_t = 3600)]
    deadline: u64,
    /// Where JSON lines are appended; the table goes next to it as `.md`.
    #[arg(long, default_value = ".local/bench/results.jsonl")]
    out: PathBuf,
    /// Leave Services out of the fleet (no component declares a port): on this kind of
    /// machine the API server's ClusterIP allocator, which takes one Service at a time and
    /// counts every allocated address in each allocation, makes a 10,000-stack fleet's
    /// 20,000 Services take hours whoever creates them.
    #[arg(long)]
    without_services: bool,
    /// Operator replicas for the stack run; more than one share the stacks (`--shard`).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    citystack::run::install_crypto_provider();
    let file = Kubeconfig::read_from(&args.kubeconfig).unwrap_or_else(|e| panic!("{}: {e}", args.kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    let client = Client::try_from(config).unwrap_or_else(|e| panic!("{e}"));
    install_crds(&client).await;
    let mut report = Report::new(&args.out);
    let dir = args.out.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));

    if args.stacks > 0 {
        stacks(&client, &args, &mut report, &dir).await;
    }
    if args.azure > 0 {
        azure(&client, &args, &mut report, &dir).await;
    }
    let table = report.table();
    println!("\n{table}");
    let _ = std::fs::write(args.out.with_extension("md"), table);
}

/// Applies the CRDs from the API types and waits until they are Established.
async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    use kube::{CustomResourceExt, ResourceExt};
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [citystack::api::SolutionStack::crd(), citystack::api::AzureResource::crd()] {
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("citystack-bench").force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("install CRD {name}: {e}"));
        let start = Instant::now();
        loop {
            let crd = crds.get(&name).await.ok();
            let conditions = crd.and_then(|c| c.status).and_then(|s| s.conditions).unwrap_or_default();
            if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "CRD {name} not Established in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Seconds between two instants.
fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

/// Per-key start times, shared with the creating tasks.
type Starts = Arc<Mutex<Vec<Option<Instant>>>>;

fn starts(n: usize) -> Starts {
    Arc::new(Mutex::new(vec![None; n]))
}

/// How long the fleet's Deployments took to be created, from `first` (the first stack
/// created or applied): the writer's share of a converge, before the cluster's own work.
fn children_created(
    report: &mut Report,
    run: &str,
    figure: &'static str,
    seen: &watch::Seen,
    prefix: &str,
    first: Instant,
) {
    if let Some(last) = seen.last(prefix) {
        report.add(run, figure, secs(first, last), "s", "first create to the fleet's last Deployment created");
    }
}

fn recorder(starts: &Starts) -> Arc<dyn Fn(usize) + Send + Sync> {
    let starts = starts.clone();
    Arc::new(move |i| {
        if let Some(slot) = starts.lock().as_mut().ok().and_then(|s| s.get_mut(i)) {
            *slot = Some(Instant::now());
        }
    })
}

async fn stacks(client: &Client, args: &Args, report: &mut Report, dir: &std::path::Path) {
    let n = args.stacks;
    let services = !args.without_services;
    let run = format!("stacks={n} replicas={}{}", args.replicas, if services { "" } else { " services=0" });
    let deadline = Duration::from_secs(args.deadline);
    let namespaces = |prefix: &str| -> Vec<String> {
        let mut names: Vec<String> = (0..n).map(|i| fleet::namespace(prefix, i, args.per_namespace)).collect();
        names.dedup();
        names
    };

    // 1. The bare client: the physical limit.
    let mut bare_seconds = None;
    if !args.skip_bare {
        fleet::prepare_namespaces(client, &namespaces("bare")).await;
        let seen = watch::deployments(client, &format!("{}=bare", fleet::BENCH_LABEL));
        let children = watch::deployments_created(client);
        let started = starts(n);
        let machine_before = process::machine_cpu();
        eprintln!("bench: bare client applies {n} stacks' children");
        fleet::bare_apply(client, n, args.per_namespace, args.concurrency, services, recorder(&started)).await;
        if seen.wait("bench-bare-", n * 3, deadline).await {
            let started = started.lock().map(|s| s.clone()).unwrap_or_default();
            let mut latencies = Vec::new();
            let mut last = None::<Instant>;
            for (i, start) in started.iter().enumerate() {
                let ns = fleet::namespace("bare", i, args.per_namespace);
                let ready = ["web", "api", "worker"].iter().filter_map(|c| seen.get(&format!("{ns}/s{i}-{c}"))).max();
                if let (Some(start), Some(ready)) = (start, ready) {
                    latencies.push(secs(*start, ready));
                    last = last.max(Some(ready));
                }
            }
            let first = started.iter().flatten().min().copied();
            if let (Some(first), Some(last)) = (first, last) {
                let seconds = secs(first, last);
                bare_seconds = Some(seconds);
                report.add(
                    &run,
                    "bare_converge_seconds",
                    seconds,
                    "s",
                    "bare client: first apply to last stack's Deployments available",
                );
                machine_share(report, &run, "bare_machine_cpu_share", machine_before, seconds);
                children_created(report, &run, "bare_children_created_seconds", &children, "bench-bare-", first);
                report.add(
                    &run,
                    "bare_p50_seconds",
                    quantile(&latencies, 0.5),
                    "s",
                    "bare client: per stack, first apply to available (p50)",
                );
                report.add(
                    &run,
                    "bare_p99_seconds",
                    quantile(&latencies, 0.99),
                    "s",
                    "bare client: per stack, first apply to available (p99)",
                );
            }
        }
        seen.stop();
        children.stop();
    }

    if !args.skip_bare {
        // The operator phase must not pay for the bare fleet: per-object costs of the control
        // plane (kwok's pod work, the ClusterIP allocator, watch-cache consistency checks)
        // grow with what the cluster holds.
        eprintln!("bench: removing the bare client's namespaces");
        fleet::remove_namespaces(client, &namespaces("bare"), deadline).await;
    }

    // 2. The operator.
    fleet::prepare_namespaces(client, &namespaces("op")).await;
    fleet::prepare_namespaces(client, &["bench-idle-0".to_owned()]).await;
    let operator_args = |resync: u64| {
        vec!["--concurrency".to_owned(), args.concurrency.to_string(), "--resync".into(), resync.to_string()]
    };
    let operator = Operators::start(
        &args.operator,
        &args.kubeconfig,
        &operator_args(300),
        &dir.join("operator-stacks"),
        args.replicas,
    )
    .await;
    let rss_empty = operator.rss_mb();
    report.add(
        &run,
        "rss_empty_mb",
        rss_empty,
        "MB",
        "operator RSS, caches synced, before any stack (largest replica)",
    );
    let heap_empty = operator.metric("citystack_heap_allocated_bytes", &[]).await / 1e6;
    let seen = watch::stacks(client);
    let children = watch::deployments_created(client);
    let created = starts(n);
    let cpu_before = operator.cpu_seconds();
    let (requests_before, writes_before) = (operator.requests().await, operator.writes().await);
    let reconciles_before = operator.reconciles().await;
    let machine_before = process::machine_cpu();
    eprintln!("bench: creating {n} SolutionStacks");
    fleet::create_stacks(client, 0..n, "op", args.per_namespace, services, recorder(&created)).await;
    let converged = seen.wait("bench-op-", n, deadline).await;
    if converged {
        let created = created.lock().map(|s| s.clone()).unwrap_or_default();
        let mut latencies = Vec::new();
        let mut last = None::<Instant>;
        for (i, start) in created.iter().enumerate() {
            let key = format!("{}/s{i}", fleet::namespace("op", i, args.per_namespace));
            if let (Some(start), Some(ready)) = (start, seen.get(&key)) {
                latencies.push(secs(*start, ready));
                last = last.max(Some(ready));
            }
        }
        let first = created.iter().flatten().min().copied();
        if let (Some(first), Some(last)) = (first, last) {
            let seconds = secs(first, last);
            report.add(&run, "converge_seconds", seconds, "s", "operator: first stack created to last stack Ready");
            machine_share(report, &run, "machine_cpu_share", machine_before, seconds);
            children_created(report, &run, "children_created_seconds", &children, "bench-op-", first);
            if let Some(bare) = bare_seconds.filter(|b| *b > 0.0) {
                report.add(
                    &run,
                    "converge_ratio",
                    seconds / bare,
                    "ratio",
                    "operator converge time / bare client's (target <= 1.25)",
                );
            }
        }
        report.add(
            &run,
            "ready_p50_seconds",
            quantile(&latencies, 0.5),
            "s",
            "operator: per stack, create to Ready (p50), all created at once",
        );
        report.add(
            &run,
            "ready_p99_seconds",
            quantile(&latencies, 0.99),
            "s",
            "operator: per stack, create to Ready (p99), all created at once",
        );
    } else {
        let ready = seen.count("bench-op-") as f64;
        report.add(&run, "ready_at_deadline", ready, "stacks", "stacks Ready when the deadline passed (--deadline)");
    }
    children.stop();
    report.add(
        &run,
        "cpu_converge_seconds",
        operator.cpu_seconds() - cpu_before,
        "s",
        "operator CPU time while converging",
    );
    let per_stack = |v: f64| v / n.max(1) as f64;
    let requests = operator.requests().await - requests_before;
    report.add(
        &run,
        "requests_per_stack",
        per_stack(requests),
        "requests",
        "API requests the operator sent per stack while converging, watches aside (the bare client: 5)",
    );
    let writes = operator.writes().await - writes_before;
    report.add(&run, "writes_per_stack", per_stack(writes), "writes", "of which writes: applies, status, Events");
    let reconciles = operator.reconciles().await - reconciles_before;
    report.add(
        &run,
        "reconciles_per_stack",
        per_stack(reconciles),
        "reconciles",
        "reconciles per stack while converging",
    );
    let rss = operator.rss_mb();
    report.add(&run, "rss_converged_mb", rss, "MB", "operator RSS with the fleet converged (largest replica)");
    report.add(
        &run,
        "rss_per_1000_stacks_mb",
        (rss - rss_empty) * 1000.0 / n.max(1) as f64 * args.replicas.max(1) as f64,
        "MB",
        "RSS the fleet adds per 1,000 stacks it holds (converged minus empty, per replica's share; target <= 20)",
    );
    report.add(&run, "rss_peak_mb", operator.peak_rss_mb(), "MB", "operator peak RSS so far");
    // Where the RSS goes: live data (allocated) against what the allocator keeps (resident).
    let heap = operator.metric("citystack_heap_allocated_bytes", &[]).await / 1e6;
    let resident = operator.metric("citystack_heap_resident_bytes", &[]).await / 1e6;
    report.add(&run, "heap_allocated_converged_mb", heap, "MB", "live heap data, converged (all replicas)");
    report.add(
        &run,
        "heap_allocated_per_1000_stacks_mb",
        (heap - heap_empty) * 1000.0 / n.max(1) as f64,
        "MB",
        "live heap data the fleet adds per 1,000 stacks (all replicas)",
    );
    report.add(
        &run,
        "heap_resident_converged_mb",
        resident,
        "MB",
        "allocator's resident pages, converged (all replicas)",
    );
    if !converged {
        // Quiet windows, restarts and resyncs mean nothing while the fleet still rolls out.
        eprintln!("bench: --deadline passed before the fleet was Ready; steady-state phases skipped");
        operator.stop();
        return;
    }

    // Quiet window: nothing changes, so nothing should be written and little CPU used. The
    // control plane first finishes its own writes (the controller manager's late Events and
    // status updates), which the API server's counters cannot tell from ours.
    process::settle(client, Duration::from_secs(10), deadline).await;
    let (cpu, ours, server) =
        (operator.cpu_seconds(), operator.writes().await, process::apiserver_writes(client).await);
    let resyncs_before = operator.reconciles().await;
    tokio::time::sleep(Duration::from_secs(args.quiet)).await;
    let window = args.quiet as f64;
    let cpu_used = operator.cpu_seconds() - cpu;
    report.add(
        &run,
        "idle_cpu_seconds_per_minute",
        cpu_used * 60.0 / window,
        "s/min",
        format!("operator CPU in a {window:.0} s quiet window, per minute (and the resyncs that fell due in it)"),
    );
    let resyncs = operator.reconciles().await - resyncs_before;
    report.add(&run, "quiet_resyncs", resyncs, "reconciles", "resyncs in the quiet window (--resync 300 s)");
    report.add(
        &run,
        "quiet_writes_operator",
        operator.writes().await - ours,
        "writes",
        format!("writes the operator sent in the {window:.0} s quiet window"),
    );
    report.add(
        &run,
        "quiet_writes_apiserver",
        process::apiserver_writes(client).await - server,
        "writes",
        format!("writes the API server served to stacks, children, Secrets, Events in the {window:.0} s quiet window"),
    );

    // Single stacks on the idle cluster.
    let mut singles = Vec::new();
    for j in 0..args.singles {
        let i = n + j;
        let start = Instant::now();
        fleet::create_stacks(client, i..i + 1, "idle", usize::MAX, services, recorder(&starts(0))).await;
        let key = format!("bench-idle-0/s{i}");
        let wait_start = Instant::now();
        while seen.get(&key).is_none() && wait_start.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(ready) = seen.get(&key) {
            singles.push(secs(start, ready));
        }
    }
    if !singles.is_empty() {
        report.add(
            &run,
            "idle_ready_p50_seconds",
            quantile(&singles, 0.5),
            "s",
            format!("create to Ready of one stack on the idle cluster (p50 of {})", singles.len()),
        );
        report.add(
            &run,
            "idle_ready_p99_seconds",
            quantile(&singles, 0.99),
            "s",
            format!("create to Ready of one stack on the idle cluster (p99 of {})", singles.len()),
        );
    }

    // A fresh restart: every stack is reconciled again, and finds nothing to write.
    let total = (n + singles.len()) as f64;
    operator.stop();
    let server = process::apiserver_writes(client).await;
    let restarted = Instant::now();
    // Resync every `quiet` seconds, so the steady-state window below sees each stack's resync.
    let operator = Operators::start(
        &args.operator,
        &args.kubeconfig,
        &operator_args(args.quiet),
        &dir.join("operator-restart"),
        args.replicas,
    )
    .await;
    let until = Instant::now() + deadline;
    while operator.reconciles().await < total && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu_restart = operator.cpu_seconds();
    report.add(
        &run,
        "restart_reconcile_all_seconds",
        restarted.elapsed().as_secs_f64(),
        "s",
        "restart to every stack reconciled once",
    );
    report.add(
        &run,
        "restart_writes_operator",
        operator.writes().await,
        "writes",
        "writes the restarted operator sent while reconciling every stack",
    );
    report.add(
        &run,
        "restart_writes_apiserver",
        process::apiserver_writes(client).await - server,
        "writes",
        "writes the API server served to the operator's resources over the restart",
    );
    report.add(
        &run,
        "rss_restarted_mb",
        operator.rss_mb(),
        "MB",
        "operator RSS after a restart with the fleet converged",
    );

    // Steady state: one resync period, every stack resynced once, nothing changed.
    let (reconciles, writes) = (operator.reconciles().await, operator.writes().await);
    let cpu = operator.cpu_seconds();
    report.add(
        &run,
        "cpu_restart_seconds",
        cpu_restart,
        "s",
        "operator CPU from start to every stack reconciled (lists, first reconciles)",
    );
    // A little over one period: the restart's reconciles took a moment to spread.
    tokio::time::sleep(Duration::from_secs(args.quiet + 5)).await;
    let resyncs = operator.reconciles().await - reconciles;
    let cpu_used = operator.cpu_seconds() - cpu;
    report.add(
        &run,
        "resyncs_steady",
        resyncs,
        "reconciles",
        format!("stack reconciles in one {} s resync period at steady state (N expected)", args.quiet),
    );
    if resyncs > 0.0 {
        report.add(
            &run,
            "cpu_ms_per_resync",
            cpu_used * 1000.0 / resyncs,
            "ms",
            "operator CPU per steady-state resync (render, drift check, no request)",
        );
    }
    report.add(
        &run,
        "resync_writes_operator",
        operator.writes().await - writes,
        "writes",
        "writes the operator sent over that resync period",
    );
    operator.stop();
}

async fn azure(client: &Client, args: &Args, report: &mut Report, dir: &std::path::Path) {
    let n = args.azure;
    let run = format!("azure={n}");
    let deadline = Duration::from_secs(args.deadline);
    let sim = azure::Sim::start(Duration::from_secs(2), dir).await;
    let mut namespaces: Vec<String> = (0..n).map(azure::namespace).collect();
    namespaces.dedup();
    for ns in &namespaces {
        fleet::prepare_namespaces(client, std::slice::from_ref(ns)).await;
    }
    // Provisioning at the default Azure resync (1 h): nothing else competes for the budget.
    let mut flags = vec!["--concurrency".to_owned(), args.concurrency.to_string()];
    flags.extend(sim.flags());
    let operator = Operators::start(&args.operator, &args.kubeconfig, &flags, &dir.join("operator-azure"), 1).await;
    let seen = watch::azure(client);
    azure::prepare(client, &namespaces).await;
    let groups: Vec<String> = namespaces.iter().map(|ns| format!("{ns}/group")).collect();
    let until = Instant::now() + deadline;
    while groups.iter().any(|g| seen.get(g).is_none()) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.reset_log().await;
    eprintln!("bench: creating {n} AzureResources");
    let created = azure::create(client, 0..n).await;
    let first = created.iter().map(|(_, at)| *at).min();
    if !seen.wait("bench-az-", n + namespaces.len(), deadline).await {
        eprintln!("bench: Azure run incomplete");
    }
    let latencies: Vec<f64> =
        created.iter().filter_map(|(key, at)| seen.get(key).map(|ready| secs(*at, ready))).collect();
    let last = created.iter().filter_map(|(key, _)| seen.get(key)).max();
    let requests = sim.requests().await;
    if let (Some(first), Some(last)) = (first, last) {
        report.add(
            &run,
            "azure_converge_seconds",
            secs(first, last),
            "s",
            "first AzureResource created to last Ready (simulated operations take 2 s)",
        );
    }
    report.add(
        &run,
        "azure_ready_p50_seconds",
        quantile(&latencies, 0.5),
        "s",
        "per AzureResource, create to Ready (p50)",
    );
    report.add(
        &run,
        "azure_ready_p99_seconds",
        quantile(&latencies, 0.99),
        "s",
        "per AzureResource, create to Ready (p99)",
    );
    let per = |count: u64| count as f64 / n.max(1) as f64;
    report.add(
        &run,
        "arm_requests_per_resource_provisioning",
        per(requests.total),
        "requests",
        format!(
            "ARM requests per resource while provisioning ({} reads, {} list-keys, {} writes in all)",
            requests.reads, requests.list_keys, requests.writes
        ),
    );
    report.add(
        &run,
        "arm_429_provisioning",
        requests.throttled as f64,
        "responses",
        "429 Too Many Requests while provisioning",
    );

    report.add(
        &run,
        "rss_azure_mb",
        operator.rss_mb(),
        "MB",
        format!("operator RSS holding {n} AzureResources (and the stack fleet)"),
    );
    operator.stop();

    // Steady state, measured quickly: a restart with a short Azure resync reads every resource
    // once (counted), then two resync periods are counted and scaled to the default 1 h.
    sim.reset_log().await;
    flags.extend(["--azure-resync".to_owned(), args.azure_resync.to_string()]);
    let operator =
        Operators::start(&args.operator, &args.kubeconfig, &flags, &dir.join("operator-azure-resync"), 1).await;
    let until = Instant::now() + Duration::from_secs(args.azure_resync);
    loop {
        let seen_reads = sim.requests().await;
        if seen_reads.reads + seen_reads.list_keys >= 2 * n as u64 || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let restart = sim.requests().await;
    report.add(
        &run,
        "arm_requests_per_resource_restart",
        per(restart.total),
        "requests",
        format!(
            "ARM requests per resource when the operator restarts ({} GETs, {} list-keys, {} writes, {} 429s)",
            restart.reads, restart.list_keys, restart.writes, restart.throttled
        ),
    );
    sim.reset_log().await;
    let window = args.azure_resync as f64 * 2.2;
    tokio::time::sleep(Duration::from_secs_f64(window)).await;
    let steady = sim.requests().await;
    let cycles = window / args.azure_resync as f64;
    report.add(&run, "arm_reads_per_resource_hour", per(steady.reads + steady.list_keys) / cycles, "requests", format!("ARM reads per resource per resync at steady state ({} GETs, {} list-keys over {window:.0} s at a {} s resync), i.e. per resource-hour at the default 1 h", steady.reads, steady.list_keys, args.azure_resync));
    report.add(
        &run,
        "arm_writes_steady",
        steady.writes as f64,
        "requests",
        format!("ARM writes at steady state over {window:.0} s (no drift: expected 0)"),
    );
    report.add(&run, "arm_429_steady", steady.throttled as f64, "responses", "429s at steady state");
    operator.stop();
}

/// Reports the share of the machine's CPU (0 to 1, all cores) used since `before` over a
/// phase of `seconds`, measured now (right after the phase's last object became ready).
fn machine_share(report: &mut Report, run: &str, figure: &'static str, before: (f64, usize), seconds: f64) {
    let (busy, cores) = process::machine_cpu();
    if seconds > 0.0 {
        let share = (busy - before.0) / (seconds * cores as f64);
        report.add(run, figure, share, "share", "busy CPU of the whole machine (all cores) over the phase");
    }
}
