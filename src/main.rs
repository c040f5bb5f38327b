fn main() -> std::process::ExitCode {
    distill::cli::main_from(std::env::args_os())
}
