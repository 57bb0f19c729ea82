//! The reliability suite: a seeded pseudo-random sequence of operations and
//! faults against one deployment (`--integration docker`, so Docker's
//! `unless-stopped` policy is what keeps instances running), checked after
//! every step against a model of what should exist.
//!
//! Operations: the initial apply, changing a service's environment, scaling
//! a service up or down, removing, adding and re-adding services, a container's main
//! process killed by SIGKILL from the host (a crash: Docker restarts it),
//! `docker kill` of a container (Docker counts that as a stop by hand and
//! does not restart it: the next apply must), berth killed by SIGKILL in the
//! middle of an apply (the apply run again) or of a destroy (destroy run
//! again, then apply), `berth stop` / `berth start` / `berth restart` of a
//! service (a restart must replace every container of the service), and
//! `berth destroy` (volumes kept) followed by a fresh apply.
//!
//! After every step the engine must match the model: exactly the expected
//! containers (by name, with their `berth.*` labels, running unless the
//! operator stopped them, with the model's environment, on the deployment's
//! network), spec hashes kept when a service did not change and changed when
//! its environment did, `berth plan` with nothing to do, and every volume
//! ever created still there with the sentinel token written into it when
//! it first appeared (also the volumes of removed services and instances),
//! and seen by its running instance at `/data`.
//!
//! `BERTH_RELIABILITY_SEED` picks the sequence (printed at the start and in
//! every failure), `BERTH_RELIABILITY_STEPS` its length (default 12, short
//! enough for CI). A long run, on demand:
//! `BERTH_RELIABILITY_STEPS=300 cargo test --test testsuite reliability -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::*;

/// How long the engine may take to converge after a step (Docker restarting
/// a crashed container, with its back-off) before a difference counts.
const SETTLE: Duration = Duration::from_secs(45);
const DEFAULT_STEPS: u64 = 12;
const MAX_SERVICES: usize = 4;
const MAX_COUNT: u32 = 3;

/// xorshift64*: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len() as u64) as usize)
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

/// One service as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    count: u32,
    /// The value of `TOKEN` in the service's environment.
    token: String,
}

/// What should exist on the engine.
#[derive(Debug, Default)]
struct Model {
    deployment: String,
    services: BTreeMap<String, Service>,
    /// Instances the operator stopped (`berth stop`).
    stopped: BTreeSet<String>,
    /// Every volume ever created, with the sentinel token written into it.
    volumes: BTreeMap<String, String>,
    /// The next number for service names and tokens.
    serial: u64,
    /// Services removed earlier (their volumes are kept): re-adding one
    /// must hand its instance 1 the old volume, data and all.
    removed: Vec<String>,
}

impl Model {
    fn containers_of(&self, service: &str, s: &Service) -> Vec<String> {
        (1..=s.count)
            .map(|i| {
                if s.count > 1 {
                    format!("{}-{service}-{i}", self.deployment)
                } else {
                    format!("{}-{service}", self.deployment)
                }
            })
            .collect()
    }

    /// The volume of instance `index` of `service`: named after instance 1's
    /// container while `count = 1` and after instance n's otherwise, so that
    /// scaling never hands an instance another one's data.
    fn volume_of(&self, service: &str, index: u32) -> String {
        if index <= 1 {
            format!("{}-{service}-data", self.deployment)
        } else {
            format!("{}-{service}-{index}-data", self.deployment)
        }
    }

    /// Expected containers: name -> (service, instance index).
    fn containers(&self) -> BTreeMap<String, (String, u32)> {
        let mut out = BTreeMap::new();
        for (name, s) in &self.services {
            for (i, c) in self.containers_of(name, s).into_iter().enumerate() {
                out.insert(c, (name.clone(), i as u32 + 1));
            }
        }
        out
    }

    /// Forget stop markers of instances that no longer exist (berth removes
    /// the marker with the instance).
    fn prune_stopped(&mut self) {
        let live = self.containers();
        self.stopped.retain(|c| live.contains_key(c));
    }

    fn fresh_token(&mut self) -> String {
        self.serial += 1;
        format!("t{}", self.serial)
    }

    fn file(&self, image: &str) -> String {
        let mut f = format!("name = \"{}\"\n", self.deployment);
        for (name, s) in &self.services {
            f.push_str(&format!(
                "\n[services.{name}]\nimage = \"{image}\"\ncommand = [\"sleep\", \"1000000\"]\n\
                 stop_timeout = 1\ncount = {}\nenv = {{ TOKEN = \"{}\" }}\nvolumes = [\"data:/data\"]\n",
                s.count, s.token
            ));
        }
        f
    }
}

/// A container as the engine shows it.
#[derive(Debug)]
struct Seen {
    service: String,
    instance: String,
    hash: String,
    running: bool,
    env: Vec<String>,
    networks: Vec<String>,
}

fn seen(container: &str) -> Option<Seen> {
    let c = inspect("container", container)?;
    let label = |k: &str| c["Config"]["Labels"][k].as_str().unwrap_or("").to_string();
    Some(Seen {
        service: label("berth.service"),
        instance: label("berth.instance"),
        hash: label("berth.spec-hash"),
        running: c["State"]["Running"].as_bool().unwrap_or(false),
        env: c["Config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        networks: c["NetworkSettings"]["Networks"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
    })
}

/// What the step changed, for the spec-hash rule.
#[derive(Debug, Default)]
struct Touched {
    /// Services whose environment changed: their hashes must change.
    env: BTreeSet<String>,
    /// Services scaled: no rule (instance names may change).
    scaled: BTreeSet<String>,
}

struct Suite {
    ws: Workspace,
    image: String,
    model: Model,
    rng: Rng,
    seed: u64,
    step: u64,
    /// container -> spec hash after the previous step.
    hashes: BTreeMap<String, String>,
    faults: BTreeMap<&'static str, u64>,
    ops: BTreeMap<&'static str, u64>,
    berth_killed_mid_apply: u64,
}

impl Suite {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "reliability divergence at step {} (seed {}; rerun with BERTH_RELIABILITY_SEED={}):\n{what}",
            self.step, self.seed, self.seed
        )
    }

    fn berth(&self, args: &[&str]) -> std::process::Output {
        run(&self.ws, args)
    }

    fn berth_ok(&self, args: &[&str]) {
        let out = self.berth(args);
        if !out.status.success() {
            self.fail(&format!("berth {args:?} failed:\n{}", show(&out)));
        }
    }

    fn write_file(&self) {
        self.ws.write("berth.toml", &self.model.file(&self.image));
    }

    fn apply(&self) {
        self.write_file();
        self.berth_ok(&["apply", "--integration", "docker", "-q"]);
    }

    /// Differences between the engine and the model (empty: they agree).
    fn divergences(&self, touched: &Touched) -> (Vec<String>, BTreeMap<String, String>) {
        let d = &self.model.deployment;
        let mut out = Vec::new();
        let expected = self.model.containers();
        let actual: BTreeSet<String> = containers_of(d).into_iter().collect();
        let want: BTreeSet<String> = expected.keys().cloned().collect();
        for c in want.difference(&actual) {
            out.push(format!("container {c} is missing"));
        }
        for c in actual.difference(&want) {
            out.push(format!("container {c} should not exist"));
        }
        let mut hashes = BTreeMap::new();
        for (c, (service, index)) in &expected {
            let Some(s) = seen(c) else { continue };
            if s.service != *service || s.instance != index.to_string() {
                out.push(format!(
                    "{c}: labels say service {:?} instance {:?}, expected {service:?} {index}",
                    s.service, s.instance
                ));
            }
            let should_run = !self.model.stopped.contains(c);
            if s.running != should_run {
                out.push(format!(
                    "{c}: running={} but the model says {}",
                    s.running,
                    if should_run {
                        "running"
                    } else {
                        "stopped by the operator"
                    }
                ));
            }
            let token = self.model.services.get(service).map(|s| s.token.clone());
            let want_env = format!("TOKEN={}", token.unwrap_or_default());
            if !s.env.contains(&want_env) {
                out.push(format!("{c}: environment lacks {want_env}: {:?}", s.env));
            }
            if !s.networks.contains(d) {
                out.push(format!("{c}: not on network {d}: {:?}", s.networks));
            }
            if s.hash.is_empty() {
                out.push(format!("{c}: no berth.spec-hash label"));
            }
            if let Some(before) = self.hashes.get(c) {
                if touched.env.contains(service) && *before == s.hash {
                    out.push(format!(
                        "{c}: environment changed but spec hash stayed {before}"
                    ));
                }
                if !touched.env.contains(service)
                    && !touched.scaled.contains(service)
                    && *before != s.hash
                {
                    out.push(format!(
                        "{c}: nothing changed but spec hash went {before} -> {}",
                        s.hash
                    ));
                }
            }
            hashes.insert(c.clone(), s.hash);
        }
        if !networks_of(d).contains(d) {
            out.push(format!("network {d} is missing"));
        }

        // Volumes: every volume ever made is still there, none extra.
        let actual: BTreeSet<String> = volumes_of(d).into_iter().collect();
        let mut want: BTreeSet<String> = self.model.volumes.keys().cloned().collect();
        want.extend(
            expected
                .values()
                .map(|(service, index)| self.model.volume_of(service, *index)),
        );
        for v in want.difference(&actual) {
            out.push(format!("volume {v} is missing"));
        }
        for v in actual.difference(&want) {
            out.push(format!("volume {v} should not exist"));
        }

        let plan = self.berth(&["plan", "--integration", "docker"]);
        if plan.status.code() != Some(0) {
            out.push(format!(
                "berth plan wants changes after the step:\n{}",
                show(&plan)
            ));
        }
        (out, hashes)
    }

    /// Check the engine against the model, allowing it [`SETTLE`] to
    /// converge; fails the test on any remaining divergence.
    fn check(&mut self, touched: &Touched) {
        let deadline = std::time::Instant::now() + SETTLE;
        let hashes = loop {
            let (div, hashes) = self.divergences(touched);
            if div.is_empty() {
                break hashes;
            }
            if std::time::Instant::now() > deadline {
                self.fail(&div.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        self.hashes = hashes;
        self.check_volumes();
    }

    /// Write sentinels into volumes seen for the first time, and read every
    /// volume's sentinel back: one short-lived helper container mounting
    /// all of them (labelled, so the cleanup guard also covers it).
    fn check_volumes(&mut self) {
        let d = self.model.deployment.clone();
        let mut script = String::from("set -e\n");
        let mut args: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--label".into(),
            format!("berth.deployment={d}"),
        ];
        let volumes = volumes_of(&d);
        for v in &volumes {
            args.push("-v".into());
            args.push(format!("{v}:/v/{v}"));
            if !self.model.volumes.contains_key(v) {
                let token = format!("{v}:{}:{}", self.seed, self.step);
                script.push_str(&format!("echo '{token}' > /v/{v}/sentinel\n"));
                self.model.volumes.insert(v.clone(), token);
            }
        }
        script
            .push_str("for d in /v/*; do echo \"${d#/v/} $(cat $d/sentinel 2>/dev/null)\"; done\n");
        args.push(self.image.clone());
        args.extend(["sh".into(), "-c".into(), script]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = docker(&refs);
        if !out.status.success() {
            self.fail(&format!("reading volume sentinels:\n{}", show(&out)));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let found: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once(' ')).collect();
        let mut bad = Vec::new();
        for (v, token) in &self.model.volumes {
            match found.get(v.as_str()) {
                Some(t) if t == token => {}
                Some(t) => bad.push(format!("volume {v}: sentinel {t:?}, expected {token:?}")),
                None => bad.push(format!("volume {v}: not found")),
            }
        }
        // Each running instance sees its own volume's sentinel at /data:
        // scaling, re-adding and recreating never hand it another volume.
        for (c, (service, index)) in self.model.containers() {
            if self.model.stopped.contains(&c) {
                continue;
            }
            let volume = self.model.volume_of(&service, index);
            let Some(token) = self.model.volumes.get(&volume) else {
                continue;
            };
            let out = docker(&["exec", &c, "cat", "/data/sentinel"]);
            let seen = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !out.status.success() || seen != *token {
                bad.push(format!(
                    "{c}: /data/sentinel is {seen:?}, expected {token:?} of volume {volume}: {}",
                    show(&out)
                ));
            }
        }
        if !bad.is_empty() {
            self.fail(&bad.join("\n"));
        }
    }

    fn count_op(&mut self, op: &'static str) {
        *self.ops.entry(op).or_default() += 1;
    }

    fn count_fault(&mut self, fault: &'static str) {
        *self.faults.entry(fault).or_default() += 1;
    }

    fn service_names(&self) -> Vec<String> {
        self.model.services.keys().cloned().collect()
    }

    fn add_service(&mut self) -> String {
        let n = self.model.fresh_token();
        let name = format!("s{}", n.trim_start_matches('t'));
        let token = self.model.fresh_token();
        self.model
            .services
            .insert(name.clone(), Service { count: 1, token });
        name
    }

    /// A random service of `services` and its containers in the model.
    fn pick_service(&mut self, services: &[String]) -> Option<(String, Vec<String>)> {
        let s = self.rng.pick(services).cloned()?;
        let svc = self.model.services.get(&s)?;
        let containers = self.model.containers_of(&s, svc);
        Some((s, containers))
    }

    /// One random step; returns what it changed.
    fn step(&mut self) -> Touched {
        let mut t = Touched::default();
        let services = self.service_names();
        let running: Vec<String> = self
            .model
            .containers()
            .into_keys()
            .filter(|c| !self.model.stopped.contains(c))
            .collect();
        match self.rng.below(12) {
            0 => {
                let Some(s) = self.rng.pick(&services).cloned() else {
                    return self.step();
                };
                eprintln!("step {}: change the environment of {s}", self.step);
                self.count_op("change env");
                let token = self.model.fresh_token();
                if let Some(svc) = self.model.services.get_mut(&s) {
                    svc.token = token;
                }
                t.env.insert(s);
                self.apply();
            }
            1 => {
                let Some(s) = self.rng.pick(&services).cloned() else {
                    return self.step();
                };
                let old = self.model.services.get(&s).map(|x| x.count).unwrap_or(1);
                let mut new = 1 + self.rng.below(MAX_COUNT as u64) as u32;
                if new == old {
                    new = if old == MAX_COUNT { old - 1 } else { old + 1 };
                }
                eprintln!("step {}: scale {s} from {old} to {new}", self.step);
                self.count_op(if new > old { "scale up" } else { "scale down" });
                if let Some(svc) = self.model.services.get_mut(&s) {
                    svc.count = new;
                }
                self.model.prune_stopped();
                t.scaled.insert(s);
                self.apply();
            }
            2 if services.len() > 1 => {
                let Some(s) = self.rng.pick(&services).cloned() else {
                    return self.step();
                };
                eprintln!("step {}: remove service {s}", self.step);
                self.count_op("remove service");
                self.model.services.remove(&s);
                self.model.removed.push(s);
                self.model.prune_stopped();
                self.apply();
            }
            3 if services.len() < MAX_SERVICES => {
                let again = self.rng.below(2) == 0;
                let s = match self.model.removed.pop() {
                    Some(old) if again => {
                        let token = self.model.fresh_token();
                        self.model
                            .services
                            .insert(old.clone(), Service { count: 1, token });
                        eprintln!("step {}: add removed service {old} again", self.step);
                        self.count_op("re-add removed service");
                        old
                    }
                    other => {
                        self.model.removed.extend(other);
                        let s = self.add_service();
                        eprintln!("step {}: add service {s}", self.step);
                        self.count_op("add service");
                        s
                    }
                };
                // Its old hashes (if any) belong to another spec.
                t.env.insert(s);
                self.apply();
            }
            4 => {
                let Some(c) = self.rng.pick(&running).cloned() else {
                    return self.step();
                };
                eprintln!(
                    "step {}: kill the main process of {c} (SIGKILL from the host)",
                    self.step
                );
                self.count_fault("container killed");
                let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &c]);
                let status = std::process::Command::new("kill")
                    .args(["-KILL", pid.trim()])
                    .status();
                if !matches!(status, Ok(s) if s.success()) {
                    self.fail(&format!("could not kill pid {pid:?} of {c}"));
                }
            }
            5 => {
                // Change something, kill berth while it applies, apply again.
                let Some(s) = self.rng.pick(&services).cloned() else {
                    return self.step();
                };
                let delay = self.rng.below(1500);
                eprintln!(
                    "step {}: change {s}, SIGKILL berth apply after {delay} ms, apply again",
                    self.step
                );
                self.count_fault("berth killed mid-apply");
                let token = self.model.fresh_token();
                if let Some(svc) = self.model.services.get_mut(&s) {
                    svc.token = token;
                }
                t.env.insert(s);
                self.write_file();
                let mut bg = Background::spawn(
                    bin(),
                    &self.ws,
                    &format!("killed-apply-{}", self.step),
                    &["apply", "--integration", "docker", "-q"],
                );
                std::thread::sleep(Duration::from_millis(delay));
                if matches!(bg.child.try_wait(), Ok(None)) {
                    self.berth_killed_mid_apply += 1;
                }
                let _ = bg.child.kill();
                let _ = bg.child.wait();
                self.apply();
            }
            6 => {
                let Some((s, containers)) = self.pick_service(&services) else {
                    return self.step();
                };
                let all_stopped = containers.iter().all(|c| self.model.stopped.contains(c));
                if all_stopped {
                    eprintln!("step {}: berth start {s}", self.step);
                    self.count_op("start");
                    self.berth_ok(&["start", &s]);
                    for c in &containers {
                        self.model.stopped.remove(c);
                    }
                } else {
                    eprintln!("step {}: berth stop {s}", self.step);
                    self.count_op("stop");
                    self.berth_ok(&["stop", &s]);
                    self.model.stopped.extend(containers);
                }
            }
            7 => {
                eprintln!("step {}: destroy (keeping volumes), then apply", self.step);
                self.count_op("destroy + apply");
                self.berth_ok(&["destroy"]);
                // Destroy forgets the operator's stop markers with the instances.
                self.model.stopped.clear();
                self.apply();
            }
            8 => {
                // Docker counts `docker kill` as a stop by hand: the policy
                // does not restart it, the next apply must.
                let Some(c) = self.rng.pick(&running).cloned() else {
                    return self.step();
                };
                eprintln!("step {}: docker kill {c}, then apply", self.step);
                self.count_fault("docker kill");
                docker_ok(&["kill", &c]);
                self.apply();
            }
            9 => {
                let delay = self.rng.below(1500);
                eprintln!(
                    "step {}: SIGKILL berth destroy after {delay} ms, destroy again (keeping volumes), apply",
                    self.step
                );
                self.count_fault("berth killed mid-destroy");
                let mut bg = Background::spawn(
                    bin(),
                    &self.ws,
                    &format!("killed-destroy-{}", self.step),
                    &["destroy"],
                );
                std::thread::sleep(Duration::from_millis(delay));
                if matches!(bg.child.try_wait(), Ok(None)) {
                    self.berth_killed_mid_apply += 1;
                }
                let _ = bg.child.kill();
                let _ = bg.child.wait();
                // The file names the deployment even if the state is gone.
                self.berth_ok(&["destroy"]);
                self.model.stopped.clear();
                self.apply();
            }
            10 => {
                let Some((s, containers)) = self.pick_service(&services) else {
                    return self.step();
                };
                let before: Vec<(String, String)> = containers
                    .iter()
                    .map(|c| (c.clone(), docker_ok(&["inspect", "-f", "{{.Id}}", c])))
                    .collect();
                eprintln!("step {}: berth restart {s}", self.step);
                self.count_op("restart");
                self.berth_ok(&["restart", &s]);
                // Restart also undoes an operator's stop.
                for c in &containers {
                    self.model.stopped.remove(c);
                }
                // Every start is a fresh container: none keeps its old one.
                for (c, old) in &before {
                    if docker_ok(&["inspect", "-f", "{{.Id}}", c]) == *old {
                        self.fail(&format!(
                            "berth restart {s} kept the container {c} ({old}) instead of replacing it"
                        ));
                    }
                }
            }
            _ => {
                eprintln!("step {}: re-apply the unchanged file", self.step);
                self.count_op("no-op apply");
                self.apply();
            }
        }
        t
    }
}

#[test]
fn reliability_random_operations_and_faults_match_the_model() {
    let seed = env_u64("BERTH_RELIABILITY_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let steps = env_u64("BERTH_RELIABILITY_STEPS").unwrap_or(DEFAULT_STEPS);
    eprintln!(
        "reliability: seed {seed}, {steps} steps (BERTH_RELIABILITY_SEED={seed} repeats this run)"
    );
    let deployment = unique_name("rel");
    let _cleanup = Cleanup::new(&deployment);
    let mut suite = Suite {
        ws: Workspace::new(),
        image: base_image().to_string(),
        model: Model {
            deployment: deployment.clone(),
            ..Model::default()
        },
        rng: Rng::new(seed),
        seed,
        step: 0,
        hashes: BTreeMap::new(),
        faults: BTreeMap::new(),
        ops: BTreeMap::new(),
        berth_killed_mid_apply: 0,
    };
    // Step 0: the initial apply of two services, one of them scaled.
    suite.add_service();
    let second = suite.add_service();
    if let Some(s) = suite.model.services.get_mut(&second) {
        s.count = 2;
    }
    eprintln!("step 0: initial apply");
    suite.count_op("initial apply");
    suite.apply();
    suite.check(&Touched::default());
    for step in 1..=steps {
        suite.step = step;
        let touched = suite.step();
        suite.check(&touched);
    }
    let faults: u64 = suite.faults.values().sum();
    eprintln!(
        "reliability: seed {seed}: {steps} steps run, {faults} faults injected ({:?}; berth still running when killed mid-apply or mid-destroy: {}), operations {:?}, {} volumes checked, 0 divergences",
        suite.faults,
        suite.berth_killed_mid_apply,
        suite.ops,
        suite.model.volumes.len()
    );
    let out = suite.berth(&["destroy", "--volumes"]);
    assert!(out.status.success(), "{}", show(&out));
}
