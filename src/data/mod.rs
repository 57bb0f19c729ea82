//! Data lifecycle: backup, restore, snapshots.
//!
//! Volumes are read and written only through the engine's archive API, on
//! short-lived carrier containers (see [`crate::engine::archive`]); berth
//! never reads the engine's data directory.
//!
//! - [`backup::backup_deployment`]: volumes of chosen instances into one
//!   archive ([`format`]), instances stopped meanwhile unless `live`.
//! - [`restore::verify`] / [`restore::restore`]: check a whole archive (its
//!   manifest, and every entry of its volumes' tar streams, [`entries`]),
//!   then put its volumes back.
//! - [`snapshot::snapshot_instance`]: one instance's volumes into
//!   `<state>/snapshots/<container>/`, keeping the newest N; for `apply` to
//!   call before it recreates an instance for a changed image.
//! - [`instances`]: which instances have data, and stopping/starting them
//!   the way their integration expects.

pub mod backup;
pub mod entries;
pub mod format;
pub mod instances;
pub mod lifecycle;
pub mod restore;
pub mod snapshot;
pub mod upgrade;
