//! `runnel-operator`: see `runnel-operator --help`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runnel_operator::args::Args::parse().run().await
}
