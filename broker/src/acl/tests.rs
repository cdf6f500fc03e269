use super::*;

fn settings(pairs: &[&str]) -> BrokerSettings {
    let pairs: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
    BrokerSettings::from_pairs(&pairs).expect("valid settings")
}

fn authorizer(extra: &[&str]) -> Authorizer {
    let mut pairs =
        vec!["authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"];
    pairs.extend_from_slice(extra);
    Authorizer::from_settings(&settings(&pairs)).expect("authorizer")
}

fn acl(
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
    principal: &str,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission,
    }
}

fn session(principal: &str) -> Session {
    Session::new(principal.into(), "10.0.0.7:50000".parse().expect("valid"))
}

fn image(acls: Vec<AclBinding>) -> ClusterImage {
    ClusterImage {
        acls: acls.into_iter().collect(),
        ..ClusterImage::default()
    }
}

#[test]
fn without_an_authorizer_everything_is_allowed() {
    let off = Authorizer::from_settings(&settings(&[])).expect("valid");
    assert!(!off.enabled());
    assert!(off.allows(
        &ClusterImage::default(),
        &session("User:nobody"),
        Operation::Write,
        ResourceType::Topic,
        "t"
    ));
}

#[test]
fn with_no_acls_only_super_users_may_unless_everyone_is_allowed() {
    let empty = ClusterImage::default();
    let a = authorizer(&["super.users=User:admin;User:operator"]);
    let read = |a: &Authorizer, who: &str| {
        a.allows(
            &empty,
            &session(who),
            Operation::Read,
            ResourceType::Topic,
            "t",
        )
    };
    assert!(read(&a, "User:admin"));
    assert!(read(&a, "User:operator"));
    assert!(!read(&a, "User:alice"));
    assert!(!read(&a, ANONYMOUS));
    let open = authorizer(&["allow.everyone.if.no.acl.found=true"]);
    assert!(read(&open, "User:alice"));
    // Once a resource has an ACL, the fallback no longer applies to it.
    let one = image(vec![acl(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "User:bob",
        Operation::Read,
        Permission::Allow,
    )]);
    assert!(!open.allows(
        &one,
        &session("User:alice"),
        Operation::Read,
        ResourceType::Topic,
        "t"
    ));
    assert!(open.allows(
        &one,
        &session("User:bob"),
        Operation::Read,
        ResourceType::Topic,
        "t"
    ));
}

#[test]
fn literal_wildcard_and_prefixed_patterns_match_as_in_kafka() {
    let a = authorizer(&[]);
    let acls = image(vec![
        acl(
            ResourceType::Topic,
            "orders",
            PatternType::Literal,
            "User:alice",
            Operation::Write,
            Permission::Allow,
        ),
        acl(
            ResourceType::Topic,
            "logs-",
            PatternType::Prefixed,
            "User:alice",
            Operation::Read,
            Permission::Allow,
        ),
        acl(
            ResourceType::Group,
            "*",
            PatternType::Literal,
            "User:*",
            Operation::Read,
            Permission::Allow,
        ),
    ]);
    let alice = session("User:alice");
    let may = |op, rt, name: &str| a.allows(&acls, &alice, op, rt, name);
    assert!(may(Operation::Write, ResourceType::Topic, "orders"));
    assert!(!may(Operation::Write, ResourceType::Topic, "orders2"));
    assert!(!may(Operation::Read, ResourceType::Topic, "orders"));
    assert!(may(Operation::Read, ResourceType::Topic, "logs-app"));
    assert!(!may(Operation::Read, ResourceType::Topic, "log"));
    assert!(may(Operation::Read, ResourceType::Group, "any-group"));
    assert!(a.allows(
        &acls,
        &session("User:bob"),
        Operation::Read,
        ResourceType::Group,
        "g"
    ));
    // Describe is implied by Read, Write, Delete and Alter.
    assert!(may(Operation::Describe, ResourceType::Topic, "orders"));
    assert!(may(Operation::Describe, ResourceType::Topic, "logs-x"));
    assert!(!may(Operation::Delete, ResourceType::Topic, "orders"));
}

#[test]
fn a_deny_wins_and_hosts_must_match() {
    let a = authorizer(&[]);
    let mut from_elsewhere = acl(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "User:alice",
        Operation::Read,
        Permission::Allow,
    );
    from_elsewhere.host = "10.0.0.8".into();
    let acls = image(vec![
        acl(
            ResourceType::Topic,
            "*",
            PatternType::Literal,
            "User:alice",
            Operation::All,
            Permission::Allow,
        ),
        acl(
            ResourceType::Topic,
            "secret",
            PatternType::Literal,
            "User:*",
            Operation::Read,
            Permission::Deny,
        ),
        from_elsewhere,
    ]);
    let alice = session("User:alice");
    assert!(a.allows(
        &acls,
        &alice,
        Operation::Write,
        ResourceType::Topic,
        "secret"
    ));
    assert!(!a.allows(
        &acls,
        &alice,
        Operation::Read,
        ResourceType::Topic,
        "secret"
    ));
    // A DENY of Read does not deny Describe.
    assert!(a.allows(
        &acls,
        &alice,
        Operation::Describe,
        ResourceType::Topic,
        "secret"
    ));
    let host_only = image(vec![acls.acls.iter().last().expect("valid").clone()]);
    assert!(!a.allows(
        &host_only,
        &alice,
        Operation::Read,
        ResourceType::Topic,
        "t"
    ));
    let from_there = Session::new("User:alice".into(), "10.0.0.8:1".parse().expect("valid"));
    assert!(a.allows(
        &host_only,
        &from_there,
        Operation::Read,
        ResourceType::Topic,
        "t"
    ));
    // Super users pass even a DENY.
    let sup = authorizer(&["super.users=User:alice"]);
    assert!(sup.allows(
        &acls,
        &alice,
        Operation::Read,
        ResourceType::Topic,
        "secret"
    ));
}

#[test]
fn alter_configs_implies_describe_configs_and_operations_are_reported() {
    let a = authorizer(&[]);
    let acls = image(vec![
        acl(
            ResourceType::Cluster,
            CLUSTER_NAME,
            PatternType::Literal,
            "User:ops",
            Operation::AlterConfigs,
            Permission::Allow,
        ),
        acl(
            ResourceType::Cluster,
            CLUSTER_NAME,
            PatternType::Literal,
            "User:ops",
            Operation::Describe,
            Permission::Allow,
        ),
    ]);
    let ops = session("User:ops");
    assert!(a.allows(
        &acls,
        &ops,
        Operation::DescribeConfigs,
        ResourceType::Cluster,
        CLUSTER_NAME
    ));
    let bits = a.authorized_operations(&acls, &ops, ResourceType::Cluster, CLUSTER_NAME);
    let expected = [
        Operation::Describe,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
    ]
    .iter()
    .fold(0, |b, o| b | (1 << o.code()));
    assert_eq!(bits, expected);
}

#[test]
fn codes_round_trip_and_unknown_ones_are_refused() {
    for code in 2..=14 {
        assert_eq!(Operation::from_code(code).map(Operation::code), Some(code));
    }
    assert_eq!(Operation::from_code(1), None);
    assert_eq!(Operation::from_code(15), None);
    assert_eq!(Operation::Read.code(), 3);
    assert_eq!(Operation::IdempotentWrite.code(), 12);
    for code in 2..=7 {
        assert_eq!(
            ResourceType::from_code(code).map(ResourceType::code),
            Some(code)
        );
    }
    assert!(AclFilter::from_codes(0, None, 1, None, None, 1, 1).is_err());
    assert!(AclFilter::from_codes(1, None, 0, None, None, 1, 1).is_err());
    assert!(AclFilter::from_codes(1, None, 1, None, None, 0, 1).is_err());
    assert!(AclFilter::from_codes(1, None, 1, None, None, 1, 0).is_err());
}

#[test]
fn filters_match_as_describe_and_delete_acls_expect() {
    let literal = acl(
        ResourceType::Topic,
        "orders",
        PatternType::Literal,
        "User:a",
        Operation::Read,
        Permission::Allow,
    );
    let prefixed = acl(
        ResourceType::Topic,
        "ord",
        PatternType::Prefixed,
        "User:b",
        Operation::Write,
        Permission::Allow,
    );
    let wildcard = acl(
        ResourceType::Topic,
        "*",
        PatternType::Literal,
        "User:c",
        Operation::Read,
        Permission::Deny,
    );
    let group = acl(
        ResourceType::Group,
        "orders",
        PatternType::Literal,
        "User:a",
        Operation::Read,
        Permission::Allow,
    );
    let all = [&literal, &prefixed, &wildcard, &group];
    let count = |f: &AclFilter| all.iter().filter(|a| f.matches(a)).count();
    let any = AclFilter::from_codes(1, None, 1, None, None, 1, 1).expect("valid");
    assert_eq!(count(&any), 4);
    // MATCH: every ACL that applies to the topic "orders".
    let matching = AclFilter::from_codes(2, Some("orders"), 2, None, None, 1, 1).expect("valid");
    assert_eq!(count(&matching), 3);
    // ANY pattern with a name: that exact name, any pattern type.
    let named = AclFilter::from_codes(2, Some("ord"), 1, None, None, 1, 1).expect("valid");
    assert_eq!(count(&named), 1);
    let literal_only =
        AclFilter::from_codes(1, Some("orders"), 3, None, None, 1, 1).expect("valid");
    assert_eq!(count(&literal_only), 2);
    let by_principal =
        AclFilter::from_codes(1, None, 1, Some("User:a"), None, 3, 3).expect("valid");
    assert_eq!(count(&by_principal), 2);
    let denies = AclFilter::from_codes(1, None, 1, None, Some("*"), 1, 2).expect("valid");
    assert_eq!(count(&denies), 1);
}

#[test]
fn bad_acls_and_settings_are_refused_with_the_reason() {
    let good = acl(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "User:a",
        Operation::Read,
        Permission::Allow,
    );
    assert!(good.validate().is_ok());
    let mut bad = good.clone();
    bad.principal = "alice".into();
    assert!(bad.validate().expect_err("refused").contains("Type:name"));
    let mut bad = good.clone();
    bad.host = "example.com".into();
    assert!(bad.validate().expect_err("refused").contains("host"));
    let mut bad = good.clone();
    bad.resource_type = ResourceType::Cluster;
    assert!(bad.validate().expect_err("refused").contains(CLUSTER_NAME));
    let mut bad = good;
    bad.resource_name = String::new();
    assert!(bad.validate().is_err());
    let err = Authorizer::from_settings(&settings(&[
        "authorizer.class.name=kafka.security.authorizer.AclAuthorizer",
    ]))
    .expect_err("refused");
    assert!(err.to_string().contains("authorizer.class.name"), "{err}");
    let err = Authorizer::from_settings(&settings(&["super.users=admin"])).expect_err("refused");
    assert!(err.to_string().contains("super.users"), "{err}");
}

#[test]
fn mapping_rules_survive_the_comma_split_of_set() {
    // `--set` splits at commas: the rule's pieces are put back together,
    // and a known setting after it still starts a new one.
    let pieces = [
        "ssl.principal.mapping.rules=RULE:^CN=(.*?)",
        "OU=(.*?)$/$1/",
        "DEFAULT",
        "num.partitions=2",
    ];
    let s = settings(&pieces);
    assert_eq!(
        s.get("ssl.principal.mapping.rules"),
        "RULE:^CN=(.*?),OU=(.*?)$/$1/,DEFAULT"
    );
    assert_eq!(s.get_i64("num.partitions"), 2);
}

#[test]
fn super_users_are_named_exactly_and_hosts_are_compared_canonically() {
    let a = authorizer(&["super.users=User:*"]);
    let empty = ClusterImage::default();
    assert!(!a.allows(
        &empty,
        &session("User:alice"),
        Operation::Read,
        ResourceType::Topic,
        "t"
    ));
    assert_eq!(canonical_host("0:0:0:0:0:0:0:1"), "::1");
    assert_eq!(canonical_host("::ffff:10.0.0.7"), "10.0.0.7");
    assert_eq!(canonical_host("*"), "*");
    let mut denied = acl(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "User:alice",
        Operation::Read,
        Permission::Deny,
    );
    denied.host = canonical_host("0:0:0:0:0:0:0:1");
    let allowed = acl(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "User:alice",
        Operation::Read,
        Permission::Allow,
    );
    let acls = image(vec![denied, allowed]);
    let local = Session::new("User:alice".into(), "[::1]:5000".parse().expect("valid"));
    assert!(!a.allows(&acls, &local, Operation::Read, ResourceType::Topic, "t"));
    assert!(a.allows(
        &acls,
        &session("User:alice"),
        Operation::Read,
        ResourceType::Topic,
        "t"
    ));
}

#[test]
fn the_range_lookup_finds_exactly_the_covering_acls() {
    let names = [
        "*",
        "a",
        "ab",
        "abc",
        "abd",
        "b",
        "é",
        "éa",
        "orders",
        "orders-eu",
    ];
    let mut acls = BTreeSet::new();
    for resource_type in [ResourceType::Topic, ResourceType::Group] {
        for name in names {
            for pattern_type in [PatternType::Literal, PatternType::Prefixed] {
                for principal in ["User:a", "User:b"] {
                    acls.insert(acl(
                        resource_type,
                        name,
                        pattern_type,
                        principal,
                        Operation::Read,
                        Permission::Allow,
                    ));
                }
            }
        }
    }
    for resource in ["a", "abc", "abx", "b", "éab", "orders-eu-1", "zzz", "*", ""] {
        let mut found: Vec<&AclBinding> = covering(&acls, ResourceType::Topic, resource).collect();
        let mut scanned: Vec<&AclBinding> = acls
            .iter()
            .filter(|a| a.covers(ResourceType::Topic, resource))
            .collect();
        found.sort();
        scanned.sort();
        assert_eq!(found, scanned, "resource {resource:?}");
    }
}
