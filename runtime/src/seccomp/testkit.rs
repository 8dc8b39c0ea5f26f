//! Runs every test fixture under the guest filter, for an engine's `guest_seccomp` test (a
//! `harness = false` test whose `main` calls [`main`]). A filter cannot be removed, so each
//! case runs in a child: the test binary again, with [`CASE_ENV`] naming the case. As the shim
//! does, the parent compiles the fixtures; the child mirrors the container's init:
//! single-threaded, it builds the engine, loads the artifact, installs the filter, then runs
//! the guest and exits with its code.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::executor::{MEMORY_LIMIT_EXIT_CODE, TRAP_EXIT_CODE};
use crate::{EngineError, GuestContext, WasmEngine};

/// Names the case a child runs.
pub const CASE_ENV: &str = "WASMPOD_SECCOMP_CASE";
/// The parent's scratch directory: the `cat` input, the child's stdout and stderr files.
const DIR_ENV: &str = "WASMPOD_SECCOMP_DIR";
const CAT_TEXT: &str = "read under the guest filter\n";
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
const FLOOD_BYTES: usize = 3 << 20;
/// The `wasi:http` proxy fixture: served, then asked for one response.
const HTTP_FIXTURE: &str = "http.component.wasm";
/// The WASI file operations the fixtures never make (mkdir, readdir, rename, symlink, ...).
const WASI_FS: &str = "src/seccomp/wasi-fs.wat";
/// Where the child serves the proxy fixture.
const HTTP_ADDR_ENV: &str = "WASMPOD_SECCOMP_HTTP_ADDR";

/// What a case's stdout must be.
enum Stdout {
    Exactly(String),
    Contains(&'static str),
    /// `flood`: its pattern for this many bytes, then `flood done`.
    Flood(usize),
}

struct Case {
    name: String,
    fixture: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    func: Option<String>,
    stdin: Option<&'static [u8]>,
    memory_limit: Option<u64>,
    code: i32,
    stdout: Stdout,
    stderr: Option<&'static str>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Every `.wasm` and `.wat` fixture, and [`WASI_FS`]; a fixture without cases here is an
/// error, so a new one cannot be left out.
fn fixtures() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for sub in ["wasm", "wat"] {
        let dir = fixtures_dir().join(sub);
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("reading a fixtures directory").path();
            if path.extension().is_some_and(|e| e == sub) {
                found.push(path);
            }
        }
    }
    found.sort();
    found.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(WASI_FS));
    found
}

fn case(fixture: &Path, name: &str, args: &[&str], code: i32, stdout: Stdout) -> Case {
    let file = fixture.file_name().unwrap_or_default().to_string_lossy();
    let mut argv = vec![format!("/{file}")];
    argv.extend(args.iter().map(|a| a.to_string()));
    Case {
        name: format!("{file}:{name}"),
        fixture: fixture.to_path_buf(),
        args: argv,
        cwd: "/".into(),
        func: None,
        stdin: None,
        memory_limit: None,
        code,
        stdout,
        stderr: None,
    }
}

/// The cases for `fixture`; `dir` is the scratch directory (the `cat` input).
fn cases_for(fixture: &Path, dir: &Path) -> Vec<Case> {
    let file = fixture
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let exact = |s: &str| Stdout::Exactly(s.to_string());
    let cat_path = dir.join("cat.txt").display().to_string();
    match file.as_str() {
        "testprog.wasm" | "testprog.component.wasm" => {
            let mut cases = vec![
                case(fixture, "exit", &["exit", "7"], 7, exact("")),
                case(fixture, "trap", &["trap"], TRAP_EXIT_CODE, exact("")),
                case(fixture, "sleep", &["sleep", "0.2"], 0, exact("slept\n")),
                case(fixture, "cat", &["cat", &cat_path], 0, exact(CAT_TEXT)),
                case(
                    fixture,
                    "echo-stdin",
                    &["echo-stdin"],
                    0,
                    exact("one\ntwo\n"),
                ),
                case(
                    fixture,
                    "flood",
                    &["flood", &FLOOD_BYTES.to_string()],
                    0,
                    Stdout::Flood(FLOOD_BYTES),
                ),
                case(
                    fixture,
                    "stderr",
                    &["stderr", "to-stderr"],
                    0,
                    exact("out\n"),
                ),
                case(fixture, "pwd", &["pwd"], 0, exact("/\n")),
                case(fixture, "grow-memory", &["grow-memory", "48"], 0, exact("")),
                case(
                    fixture,
                    "grow-past-limit",
                    &["grow-memory", "64"],
                    MEMORY_LIMIT_EXIT_CODE,
                    exact(""),
                ),
                case(
                    fixture,
                    "cat-relative",
                    &["cat", "cat.txt"],
                    0,
                    exact(CAT_TEXT),
                ),
                // Proves the filter is in force while the guest runs (mode 2: a filter).
                case(
                    fixture,
                    "filter-on",
                    &["cat", "/proc/self/status"],
                    0,
                    Stdout::Contains("\nSeccomp:\t2\n"),
                ),
            ];
            let component = file.contains(".component.");
            if component {
                // wasi:sockets (Rust's std has sockets on wasip2 only): a name lookup by the
                // host's resolver (nscd's AF_UNIX socket is refused, glibc goes on with
                // /etc/hosts), a listening socket, and a connect nothing answers.
                cases.extend([
                    case(
                        fixture,
                        "lookup",
                        &["lookup", "localhost"],
                        0,
                        Stdout::Contains("lookup localhost: OK\n"),
                    ),
                    case(
                        fixture,
                        "tcp-bind",
                        &["tcp-bind", "0"],
                        0,
                        exact("tcp-bind 0: OK\n"),
                    ),
                    case(
                        fixture,
                        "tcp-connect-refused",
                        &["tcp-get", "127.0.0.1:1"],
                        1,
                        exact(""),
                    ),
                ]);
            }
            for case in &mut cases {
                match case.name.rsplit(':').next() {
                    // WASI 0.2's exit carries success or failure only.
                    Some("exit") if component => case.code = 1,
                    Some("echo-stdin") => case.stdin = Some(b"one\ntwo\n"),
                    Some("stderr") => case.stderr = Some("to-stderr"),
                    Some("grow-memory") => case.stdout = Stdout::Contains("grew\n"),
                    Some("grow-past-limit") => {
                        case.memory_limit = Some(32 << 20);
                        case.stdout = Stdout::Contains("allocated 16 MiB\n");
                        case.stderr = Some("memory limit");
                    }
                    Some("cat-relative") => case.cwd = dir.to_path_buf(),
                    Some("tcp-connect-refused") => case.stderr = Some("ConnectionRefused"),
                    _ => {}
                }
            }
            cases
        }
        "hello.wasm" | "hello.component.wasm" => {
            vec![case(
                fixture,
                "run",
                &[],
                0,
                Stdout::Contains("hello from wasm\n"),
            )]
        }
        "greet.wat" => {
            let start = case(fixture, "start", &[], 0, exact("start called\n"));
            let mut greet = case(fixture, "greet", &[], 0, exact("hello from greet\n"));
            greet.func = Some("greet".into());
            vec![start, greet]
        }
        "wasi-fs.wat" => {
            let mut fs = case(fixture, "fs-ops", &[], 0, exact("fs ok\n"));
            fs.cwd = dir.to_path_buf();
            vec![fs]
        }
        HTTP_FIXTURE => vec![case(fixture, "serve", &[], 0, Stdout::Contains(""))],
        // The demo app of `make load`; `daemon` runs until killed.
        "wasi-demo-app.wasm" => vec![
            case(fixture, "echo", &["echo", "a", "b"], 0, exact("a b\n")),
            case(fixture, "exit", &["exit", "3"], 3, exact("")),
            case(fixture, "sleep", &["sleep", "0.2"], 0, exact("slept 0.2\n")),
            case(fixture, "cat", &["cat", &cat_path], 0, exact(CAT_TEXT)),
        ],
        // The custom host example's guest imports `wasmpod_demo::log`, which no engine of this
        // crate provides; tests/e2e/cases/custom_host.rs runs it, under this profile, through
        // the example's shim.
        "custom-log.wat" => Vec::new(),
        other => panic!(
            "no guest_seccomp cases for the fixture {other}: add them in {}",
            file!()
        ),
    }
}

/// The whole test: in a child, runs its case; in the parent, every case (those whose name
/// contains one of the program's arguments, when some are given) and exits 1 if one failed.
pub fn main<E: WasmEngine>() {
    if let Some(name) = std::env::var_os(CASE_ENV) {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("the scratch directory"));
        let name = name.to_string_lossy().into_owned();
        let case = all_cases::<E>(&dir)
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("unknown case {name}"));
        child::<E>(&case, &dir)
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let dir = scratch_dir();
    std::fs::write(dir.join("cat.txt"), CAT_TEXT).expect("writing the cat input");
    precompile_all::<E>(&dir);
    let mut failed = Vec::new();
    let mut ran = 0;
    for case in all_cases::<E>(&dir) {
        if !filters.is_empty() && !filters.iter().any(|f| case.name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let result = if case.fixture.ends_with(HTTP_FIXTURE) {
            check_http(&case, &dir)
        } else {
            check(&case, &dir)
        };
        match result {
            Ok(()) => println!("{} {} ... ok", E::NAME, case.name),
            Err(why) => {
                println!("{} {} ... FAILED\n{why}", E::NAME, case.name);
                failed.push(case.name);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{ran} cases, {} failed {failed:?}", failed.len());
    // Like libtest, a name filter may match nothing; without one, every fixture has cases.
    if (ran == 0 && filters.is_empty()) || !failed.is_empty() {
        std::process::exit(1);
    }
}

fn all_cases<E: WasmEngine>(dir: &Path) -> Vec<Case> {
    fixtures()
        .iter()
        .filter(|f| E::SUPPORTS_COMPONENTS || !f.to_string_lossy().contains(".component."))
        .flat_map(|f| cases_for(f, dir))
        .collect()
}

/// Compiles every fixture in the parent, as the shim does, so that no compiler thread exists
/// in the child (the container's init only loads).
fn precompile_all<E: WasmEngine>(dir: &Path) {
    let engine = E::new().expect("engine");
    let mut fixtures: Vec<PathBuf> = all_cases::<E>(dir).into_iter().map(|c| c.fixture).collect();
    fixtures.dedup();
    for fixture in fixtures {
        let source = std::fs::read(&fixture)
            .unwrap_or_else(|e| panic!("reading {}: {e}", fixture.display()));
        let artifact = engine
            .precompile(&source)
            .unwrap_or_else(|e| panic!("precompiling {}: {e}", fixture.display()));
        std::fs::write(artifact_path(dir, &fixture), artifact).expect("writing an artifact");
    }
}

fn artifact_path(dir: &Path, fixture: &Path) -> PathBuf {
    let name = fixture.file_name().unwrap_or_default().to_string_lossy();
    dir.join(format!("{name}.artifact"))
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmpod-guest-seccomp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    dir
}

/// In the child: prepares, installs the filter, runs, exits. Stdout and stderr go to files in
/// the scratch directory, opened before the filter like the container's stdio.
fn child<E: WasmEngine>(case: &Case, dir: &Path) -> ! {
    let engine = E::new().expect("engine");
    let module = engine
        .load(std::fs::read(artifact_path(dir, &case.fixture)).expect("reading the artifact"))
        .expect("loading the artifact");
    engine
        .check_entry(&module, case.func.as_deref())
        .expect("entry");
    redirect(1, &dir.join(format!("{}.stdout", file_stem(&case.name))));
    redirect(2, &dir.join(format!("{}.stderr", file_stem(&case.name))));
    let filter = super::guest_filter().expect("compiling the filter");
    super::install(&filter).expect("installing the filter");
    let guest = GuestContext {
        args: case.args.clone(),
        env: guest_env(),
        cwd: case.cwd.clone(),
        func: case.func.clone(),
        memory_limit: case.memory_limit.map(crate::MemoryLimit::fixed),
        grants: Default::default(),
    };
    let code = match engine.run(&module, &guest) {
        Ok(code) => code,
        Err(EngineError::Trap(msg)) => {
            eprintln!("wasm trap: {msg}");
            TRAP_EXIT_CODE
        }
        Err(e @ EngineError::MemoryLimit { .. }) => {
            eprintln!("{e}");
            MEMORY_LIMIT_EXIT_CODE
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    };
    std::process::exit(code)
}

/// The guest's env; for the proxy fixture, where the parent wants it served.
fn guest_env() -> Vec<String> {
    let mut env = vec!["GUEST=seccomp".to_string()];
    if let Ok(addr) = std::env::var(HTTP_ADDR_ENV) {
        env.push(format!("WASMTIME_HTTP_PROXY_SOCKET_ADDR={addr}"));
    }
    env
}

fn file_stem(name: &str) -> String {
    name.replace([':', '/', '.'], "_")
}

fn redirect(fd: i32, path: &Path) {
    let file = std::fs::File::create(path).expect("creating an output file");
    // SAFETY: dup2 onto a standard descriptor of this single-threaded child.
    let rc = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), fd) };
    assert!(rc == fd, "dup2: {}", std::io::Error::last_os_error());
}

fn spawn(case: &Case, dir: &Path, extra_env: &[(&str, String)]) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    Command::new(exe)
        .env(CASE_ENV, &case.name)
        .env(DIR_ENV, dir)
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(if case.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .map_err(|e| format!("spawning the child: {e}"))
}

fn wait(child: &mut Child, timeout: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {timeout:?}: killed"));
            }
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    }
}

fn outputs(case: &Case, dir: &Path) -> (String, String) {
    let read = |ext: &str| {
        std::fs::read(dir.join(format!("{}.{ext}", file_stem(&case.name))))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    (read("stdout"), read("stderr"))
}

fn check(case: &Case, dir: &Path) -> Result<(), String> {
    let mut child = spawn(case, dir, &[])?;
    if let (Some(input), Some(mut stdin)) = (case.stdin, child.stdin.take()) {
        stdin
            .write_all(input)
            .map_err(|e| format!("writing stdin: {e}"))?;
    }
    let status = wait(&mut child, CASE_TIMEOUT)?;
    let (stdout, stderr) = outputs(case, dir);
    let report = |why: String| {
        let shown: String = stdout.chars().take(2000).collect();
        format!("{why}\n--- stdout (start)\n{shown}\n--- stderr\n{stderr}")
    };
    if status.code() != Some(case.code) {
        return Err(report(format!(
            "exit {status}, expected code {}",
            case.code
        )));
    }
    let stdout_ok = match &case.stdout {
        Stdout::Exactly(s) => stdout == *s,
        Stdout::Contains(s) => stdout.contains(s),
        Stdout::Flood(n) => {
            let expected: String = "0123456789abcdef".chars().cycle().take(*n).collect();
            stdout == format!("{expected}flood done\n")
        }
    };
    if !stdout_ok {
        return Err(report("unexpected stdout".into()));
    }
    if let Some(s) = case.stderr {
        if !stderr.contains(s) {
            return Err(report(format!("stderr lacks {s:?}")));
        }
    }
    Ok(())
}

/// Serves the proxy fixture on a free port, asks it for `/` (served) and `/trap` (a trap
/// in the guest: 500), then stops it with SIGTERM.
fn check_http(case: &Case, dir: &Path) -> Result<(), String> {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?;
    let mut child = spawn(case, dir, &[(HTTP_ADDR_ENV, addr.to_string())])?;
    let responses = get(addr, "/", &mut child).and_then(|hello| {
        let trap = get(addr, "/trap", &mut child)?;
        Ok((hello, trap))
    });
    // SAFETY: a signal to our own child, still unreaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait(&mut child, CASE_TIMEOUT);
    let (stdout, stderr) = outputs(case, dir);
    let report = |why: String| format!("{why}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let (hello, trap) = responses.map_err(report)?;
    if !hello.starts_with("HTTP/1.1 200") || !hello.contains("hello from a wasi:http component") {
        return Err(report(format!("unexpected response to GET /: {hello}")));
    }
    if !trap.starts_with("HTTP/1.1 500") {
        return Err(report(format!("unexpected response to GET /trap: {trap}")));
    }
    let status = status.map_err(report)?;
    if status
        .code()
        .is_none_or(|c| c != 0 && c != 128 + libc::SIGTERM)
    {
        return Err(report(format!("after SIGTERM: {status}")));
    }
    Ok(())
}

/// One request on a new connection (retried until the server listens); the raw response.
fn get(addr: SocketAddr, target: &str, child: &mut Child) -> Result<String, String> {
    let deadline = Instant::now() + CASE_TIMEOUT;
    let mut stream = loop {
        match TcpStream::connect(addr) {
            Ok(stream) => break stream,
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the server ended before serving: {status}"));
                }
                if Instant::now() > deadline {
                    return Err(format!("connecting to {addr}: {e}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .set_read_timeout(Some(CASE_TIMEOUT))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("sending GET {target}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading the response to GET {target}: {e}"))?;
    Ok(response)
}
