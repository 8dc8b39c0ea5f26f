//! The compatibility key of wasmer's cache artifacts (wasmer's serialized module).
//!
//! wasmer 7.4.2's `Module::deserialize` (despite its name) runs the *unchecked* loader, and even
//! its checked loader only validates the metadata's structure, not the machine code bytes. So
//! the key names everything loadability depends on, and the cache entry binds the bytes to the
//! module and this key (`wasmpod_runtime::cache::entry`): wasmer only ever parses bytes this
//! engine build produced for this module, byte for byte.

use wasmer::sys::NativeEngineExt;
use wasmer::Engine;
use wasmpod_runtime::cache::entry::key_digest;

/// The wasmer version pinned in the workspace; bump it with the pin.
pub const WASMER_VERSION: &str = "7.4.2";
/// The payload's format; bump it when what `precompile` returns changes meaning.
const PAYLOAD_FORMAT: &str = "wasmer-serialized/2";

/// Everything a serialized wasmer artifact's loadability depends on: the wasmer version (its
/// archive format and VM ABI), the compiler and its settings (`deterministic_id`, e.g.
/// `cranelift-opt_speed`), the target triple and the host CPU features the code was compiled
/// for (wasmer refuses artifacts needing features this CPU lacks), and the payload format.
pub fn compatibility_key(engine: &Engine) -> String {
    let target = engine.target();
    let details = format!(
        "{}|{}|{:?}|{PAYLOAD_FORMAT}",
        engine.deterministic_id(),
        target.triple(),
        target.cpu_features(),
    );
    format!(
        "wasmer-{WASMER_VERSION}-{}-{}",
        target.triple(),
        key_digest(&details)
    )
}
