//! The `berth` binary: everything happens in the library's `cli` module.

fn main() -> std::process::ExitCode {
    berth::cli::main()
}
