//! The thread pool training runs on, with subnormal floats flushed to zero on every thread.
//!
//! Why: SGD's velocity `v <- mu * v - lr * g` of a weight whose gradient is exactly zero (a weight
//! from an input pixel that is blank in every image, say) shrinks by `mu` per step and reaches the
//! subnormal range (below about 1.2e-38) after roughly 800 steps at `mu = 0.9` — during the second
//! epoch on MNIST at batch 128. Intel cores handle arithmetic on subnormal operands or results with
//! microcode assists that cost on the order of a hundred cycles each, so every GEMM that reads the
//! velocity, and the weight update, slows down epoch after epoch (by 20–30% in distillation
//! before this pool existed). Setting the FTZ (flush-to-zero) and DAZ (denormals-are-zero) bits of
//! MXCSR on the training threads makes the hardware treat such values as 0 at full speed.
//!
//! Why it is safe for accuracy: only values smaller in magnitude than `f32::MIN_POSITIVE`
//! (1.18e-38) change, and they become 0. A weight is updated by `w + v`; for any weight above
//! about 1e-31 in magnitude, a `v` below 1.2e-38 is less than half an ulp of `w` and the sum rounds
//! to `w` anyway, so the flush changes nothing there. Activations, gradients and probabilities that
//! small carry no information a float32 network can use (they are 30 orders of magnitude below the
//! learning-rate-scaled gradients that move weights). Normal numbers — everything the network
//! computes with — round exactly as before, so results stay deterministic and bit-for-bit
//! reproducible run to run; they differ from unflushed arithmetic only where a subnormal would
//! have survived. TensorFlow sets the same two bits on its
//! worker threads for the same reason.

use rayon::{ThreadPool, ThreadPoolBuildError, ThreadPoolBuilder};

/// A rayon pool of `threads` workers (`None`: rayon's default, all cores or `RAYON_NUM_THREADS`),
/// each of which flushes subnormals to zero (see the module notes). Work run through
/// [`ThreadPool::install`] happens on these workers, never on the calling thread, so the caller's
/// floating-point mode is left alone.
///
/// The environment variable `DISTILL_SUBNORMALS=keep` leaves the workers in IEEE mode: a
/// diagnostic for measuring what the flush buys, not a setting to train with.
pub fn training_pool(threads: Option<usize>) -> Result<ThreadPool, ThreadPoolBuildError> {
    let flush = std::env::var_os("DISTILL_SUBNORMALS").is_none_or(|v| v != "keep");
    ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .thread_name(|i| format!("distill-train-{i}"))
        .start_handler(move |_| {
            if flush {
                flush_subnormals_on_this_thread()
            }
        })
        .build()
}

/// Sets FTZ and DAZ in this thread's MXCSR (x86-64; a no-op elsewhere). Lasts for the thread's
/// life; meant for threads that only run training work, such as [`training_pool`]'s workers.
#[allow(unsafe_code)]
pub fn flush_subnormals_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    {
        const FTZ: u32 = 1 << 15;
        const DAZ: u32 = 1 << 6;
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr` writes the 32-bit MXCSR to the address of `csr`, a live, aligned,
        // writable u32 on this stack frame; `ldmxcsr` reads it back from the same place. FTZ and
        // DAZ are defined MXCSR bits on every x86-64 CPU, so the load cannot fault. The only
        // effect is on how this thread's SSE/AVX arithmetic treats subnormal numbers (see the
        // module notes for why that is wanted); no memory, no other register and no other thread
        // is touched.
        unsafe {
            std::arch::asm!("stmxcsr [{p}]", p = in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= FTZ | DAZ;
            std::arch::asm!("ldmxcsr [{p}]", p = in(reg) &csr, options(nostack, preserves_flags, readonly));
        }
    }
}

/// Whether this thread flushes subnormals to zero (FTZ and DAZ both set).
#[allow(unsafe_code)]
pub fn flushes_subnormals() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr` only writes the 32-bit MXCSR to `csr`, a live, aligned, writable u32.
        unsafe {
            std::arch::asm!("stmxcsr [{p}]", p = in(reg) &mut csr, options(nostack, preserves_flags));
        }
        csr & (1 << 15) != 0 && csr & (1 << 6) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_threads_flush_subnormals_and_the_caller_does_not() {
        let pool = training_pool(Some(2)).expect("pool");
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let (flags, product) = pool.install(|| {
            let product = std::hint::black_box(tiny) * std::hint::black_box(0.25f32);
            (flushes_subnormals(), product)
        });
        let outside = std::hint::black_box(tiny) * std::hint::black_box(0.25f32);
        if cfg!(target_arch = "x86_64") {
            assert!(flags);
            assert_eq!(product, 0.0);
            assert!(!flushes_subnormals());
            assert!(outside > 0.0 && outside < f32::MIN_POSITIVE);
        }
    }
}
