//! The built-in SSH gateway and the OpenSSH `AuthorizedKeysCommand` mode.
