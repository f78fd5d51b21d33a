//! The cluster DNS, answered by each node's agent for its pods (docs/agent.md, "Cluster DNS"):
//! names of the cluster zone from the Services and EndpointSlices the agent watches (`records`),
//! other names forwarded to the node's resolvers (`forward`). hickory's server speaks the
//! protocol on UDP and TCP port 53 of the pods' gateway; pods with `dnsPolicy: ClusterFirst`
//! get that address as their nameserver.

pub mod forward;
pub mod records;

use crate::service_cache::ServiceCache;
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use records::Lookup;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What one node's cluster DNS needs.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Where it listens (UDP and TCP), the pods' nameserver.
    pub listen: SocketAddr,
    pub zone: String,
    /// Where other names go: the node's resolvers.
    pub upstream: Vec<SocketAddr>,
}

struct Handler {
    cache: ServiceCache,
    zone: String,
    upstream: Vec<SocketAddr>,
}

impl Handler {
    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        metadata: Metadata,
        answers: &[Record],
        authorities: &[Record],
        additionals: &[Record],
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let message = builder.build(metadata, answers, authorities, [], additionals);
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cluster DNS could not answer");
                let mut failed = Metadata::response_from_request(&request.metadata);
                failed.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_server::proto::op::Header {
                    metadata: failed,
                    counts: Default::default(),
                })
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let Some(query) = request.queries.queries().first() else {
            metadata.response_code = ResponseCode::FormErr;
            return self
                .respond(request, response, metadata, &[], &[], &[])
                .await;
        };
        let name = query.name().to_string();
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let (services, slices) = (self.cache.services.state(), self.cache.slices.state());
        let lookup = records::lookup(&name, query.query_type(), &self.zone, &services, &slices);
        let soa: Vec<Record> = records::soa(&self.zone).into_iter().collect();
        match lookup {
            Lookup::Found {
                answers,
                additionals,
            } => {
                metadata.authoritative = true;
                self.respond(request, response, metadata, &answers, &[], &additionals)
                    .await
            }
            Lookup::NoData => {
                metadata.authoritative = true;
                self.respond(request, response, metadata, &[], &soa, &[])
                    .await
            }
            Lookup::NxDomain => {
                metadata.authoritative = true;
                metadata.response_code = ResponseCode::NXDomain;
                self.respond(request, response, metadata, &[], &soa, &[])
                    .await
            }
            Lookup::Outside => match forward::ask(&self.upstream, request.as_slice()).await {
                Ok(answer) => {
                    metadata.response_code = answer.metadata.response_code;
                    metadata.authoritative = false;
                    self.respond(
                        request,
                        response,
                        metadata,
                        &answer.answers,
                        &answer.authorities,
                        &answer.additionals,
                    )
                    .await
                }
                Err(e) => {
                    tracing::debug!(name, error = %e, "cluster DNS could not forward");
                    metadata.response_code = ResponseCode::ServFail;
                    self.respond(request, response, metadata, &[], &[], &[])
                        .await
                }
            },
        }
    }
}

/// Serves the cluster DNS until `stop` turns true.
pub async fn run(
    cache: ServiceCache,
    config: DnsConfig,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let udp = crate::proxy::udp::bind(config.listen, true)?;
    let tcp = crate::proxy::tcp::listen(config.listen, true)?;
    let mut server = Server::new(Handler {
        cache,
        zone: config.zone,
        upstream: config.upstream,
    });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE, 64);
    let _ = stop.wait_for(|stopped| *stopped).await;
    let _ = server.shutdown_gracefully().await;
    Ok(())
}
