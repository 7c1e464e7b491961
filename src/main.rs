//! Thin binary: everything lives in the library (`autorevert::cli`).
fn main() -> std::process::ExitCode {
    autorevert::cli::main()
}
