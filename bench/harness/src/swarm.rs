//! `berth-bench swarm`: berth's swarm target beside `docker stack deploy` on
//! the same three-node cluster (the test suite's, from `berth-test-support`),
//! in the same run, each measured to convergence (every task running):
//!
//! - cold apply and no-op apply of N stateless services, each publishing a
//!   host-mode port (berth's default; the stack file says `mode: host`);
//! - failed requests during a rolling update of a stateless web service
//!   (one replica, then two), counted by a client on the deployment's overlay
//!   network asking for the page by name every 50 ms.
//!
//! ```text
//! berth-bench swarm --berth PATH --image IMAGE [--sizes 20,100] [--runs N] --out DIR
//! ```
//!
//! berth and the stack take turns within each repetition, so both see the
//! same machine. Services are reached by name with the `dnsrr` endpoint
//! mode on both sides: the virtual IP needs IPVS, which the nodes lack.
//! Everything lives in the cluster, which is removed at the end.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::swarm::SwarmCluster;
use serde_json::json;

use crate::Flags;

/// How long convergence may take before the figure is given up.
const CONVERGE_LIMIT: Duration = Duration::from_secs(900);

pub async fn run(args: &[String]) -> Result<(), String> {
    let flags = Flags::new(args);
    let berth = flags.required("--berth")?.to_string();
    let image = flags.required("--image")?.to_string();
    let out = flags.required("--out")?.to_string();
    let runs = flags.number("--runs", 3)?;
    let sizes: Vec<u32> = flags
        .get("--sizes")
        .unwrap_or("20,100")
        .split(',')
        .map(|s| s.trim().parse().map_err(|e| format!("--sizes {s:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let cluster = SwarmCluster::start(3);
    cluster.load_image(&image);
    eprintln!("swarm: 3 nodes ready in {:?}", started.elapsed());
    let bench = Bench {
        cluster: &cluster,
        berth,
        image,
        dir: tempfile::Builder::new()
            .prefix("berth-bench-swarm-")
            .tempdir()
            .map_err(|e| e.to_string())?,
    };
    for n in sizes {
        bench.apply_figures(n, runs, &out)?;
    }
    bench.rolling_figure(&out)?;
    Ok(())
}

struct Bench<'a> {
    cluster: &'a SwarmCluster,
    berth: String,
    image: String,
    dir: tempfile::TempDir,
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Bench<'_> {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: &str) -> Result<std::path::PathBuf, String> {
        let p = self.path(name);
        std::fs::write(&p, content).map_err(|e| format!("write {}: {e}", p.display()))?;
        Ok(p)
    }

    /// `berth ARGS -f FILE --target swarm` against the manager.
    fn berth(&self, file: &std::path::Path, args: &[&str]) -> Result<Duration, String> {
        let t = Instant::now();
        let out = Command::new(&self.berth)
            .args(args)
            .arg("-f")
            .arg(file)
            .args(["--target", "swarm"])
            .env("DOCKER_HOST", self.cluster.manager_host())
            .env("BERTH_STATE_DIR", self.path("state"))
            .env("BERTH_UNIT_DIR", self.path("units"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run berth: {e}"))?;
        let took = t.elapsed();
        if !out.status.success() {
            return Err(format!("berth {args:?} failed: {}", text(&out)));
        }
        Ok(took)
    }

    /// `docker args...` against the manager, which must succeed.
    fn docker(&self, args: &[&str]) -> Result<String, String> {
        let out = self.cluster.docker(0, args);
        if !out.status.success() {
            return Err(format!("docker {args:?} failed: {}", text(&out)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Services whose name starts with `prefix` and their running/desired
    /// replicas, by `docker service ls`.
    fn converged(&self, prefix: &str, n: u32) -> Result<bool, String> {
        let ls = self.docker(&[
            "service",
            "ls",
            "--filter",
            &format!("name={prefix}"),
            "--format",
            "{{.Name}} {{.Replicas}}",
        ])?;
        let mut count = 0;
        for line in ls.lines() {
            let Some((_, replicas)) = line.split_once(' ') else {
                continue;
            };
            let Some((running, desired)) = replicas.split_once('/') else {
                return Ok(false);
            };
            if running != desired.split_whitespace().next().unwrap_or("") {
                return Ok(false);
            }
            count += 1;
        }
        Ok(count == n)
    }

    fn wait_converged(&self, prefix: &str, n: u32) -> Result<(), String> {
        let t = Instant::now();
        while !self.converged(prefix, n)? {
            if t.elapsed() > CONVERGE_LIMIT {
                return Err(format!("{prefix}: not converged after {CONVERGE_LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Until no container of a service named `prefix*` is left on any node
    /// (so the next cold figure starts from nothing).
    fn wait_gone(&self, prefix: &str) -> Result<(), String> {
        let t = Instant::now();
        loop {
            let left: usize = (0..self.cluster.nodes())
                .map(|i| {
                    let out = self.cluster.docker(
                        i,
                        &[
                            "ps",
                            "-aq",
                            "--filter",
                            "label=com.docker.swarm.service.name",
                            "--filter",
                            &format!("name={prefix}"),
                        ],
                    );
                    String::from_utf8_lossy(&out.stdout).lines().count()
                })
                .sum();
            let services =
                self.docker(&["service", "ls", "-q", "--filter", &format!("name={prefix}")])?;
            if left == 0 && services.is_empty() {
                return Ok(());
            }
            if t.elapsed() > CONVERGE_LIMIT {
                return Err(format!("{prefix}: {left} containers left"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn files(&self, n: u32) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
        let image = &self.image;
        let mut toml = format!("name = \"bswb{n}\"\n");
        let mut stack = String::from("version: \"3.8\"\nservices:\n");
        for i in 1..=n {
            toml.push_str(&format!(
                "[services.s{i}]\nimage = \"{image}\"\ncommand = [\"sleep\", \"1000000\"]\nstop_signal = \"KILL\"\nendpoint_mode = \"dnsrr\"\nports = [\"{}:80\"]\n",
                21000 + n + i
            ));
            stack.push_str(&format!(
                "  s{i}:\n    image: {image}\n    command: [\"sleep\", \"1000000\"]\n    stop_signal: SIGKILL\n    ports:\n      - {{ target: 80, published: {}, mode: host }}\n    deploy:\n      endpoint_mode: dnsrr\n",
                23000 + n + i
            ));
        }
        Ok((
            self.write(&format!("b{n}.toml"), &toml)?,
            self.write(&format!("stack{n}.yml"), &stack)?,
        ))
    }

    fn apply_figures(&self, n: u32, runs: u32, out: &str) -> Result<(), String> {
        let (toml, stack) = self.files(n)?;
        let stack = stack.to_string_lossy().into_owned();
        let (bp, sp) = (format!("bswb{n}-"), format!("bsws{n}_"));
        let mut fig = [(); 4].map(|_| Vec::new());
        for r in 0..runs {
            // berth: its apply returns once every task runs.
            let cold = self.berth(&toml, &["apply"])?;
            if !self.converged(&bp, n)? {
                return Err(format!("berth apply returned before {n} services ran"));
            }
            let noop = self.berth(&toml, &["apply"])?;
            fig[0].push(seconds(cold));
            fig[1].push(seconds(noop));
            self.berth(&toml, &["destroy"])?;
            self.wait_gone(&bp)?;
            // The stack: deploy returns at once; the figure runs to convergence.
            let t = Instant::now();
            self.docker(&["stack", "deploy", "-c", &stack, &format!("bsws{n}")])?;
            self.wait_converged(&sp, n)?;
            let cold = t.elapsed();
            let t = Instant::now();
            self.docker(&["stack", "deploy", "-c", &stack, &format!("bsws{n}")])?;
            self.wait_converged(&sp, n)?;
            let noop = t.elapsed();
            fig[2].push(seconds(cold));
            fig[3].push(seconds(noop));
            self.docker(&["stack", "rm", &format!("bsws{n}")])?;
            self.wait_gone(&sp)?;
            eprintln!(
                "swarm {n} run {}: berth cold {:.1}s noop {:.2}s, stack cold {:.1}s noop {:.2}s",
                r + 1,
                fig[0][r as usize],
                fig[1][r as usize],
                fig[2][r as usize],
                fig[3][r as usize]
            );
        }
        for (name, samples) in ["cold-berth", "noop-berth", "cold-stack", "noop-stack"]
            .iter()
            .zip(fig)
        {
            crate::write_json(
                &format!("{out}/swarm-{name}-{n}.json"),
                &json!({ "services": n, "samples_s": samples }),
            )?;
        }
        Ok(())
    }

    /// Start the request loop on `network`; returns the client's container.
    fn client(&self, network: &str, name: &str) -> Result<String, String> {
        let script = "while :; do if timeout 2 wget -q -O /dev/null http://web/; then echo ok; else echo fail; fi; sleep 0.05; done";
        self.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            &self.image,
            "sh",
            "-c",
            script,
        ])
    }

    /// The client's counts (ok, failed) since it started; removes it.
    fn count(&self, client: &str) -> Result<(usize, usize), String> {
        let logs = self.cluster.docker(0, &["logs", client]);
        let text = String::from_utf8_lossy(&logs.stdout).into_owned();
        let _ = self.cluster.docker(0, &["rm", "-f", client]);
        let ok = text.lines().filter(|l| *l == "ok").count();
        let failed = text.lines().filter(|l| *l == "fail").count();
        Ok((ok, failed))
    }

    fn web_files(
        &self,
        version: u32,
        replicas: u32,
    ) -> Result<(std::path::PathBuf, String), String> {
        let image = &self.image;
        let serve = "mkdir -p /w && echo v$V > /w/index.html && exec httpd -f -p 80 -h /w";
        let toml = format!(
            "name = \"bswr\"\n[services.web]\nimage = \"{image}\"\ncount = {replicas}\ncommand = [\"sh\", \"-c\", \"{serve}\"]\nstop_signal = \"KILL\"\nendpoint_mode = \"dnsrr\"\nenv = {{ V = \"{version}\" }}\n"
        );
        let stack = format!(
            "version: \"3.8\"\nservices:\n  web:\n    image: {image}\n    command: [\"sh\", \"-c\", \"{serve}\"]\n    stop_signal: SIGKILL\n    environment:\n      V: \"{version}\"\n    deploy:\n      replicas: {replicas}\n      endpoint_mode: dnsrr\nnetworks:\n  default:\n    attachable: true\n"
        );
        let t = self.write("web.toml", &toml)?;
        let s = self.write("web.yml", &stack)?;
        Ok((t, s.to_string_lossy().into_owned()))
    }

    /// Has every task of the stack's web service the given version, and is
    /// its update done?
    fn stack_updated(&self) -> Result<bool, String> {
        let state = self.docker(&[
            "service",
            "inspect",
            "-f",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
            "bswsr_web",
        ])?;
        Ok(state == "completed" && self.converged("bswsr_web", 1)?)
    }

    fn rolling_figure(&self, out: &str) -> Result<(), String> {
        let mut all = serde_json::Map::new();
        for replicas in [1, 2] {
            let one = self.rolling(replicas)?;
            eprintln!("swarm rolling update, {replicas} replicas: {one}");
            all.insert(replicas.to_string(), one);
        }
        crate::write_json(
            &format!("{out}/swarm-rolling.json"),
            &serde_json::Value::Object(all),
        )
    }

    /// One rolling update by berth, then one by the stack, of a web service
    /// with `replicas` tasks.
    fn rolling(&self, replicas: u32) -> Result<serde_json::Value, String> {
        let mut result = serde_json::Map::new();
        // berth
        let (toml, _) = self.web_files(1, replicas)?;
        self.berth(&toml, &["apply"])?;
        let client = self.client("bswr", "bswr-client")?;
        std::thread::sleep(Duration::from_secs(2));
        let (toml, _) = self.web_files(2, replicas)?;
        let t = Instant::now();
        self.berth(&toml, &["apply"])?;
        let took = t.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let (ok, failed) = self.count(&client)?;
        result.insert(
            "berth".into(),
            json!({ "ok": ok, "failed": failed, "update_s": seconds(took) }),
        );
        self.berth(&toml, &["destroy"])?;
        self.wait_gone("bswr-")?;
        // the stack
        let (_, stack) = self.web_files(1, replicas)?;
        self.docker(&["stack", "deploy", "-c", &stack, "bswsr"])?;
        self.wait_converged("bswsr_web", 1)?;
        let client = self.client("bswsr_default", "bswsr-client")?;
        std::thread::sleep(Duration::from_secs(2));
        let (_, stack) = self.web_files(2, replicas)?;
        let t = Instant::now();
        self.docker(&["stack", "deploy", "-c", &stack, "bswsr"])?;
        let limit = Instant::now();
        while !self.stack_updated()? {
            if limit.elapsed() > CONVERGE_LIMIT {
                return Err("the stack's web service never finished its update".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let took = t.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let (ok, failed) = self.count(&client)?;
        result.insert(
            "stack".into(),
            json!({ "ok": ok, "failed": failed, "update_s": seconds(took) }),
        );
        self.docker(&["stack", "rm", "bswsr"])?;
        self.wait_gone("bswsr_")?;
        Ok(serde_json::Value::Object(result))
    }
}
