//! The kind of a failure, as the shim reports it to containerd: one variant per gRPC status
//! code that runc's shim uses. Every error of the lifecycle verbs has a `kind()`, and the
//! zygote sends it back with its message, so the kind survives the process boundary.

use serde::{Deserialize, Serialize};

/// What went wrong, in the terms of the task API's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// No such container or process.
    NotFound,
    /// A container or process of that id exists.
    AlreadyExists,
    /// The container is in the wrong state for the request.
    FailedPrecondition,
    /// The request, the bundle's spec or the module is bad: retrying the same will fail again.
    InvalidArgument,
    /// wasmpod does not do this (e.g. checkpoint).
    Unimplemented,
    /// The node failed: I/O, the cache, a crashed helper process.
    Internal,
    /// A process the shim needs (the zygote, containerd) cannot be reached now; a retry may work.
    Unavailable,
}

impl ErrorKind {
    /// The kind of a libcontainer failure: its own classification of bad input and state.
    pub fn of_libcontainer(e: &libcontainer::error::LibcontainerError) -> Self {
        use libcontainer::error::LibcontainerError as L;
        match e {
            L::Exist => Self::AlreadyExists,
            L::IncorrectStatus(_) => Self::FailedPrecondition,
            L::NoDirectory => Self::NotFound,
            L::InvalidInput(_)
            | L::InvalidID(_)
            | L::MissingSpec(_)
            | L::InvalidSpec(_)
            | L::Spec(_) => Self::InvalidArgument,
            _ => Self::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use libcontainer::container::ContainerStatus;
    use libcontainer::error::LibcontainerError;

    use super::ErrorKind;

    #[test]
    fn libcontainer_failures_keep_their_meaning() {
        let cases = [
            (LibcontainerError::Exist, ErrorKind::AlreadyExists),
            (
                LibcontainerError::IncorrectStatus(ContainerStatus::Running),
                ErrorKind::FailedPrecondition,
            ),
            (LibcontainerError::NoDirectory, ErrorKind::NotFound),
            (
                LibcontainerError::InvalidInput("bad".into()),
                ErrorKind::InvalidArgument,
            ),
            (
                LibcontainerError::OtherIO(std::io::Error::other("disk")),
                ErrorKind::Internal,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(ErrorKind::of_libcontainer(&error), kind, "{error:?}");
        }
    }
}
