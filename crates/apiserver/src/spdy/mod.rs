//! SPDY/3.1, the stream protocol kubectl speaks for port-forward (and, before 1.30, for exec,
//! attach and cp): frames (`everynode_apimachinery::spdy`), one connection's streams (`session`), and the two ways a
//! connection arrives (`transport`).

/// The frames themselves are apimachinery's (the agent speaks them too, as a client).
pub use everynode_apimachinery::spdy as frame;
pub mod session;
pub mod transport;

pub use session::{IncomingStream, StreamWriter};
