//! The one error type of the crate. Every failure a caller can cause — a malformed file, an invalid network, a badly
//! shaped input — comes back as one of these variants with a message naming what was expected; nothing panics.

use std::io;

/// Errors returned by bitlogic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A network file (or byte buffer) is not a valid bitlogic network file.
    #[error("invalid network file: {0}")]
    Format(String),
    /// The file's major format version is not one this reader implements.
    #[error("unsupported network file version {found}: this reader implements version {supported}")]
    Version {
        /// The version found in the file.
        found: String,
        /// The version this reader implements.
        supported: &'static str,
    },
    /// The parts given to build a network do not describe a valid network.
    #[error("invalid network: {0}")]
    Network(String),
    /// An input array does not fit the network (shape, values, NaN).
    #[error("invalid input: {0}")]
    Input(String),
    /// An evaluation setting is not usable on this machine.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Turns an error found while validating the parts of a network into a file format error, for the loader: a bad
    /// wire read from a file is the file's fault.
    pub(crate) fn into_format(self) -> Error {
        match self {
            Error::Network(message) => Error::Format(message),
            other => other,
        }
    }
}
