//! `token_rotator` entry point (placeholder until its issue lands; it fails loudly rather than pretend).
fn main() -> std::process::ExitCode {
    eprintln!("token_rotator: not built yet");
    std::process::ExitCode::FAILURE
}
