//! The Rust credential probe as a standalone process (see `harness::credentials::probe`): resolves
//! the default chain from its environment, calls GetCallerIdentity, prints one JSON line.

fn main() -> std::process::ExitCode {
    harness::credentials::probe::main_blocking()
}
