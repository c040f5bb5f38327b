fn main() -> std::process::ExitCode {
    distill_train::cli::main_from(std::env::args_os())
}
