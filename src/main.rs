#[tokio::main]
async fn main() -> anyhow::Result<()> {
    meterplane::cli::run().await
}
