use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::*;

/// `openssl req -x509 -subj "/C=US/O=Example, Inc./OU=apps/CN=alice/emailAddress=a@example.com"`.
const CERT: &str = "-----BEGIN CERTIFICATE-----
MIICGzCCAcGgAwIBAgIUCZz1zwfk9+MpSNnc2Eys02f0ChUwCgYIKoZIzj0EAwIw
YjELMAkGA1UEBhMCVVMxFjAUBgNVBAoMDUV4YW1wbGUsIEluYy4xDTALBgNVBAsM
BGFwcHMxDjAMBgNVBAMMBWFsaWNlMRwwGgYJKoZIhvcNAQkBFg1hQGV4YW1wbGUu
Y29tMCAXDTI2MTIwNjA4NTUzMloYDzIxMjYxMTEyMDg1NTMyWjBiMQswCQYDVQQG
EwJVUzEWMBQGA1UECgwNRXhhbXBsZSwgSW5jLjENMAsGA1UECwwEYXBwczEOMAwG
A1UEAwwFYWxpY2UxHDAaBgkqhkiG9w0BCQEWDWFAZXhhbXBsZS5jb20wWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQeosy7P1biEeGuArDoGjCgSJI1Nf8FbIVveWUh
PxKewKgO1zw/4w3MmsIuSQ6FbKQFMjTS7rw5tREwAL5e/YpPo1MwUTAdBgNVHQ4E
FgQUNvGOaTTZ1TNoqILwuM2mnPKnuZYwHwYDVR0jBBgwFoAUNvGOaTTZ1TNoqILw
uM2mnPKnuZYwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEA3D48
qKIFnjIPed0PJfnME6sCX6c7/Oo58l+3Gxdz4SYCIH+4NLmIi+Te6IOpRs55aH+c
Hr4Xu8qdg3X9cTb+r1X9
-----END CERTIFICATE-----
";

#[test]
fn the_subject_is_written_as_java_writes_it() {
    let der = CertificateDer::from_pem_slice(CERT.as_bytes()).expect("valid");
    let email: String = b"\x16\x0da@example.com"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        subject_dn(&der).as_deref(),
        Some(
            format!("1.2.840.113549.1.9.1=#{email},CN=alice,OU=apps,O=Example\\, Inc.,C=US")
                .as_str()
        )
    );
}

#[test]
fn a_certificate_that_cannot_be_read_has_no_subject() {
    assert_eq!(subject_dn(b""), None);
    assert_eq!(subject_dn(&[0x30, 0x05, 0x30]), None);
    let der = CertificateDer::from_pem_slice(CERT.as_bytes()).expect("valid");
    assert_eq!(subject_dn(&der[..der.len() / 3]), None);
}

#[test]
fn mapping_rules_take_the_first_match_as_kafka_does() {
    let rules = MappingRules::parse(
        r"RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L, DEFAULT",
    )
    .expect("valid");
    let apply = |rules: &MappingRules, subject: &str| rules.apply(subject).expect("a rule matches");
    assert_eq!(
        apply(&rules, "CN=kafka-admin,OU=ServiceUsers,O=Example"),
        "kafka-admin"
    );
    assert_eq!(apply(&rules, "CN=Alice,OU=Apps,O=Example"), "alice@apps");
    assert_eq!(apply(&rules, "CN=bob"), "CN=bob");
    let upper = MappingRules::parse(r"RULE:^CN=([^,]*).*$/$1x/U").expect("valid");
    assert_eq!(apply(&upper, "CN=carol,O=Example"), "CAROLX");
    // No rule matching and no DEFAULT: no name (Kafka refuses the client).
    assert_eq!(upper.apply("O=Example"), None);
    let slash = MappingRules::parse(r"RULE:^CN=a\/b$/ab/").expect("valid");
    assert_eq!(apply(&slash, "CN=a/b"), "ab");
    // The pattern must match the whole subject; the replacement is
    // applied as Java's replaceAll.
    let inner = MappingRules::parse(r"RULE:CN=([a-z]+)/$1/").expect("valid");
    assert_eq!(inner.apply("CN=dave,O=Example"), None);
    assert_eq!(apply(&inner, "CN=dave"), "dave");
}

#[test]
fn bad_mapping_rules_are_refused_with_the_reason() {
    assert_eq!(
        MappingRules::parse("")
            .expect("valid")
            .apply("CN=x")
            .as_deref(),
        Some("CN=x")
    );
    for bad in [
        "RULE:^CN=(.*)",
        "RULE:^CN=(.*)/$1",
        "RULE:(/x/",
        "NOPE",
        "DEFAULT DEFAULT",
    ] {
        assert!(MappingRules::parse(bad).is_err(), "{bad}");
    }
}
