//! What a conversion could not carry: one entry per field and service.

use serde::Serialize;

/// One field the target format has no place for (or carries differently).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loss {
    /// The service it belongs to; `None` for a deployment-wide field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The field as berth's file names it (`links.db`, `health.on_unhealthy`).
    pub field: String,
    /// What the output does instead.
    pub reason: String,
}

/// Everything a conversion left out or needs the operator for.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// `compose`, `toml`, `quadlet`.
    pub to: &'static str,
    /// Fields not carried: `--strict` fails on any.
    pub losses: Vec<Loss>,
    /// Carried, but something must be done for it to work (a secret's value
    /// passed in a variable). Not losses.
    pub notes: Vec<Loss>,
    /// The files written (relative to the output directory).
    pub files: Vec<String>,
}

impl Report {
    pub fn new(to: &'static str) -> Self {
        Report {
            to,
            ..Default::default()
        }
    }

    /// A field of `service` (or of the deployment) that is not carried.
    pub fn lose(
        &mut self,
        service: Option<&str>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.losses.push(Loss {
            service: service.map(str::to_string),
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Something the operator must know to use the output.
    pub fn note(
        &mut self,
        service: Option<&str>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.notes.push(Loss {
            service: service.map(str::to_string),
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// The text form, one line per loss or note (names escaped).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (kind, list) in [("lost", &self.losses), ("note", &self.notes)] {
            for l in list {
                let at = match &l.service {
                    Some(s) => format!("services.{}.{}", s, l.field),
                    None => l.field.clone(),
                };
                out.push_str(&format!(
                    "{kind}: {}: {}\n",
                    crate::echo::line(&at),
                    crate::echo::line(&l.reason)
                ));
            }
        }
        if self.losses.is_empty() {
            out.push_str(&format!("converted to {} with no loss\n", self.to));
        } else {
            out.push_str(&format!(
                "converted to {}: {} field(s) not carried\n",
                self.to,
                self.losses.len()
            ));
        }
        out
    }
}
