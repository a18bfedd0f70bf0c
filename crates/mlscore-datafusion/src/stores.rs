//! The object stores a session reads from and writes to, built on first use from the URL and
//! the environment (see [`mlscore_mlflow::objects`]).
//!
//! DataFusion's default registry keys stores by scheme and host only, so
//! `abfss://a@acct.dfs.core.windows.net/` and `abfss://b@acct.dfs.core.windows.net/` would
//! share one store bound to whichever container came first; this registry keys them by
//! container (and bucket) as well.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use mlscore_mlflow::objects;
use object_store::ObjectStore;
use url::Url;

/// Object stores by container or bucket, opened lazily from the environment.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.stores.write().unwrap_or_else(|e| e.into_inner()).insert(objects::store_key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&objects::store_key(url))
            .ok_or_else(|| DataFusionError::Execution(format!("no object store is registered for {url}")))
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = objects::store_key(url);
        if let Some(store) = self.stores.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(store.clone());
        }
        let (store, _) = objects::open(url).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        Ok(stores.entry(key).or_insert(store).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_one_account_get_their_own_stores() {
        let registry = StoreRegistry::default();
        let a = Url::parse("file:///").unwrap();
        let local = registry.get_store(&a).unwrap();
        assert!(Arc::ptr_eq(&local, &registry.get_store(&a).unwrap()), "a store is opened once");
        let one = Url::parse("abfss://one@acct.dfs.core.windows.net/").unwrap();
        let two = Url::parse("abfss://two@acct.dfs.core.windows.net/").unwrap();
        let mem: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        assert!(registry.register_store(&one, mem.clone()).is_none());
        assert!(registry.register_store(&two, Arc::new(object_store::memory::InMemory::new())).is_none());
        assert!(Arc::ptr_eq(&registry.get_store(&one).unwrap(), &mem));
        assert!(!Arc::ptr_eq(&registry.get_store(&two).unwrap(), &mem));
    }
}
