//! The User controller's calls beyond SCRAM: DescribeAcls, CreateAcls and
//! DeleteAcls (v2, which Runnel and Apache Kafka 2.4+ serve), and
//! DescribeClientQuotas and AlterClientQuotas (v0, Kafka 2.6+).

use kafka_protocol::messages::{
    alter_client_quotas_request, create_acls_request, delete_acls_request,
    describe_client_quotas_request, AlterClientQuotasRequest, CreateAclsRequest, DeleteAclsRequest,
    DescribeAclsRequest, DescribeClientQuotasRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{kafka_error, s, Admin, AdminError};

const VERSION: i16 = 2;
/// ANY in a filter's resource type, pattern type, operation or permission.
const ANY: i8 = 1;

/// One ACL, with Kafka's codes: resource type (2 topic, 3 group, 4 cluster,
/// 5 transactional id), pattern type (3 literal, 4 prefixed), operation
/// (2 all ... 12 idempotent write), permission (2 deny, 3 allow).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclEntry {
    /// The resource type.
    pub resource_type: i8,
    /// The resource name.
    pub name: String,
    /// The pattern type.
    pub pattern_type: i8,
    /// The principal (`User:alice`).
    pub principal: String,
    /// The host (`*`).
    pub host: String,
    /// The operation.
    pub operation: i8,
    /// The permission.
    pub permission: i8,
}

fn opt(text: &str) -> Option<StrBytes> {
    Some(s(text))
}

impl Admin {
    /// Every ACL of `principal`.
    pub async fn acls_of(&self, principal: &str) -> Result<Vec<AclEntry>, AdminError> {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(ANY)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(ANY)
            .with_principal_filter(opt(principal))
            .with_host_filter(None)
            .with_operation(ANY)
            .with_permission_type(ANY);
        let response = self
            .call_any("DescribeAcls", &self.bootstrap, &request, VERSION, |_| None)
            .await?;
        kafka_error(
            "DescribeAcls",
            principal,
            response.error_code,
            response.error_message.as_ref(),
        )?;
        Ok(response
            .resources
            .iter()
            .flat_map(|resource| {
                resource.acls.iter().map(|acl| AclEntry {
                    resource_type: resource.resource_type,
                    name: resource.resource_name.to_string(),
                    pattern_type: resource.pattern_type,
                    principal: acl.principal.to_string(),
                    host: acl.host.to_string(),
                    operation: acl.operation,
                    permission: acl.permission_type,
                })
            })
            .collect())
    }

    /// Adds `acls` (ones already there stay).
    pub async fn create_acls(&self, subject: &str, acls: &[AclEntry]) -> Result<(), AdminError> {
        if acls.is_empty() {
            return Ok(());
        }
        let request = CreateAclsRequest::default().with_creations(
            acls.iter()
                .map(|acl| {
                    create_acls_request::AclCreation::default()
                        .with_resource_type(acl.resource_type)
                        .with_resource_name(s(&acl.name))
                        .with_resource_pattern_type(acl.pattern_type)
                        .with_principal(s(&acl.principal))
                        .with_host(s(&acl.host))
                        .with_operation(acl.operation)
                        .with_permission_type(acl.permission)
                })
                .collect(),
        );
        let response = self
            .call_any("CreateAcls", &self.bootstrap, &request, VERSION, |_| None)
            .await?;
        for result in &response.results {
            kafka_error(
                "CreateAcls",
                subject,
                result.error_code,
                result.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Removes exactly `acls`.
    pub async fn delete_acls(&self, subject: &str, acls: &[AclEntry]) -> Result<(), AdminError> {
        if acls.is_empty() {
            return Ok(());
        }
        let request = DeleteAclsRequest::default().with_filters(
            acls.iter()
                .map(|acl| {
                    delete_acls_request::DeleteAclsFilter::default()
                        .with_resource_type_filter(acl.resource_type)
                        .with_resource_name_filter(opt(&acl.name))
                        .with_pattern_type_filter(acl.pattern_type)
                        .with_principal_filter(opt(&acl.principal))
                        .with_host_filter(opt(&acl.host))
                        .with_operation(acl.operation)
                        .with_permission_type(acl.permission)
                })
                .collect(),
        );
        let response = self
            .call_any("DeleteAcls", &self.bootstrap, &request, VERSION, |_| None)
            .await?;
        for result in &response.filter_results {
            kafka_error(
                "DeleteAcls",
                subject,
                result.error_code,
                result.error_message.as_ref(),
            )?;
        }
        Ok(())
    }
}

impl Admin {
    /// User `user`'s own quotas (entity `user=<user>` alone): key → value.
    pub async fn user_quotas(
        &self,
        user: &str,
    ) -> Result<std::collections::BTreeMap<String, f64>, AdminError> {
        let request = DescribeClientQuotasRequest::default()
            .with_components(vec![
                describe_client_quotas_request::ComponentData::default()
                    .with_entity_type(s("user"))
                    .with_match_type(0)
                    .with_match(opt(user)),
            ])
            .with_strict(true);
        let response = self
            .call_any("DescribeClientQuotas", &self.bootstrap, &request, 0, |_| {
                None
            })
            .await?;
        kafka_error(
            "DescribeClientQuotas",
            user,
            response.error_code,
            response.error_message.as_ref(),
        )?;
        Ok(response
            .entries
            .unwrap_or_default()
            .iter()
            .flat_map(|entry| entry.values.iter())
            .map(|v| (v.key.to_string(), v.value))
            .collect())
    }

    /// Sets (or with `None` removes) user `user`'s quotas.
    pub async fn alter_user_quotas(
        &self,
        user: &str,
        changes: &[(String, Option<f64>)],
    ) -> Result<(), AdminError> {
        if changes.is_empty() {
            return Ok(());
        }
        let request = AlterClientQuotasRequest::default().with_entries(vec![
            alter_client_quotas_request::EntryData::default()
                .with_entity(vec![alter_client_quotas_request::EntityData::default()
                    .with_entity_type(s("user"))
                    .with_entity_name(opt(user))])
                .with_ops(
                    changes
                        .iter()
                        .map(|(key, value)| {
                            alter_client_quotas_request::OpData::default()
                                .with_key(s(key))
                                .with_value(value.unwrap_or(0.0))
                                .with_remove(value.is_none())
                        })
                        .collect(),
                ),
        ]);
        let response = self
            .call_any("AlterClientQuotas", &self.bootstrap, &request, 0, |_| None)
            .await?;
        for entry in &response.entries {
            kafka_error(
                "AlterClientQuotas",
                user,
                entry.error_code,
                entry.error_message.as_ref(),
            )?;
        }
        Ok(())
    }
}
