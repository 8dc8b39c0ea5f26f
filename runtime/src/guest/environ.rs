//! The process's `cmdline` and `environ`: the guest's own, not the shim's.
//!
//! The init is a fork of the zygote, itself a fork of the shim, so the kernel's view of its
//! argument and environment blocks (`/proc/<pid>/cmdline`, `environ`) is the shim's initial
//! stack: containerd's environment and the shim's flags. `PR_SET_MM_MAP` points the kernel at
//! new blocks (it needs no capability when `exe_fd` is -1, unlike the single `PR_SET_MM_*`
//! fields); the old blocks are zeroed in place.

use std::io;

const PR_SET_MM: libc::c_int = 35;
const PR_SET_MM_MAP: libc::c_ulong = 14;

/// The kernel's `struct prctl_mm_map` (`linux/prctl.h`).
#[repr(C)]
struct PrctlMmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: *mut u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// The memory layout fields of `/proc/self/stat` that `PR_SET_MM_MAP` must be given back.
///
/// Read in the zygote worker, which always sees the host's `/proc` (a container may mount
/// none): the init is a fork of it without exec, so every address but the current break is
/// the same there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmLayout {
    start_code: u64,
    end_code: u64,
    start_stack: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
}

impl MmLayout {
    /// This process's layout, from `/proc/self/stat`.
    pub fn of_self() -> io::Result<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        Self::parse(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "/proc/self/stat has no memory layout fields",
            )
        })
    }

    /// Fields 26-28 and 45-51 (1-based) of a `stat` line; the command name (field 2) may
    /// hold spaces and parentheses, so fields are counted from its closing parenthesis.
    fn parse(stat: &str) -> Option<Self> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let field = |n: usize| fields.get(n - 3).copied();
        let layout = Self {
            start_code: field(26)?,
            end_code: field(27)?,
            start_stack: field(28)?,
            start_data: field(45)?,
            end_data: field(46)?,
            start_brk: field(47)?,
            arg_start: field(48)?,
            arg_end: field(49)?,
            env_start: field(50)?,
            env_end: field(51)?,
        };
        // Zeroes mean the reader was not allowed to see them.
        (layout.arg_start != 0 && layout.arg_start <= layout.arg_end).then_some(layout)
    }
}

/// One NUL-terminated string per item, as the kernel shows `cmdline` and `environ`.
fn nul_separated(items: &[String]) -> Vec<u8> {
    let mut block = Vec::new();
    for item in items {
        block.extend(item.bytes().filter(|b| *b != 0));
        block.push(0);
    }
    block
}

/// Makes the kernel show `args` as this process's cmdline and `env` as its environ, then
/// zeroes the inherited blocks and clears libc's environment. Must run single-threaded.
pub fn replace(layout: &MmLayout, args: &[String], env: &[String]) -> io::Result<()> {
    let mut block = nul_separated(args);
    let args_len = block.len();
    block.extend(nul_separated(env));
    // The blocks must stay mapped for the life of the process: heap memory (a static did not
    // show in /proc/<pid>/environ when tried).
    let block: &'static mut [u8] = Box::leak(block.into_boxed_slice());
    let start = block.as_mut_ptr() as u64;
    let map = PrctlMmMap {
        start_code: layout.start_code,
        end_code: layout.end_code,
        start_data: layout.start_data,
        end_data: layout.end_data,
        start_brk: layout.start_brk,
        // SAFETY: sbrk(0) only reads the current break.
        brk: unsafe { libc::sbrk(0) } as u64,
        start_stack: layout.start_stack,
        arg_start: start,
        arg_end: start + args_len as u64,
        env_start: start + args_len as u64,
        env_end: start + block.len() as u64,
        auxv: std::ptr::null_mut(),
        auxv_size: 0,
        exe_fd: u32::MAX,
    };
    // SAFETY: a valid prctl_mm_map of the size given; every field holds this process's values.
    let rc = unsafe {
        libc::prctl(
            PR_SET_MM,
            PR_SET_MM_MAP,
            &map as *const PrctlMmMap,
            std::mem::size_of::<PrctlMmMap>(),
            0,
        )
    };
    let result = if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    set_name(args.first().map_or("", String::as_str));
    // SAFETY: clearenv drops libc's pointers into the old block before it is zeroed.
    unsafe { libc::clearenv() };
    // SAFETY: both ranges are this process's inherited argument and environment strings, on
    // the original stack, which stays mapped and writable; nothing reads them any more.
    unsafe {
        zero(layout.arg_start, layout.arg_end);
        zero(layout.env_start, layout.env_end);
    }
    result
}

/// The thread name (`comm`, `/proc/<pid>/status` Name) after the module's file name, as an
/// execve would set it, instead of libcontainer's `youki:[2:INIT]`.
fn set_name(module_path: &str) {
    let base = module_path.rsplit('/').next().unwrap_or_default();
    let mut name = [0u8; 16];
    for (slot, byte) in name
        .iter_mut()
        .zip(base.bytes().filter(|b| *b != 0).take(15))
    {
        *slot = byte;
    }
    // SAFETY: a NUL-terminated buffer of 16 bytes, as PR_SET_NAME reads.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

unsafe fn zero(start: u64, end: u64) {
    if start != 0 && start < end {
        // SAFETY: guaranteed by the caller.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, (end - start) as usize) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_a_tricky_name_is_parsed() {
        // 52 fields; the name holds a space and a closing parenthesis.
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[0] = "S".into();
        let line = format!("1234 (a b) c) {}\n", fields.join(" "));
        let layout = MmLayout::parse(&line).unwrap();
        assert_eq!(layout.start_code, 26);
        assert_eq!(layout.start_stack, 28);
        assert_eq!(layout.start_data, 45);
        assert_eq!(layout.env_end, 51);
    }

    #[test]
    fn hidden_fields_are_refused() {
        let fields: Vec<&str> = (3..=52).map(|_| "0").collect();
        assert_eq!(
            MmLayout::parse(&format!("1 (x) {}", fields.join(" "))),
            None
        );
        assert_eq!(MmLayout::parse("garbage"), None);
    }

    #[test]
    fn this_process_has_a_layout() {
        let layout = MmLayout::of_self().unwrap();
        assert!(layout.start_code < layout.end_code);
        assert!(layout.env_start <= layout.env_end);
    }

    /// In a forked child (it wipes the process's environment): the kernel shows the new
    /// blocks, and nothing of the old ones.
    #[test]
    fn cmdline_and_environ_are_replaced() {
        let layout = MmLayout::of_self().unwrap();
        let mut fds = [0; 2];
        // SAFETY: a pipe for the child's verdict.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [read_end, write_end] = fds;
        // SAFETY: the child does not return into the test harness; it ends with _exit.
        match unsafe { libc::fork() } {
            0 => {
                let args = vec!["/app.wasm".to_string(), "serve".to_string()];
                let env = vec!["A=1".to_string(), "B=two".to_string()];
                let verdict = match replace(&layout, &args, &env) {
                    Err(e) => format!("prctl: {e}"),
                    Ok(()) => {
                        let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
                        let environ = std::fs::read("/proc/self/environ").unwrap_or_default();
                        if cmdline != b"/app.wasm\0serve\0" {
                            format!("cmdline {:?}", String::from_utf8_lossy(&cmdline))
                        } else if environ != b"A=1\0B=two\0" {
                            format!("environ {:?}", String::from_utf8_lossy(&environ))
                        } else if std::env::vars_os().next().is_some() {
                            "libc environment not cleared".to_string()
                        } else {
                            "ok".to_string()
                        }
                    }
                };
                // SAFETY: writing the verdict to our pipe, then leaving without unwinding.
                unsafe {
                    libc::write(write_end, verdict.as_ptr().cast(), verdict.len());
                    libc::_exit(0)
                }
            }
            pid => {
                assert!(pid > 0);
                // SAFETY: closing our copy of the write end, then reading the verdict.
                unsafe { libc::close(write_end) };
                let mut buf = [0u8; 512];
                let n = unsafe { libc::read(read_end, buf.as_mut_ptr().cast(), buf.len()) };
                let mut status = 0;
                unsafe { libc::waitpid(pid, &mut status, 0) };
                let verdict = String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
                assert_eq!(verdict, "ok");
            }
        }
    }
}
