//! The cache artifact: wasmer's serialized module inside an envelope that binds it to the
//! engine build that wrote it.
//!
//! The layout and its checks are `wasmpod_runtime::cache::envelope`'s.
//!
//! Why an envelope: wasmer 7.4.2's `Module::deserialize` (despite its name) runs the *unchecked*
//! loader, and even its checked loader only validates the metadata's structure, not the machine
//! code bytes; a file that starts with an ELF header is routed to another, unchecked, loader.
//! Verifying a digest over the whole payload first means wasmer only ever parses bytes this
//! engine build produced byte for byte: a truncated, corrupted or foreign file (other wasmer
//! version, other CPU features, other compiler settings) is an `EngineError::Load`, never
//! executable garbage.

use wasmer::sys::NativeEngineExt;
use wasmer::Engine;
use wasmpod_runtime::cache::envelope::{key_digest, Envelope};

/// The wasmer version pinned in the workspace; bump it with the pin.
pub const WASMER_VERSION: &str = "7.4.2";
/// The cache artifact's envelope; bump its version when the payload's meaning changes.
pub const ENVELOPE: Envelope = Envelope::new(b"wasmpod-wasmer/1", "wasmer");

/// Everything a serialized wasmer artifact's loadability depends on: the wasmer version (its
/// archive format and VM ABI), the compiler and its settings (`deterministic_id`, e.g.
/// `cranelift-opt_speed`), the target triple and the host CPU features the code was compiled
/// for (wasmer refuses artifacts needing features this CPU lacks), and the envelope version.
pub fn compatibility_key(engine: &Engine) -> String {
    let target = engine.target();
    let details = format!(
        "{}|{}|{:?}|{}",
        engine.deterministic_id(),
        target.triple(),
        target.cpu_features(),
        ENVELOPE.version(),
    );
    format!(
        "wasmer-{WASMER_VERSION}-{}-{}",
        target.triple(),
        key_digest(&details)
    )
}
