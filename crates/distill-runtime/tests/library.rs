//! Library loading is once per process, so the failing case runs in a child process of this test binary.

#![allow(clippy::unwrap_used)]

use std::process::Command;

const CHILD: &str = "DISTILL_RUNTIME_TEST_CHILD";

#[test]
fn a_bad_ort_dylib_path_says_to_run_make_setup() {
    if std::env::var_os(CHILD).is_some() {
        let err = distill_runtime::init().unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("cannot load ONNX Runtime from /nonexistent/libonnxruntime.so: "),
            "{message}"
        );
        assert!(message.contains("(from ORT_DYLIB_PATH)"), "{message}");
        assert!(message.contains("run `make setup`"), "{message}");
        assert!(err.is_user_error());
        let again = distill_runtime::init().unwrap_err();
        assert_eq!(again.to_string(), message, "the first failure is kept");
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_bad_ort_dylib_path_says_to_run_make_setup",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn not_found_message_says_what_to_run() {
    let err = distill_runtime::RuntimeError::LibraryNotFound {
        searched: "/work/.venv".into(),
        system_error: "libonnxruntime.so: cannot open shared object file".into(),
    };
    let message = err.to_string();
    assert!(
        message.starts_with("ONNX Runtime shared library not found"),
        "{message}"
    );
    assert!(message.contains("run `make setup`"), "{message}");
    assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
}
