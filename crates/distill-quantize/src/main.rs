fn main() -> std::process::ExitCode {
    distill_quantize::cli::main_from(std::env::args_os())
}
