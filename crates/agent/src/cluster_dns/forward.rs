//! Names outside the cluster go to the node's resolvers: the pod's question as it came, over
//! UDP, to each resolver in turn until one answers (as a stub resolver would).

use hickory_server::proto::op::Message;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// How long one resolver has to answer before the next is asked.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Why no answer came. Retryable by the client: it asks again, as after any lost datagram.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no resolver is configured")]
    NoResolver,
    #[error("no resolver answered: {0}")]
    Unanswered(String),
}

/// The first answer of `upstream`, tried in order, to the DNS message `question`.
pub async fn ask(upstream: &[SocketAddr], question: &[u8]) -> Result<Message, ForwardError> {
    if upstream.is_empty() {
        return Err(ForwardError::NoResolver);
    }
    let mut last = String::new();
    for server in upstream {
        match ask_one(*server, question).await {
            Ok(answer) => return Ok(answer),
            Err(e) => last = format!("{server}: {e}"),
        }
    }
    Err(ForwardError::Unanswered(last))
}

async fn ask_one(server: SocketAddr, question: &[u8]) -> std::io::Result<Message> {
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(question).await?;
    let mut buf = vec![0u8; 65_535];
    let id = question.get(..2).map(|b| [b[0], b[1]]);
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        // Only the answer to this question (its id) counts; a stray datagram is ignored.
        if buf.get(..2).map(|b| [b[0], b[1]]) != id {
            continue;
        }
        return Message::from_vec(&buf[..n])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()));
    }
}
