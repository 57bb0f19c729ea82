//! The deployment's `notify` command, run after every update and every
//! rollback `berth update` makes, told what happened in its environment.
//! A hook that fails or hangs is reported, never fatal: the update (or its
//! rollback) has already happened and must not be undone by a hook.

use std::time::Duration;

use crate::apply::Reporter;
use crate::deployment::Deployment;

/// How long the command may run before it is killed.
const TIMEOUT: Duration = Duration::from_secs(60);

/// What the command is told.
pub struct Event<'a> {
    /// `update` or `rollback`.
    pub kind: &'a str,
    pub service: &'a str,
    pub image: &'a str,
    /// The digest the service left: for an update the one it ran before
    /// (empty when not known), for a rollback the one rolled back from.
    pub from: &'a str,
    /// The digest it runs now (for a rollback: empty when not known).
    pub to: &'a str,
    /// Why (for a rollback: the failing checks).
    pub reason: &'a str,
}

/// Run `deployment.notify`, if any, for `event`.
pub async fn notify(deployment: &Deployment, event: &Event<'_>, report: &Reporter) {
    let Some((program, args)) = deployment.notify.as_ref().and_then(|a| a.split_first()) else {
        return;
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("BERTH_EVENT", event.kind)
        .env("BERTH_DEPLOYMENT", &deployment.name)
        .env("BERTH_SERVICE", event.service)
        .env("BERTH_IMAGE", event.image)
        .env("BERTH_FROM", event.from)
        .env("BERTH_TO", event.to)
        .env("BERTH_REASON", event.reason)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let outcome = match tokio::time::timeout(TIMEOUT, cmd.output()).await {
        Err(_) => Err(format!("did not finish within {}s", TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(format!("could not be started: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    };
    if let Err(why) = outcome {
        report(format!(
            "warning: notify command {program} for the {} of {} {why}",
            event.kind, event.service
        ));
    }
}
