fn main() -> std::process::ExitCode {
    distill_eval::cli::main_from(std::env::args_os())
}
