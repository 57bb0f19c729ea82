//! Images: inspect (ID, exposed ports, declared volumes) and pull with
//! progress and registry credentials.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;

use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::{Engine, is_not_found, registry};
use crate::deployment::Protocol;
use crate::error::{Error, Result};
use crate::instance::ImageInfo;

/// How pull progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullProgress {
    /// Bars on a terminal (stderr), plain lines otherwise.
    #[default]
    Auto,
    /// One indicatif bar per image.
    Bars,
    /// Plain `image: status` lines on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

impl PullProgress {
    fn resolve(self) -> Self {
        match self {
            PullProgress::Auto if std::io::stderr().is_terminal() => PullProgress::Bars,
            PullProgress::Auto => PullProgress::Lines,
            other => other,
        }
    }
}

/// Parse `"80/tcp"` as the engine lists exposed ports.
pub fn parse_port_key(key: &str) -> Option<(u16, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let port: u16 = port.parse().ok()?;
    let proto = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    Some((port, proto))
}

/// Split an image reference into the `fromImage` and `tag` a pull takes.
/// `busybox` → (`busybox`, `latest`); `host:5000/a/b:1` → (`host:5000/a/b`, `1`);
/// digests are passed whole.
pub fn split_reference(reference: &str) -> (String, String) {
    if reference.contains('@') {
        return (reference.to_string(), String::new());
    }
    let last_slash = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    match reference[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (reference[..at].to_string(), reference[at + 1..].to_string())
        }
        None => (reference.to_string(), "latest".to_string()),
    }
}

impl Engine {
    /// Inspect a local image; `None` when it is not on this host.
    pub async fn image_info(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let img = match self.docker().inspect_image(reference).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(Error::engine(format!("inspecting image {reference}"), e)),
        };
        let config = img.config.unwrap_or_default();
        let mut exposed_ports: Vec<(u16, Protocol)> = config
            .exposed_ports
            .unwrap_or_default()
            .iter()
            .filter_map(|k| parse_port_key(k))
            .collect();
        exposed_ports.sort_by_key(|(p, proto)| (*p, proto.as_str()));
        exposed_ports.dedup();
        let healthcheck = config
            .healthcheck
            .as_ref()
            .and_then(|h| h.test.as_ref())
            .and_then(|t| t.first())
            .is_some_and(|t| t != "NONE");
        let mut volumes = config.volumes.unwrap_or_default();
        volumes.sort();
        volumes.dedup();
        Ok(Some(ImageInfo {
            id: img.id.unwrap_or_default(),
            exposed_ports,
            volumes,
            healthcheck,
        }))
    }

    /// Inspect every image in `references`, pulling the ones not on this host
    /// first (all of them, in parallel). Fails, naming every image that could
    /// not be pulled, before the caller touches anything else.
    pub async fn ensure_images(
        &self,
        references: &[String],
        progress: PullProgress,
    ) -> Result<BTreeMap<String, ImageInfo>> {
        let mut have = BTreeMap::new();
        let mut missing = Vec::new();
        for r in references {
            if have.contains_key(r) || missing.contains(r) {
                continue;
            }
            match self.image_info(r).await? {
                Some(info) => {
                    have.insert(r.clone(), info);
                }
                None => missing.push(r.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(have);
        }
        self.pull_images(&missing, progress).await?;
        for r in missing {
            match self.image_info(&r).await? {
                Some(info) => {
                    have.insert(r, info);
                }
                None => {
                    return Err(Error::Runtime(format!(
                        "image {r} was pulled but the engine does not show it"
                    )));
                }
            }
        }
        Ok(have)
    }

    /// Pull images in parallel, one progress bar (or plain lines) per image.
    /// Every failure is reported, together, in one error.
    pub async fn pull_images(&self, references: &[String], progress: PullProgress) -> Result<()> {
        let progress = progress.resolve();
        let multi = indicatif::MultiProgress::new();
        let mut tasks = FuturesUnordered::new();
        for r in references {
            let bar = if progress == PullProgress::Bars {
                let bar = multi.add(indicatif::ProgressBar::new(0));
                let style = indicatif::ProgressStyle::with_template(
                    "{prefix:.bold} {bar:30} {bytes}/{total_bytes} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_prefix(r.clone());
                Some(bar)
            } else {
                None
            };
            let engine = self.clone();
            let r = r.clone();
            tasks.push(async move {
                let res = engine.pull_one(&r, progress, bar.as_ref()).await;
                if let Some(bar) = bar {
                    match &res {
                        Ok(()) => bar.finish_with_message("pulled"),
                        Err(_) => bar.abandon_with_message("failed"),
                    }
                }
                (r, res)
            });
        }
        let mut failures = Vec::new();
        while let Some((r, res)) = tasks.next().await {
            if let Err(msg) = res {
                failures.push(format!("  {r}: {msg}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            failures.sort();
            Err(Error::Runtime(format!(
                "cannot pull {} image{}; nothing was changed on this host:\n{}",
                failures.len(),
                if failures.len() == 1 { "" } else { "s" },
                failures.join("\n")
            )))
        }
    }

    /// Pull one image. The error is an operator-facing message.
    async fn pull_one(
        &self,
        reference: &str,
        progress: PullProgress,
        bar: Option<&indicatif::ProgressBar>,
    ) -> std::result::Result<(), String> {
        let (from, tag) = split_reference(reference);
        let mut opts = CreateImageOptionsBuilder::default().from_image(&from);
        if !tag.is_empty() {
            opts = opts.tag(&tag);
        }
        let creds = registry::credentials_for(reference);
        if progress == PullProgress::Lines {
            eprintln!("{reference}: pulling");
        }
        let mut stream = self.docker().create_image(Some(opts.build()), None, creds);
        // Per-layer byte counts, summed for the image's bar.
        let mut layers: HashMap<String, (i64, i64)> = HashMap::new();
        let mut last_line = String::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(i) => i,
                Err(e) => return Err(explain_pull_error(reference, &e)),
            };
            let status = info.status.clone().unwrap_or_default();
            match progress {
                PullProgress::Bars => {
                    if let Some(bar) = bar {
                        if let (Some(id), Some(d)) = (&info.id, &info.progress_detail)
                            && let (Some(cur), Some(total)) = (d.current, d.total)
                        {
                            layers.insert(id.clone(), (cur, total));
                            let (c, t) = layers
                                .values()
                                .fold((0i64, 0i64), |(a, b), (c, t)| (a + c, b + t));
                            bar.set_length(u64::try_from(t).unwrap_or(0));
                            bar.set_position(u64::try_from(c).unwrap_or(0));
                        }
                        bar.set_message(status);
                    }
                }
                PullProgress::Lines => {
                    // Byte-level updates would flood a log: print status changes only.
                    if status.starts_with("Downloading")
                        || status.starts_with("Extracting")
                        || status.starts_with("Waiting")
                    {
                        continue;
                    }
                    let line = match &info.id {
                        Some(id) => format!("{reference}: {id}: {status}"),
                        None => format!("{reference}: {status}"),
                    };
                    if line != last_line {
                        eprintln!("{line}");
                        last_line = line;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Turn a pull failure into a message that says what to do.
fn explain_pull_error(reference: &str, e: &bollard::errors::Error) -> String {
    let raw = match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    };
    let lower = raw.to_lowercase();
    let registry = registry::registry_of(reference);
    let hint = if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("denied")
        || lower.contains("no basic auth")
    {
        format!(
            "the registry {registry} refused access: put credentials for it in ~/.docker/config.json (`docker login {registry}`)"
        )
    } else if lower.contains("not found") || lower.contains("manifest unknown") {
        "no such image or tag in the registry: check the image name in the deployment file"
            .to_string()
    } else if lower.contains("dial tcp")
        || lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("timeout")
        || lower.contains("network is unreachable")
    {
        format!("the registry {registry} cannot be reached from the Docker engine")
    } else {
        String::new()
    };
    if hint.is_empty() {
        raw
    } else {
        format!("{raw}\n    ({hint})")
    }
}

impl Engine {
    /// The digest the registry serves for `reference` now (the engine's
    /// distribution inspect, with the credentials the client configuration
    /// has for that registry). The error is an operator-facing message.
    pub async fn registry_digest(&self, reference: &str) -> Result<String> {
        let creds = super::registry::credentials_for(reference);
        let d = self
            .docker()
            .inspect_registry_image(reference, creds)
            .await
            .map_err(|e| Error::engine(format!("asking the registry about {reference}"), e))?;
        let digest = d.descriptor.digest.unwrap_or_default();
        if digest.is_empty() {
            return Err(Error::Runtime(format!(
                "the registry of {reference} returned no digest for it"
            )));
        }
        Ok(digest)
    }

    /// The registry digests of the local image `id` for repository `repo`
    /// (its `RepoDigests` naming that repository); empty when the image is
    /// gone or was never pulled from there.
    pub async fn repo_digests(&self, id: &str, repo: &str) -> Result<Vec<String>> {
        let img = match self.docker().inspect_image(id).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(Error::engine(format!("inspecting image {id}"), e)),
        };
        Ok(img
            .repo_digests
            .unwrap_or_default()
            .iter()
            .filter_map(|rd| rd.split_once('@'))
            .filter(|(r, _)| *r == repo)
            .map(|(_, d)| d.to_string())
            .collect())
    }

    /// Point `reference` (`repo:tag`) at the local image `id` again.
    pub async fn retag(&self, id: &str, reference: &str) -> Result<()> {
        let (repo, tag) = split_reference(reference);
        let opts = bollard::query_parameters::TagImageOptionsBuilder::default()
            .repo(&repo)
            .tag(&tag)
            .build();
        self.docker()
            .tag_image(id, Some(opts))
            .await
            .map_err(|e| Error::engine(format!("tagging image {id} as {reference}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(
            split_reference("busybox"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b:1.2"),
            ("127.0.0.1:5000/a/b".into(), "1.2".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b".into(), "latest".into())
        );
        assert_eq!(split_reference("a@sha256:00").1, "");
    }

    #[test]
    fn port_keys() {
        assert_eq!(parse_port_key("80/tcp"), Some((80, Protocol::Tcp)));
        assert_eq!(parse_port_key("53/udp"), Some((53, Protocol::Udp)));
        assert_eq!(parse_port_key("x/tcp"), None);
    }
}
