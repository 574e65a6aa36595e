//! The operator under test as a child process (its RSS and CPU from /proc, its /metrics),
//! and the API server's own request counters.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Client;

/// A running `citystack run`.
pub struct Operator {
    child: Child,
    admin: String,
    http: reqwest::Client,
    pub log: PathBuf,
}

impl Operator {
    /// Starts the operator with `args` after `run`, its log in `log`, `POD_NAME` set to
    /// `identity` when given; waits for /readyz.
    pub async fn start(
        binary: &Path,
        kubeconfig: &Path,
        args: &[String],
        log: PathBuf,
        identity: Option<&str>,
    ) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("free port: {e}"));
        let admin = format!("127.0.0.1:{port}");
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = Command::new(binary)
            .args(["run", "--log-format", "json", "--admin-addr", &admin, "--kubeconfig"])
            .arg(kubeconfig)
            .args(args)
            .env("RUST_LOG", "warn,citystack::shard=info")
            .envs(identity.map(|i| ("POD_NAME", i)))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let operator = Operator { child, admin: format!("http://{admin}"), http: reqwest::Client::new(), log };
        let start = Instant::now();
        while operator.get("/readyz").await.map(|(code, _)| code) != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "operator not ready in 120 s; log: {}",
                operator.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        operator
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = self.http.get(format!("{}{path}", self.admin)).send().await.ok()?;
        Some((response.status().as_u16(), response.text().await.ok()?))
    }

    /// Sum of a metric's samples whose labels include every `labels` pair.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.get("/metrics").await.map(|(_, t)| t).unwrap_or_default();
        sum(&text, name, labels)
    }

    /// Writes this operator sent to the API server (create, update, patch, delete), except
    /// Lease renewals and the start-up permission check (SelfSubjectAccessReviews store
    /// nothing).
    pub async fn writes(&self) -> f64 {
        let text = self.get("/metrics").await.map(|(_, t)| t).unwrap_or_default();
        ["create", "update", "patch", "delete"]
            .iter()
            .map(|verb| {
                let all = sum(&text, "citystack_kube_requests_total", &[("verb", verb)]);
                let exempt: f64 = ["leases", "selfsubjectaccessreviews"]
                    .iter()
                    .map(|r| sum(&text, "citystack_kube_requests_total", &[("verb", verb), ("resource", r)]))
                    .sum();
                all - exempt
            })
            .sum()
    }

    /// Requests this operator sent (every verb but watch), Lease renewals and the start-up
    /// permission check left out.
    pub async fn requests(&self) -> f64 {
        let text = self.get("/metrics").await.map(|(_, t)| t).unwrap_or_default();
        let all = sum(&text, "citystack_kube_requests_total", &[])
            - sum(&text, "citystack_kube_requests_total", &[("verb", "watch")]);
        let exempt: f64 = ["leases", "selfsubjectaccessreviews"]
            .iter()
            .map(|r| sum(&text, "citystack_kube_requests_total", &[("resource", r)]))
            .sum();
        all - exempt
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now, MB (10^6 bytes).
    pub fn rss_mb(&self) -> f64 {
        status_kb(self.pid(), "VmRSS:") / 1000.0
    }

    /// Peak resident set size, MB.
    pub fn peak_rss_mb(&self) -> f64 {
        status_kb(self.pid(), "VmHWM:") / 1000.0
    }

    /// CPU time used so far (user + system), seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15: indexes 11 and 12 after the name. USER_HZ is 100
        // on every Linux this runs on.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 30 s).
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One operator, or several sharing the stacks (`--shard`); figures are summed over the
/// replicas, RSS is the largest replica's.
pub struct Operators {
    pub replicas: Vec<Operator>,
}

impl Operators {
    /// Starts `count` replicas (sharded when more than one; ring `citystack-bench` in
    /// namespace `default`), logs at `<log>-<i>.log`, and waits until each is ready.
    pub async fn start(binary: &Path, kubeconfig: &Path, args: &[String], log: &Path, count: usize) -> Operators {
        let mut replicas = Vec::new();
        for i in 0..count.max(1) {
            let mut args = args.to_vec();
            if count > 1 {
                args.extend(
                    ["--shard", "--lease-name", "citystack-bench", "--lease-namespace", "default"].map(String::from),
                );
            }
            let file = PathBuf::from(format!("{}-{i}.log", log.display()));
            let identity = format!("bench-replica-{i}");
            replicas
                .push(Operator::start(binary, kubeconfig, &args, file, (count > 1).then_some(identity.as_str())).await);
        }
        Operators { replicas }
    }

    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut total = 0.0;
        for r in &self.replicas {
            total += r.metric(name, labels).await;
        }
        total
    }

    pub async fn writes(&self) -> f64 {
        let mut total = 0.0;
        for r in &self.replicas {
            total += r.writes().await;
        }
        total
    }

    pub async fn requests(&self) -> f64 {
        let mut total = 0.0;
        for r in &self.replicas {
            total += r.requests().await;
        }
        total
    }

    pub async fn reconciles(&self) -> f64 {
        self.metric("citystack_reconciles_total", &[("controller", "solutionstack")]).await
    }

    /// The largest replica's RSS, MB.
    pub fn rss_mb(&self) -> f64 {
        self.replicas.iter().map(Operator::rss_mb).fold(0.0, f64::max)
    }

    /// The largest replica's peak RSS, MB.
    pub fn peak_rss_mb(&self) -> f64 {
        self.replicas.iter().map(Operator::peak_rss_mb).fold(0.0, f64::max)
    }

    /// CPU time of all replicas, seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.replicas.iter().map(Operator::cpu_seconds).sum()
    }

    pub fn stop(self) {
        for r in self.replicas {
            r.stop();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn status_kb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sum of the samples of `name` whose labels include every pair of `labels` (Prometheus text).
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Resources the operator writes; the API server's writes to these count as its writes
/// (nothing else writes them once the fleet is converged).
const OURS: [&str; 6] = ["solutionstacks", "azureresources", "deployments", "services", "secrets", "events"];

/// Write requests (POST, PUT, PATCH, APPLY, DELETE) the API server has served so far to the
/// operator's resources, from its `apiserver_request_total`.
pub async fn apiserver_writes(client: &Client) -> f64 {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap_or_default();
    let text = client.request_text(request).await.unwrap_or_default();
    let mut total = 0.0;
    for verb in ["POST", "PUT", "PATCH", "APPLY", "DELETE"] {
        for resource in OURS {
            total += sum(&text, "apiserver_request_total", &[("verb", verb), ("resource", resource)]);
        }
    }
    total
}

/// The whole machine's CPU time so far (seconds, all cores: user, nice, system, irq,
/// softirq, steal from the first line of /proc/stat) and the number of cores: the control
/// plane, the operator and the bench share the machine, so a phase that keeps every core
/// busy is bound by CPU, not by anyone's concurrency.
pub fn machine_cpu() -> (f64, usize) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: f64 = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .enumerate()
                // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
                .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
                .filter_map(|(_, v)| v.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0);
    let cores = stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count();
    // USER_HZ is 100 on every Linux ABI this runs on.
    (ticks / 100.0, cores.max(1))
}

/// Waits until the API server has served no write to the operator's resources for `calm`
/// (checked every second), or `deadline` has passed.
pub async fn settle(client: &Client, calm: Duration, deadline: Duration) {
    let until = Instant::now() + deadline;
    let (mut last, mut since) = (apiserver_writes(client).await, Instant::now());
    while since.elapsed() < calm && Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = apiserver_writes(client).await;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}
