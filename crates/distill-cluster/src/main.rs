fn main() -> std::process::ExitCode {
    distill_cluster::cli::main_from(std::env::args_os())
}
