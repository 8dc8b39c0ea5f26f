//! `make demo`: a private containerd with the wasmpod shim on its PATH, one wasm and one native
//! container through `io.containerd.wasmtime.v1`, their output, then everything cleaned up.

use anyhow::{Context, Result};
use wasmpod_e2e::{Env, WASM_RUNTIME};

fn show(title: &str, out: &wasmpod_e2e::CmdOutput) {
    println!("--- {title}");
    println!("$ {}", out.command);
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    println!(
        "(exit code {:?}, {:.0} ms)\n",
        out.status,
        out.elapsed.as_secs_f64() * 1e3
    );
}

fn main() -> Result<()> {
    let mut env = Env::start().context("starting a private containerd")?;
    env.require_shim()?;
    println!(
        "private containerd at {} (pid {}), shim from {}\n",
        env.containerd().address().display(),
        env.containerd().pid(),
        env.shim_dir().display()
    );
    let result = (|| -> Result<()> {
        let wasm_image = env.wasm_image()?.to_string();
        let busybox = env.busybox_image()?.to_string();
        let wasm = env.ctr().run_rm(
            WASM_RUNTIME,
            &wasm_image,
            &env.unique_id("demo-wasm"),
            &["/hello.wasm", "from", "wasmpod"],
        )?;
        show(
            "a wasm module run by wasmtime inside a libcontainer container",
            &wasm,
        );
        let native = env.ctr().run_rm(
            WASM_RUNTIME,
            &busybox,
            &env.unique_id("demo-native"),
            &[
                "sh",
                "-c",
                "echo hello from a native container: $(uname -s) pid $$",
            ],
        )?;
        show("a native busybox binary through the same runtime", &native);
        wasm.ok()?;
        native.ok()?;
        Ok(())
    })();
    env.stop_gracefully()?;
    println!("containerd stopped, nothing left behind");
    result
}
