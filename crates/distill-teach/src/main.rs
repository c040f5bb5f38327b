fn main() -> std::process::ExitCode {
    distill_teach::cli::main_from(std::env::args_os())
}
