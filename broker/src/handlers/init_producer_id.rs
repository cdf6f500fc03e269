//! InitProducerId (key 22): ids for idempotent producers.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;
use tracing::warn;

use crate::broker::Broker;

/// v3 lets a producer bump its epoch (KIP-360), v4 is flexible, v5 changes
/// only error handling; v6 (KIP-939, two-phase commit) is not served.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Answers InitProducerId for idempotent (non-transactional) producers.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |error: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        // Transactions are not implemented yet; say so rather than pretend.
        return refused(ResponseError::TransactionalIdAuthorizationFailed);
    }
    // KIP-360: a producer that knows its id asks for the next epoch.
    if version >= 3
        && request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        return InitProducerIdResponse::default()
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match broker.producer_ids.next_id(&broker.controller).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            warn!(%error, "allocating a producer id failed");
            refused(ResponseError::CoordinatorNotAvailable)
        }
    }
}
