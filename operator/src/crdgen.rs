//! The CRD YAML, generated from the types of `runnel-operator-api`; the
//! files in `crds/` and `charts/runnel-operator/crds/` are this output, and
//! a test fails when they drift.

use kube::CustomResourceExt;
use runnel_operator_api::{Cluster, ConsumerGroup, Topic, User};

/// Each CRD as (file name, YAML document).
pub fn crd_files() -> Vec<(String, String)> {
    [
        Cluster::crd(),
        Topic::crd(),
        ConsumerGroup::crd(),
        User::crd(),
    ]
    .into_iter()
    .map(|crd| {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let yaml =
            serde_saphyr::to_string(&crd).expect("a CRD is plain data and always serializes");
        (format!("{name}.yaml"), yaml)
    })
    .collect()
}

/// Every CRD as one multi-document YAML stream.
pub fn all_yaml() -> String {
    crd_files()
        .into_iter()
        .map(|(_, yaml)| format!("---\n{yaml}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The committed CRDs are what the types generate. To regenerate:
    /// `cargo run -p runnel-operator -- crds --out-dir crds` (and the same
    /// into `charts/runnel-operator/crds`).
    #[test]
    fn committed_crds_match_the_types() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for dir in ["crds", "charts/runnel-operator/crds"] {
            for (file, yaml) in crd_files() {
                let path = root.join(dir).join(&file);
                let committed = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(
                    committed == yaml,
                    "{dir}/{file} is out of date: run `cargo run -p runnel-operator -- crds --out-dir {dir}`"
                );
            }
        }
    }

    #[test]
    fn schemas_carry_the_validation_the_api_server_enforces() {
        let all = all_yaml();
        for needle in [
            "minimum: 1",
            "minItems: 1",
            "x-kubernetes-list-type: set",
            "resetOffsets.datetime is required",
            "shortNames:",
            "additionalPrinterColumns:",
            "subresources:",
        ] {
            assert!(all.contains(needle), "no {needle:?} in the CRDs");
        }
    }
}
