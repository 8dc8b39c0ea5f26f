//! A minimal test runner for `harness = false`: named cases, worker threads, one summary line.

use std::cell::RefCell;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::args::{self, Options};
use crate::engine::Engine;
use crate::env::Env;

/// A test case: gets the shared environment, fails by returning an error or panicking.
pub type CaseFn = fn(&Env) -> anyhow::Result<()>;

/// The runs of the suite a case belongs to. A case outside its scope is not run and is
/// reported as skipped, never as passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every engine.
    Every,
    /// Only these engines (e.g. those with component support).
    Engines(&'static [&'static str]),
}

impl Scope {
    /// Whether a run on `engine` includes the case.
    pub fn includes(&self, engine: &str) -> bool {
        match self {
            Scope::Every => true,
            Scope::Engines(engines) => engines.contains(&engine),
        }
    }

    fn describe(&self) -> String {
        match self {
            Scope::Every => "every engine".to_string(),
            Scope::Engines(engines) => format!("only on {}", engines.join(", ")),
        }
    }
}

/// A named test case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub run: CaseFn,
    pub scope: Scope,
}

impl Case {
    pub const fn new(name: &'static str, run: CaseFn) -> Self {
        Case {
            name,
            run,
            scope: Scope::Every,
        }
    }

    /// Restricts the case to `engines`; runs on other engines report it as skipped.
    pub const fn only_on(mut self, engines: &'static [&'static str]) -> Self {
        self.scope = Scope::Engines(engines);
        self
    }
}

/// `cases![f, g]` → `vec![Case::new("f", f), ...]`;
/// `cases![only_on(ENGINES): f, g]` → the same, each restricted to `ENGINES`.
#[macro_export]
macro_rules! cases {
    (only_on($engines:expr): $($f:ident),* $(,)?) => {
        vec![$($crate::Case::new(stringify!($f), $f).only_on($engines)),*]
    };
    ($($f:ident),* $(,)?) => {
        vec![$($crate::Case::new(stringify!($f), $f)),*]
    };
}

/// Lines of containerd.log printed after a failure.
const LOG_TAIL_LINES: usize = 40;
const DEFAULT_THREADS: usize = 2;

thread_local! {
    /// Where the last panic on this thread happened, recorded by the panic hook.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs the cases selected by the command line and exits: 0 when every case in scope passed
/// and the teardown found nothing left behind, else 1.
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
    let engine = match Engine::from_env() {
        Ok(engine) => engine,
        Err(e) => {
            println!("e2e: {e:#}");
            std::process::exit(1);
        }
    };
    let (in_scope, skipped): (Vec<Case>, Vec<Case>) = selected
        .into_iter()
        .partition(|c| c.scope.includes(engine.name()));
    for case in &skipped {
        println!(
            "test {} ... skipped ({}, this run is on {})",
            case.name,
            case.scope.describe(),
            engine.name()
        );
    }
    let outcome = run(&in_scope, threads(&options));
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|c| c.name).collect();
        println!("skipped: {}", names.join(", "));
    }
    println!("{}", outcome.summary(in_scope.len(), skipped.len()));
    std::process::exit(if outcome.success() { 0 } else { 1 });
}

/// What a run of the cases in scope found.
#[derive(Debug, Default)]
struct Outcome {
    /// Cases that failed.
    failed: Vec<&'static str>,
    /// What the teardown of the shared environment found left behind or could not undo.
    teardown: Option<String>,
}

impl Outcome {
    fn success(&self) -> bool {
        self.failed.is_empty() && self.teardown.is_none()
    }

    /// The closing line: `e2e: N passed, M failed, K skipped`, and the teardown's verdict.
    fn summary(&self, ran: usize, skipped: usize) -> String {
        let failed = self.failed.len();
        let mut line = format!(
            "e2e: {} passed, {failed} failed, {skipped} skipped",
            ran - failed
        );
        if self.teardown.is_some() {
            line.push_str("; teardown FAILED");
        }
        line
    }
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

/// Runs `cases` on `threads` workers against one containerd, then tears it down.
fn run(cases: &[Case], threads: usize) -> Outcome {
    if cases.is_empty() {
        println!("e2e: no case in scope matches the filter");
        return Outcome::default();
    }
    let mut env = match Env::start() {
        Ok(env) => env,
        Err(e) => {
            println!("e2e: cannot set up the environment: {e:#}");
            return Outcome {
                failed: cases.iter().map(|c| c.name).collect(),
                teardown: None,
            };
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
    // Whatever no case owns (a task still alive, a shim that outlived containerd, a mount or
    // bridge that would not go) fails the run like a case would.
    let teardown = env.stop().err().map(|e| format!("{e:#}"));
    if let Some(found) = &teardown {
        println!("e2e: teardown FAILED: {found}");
    }
    let failed = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if !failed.is_empty() {
        println!("failures: {}", failed.join(", "));
    }
    Outcome { failed, teardown }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(_: &Env) -> anyhow::Result<()> {
        Ok(())
    }

    #[test]
    fn a_case_outside_its_scope_is_not_in_scope() {
        let every = Case::new("pass", pass);
        let only = Case::new("pass", pass).only_on(&["wasmtime"]);
        assert!(every.scope.includes("wasmer"));
        assert!(only.scope.includes("wasmtime"));
        assert!(!only.scope.includes("wasmer"));
        assert_eq!(only.scope.describe(), "only on wasmtime");
        let listed = crate::cases![only_on(&["wasmer"]): pass];
        assert_eq!(listed[0].scope, Scope::Engines(&["wasmer"]));
    }

    #[test]
    fn summary_counts_skips_and_teardown() {
        let clean = Outcome::default();
        assert!(clean.success());
        assert_eq!(clean.summary(3, 2), "e2e: 3 passed, 0 failed, 2 skipped");
        let leaked = Outcome {
            failed: vec!["a"],
            teardown: Some("shim 12 outlived containerd; killed".into()),
        };
        assert!(!leaked.success());
        assert_eq!(
            leaked.summary(3, 0),
            "e2e: 2 passed, 1 failed, 0 skipped; teardown FAILED"
        );
        let only_teardown = Outcome {
            failed: vec![],
            teardown: Some("x".into()),
        };
        assert!(!only_teardown.success());
    }
}
