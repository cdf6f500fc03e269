//! InitProducerId (key 22): ids for idempotent and transactional producers.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;
use tracing::warn;

use crate::broker::Broker;

/// v3 lets a producer bump its epoch (KIP-360), v4 is flexible, v5 changes
/// only error handling; v6 (KIP-939, two-phase commit) is not served.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Answers InitProducerId; a transactional id goes to its coordinator.
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
    if let Some(transactional_id) = &request.transactional_id {
        if transactional_id.0.is_empty() {
            return refused(ResponseError::InvalidRequest);
        }
        let expected = (version >= 3 && request.producer_id.0 >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        return match crate::txn::init_producer_id(
            broker,
            transactional_id.0.as_str(),
            request.transaction_timeout_ms,
            expected,
        )
        .await
        {
            Ok((id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            // PRODUCER_FENCED is new in v4; older clients know INVALID_PRODUCER_EPOCH.
            Err(ResponseError::ProducerFenced) if version < 4 => {
                refused(ResponseError::InvalidProducerEpoch)
            }
            Err(error) => refused(error),
        };
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
