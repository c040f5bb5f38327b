//! Ctrl-C as a request, not a kill: the first interrupt sets a flag that long-running stages poll
//! between steps (to save a checkpoint and stop cleanly); a second one exits at once.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the process-wide handler (once; later calls do nothing).
pub fn install() {
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: finishing the current step and saving a checkpoint (Ctrl-C again to quit now)");
        });
    });
}

/// Whether an interrupt has been requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Sets the flag as an interrupt would (tests, and stages that stop for their own reasons).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Clears the flag, for a process that goes on to run more work after an interrupted stage.
pub fn clear() {
    REQUESTED.store(false, Ordering::SeqCst);
}
