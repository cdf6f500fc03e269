//! Authorization by ACLs, as Kafka's `StandardAuthorizer` does it (KIP-11,
//! KIP-290 for prefixed patterns, KIP-801 for its KRaft form): the ACLs are
//! cluster metadata (CreateAcls and DeleteAcls go through the controller
//! quorum), and every broker decides each request against its copy.
//!
//! ```text
//!  principal (User:alice) + client host + operation + resource
//!    super user?                         ─▶ allowed
//!    a matching DENY?                    ─▶ refused
//!    a matching ALLOW (or one implying)? ─▶ allowed
//!    no ACL on the resource at all       ─▶ allow.everyone.if.no.acl.found
//! ```
//! An ACL matches a resource when its pattern is the literal name, the
//! literal `*`, or a prefix of the name (PREFIXED); its principal is the
//! request's or `User:*`; its host is the client's address or `*`. An ALLOW
//! of Read, Write, Delete or Alter also allows Describe, and one of
//! AlterConfigs allows DescribeConfigs, as in Kafka.
//!
//! Authorization is on when `authorizer.class.name` names Kafka's
//! `StandardAuthorizer`; off (the default), everyone may do everything.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterImage;
use crate::config::BrokerSettings;
use crate::error::ConfigError;

/// The `authorizer.class.name` that turns authorization on: Kafka's own
/// KRaft authorizer, whose behaviour this module follows.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// The only name of the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The principal of a client that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// What an ACL is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The cluster (named `kafka-cluster`).
    Cluster,
    /// A transactional id.
    TransactionalId,
    /// A delegation token.
    DelegationToken,
    /// A user (for tokens).
    User,
}

impl ResourceType {
    /// Kafka's code for it.
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }

    /// The type for a code; `None` for ANY (1) and unknown codes.
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            6 => ResourceType::DelegationToken,
            7 => ResourceType::User,
            _ => return None,
        })
    }
}

/// How an ACL's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    /// The name itself (or `*`, every resource of the type).
    Literal,
    /// Every name starting with it.
    Prefixed,
}

impl PatternType {
    /// Kafka's code for it.
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    /// The pattern type for a code; `None` for ANY, MATCH and unknown codes.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }
}

/// What a request does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Every operation (in an ACL only).
    All,
    /// Consume, join a group, commit offsets.
    Read,
    /// Produce.
    Write,
    /// Create topics.
    Create,
    /// Delete topics, records or groups.
    Delete,
    /// Add partitions; cluster changes.
    Alter,
    /// See it exists.
    Describe,
    /// What brokers do to each other.
    ClusterAction,
    /// Read configs.
    DescribeConfigs,
    /// Change configs.
    AlterConfigs,
    /// Use an idempotent producer.
    IdempotentWrite,
    /// Create delegation tokens.
    CreateTokens,
    /// Describe delegation tokens.
    DescribeTokens,
}

impl Operation {
    const ALL: [Operation; 13] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
    ];

    /// Kafka's code for it.
    pub fn code(self) -> i8 {
        Operation::ALL
            .iter()
            .position(|o| *o == self)
            .map_or(0, |i| i as i8 + 2)
    }

    /// The operation for a code; `None` for ANY (1) and unknown codes.
    pub fn from_code(code: i8) -> Option<Self> {
        usize::try_from(code)
            .ok()
            .and_then(|c| c.checked_sub(2))
            .and_then(|i| Operation::ALL.get(i).copied())
    }

    /// Whether an ALLOW of `self` allows `wanted`.
    fn allows(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }

    /// The operations Kafka reports as authorized on a resource type
    /// (KIP-430), in code order.
    pub fn reported_for(resource: ResourceType) -> &'static [Operation] {
        match resource {
            ResourceType::Topic => &[
                Operation::Read,
                Operation::Write,
                Operation::Create,
                Operation::Delete,
                Operation::Alter,
                Operation::Describe,
                Operation::DescribeConfigs,
                Operation::AlterConfigs,
            ],
            ResourceType::Cluster => &[
                Operation::Create,
                Operation::Alter,
                Operation::Describe,
                Operation::ClusterAction,
                Operation::DescribeConfigs,
                Operation::AlterConfigs,
                Operation::IdempotentWrite,
            ],
            ResourceType::Group => &[Operation::Read, Operation::Delete, Operation::Describe],
            _ => &[],
        }
    }
}

/// ALLOW or DENY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// Refuses, whatever else allows.
    Deny,
    /// Allows.
    Allow,
}

impl Permission {
    /// Kafka's code for it.
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    /// The permission for a code; `None` for ANY and unknown codes.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
}

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// The resource type.
    pub resource_type: ResourceType,
    /// The resource name, `*`, or a prefix.
    pub resource_name: String,
    /// How the name matches.
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice`; `User:*` is every user.
    pub principal: String,
    /// The client's address, or `*`.
    pub host: String,
    /// The operation.
    pub operation: Operation,
    /// ALLOW or DENY.
    pub permission: Permission,
}

impl AclBinding {
    /// Checks a new ACL as Kafka's controller does; the message names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_name.is_empty() {
            return Err("the resource name must not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!(
                "the cluster resource is named {CLUSTER_NAME}, not {:?}",
                self.resource_name
            ));
        }
        parse_principal(&self.principal)?;
        if self.host != "*" && self.host.parse::<IpAddr>().is_err() {
            return Err(format!(
                "the host {:?} is neither * nor an IP address",
                self.host
            ));
        }
        Ok(())
    }

    /// Whether the ACL's pattern covers a resource ([`covering`]'s meaning,
    /// one ACL at a time).
    #[cfg(test)]
    fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == name || self.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }
}

/// An ACL host as the broker compares it: an IP address in its canonical
/// form (`::1`, `10.0.0.7`, IPv4-mapped addresses as IPv4), or `*`.
pub fn canonical_host(host: &str) -> String {
    host.parse::<IpAddr>()
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_else(|_| host.to_string())
}

/// Splits `Type:name`; the type must be non-empty, as Kafka's
/// `KafkaPrincipal` parsing has it.
pub fn parse_principal(principal: &str) -> Result<(&str, &str), String> {
    match principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok((kind, name)),
        _ => Err(format!(
            "the principal {principal:?} is not of the form Type:name (e.g. User:alice)"
        )),
    }
}

/// The ACLs whose pattern covers a resource: its literal name, the literal
/// `*`, and each of its prefixes, found by range in the sorted set (ACLs
/// sort by resource type, name and pattern type first), so a check costs
/// one lookup per prefix length, not a scan of every ACL.
fn covering<'a>(
    acls: &'a BTreeSet<AclBinding>,
    resource_type: ResourceType,
    name: &'a str,
) -> impl Iterator<Item = &'a AclBinding> + 'a {
    let with = move |resource: &str, pattern_type| AclBinding {
        resource_type,
        resource_name: resource.to_string(),
        pattern_type,
        principal: String::new(),
        host: String::new(),
        operation: Operation::All,
        permission: Permission::Deny,
    };
    let exactly = move |resource: &'a str, pattern_type: PatternType| {
        acls.range(with(resource, pattern_type)..)
            .take_while(move |a| {
                a.resource_type == resource_type
                    && a.resource_name == resource
                    && a.pattern_type == pattern_type
            })
    };
    let prefixes = name
        .char_indices()
        .map(|(i, c)| &name[..i + c.len_utf8()])
        .flat_map(move |prefix| exactly(prefix, PatternType::Prefixed));
    let wildcard = (name != "*")
        .then(|| exactly("*", PatternType::Literal))
        .into_iter()
        .flatten();
    exactly(name, PatternType::Literal)
        .chain(wildcard)
        .chain(prefixes)
}

/// How a filter's resource pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    /// Any pattern type, with the name exactly (when given).
    Any,
    /// The ACLs that would apply to the named resource: its literal, `*`
    /// and every prefix of it.
    Match,
    /// This pattern type, with the name exactly (when given).
    Exactly(PatternType),
}

/// Which ACLs DescribeAcls and DeleteAcls mean; `None` is "any".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    /// The resource type.
    pub resource_type: Option<ResourceType>,
    /// The resource name.
    pub resource_name: Option<String>,
    /// How the name matches.
    pub pattern: PatternFilter,
    /// The principal.
    pub principal: Option<String>,
    /// The host.
    pub host: Option<String>,
    /// The operation.
    pub operation: Option<Operation>,
    /// The permission.
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Builds a filter from a request's codes, refusing UNKNOWN ones.
    pub fn from_codes(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, String> {
        let any = |code: i8| code == 1;
        let resource_type = match ResourceType::from_code(resource_type) {
            Some(t) => Some(t),
            None if any(resource_type) => None,
            None => return Err(format!("unknown resource type {resource_type}")),
        };
        let pattern = match (PatternType::from_code(pattern_type), pattern_type) {
            (Some(p), _) => PatternFilter::Exactly(p),
            (None, 1) => PatternFilter::Any,
            (None, 2) => PatternFilter::Match,
            (None, code) => return Err(format!("unknown pattern type {code}")),
        };
        let operation = match Operation::from_code(operation) {
            Some(o) => Some(o),
            None if any(operation) => None,
            None => return Err(format!("unknown operation {operation}")),
        };
        let permission = match Permission::from_code(permission) {
            Some(p) => Some(p),
            None if any(permission) => None,
            None => return Err(format!("unknown permission type {permission}")),
        };
        Ok(AclFilter {
            resource_type,
            resource_name: resource_name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(canonical_host),
            operation,
            permission,
        })
    }

    /// Whether an ACL is one the filter means.
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let same = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let resource = self.resource_type.is_none_or(|t| t == acl.resource_type)
            && match self.pattern {
                PatternFilter::Any => same(&self.resource_name, &acl.resource_name),
                PatternFilter::Exactly(p) => {
                    p == acl.pattern_type && same(&self.resource_name, &acl.resource_name)
                }
                PatternFilter::Match => match &self.resource_name {
                    None => true,
                    Some(name) => match acl.pattern_type {
                        PatternType::Literal => {
                            acl.resource_name == *name || acl.resource_name == "*"
                        }
                        PatternType::Prefixed => name.starts_with(&acl.resource_name),
                    },
                },
            };
        resource
            && same(&self.principal, &acl.principal)
            && same(&self.host, &acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// Who is asking, from where: fixed when a connection authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `User:name`.
    pub principal: String,
    /// The client's address, as ACL hosts name it.
    pub host: String,
}

impl Session {
    /// A session for a principal on a connection from `peer`.
    pub fn new(principal: String, peer: std::net::SocketAddr) -> Session {
        Session {
            principal,
            host: peer.ip().to_canonical().to_string(),
        }
    }
}

/// The broker's authorization settings.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    enabled: bool,
    super_users: HashSet<String>,
    allow_if_no_acl: bool,
}

impl Authorizer {
    /// From `authorizer.class.name`, `super.users` and
    /// `allow.everyone.if.no.acl.found`; the error names the setting.
    pub fn from_settings(settings: &BrokerSettings) -> Result<Authorizer, ConfigError> {
        let invalid = |name: &str, why: String| ConfigError::InvalidValue {
            name: name.to_string(),
            value: settings.get(name).to_string(),
            why,
        };
        let enabled = match settings.get("authorizer.class.name").trim() {
            "" => false,
            STANDARD_AUTHORIZER => true,
            _ => {
                return Err(invalid(
                    "authorizer.class.name",
                    format!(
                    "use {STANDARD_AUTHORIZER} (ACLs in the cluster metadata) or leave it empty"
                ),
                ))
            }
        };
        let mut super_users = HashSet::new();
        for user in settings.get("super.users").split(';') {
            let user = user.trim();
            if user.is_empty() {
                continue;
            }
            parse_principal(user).map_err(|why| invalid("super.users", why))?;
            super_users.insert(user.to_string());
        }
        Ok(Authorizer {
            enabled,
            super_users,
            allow_if_no_acl: settings.get_bool("allow.everyone.if.no.acl.found"),
        })
    }

    /// Whether ACLs are checked at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `session` may do `operation` to the named resource.
    pub fn allows(
        &self,
        image: &ClusterImage,
        session: &Session,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled || self.is_super(&session.principal) {
            return true;
        }
        let wildcard = session
            .principal
            .split_once(':')
            .map(|(kind, _)| format!("{kind}:*"));
        let mut any_acl = false;
        let mut allowed = false;
        for acl in covering(&image.acls, resource_type, name) {
            any_acl = true;
            let principal = acl.principal == session.principal
                || wildcard.as_deref() == Some(acl.principal.as_str());
            if !principal || (acl.host != "*" && acl.host != session.host) {
                continue;
            }
            match acl.permission {
                Permission::Deny
                    if acl.operation == operation || acl.operation == Operation::All =>
                {
                    return false
                }
                Permission::Deny => {}
                Permission::Allow => allowed |= acl.operation.allows(operation),
            }
        }
        allowed || (!any_acl && self.allow_if_no_acl)
    }

    /// Exactly the principals named, as Kafka has it (`User:*` there is
    /// not every user).
    fn is_super(&self, principal: &str) -> bool {
        self.super_users.contains(principal)
    }

    /// KIP-430's bit field of the operations `session` may do to a resource.
    pub fn authorized_operations(
        &self,
        image: &ClusterImage,
        session: &Session,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        Operation::reported_for(resource_type)
            .iter()
            .filter(|op| self.allows(image, session, **op, resource_type, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}

#[cfg(test)]
mod tests;
