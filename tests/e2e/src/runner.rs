//! A minimal test runner for `harness = false`: named cases, worker threads, one summary line.

use std::cell::RefCell;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::args::{self, Options};
use crate::env::Env;

/// A test case: gets the shared environment, fails by returning an error or panicking.
pub type CaseFn = fn(&Env) -> anyhow::Result<()>;

/// A named test case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub run: CaseFn,
}

/// `cases![f, g]` → `vec![Case { name: "f", run: f }, ...]`.
#[macro_export]
macro_rules! cases {
    ($($f:ident),* $(,)?) => {
        vec![$($crate::Case { name: stringify!($f), run: $f }),*]
    };
}

/// Lines of containerd.log printed after a failure.
const LOG_TAIL_LINES: usize = 40;
const DEFAULT_THREADS: usize = 2;

thread_local! {
    /// Where the last panic on this thread happened, recorded by the panic hook.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs the cases selected by the command line and exits: 0 when all passed, else 1.
pub fn main(cases: Vec<Case>) -> ! {
    record_panic_locations();
    let options = args::parse(std::env::args().skip(1));
    let selected: Vec<Case> = cases
        .into_iter()
        .filter(|c| options.selects(c.name))
        .collect();
    if options.list {
        for case in &selected {
            println!("{}: test", case.name);
        }
        std::process::exit(0);
    }
    let failed = run(&selected, threads(&options));
    println!("e2e: {} passed, {failed} failed", selected.len() - failed);
    std::process::exit(if failed > 0 { 1 } else { 0 });
}

fn threads(options: &Options) -> usize {
    let from_env = std::env::var("E2E_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    options
        .threads
        .or(from_env)
        .unwrap_or(DEFAULT_THREADS)
        .max(1)
}

/// Runs `cases` on `threads` workers against one containerd; returns the number that failed.
fn run(cases: &[Case], threads: usize) -> usize {
    if cases.is_empty() {
        println!("e2e: no case matches the filter");
        return 0;
    }
    let mut env = match Env::start() {
        Ok(env) => env,
        Err(e) => {
            println!("e2e: cannot set up the environment: {e:#}");
            return cases.len();
        }
    };
    let threads = threads.min(cases.len());
    println!(
        "running {} e2e cases on {threads} threads (containerd pid {}, base {}, shims from {})",
        cases.len(),
        env.containerd().pid(),
        env.containerd().base().display(),
        env.shim_dir().display(),
    );
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::SeqCst)) {
                    if !run_case(case, &env) {
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(case.name);
                    }
                }
            });
        }
    });
    if let Err(e) = env.stop() {
        println!("e2e: warning: {e:#}");
    }
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if !failures.is_empty() {
        println!("failures: {}", failures.join(", "));
    }
    failures.len()
}

/// Runs one case, catching panics, and prints its result block in one piece.
fn run_case(case: &Case, env: &Env) -> bool {
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| (case.run)(env)));
    let elapsed = started.elapsed();
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(error_chain(&e)),
        Err(payload) => {
            let at = PANIC_LOCATION
                .with(|l| l.borrow_mut().take())
                .unwrap_or_default();
            Some(format!("  panicked at {at}: {}", panic_message(&*payload)))
        }
    };
    let report = match &error {
        None => format!("test {} ... ok ({})\n", case.name, seconds(elapsed)),
        Some(text) => format!(
            "test {} ... FAILED ({})\n{text}\n  --- containerd.log (last {LOG_TAIL_LINES} lines) ---\n{}\n",
            case.name,
            seconds(elapsed),
            indent(&env.containerd().log_tail(LOG_TAIL_LINES)),
        ),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.as_bytes());
    let _ = out.flush();
    error.is_none()
}

/// Keeps the default hook (message and backtrace on stderr) and remembers the location.
fn record_panic_locations() {
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| l.to_string());
        PANIC_LOCATION.with(|l| *l.borrow_mut() = location);
        default_hook(info);
    }));
}

fn error_chain(error: &anyhow::Error) -> String {
    let mut lines = vec![format!("  error: {}", indent_rest(&error.to_string()))];
    for cause in error.chain().skip(1) {
        lines.push(format!("  caused by: {}", indent_rest(&cause.to_string())));
    }
    lines.join("\n")
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Keeps continuation lines of a multi-line message under its first line.
fn indent_rest(text: &str) -> String {
    text.replace('\n', "\n    ")
}
