//! `audit_api` entry point (placeholder until its issue lands; it fails loudly rather than pretend).
fn main() -> std::process::ExitCode {
    eprintln!("audit_api: not built yet");
    std::process::ExitCode::FAILURE
}
