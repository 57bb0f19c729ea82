//! systemd unit rendering and control.
