//! An interactive command in a running container (`kubectl exec`): its standard streams, the
//! terminal size when it has a TTY, and its exit code. The runtime starts it; the agent's
//! endpoint (`crate::exec`) carries it over the WebSocket stream protocol.

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// What to run and which streams it gets.
#[derive(Clone, Debug, Default)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub stdin: bool,
    /// A terminal: output comes on stdout only, as on a TTY.
    pub tty: bool,
    /// The terminal's size to start with (columns, rows).
    pub size: Option<(u16, u16)>,
}

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Sets the terminal's size (columns, rows).
pub type Resize = Box<dyn Fn(u16, u16) + Send + Sync>;

/// A started command.
pub struct ExecSession {
    pub stdin: Option<Writer>,
    pub stdout: Option<Reader>,
    pub stderr: Option<Reader>,
    pub resize: Option<Resize>,
    /// Resolves to the exit code (128 + the signal for a command killed by one). Dropping it
    /// kills the command.
    pub exit: BoxFuture<'static, i32>,
}

/// Why an exec did not start.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The container is not running (no process to join). Not retryable.
    #[error("container not found ({0:?})")]
    NotRunning(String),
    /// The runtime runs no commands in containers (the hollow runtime). Not retryable.
    #[error("{0}")]
    Unsupported(String),
    /// The command could not be started (not found, not executable). Not retryable.
    #[error("{0}")]
    Start(String),
}
