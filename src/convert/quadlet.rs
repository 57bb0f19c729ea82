//! `--to quadlet`: podman's systemd generator units.

use super::Output;
use crate::deployment::Deployment;
use crate::error::{Error, Result};

pub(super) fn convert(_dep: &Deployment, _out: &mut Output) -> Result<()> {
    Err(Error::Usage("--to quadlet is not built yet".into()))
}
