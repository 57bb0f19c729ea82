//! Swarm configs and secrets: the objects holding a deployment's configs
//! and secrets on a swarm, named after their content
//! ([`crate::instance::swarm::object_name`]) and labelled with the
//! deployment (`berth.deployment`), their name in the file (`berth.file`)
//! and the revision that made them. A secret's data is sent once, when it
//! is created; the engine never gives it back.
//!
//! Besides them, a swarm apply publishes what the deployment grants over
//! SSH as one config with a role label ([`names::LABEL_ROLE`]), for the
//! gateways on every node ([`crate::target::swarm::access`]).

use std::collections::HashMap;

use bollard::models::{ConfigSpec, SecretSpec};
use bollard::query_parameters::{ListConfigsOptionsBuilder, ListSecretsOptionsBuilder};

use super::{Engine, is_not_found, label_filter};
use crate::deployment::FileKind;
use crate::error::{Error, Result};
use crate::names;

/// One config or secret object on the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmObject {
    pub kind: FileKind,
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// What became of a removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Removed,
    /// A service still refers to it (the engine refused).
    InUse(String),
}

impl Engine {
    /// The configs or secrets whose labels match `filters`.
    async fn list_objects(
        &self,
        kind: FileKind,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<SwarmObject>> {
        let what = || format!("listing the swarm's {}", kind.key());
        let out = match kind {
            FileKind::Config => {
                let opts = ListConfigsOptionsBuilder::default()
                    .filters(filters)
                    .build();
                self.docker()
                    .list_configs(Some(opts))
                    .await
                    .map_err(|e| Error::engine(what(), e))?
                    .into_iter()
                    .map(|c| {
                        let spec = c.spec.unwrap_or_default();
                        SwarmObject {
                            kind,
                            id: c.id.unwrap_or_default(),
                            name: spec.name.unwrap_or_default(),
                            labels: spec.labels.unwrap_or_default(),
                        }
                    })
                    .collect()
            }
            FileKind::Secret => {
                let opts = ListSecretsOptionsBuilder::default()
                    .filters(filters)
                    .build();
                self.docker()
                    .list_secrets(Some(opts))
                    .await
                    .map_err(|e| Error::engine(what(), e))?
                    .into_iter()
                    .map(|c| {
                        let spec = c.spec.unwrap_or_default();
                        SwarmObject {
                            kind,
                            id: c.id.unwrap_or_default(),
                            name: spec.name.unwrap_or_default(),
                            labels: spec.labels.unwrap_or_default(),
                        }
                    })
                    .collect()
            }
        };
        Ok(out)
    }

    /// The configs and secrets labelled as `deployment`'s, by kind and name.
    pub async fn list_swarm_files(&self, deployment: &str) -> Result<Vec<SwarmObject>> {
        let filters = label_filter(deployment, &[]);
        let mut out = self.list_objects(FileKind::Config, &filters).await?;
        out.extend(self.list_objects(FileKind::Secret, &filters).await?);
        out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(out)
    }

    /// The config or secret named exactly `name`, whoever made it.
    pub async fn swarm_file(&self, kind: FileKind, name: &str) -> Result<Option<SwarmObject>> {
        // The engine's name filter matches prefixes too.
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        Ok(self
            .list_objects(kind, &filters)
            .await?
            .into_iter()
            .find(|o| o.name == name))
    }

    /// The ID of `deployment`'s config or secret `object` holding `content`
    /// (`file` is its name in the deployment file), created when missing
    /// (then the flag is true).
    /// The name says the content (it is derived from its digest), so one
    /// that exists is kept as it is. A config or secret of that name that
    /// is not the deployment's is a conflict.
    pub async fn ensure_swarm_file(
        &self,
        deployment: &str,
        kind: FileKind,
        file: &str,
        object: &str,
        content: &str,
        revision: u64,
    ) -> Result<(String, bool)> {
        if let Some(o) = self.swarm_file(kind, object).await? {
            if o.labels.get(names::LABEL_DEPLOYMENT).map(String::as_str) == Some(deployment) {
                return Ok((o.id, false));
            }
            let owner = o
                .labels
                .get(names::LABEL_DEPLOYMENT)
                .map(|d| format!("deployment {}", d.escape_debug()))
                .unwrap_or_else(|| "no berth deployment (made by hand?)".into());
            return Err(Error::Conflict(format!(
                "{} {object} exists on the swarm and belongs to {owner}, but deployment {deployment} would use that name for its {} {file}. \
                 Remove it (docker {} rm {object}) or rename the deployment",
                kind.as_str(),
                kind.as_str(),
                kind.as_str()
            )));
        }
        let labels = HashMap::from([
            (names::LABEL_DEPLOYMENT.to_string(), deployment.to_string()),
            (names::LABEL_FILE.to_string(), file.to_string()),
            (names::LABEL_REVISION.to_string(), revision.to_string()),
        ]);
        let id = self
            .create_swarm_file(kind, object, content, labels)
            .await?;
        Ok((id, true))
    }

    /// Create config or secret `object` holding `content`, labelled `labels`.
    async fn create_swarm_file(
        &self,
        kind: FileKind,
        object: &str,
        content: &str,
        labels: HashMap<String, String>,
    ) -> Result<String> {
        let data = super::registry::encode_base64(content.as_bytes());
        let what = || format!("creating the swarm {} {object}", kind.as_str());
        let id = match kind {
            FileKind::Config => {
                self.docker()
                    .create_config(ConfigSpec {
                        name: Some(object.to_string()),
                        labels: Some(labels),
                        data: Some(data),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| Error::engine(what(), e))?
                    .id
            }
            FileKind::Secret => {
                self.docker()
                    .create_secret(SecretSpec {
                        name: Some(object.to_string()),
                        labels: Some(labels),
                        data: Some(data),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| Error::engine(what(), e))?
                    .id
            }
        };
        Ok(id)
    }

    /// The config `object` with `labels` (`berth.deployment` among them)
    /// holding `content`, created when missing (then the flag is true).
    /// Its name says its content, so one that exists and is the
    /// deployment's is kept; one of another owner is a conflict.
    pub async fn ensure_role_config(
        &self,
        object: &str,
        content: &str,
        labels: HashMap<String, String>,
    ) -> Result<(String, bool)> {
        let deployment = labels
            .get(names::LABEL_DEPLOYMENT)
            .cloned()
            .unwrap_or_default();
        if let Some(o) = self.swarm_file(FileKind::Config, object).await? {
            if o.labels.get(names::LABEL_DEPLOYMENT) == Some(&deployment)
                && o.labels.get(names::LABEL_ROLE) == labels.get(names::LABEL_ROLE)
            {
                return Ok((o.id, false));
            }
            return Err(Error::Conflict(format!(
                "config {object} exists on the swarm but is not the one berth publishes for deployment {deployment}; remove it (docker config rm {object})"
            )));
        }
        let id = self
            .create_swarm_file(FileKind::Config, object, content, labels)
            .await?;
        Ok((id, true))
    }

    /// The configs labelled `role` ([`names::LABEL_ROLE`]), of every
    /// deployment, each with its content. A config whose data the engine
    /// does not give as base64 text is skipped with a warning.
    pub async fn role_configs(&self, role: &str) -> Result<Vec<(SwarmObject, String)>> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}={role}", names::LABEL_ROLE)],
        )]);
        let opts = ListConfigsOptionsBuilder::default()
            .filters(&filters)
            .build();
        let configs = self
            .docker()
            .list_configs(Some(opts))
            .await
            .map_err(|e| Error::engine("listing the swarm's configs", e))?;
        let mut out = Vec::new();
        for c in configs {
            let spec = c.spec.unwrap_or_default();
            let name = spec.name.unwrap_or_default();
            let text = spec
                .data
                .as_deref()
                .and_then(super::registry::decode_base64)
                .and_then(|d| String::from_utf8(d).ok());
            let Some(text) = text else {
                tracing::warn!("config {name}: its data is not readable; ignored");
                continue;
            };
            out.push((
                SwarmObject {
                    kind: FileKind::Config,
                    id: c.id.unwrap_or_default(),
                    name,
                    labels: spec.labels.unwrap_or_default(),
                },
                text,
            ));
        }
        Ok(out)
    }

    /// Remove a config or secret; gone already is fine, one a service still
    /// refers to is left ([`Removed::InUse`] with the engine's message).
    pub async fn remove_swarm_file(&self, kind: FileKind, id: &str) -> Result<Removed> {
        let res = match kind {
            FileKind::Config => self.docker().delete_config(id).await,
            FileKind::Secret => self.docker().delete_secret(id).await,
        };
        match res {
            Ok(()) => Ok(Removed::Removed),
            Err(e) if is_not_found(&e) => Ok(Removed::Removed),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 400 | 409,
                message,
            }) if message.contains("in use") => Ok(Removed::InUse(message)),
            Err(e) => Err(Error::engine(
                format!("removing the swarm {} {id}", kind.as_str()),
                e,
            )),
        }
    }
}
