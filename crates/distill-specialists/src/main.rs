fn main() -> std::process::ExitCode {
    distill_specialists::cli::main_from(std::env::args_os())
}
