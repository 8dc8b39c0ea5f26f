//! The ttrpc status of a failure: the one place where the runtime's [`ErrorKind`]s become the
//! gRPC codes containerd turns into its errdefs (`not found`, `already exists`, ...), the codes
//! runc's shim uses for the same cases.

use containerd_shim::protos::ttrpc::{self, Code};
use wasmpod_runtime::ErrorKind;

/// The status code of a kind of failure.
pub(crate) fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NOT_FOUND,
        ErrorKind::AlreadyExists => Code::ALREADY_EXISTS,
        ErrorKind::FailedPrecondition => Code::FAILED_PRECONDITION,
        ErrorKind::InvalidArgument => Code::INVALID_ARGUMENT,
        ErrorKind::Unimplemented => Code::UNIMPLEMENTED,
        ErrorKind::Internal => Code::INTERNAL,
        ErrorKind::Unavailable => Code::UNAVAILABLE,
    }
}

/// A ttrpc error of `kind` saying `msg`.
pub(crate) fn status(kind: ErrorKind, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code_of(kind), msg.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_code() {
        let kinds = [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::FailedPrecondition,
            ErrorKind::InvalidArgument,
            ErrorKind::Unimplemented,
            ErrorKind::Internal,
            ErrorKind::Unavailable,
        ];
        let codes: std::collections::HashSet<_> = kinds.iter().map(|k| code_of(*k)).collect();
        assert_eq!(codes.len(), kinds.len());
        assert_eq!(code_of(ErrorKind::InvalidArgument), Code::INVALID_ARGUMENT);
    }
}
