//! Data lifecycle: backup, restore, snapshots.
