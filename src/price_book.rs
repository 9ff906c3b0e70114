//! What events are priced with — the catalog, each organization's overrides, the
//! discounts — cached per instance, so neither the ingest path nor the authorize
//! estimate reads them from PostgreSQL on every request.
//!
//! Changes reach every instance through a change number (the PostgreSQL sequence
//! `price_changes`): whoever changes prices, overrides or discounts takes the next
//! number once the change has committed ([`PriceBook::changed`]), and every instance
//! reads the last number every `check_every` (1 s by default, `MP_PRICES_CHECK_MS`) in
//! the background. An entry read before the newest number this instance knows is not
//! used again, so **a change applies on the instance that made it at once, and on every
//! other instance within `check_every`** (plus the one query that re-reads it). Should
//! the number not be taken (the database lost between the change and its number),
//! entries still expire after [`MAX_AGE`].

use std::{
    future::Future,
    hash::Hash,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use moka::future::Cache;
use uuid::Uuid;

use crate::{
    domain::{
        discount::DiscountRule,
        pricing::{Catalog, OrgPrices},
    },
    error::{AppError, AppResult},
    store::{self, DbConn, DbPool},
};

/// The longest an entry is used, whatever the change numbers say.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Price versions held across all cached catalogs, at most (a catalog is cached per
/// set of providers a request names, so a version may be held more than once).
const MAX_CATALOG_VERSIONS: u64 = 50_000;

/// A cached value and the change number that was current when its read began.
struct Tagged<T> {
    change: i64,
    value: Arc<T>,
}

// Not derived: that would ask `T: Clone`, and only the `Arc` is cloned.
impl<T> Clone for Tagged<T> {
    fn clone(&self) -> Self {
        Self {
            change: self.change,
            value: self.value.clone(),
        }
    }
}

struct Inner {
    pool: DbPool,
    /// The newest change number this instance knows of.
    change: AtomicI64,
    /// Sorted, distinct providers → their price versions.
    catalogs: Cache<Arc<[String]>, Tagged<Catalog>>,
    /// (organization, providers as for `catalogs`) → its overrides of those providers,
    /// keyed to that catalog ([`OrgPrices::keyed`]).
    overrides: Cache<(Uuid, Arc<[String]>), Tagged<OrgPrices>>,
    /// Organization → the discounts that can apply to it (its own and the global ones).
    discounts: Cache<Uuid, Tagged<Vec<DiscountRule>>>,
}

/// The prices one request prices its events with.
#[derive(Clone)]
pub struct Prices {
    pub catalog: Arc<Catalog>,
    pub overrides: Arc<OrgPrices>,
    pub discounts: Arc<Vec<DiscountRule>>,
}

#[derive(Clone)]
pub struct PriceBook {
    inner: Arc<Inner>,
}

impl PriceBook {
    /// A book reading through `pool`; watches the change number every `check_every`
    /// until the book is dropped. Must be called on a Tokio runtime.
    pub fn new(pool: DbPool, check_every: Duration) -> Self {
        let inner = Arc::new(Inner {
            pool,
            change: AtomicI64::new(0),
            catalogs: Cache::builder()
                .max_capacity(MAX_CATALOG_VERSIONS)
                .weigher(|_, catalog: &Tagged<Catalog>| u32::try_from(catalog.value.len() + 1).unwrap_or(u32::MAX))
                .time_to_live(MAX_AGE)
                .build(),
            overrides: Cache::builder().max_capacity(100_000).time_to_live(MAX_AGE).build(),
            discounts: Cache::builder().max_capacity(100_000).time_to_live(MAX_AGE).build(),
        });
        tokio::spawn(watch(Arc::downgrade(&inner), check_every));
        Self { inner }
    }

    /// The catalog, overrides and discounts for an organization's events naming
    /// `providers` (sorted, without repeats).
    pub async fn for_org(&self, org_id: Uuid, providers: &[String]) -> AppResult<Prices> {
        let providers: Arc<[String]> = providers.into();
        let catalog = self.catalog(providers.clone()).await?;
        let overrides = self.overrides(org_id, providers, &catalog).await?;
        let discounts = self.discounts(org_id).await?;
        Ok(Prices {
            catalog,
            overrides,
            discounts,
        })
    }

    /// The price versions of `providers` (sorted, without repeats).
    pub async fn catalog(&self, providers: Arc<[String]>) -> AppResult<Arc<Catalog>> {
        let pool = self.inner.pool.clone();
        self.cached(&self.inner.catalogs, providers.clone(), move || {
            let (pool, providers) = (pool.clone(), providers.clone());
            async move {
                let mut conn = pool.get().await?;
                store::prices::catalog_for(&mut conn, &providers).await
            }
        })
        .await
    }

    /// The organization's overrides of `providers`, keyed to `catalog` (the catalog
    /// of the same providers).
    pub async fn overrides(
        &self,
        org_id: Uuid,
        providers: Arc<[String]>,
        catalog: &Arc<Catalog>,
    ) -> AppResult<Arc<OrgPrices>> {
        let (pool, catalog) = (self.inner.pool.clone(), catalog.clone());
        self.cached(&self.inner.overrides, (org_id, providers.clone()), move || {
            let (pool, providers, catalog) = (pool.clone(), providers.clone(), catalog.clone());
            async move {
                let mut conn = pool.get().await?;
                Ok(store::org_prices::for_pricing(&mut conn, org_id, &providers)
                    .await?
                    .keyed(&catalog))
            }
        })
        .await
    }

    async fn discounts(&self, org_id: Uuid) -> AppResult<Arc<Vec<DiscountRule>>> {
        let pool = self.inner.pool.clone();
        self.cached(&self.inner.discounts, org_id, move || {
            let pool = pool.clone();
            async move {
                let mut conn = pool.get().await?;
                store::discounts::rules_for_org(&mut conn, org_id).await
            }
        })
        .await
    }

    /// After a change to prices, overrides or discounts has committed: takes the next
    /// change number, so every instance re-reads (this one at once). A failure is
    /// logged, not returned: the change is made, and other instances then see it when
    /// their entries expire ([`MAX_AGE`]).
    pub async fn changed(&self, conn: &mut DbConn) {
        match store::prices::announce_change(conn).await {
            Ok(number) => self.inner.advance(number).await,
            Err(e) => tracing::warn!(
                error = %e,
                "could not announce a price change; other instances apply it within a minute"
            ),
        }
    }

    /// The cached value of `key`, read by `load` when absent or read before the
    /// newest change number this instance knows of. Concurrent misses of one key wait
    /// for one read.
    async fn cached<K, V, F, Fut>(&self, cache: &Cache<K, Tagged<V>>, key: K, load: F) -> AppResult<Arc<V>>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Send + Sync + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = AppResult<V>>,
    {
        // A read that began under an older number may be joined by a request that came
        // after a newer one was seen: that request drops it and reads again. Changes
        // arriving faster than reads finish: the last attempt's value is used.
        let mut attempt = 0;
        loop {
            let wanted = self.inner.change.load(Ordering::SeqCst);
            let read = load();
            let tagged = cache
                .try_get_with(key.clone(), async move {
                    Ok::<_, AppError>(Tagged {
                        change: wanted,
                        value: Arc::new(read.await?),
                    })
                })
                .await
                .map_err(AppError::from)?;
            if tagged.change >= wanted || attempt == 2 {
                return Ok(tagged.value);
            }
            attempt += 1;
            cache.invalidate(&key).await;
        }
    }
}

impl Inner {
    /// Takes note of change `number`; entries read before it are dropped.
    async fn advance(&self, number: i64) {
        let before = self.change.fetch_max(number, Ordering::SeqCst);
        if number > before {
            // Stale entries would be re-read on use anyway; dropping them frees them.
            self.catalogs.invalidate_all();
            self.overrides.invalidate_all();
            self.discounts.invalidate_all();
        }
    }
}

/// Reads the last change number every `every` while the book lives.
async fn watch(book: Weak<Inner>, every: Duration) {
    let mut failing = false;
    loop {
        let Some(inner) = book.upgrade() else {
            return;
        };
        let read = async {
            let mut conn = inner.pool.get().await?;
            store::prices::last_change(&mut conn).await
        };
        match read.await {
            Ok(number) => {
                failing = false;
                inner.advance(number).await;
            }
            // Said once per outage, not every second; entries still expire.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "could not read the price change number; retrying");
            }
            Err(_) => {}
        }
        drop(inner);
        tokio::time::sleep(every).await;
    }
}
