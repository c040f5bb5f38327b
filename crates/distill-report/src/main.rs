fn main() -> std::process::ExitCode {
    distill_report::cli::main_from(std::env::args_os())
}
