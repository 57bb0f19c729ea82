//! `plan = diff(spec, observed)`: what `apply` would change on this host.
