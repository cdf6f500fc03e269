//! Compiles the gRPC services in `proto/` (with the protoc vendored on crates.io,
//! so no system protobuf compiler is needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build runs the protoc named by PROTOC.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        // Replicated records stay `Bytes` from the log read to the wire and
        // back, rather than being copied into a `Vec<u8>`.
        .bytes(".runnel.replication.FetchedPartition.records")
        .compile_protos(
            &["proto/replication.proto", "proto/controller.proto"],
            &["proto"],
        )?;
    Ok(())
}
