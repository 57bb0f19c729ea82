//! The life of one instance: fresh container, readiness, output, exit.
