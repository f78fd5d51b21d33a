//! SPDY/3.1, the stream protocol kubectl speaks for port-forward (and, before 1.30, for exec,
//! attach and cp): frames (`frame`), one connection's streams (`session`), and the two ways a
//! connection arrives (`transport`).

pub mod frame;
pub mod session;
pub mod transport;

pub use session::{IncomingStream, StreamWriter};
