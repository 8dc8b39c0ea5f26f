//! Graceful stop on SIGTERM and SIGINT, without signal handlers.
//!
//! The runtime installs handlers that end a wasm guest at once (`_exit(128 + signal)`, see
//! `wasmpod_runtime::executor`), needed because the guest is PID 1 of its PID namespace, where
//! signals without a handler are dropped. A server must drain instead. Rather than replacing
//! those handlers (signal-hook-registry, under `tokio::signal`, would chain to them and exit
//! anyway), the server blocks both signals in every thread and takes them with `sigwait` on a
//! thread of its own: a blocked signal is queued even for a namespace's PID 1, and a thread
//! outside tokio still sees it when every worker is busy in guest code. SIGHUP keeps the
//! runtime's handler.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmpod_runtime::EngineError;

pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread, and so in every thread it starts
    /// afterwards (tokio's workers): call it before building the runtime.
    pub fn block() -> Result<Self, EngineError> {
        // SAFETY: a zeroed sigset_t is valid storage for sigemptyset, which initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(EngineError::Other(format!(
                "blocking SIGTERM and SIGINT: {}",
                std::io::Error::from_raw_os_error(rc)
            )));
        }
        Ok(Self { set })
    }

    /// Starts the thread that waits for the first stop signal: it records the signal in
    /// `received`, cancels `stop`, and ends the process with 128 + signal if it is still alive
    /// `deadline` later (a guest stuck in a loop can hold every tokio worker).
    pub fn watch(
        self,
        stop: CancellationToken,
        deadline: Duration,
        received: Arc<AtomicI32>,
    ) -> Result<(), EngineError> {
        std::thread::Builder::new()
            .name("stop-signals".into())
            .spawn(move || {
                let signal = self.wait();
                received.store(signal, Ordering::SeqCst);
                stop.cancel();
                std::thread::sleep(deadline);
                eprintln!(
                    "wasmpod: requests still running {deadline:?} after signal {signal}, \
                     ending the server"
                );
                // SAFETY: _exit ends the process without running anything else.
                unsafe { libc::_exit(128 + signal) }
            })
            .map(drop)
            .map_err(|e| EngineError::Other(format!("starting the stop-signal thread: {e}")))
    }

    fn wait(&self) -> i32 {
        loop {
            let mut signal = 0;
            // SAFETY: `set` is initialised and its signals are blocked in this thread.
            if unsafe { libc::sigwait(&self.set, &mut signal) } == 0 {
                return signal;
            }
        }
    }
}
