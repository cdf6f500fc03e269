//! CreateAcls (key 30), DescribeAcls (29) and DeleteAcls (31): the ACLs of
//! [`crate::acl`], kept in the cluster metadata through the controller.
//! `kafka-acls.sh` and `Admin.createAcls`/`describeAcls`/`deleteAcls` send
//! these. Creating or deleting needs Alter on the cluster, describing
//! Describe; without an authorizer they answer SECURITY_DISABLED, as Kafka's.

use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME,
};
use crate::broker::Broker;
use crate::cluster::{CommandResult, MetadataCommand};
use crate::handlers::RequestContext;

/// v1 adds prefixed patterns (KIP-290), v2 is flexible, v3 the same again.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };

const NO_AUTHORIZER: &str =
    "no authorizer is configured on the broker (authorizer.class.name is empty)";

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Whether the request may go on: the authorizer is on and the principal
/// may do `operation` to the cluster.
fn admitted(
    broker: &Broker,
    ctx: &RequestContext,
    operation: Operation,
) -> Result<(), (ResponseError, String)> {
    if !broker.authorizer.enabled() {
        return Err((ResponseError::SecurityDisabled, NO_AUTHORIZER.into()));
    }
    if !ctx.allowed(broker, operation, ResourceType::Cluster, CLUSTER_NAME) {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            format!(
                "{} may not {operation:?} the cluster",
                ctx.session.principal
            ),
        ));
    }
    Ok(())
}

/// Reads one creation into an ACL, or why it is refused.
fn binding(
    creation: &kafka_protocol::messages::create_acls_request::AclCreation,
) -> Result<AclBinding, String> {
    let acl = AclBinding {
        resource_type: ResourceType::from_code(creation.resource_type)
            .ok_or_else(|| format!("invalid resource type {}", creation.resource_type))?,
        resource_name: creation.resource_name.to_string(),
        pattern_type: PatternType::from_code(creation.resource_pattern_type).ok_or_else(|| {
            format!(
                "invalid pattern type {} (LITERAL or PREFIXED)",
                creation.resource_pattern_type
            )
        })?,
        principal: creation.principal.to_string(),
        host: crate::acl::canonical_host(creation.host.as_str()),
        operation: Operation::from_code(creation.operation)
            .ok_or_else(|| format!("invalid operation {}", creation.operation))?,
        permission: Permission::from_code(creation.permission_type).ok_or_else(|| {
            format!(
                "invalid permission type {} (ALLOW or DENY)",
                creation.permission_type
            )
        })?,
    };
    acl.validate()?;
    Ok(acl)
}

/// Answers CreateAcls: each creation checked, the good ones written as one
/// metadata entry.
pub(crate) async fn create(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let failed = |code: ResponseError, message: String| {
        AclCreationResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if let Err((code, message)) = admitted(broker, ctx, Operation::Alter) {
        let results = request
            .creations
            .iter()
            .map(|_| failed(code, message.clone()))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let checked: Vec<Result<AclBinding, String>> = request.creations.iter().map(binding).collect();
    let good: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let written = if good.is_empty() {
        Ok(())
    } else {
        broker
            .write(MetadataCommand::CreateAcls { acls: good })
            .await
            .map(|_| ())
            .map_err(|e| (e.kafka(), e.to_string()))
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &written) {
            (Err(why), _) => failed(ResponseError::InvalidRequest, why),
            (Ok(_), Err((code, message))) => failed(*code, message.clone()),
            (Ok(_), Ok(())) => AclCreationResult::default().with_error_message(None),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// Answers DescribeAcls: the matching ACLs, grouped by resource pattern.
pub(crate) fn describe(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let refuse = |code: ResponseError, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if let Err((code, message)) = admitted(broker, ctx, Operation::Describe) {
        return refuse(code, message);
    }
    let filter = match AclFilter::from_codes(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(filter) => filter,
        Err(why) => return refuse(ResponseError::InvalidRequest, why),
    };
    let image = broker.image();
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    // The image keeps ACLs sorted by resource first, so one resource's
    // ACLs are next to each other.
    for acl in image.acls.iter().filter(|a| filter.matches(a)) {
        let same = resources.last().is_some_and(|r| {
            r.resource_type == acl.resource_type.code()
                && r.pattern_type == acl.pattern_type.code()
                && *r.resource_name == *acl.resource_name
        });
        if !same {
            resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(acl.resource_type.code())
                    .with_resource_name(text(&acl.resource_name))
                    .with_pattern_type(acl.pattern_type.code()),
            );
        }
        if let Some(resource) = resources.last_mut() {
            resource.acls.push(
                AclDescription::default()
                    .with_principal(text(&acl.principal))
                    .with_host(text(&acl.host))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
        }
    }
    DescribeAclsResponse::default()
        .with_error_message(None)
        .with_resources(resources)
}

/// Answers DeleteAcls: per filter, the ACLs it removed.
pub(crate) async fn delete(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let failed = |code: ResponseError, message: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if let Err((code, message)) = admitted(broker, ctx, Operation::Alter) {
        let results = request
            .filters
            .iter()
            .map(|_| failed(code, message.clone()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let checked: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_codes(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let good: Vec<AclFilter> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let written = if good.is_empty() {
        Ok(Vec::new())
    } else {
        match broker
            .write(MetadataCommand::DeleteAcls { filters: good })
            .await
        {
            Ok(CommandResult::DeletedAcls(deleted)) => Ok(deleted),
            Ok(other) => Err((
                ResponseError::UnknownServerError,
                format!("unexpected controller answer {other:?}"),
            )),
            Err(e) => Err((e.kafka(), e.to_string())),
        }
    };
    let mut deleted = match &written {
        Ok(deleted) => deleted.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &written) {
            (Err(why), _) => failed(ResponseError::InvalidRequest, why),
            (Ok(_), Err((code, message))) => failed(*code, message.clone()),
            (Ok(_), Ok(_)) => {
                let gone = deleted.next().unwrap_or_default();
                DeleteAclsFilterResult::default()
                    .with_error_message(None)
                    .with_matching_acls(
                        gone.iter()
                            .map(|acl| {
                                DeleteAclsMatchingAcl::default()
                                    .with_error_message(None)
                                    .with_resource_type(acl.resource_type.code())
                                    .with_resource_name(text(&acl.resource_name))
                                    .with_pattern_type(acl.pattern_type.code())
                                    .with_principal(text(&acl.principal))
                                    .with_host(text(&acl.host))
                                    .with_operation(acl.operation.code())
                                    .with_permission_type(acl.permission.code())
                            })
                            .collect(),
                    )
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
