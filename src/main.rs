/// mimalloc instead of glibc's malloc: after large usage batches (megabytes of request
/// and response bodies, handled on several threads) glibc kept most of the peak
/// resident in its per-thread arenas; mimalloc gives freed pages back to the system
/// (`benches/README.md`, memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    meterplane::cli::run().await
}
