//! Kubernetes' stream protocol for exec and attach: its names (`v5.channel.k8s.io`, which ends
//! stdin, and `v4.channel.k8s.io`) and the channel numbers that prefix each WebSocket message,
//! whose roles SPDY gives one stream each.

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// The final `Status` (v4 and later): success, or the exit code.
pub const ERROR: u8 = 3;
/// Terminal sizes, as JSON `{"Width": .., "Height": ..}`.
pub const RESIZE: u8 = 4;
/// v5: closes the channel named by the next byte (`[255, 0]` ends stdin).
pub const CLOSE: u8 = 255;
