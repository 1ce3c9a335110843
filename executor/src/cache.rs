//! An executor's local tile cache: values by data item, each marked durable
//! once it is in the store, bounded by a byte budget with least-recently-used
//! eviction. Evicting a value that is not durable writes it first (the caller
//! does the write), so the cache never loses data another executor may need.

use std::collections::HashMap;
use std::sync::Arc;

use wukong_dag::DataId;

pub(crate) struct Entry<V> {
    pub(crate) value: Arc<V>,
    pub(crate) bytes: u64,
    pub(crate) durable: bool,
    last_use: u64,
}

pub(crate) struct TileCache<V> {
    entries: HashMap<DataId, Entry<V>>,
    budget: u64,
    used: u64,
    clock: u64,
}

impl<V> TileCache<V> {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            entries: HashMap::new(),
            budget,
            used: 0,
            clock: 0,
        }
    }

    pub(crate) fn get(&mut self, data: DataId) -> Option<Arc<V>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(&data).map(|entry| {
            entry.last_use = clock;
            Arc::clone(&entry.value)
        })
    }

    pub(crate) fn entry(&self, data: DataId) -> Option<&Entry<V>> {
        self.entries.get(&data)
    }

    /// Bytes of `data` held here (0 if absent).
    pub(crate) fn bytes_of(&self, data: DataId) -> u64 {
        self.entries.get(&data).map_or(0, |e| e.bytes)
    }

    pub(crate) fn insert(&mut self, data: DataId, value: Arc<V>, bytes: u64, durable: bool) {
        self.clock += 1;
        let entry = Entry {
            value,
            bytes,
            durable,
            last_use: self.clock,
        };
        if let Some(old) = self.entries.insert(data, entry) {
            self.used -= old.bytes;
        }
        self.used += bytes;
    }

    pub(crate) fn mark_durable(&mut self, data: DataId) {
        if let Some(entry) = self.entries.get_mut(&data) {
            entry.durable = true;
        }
    }

    pub(crate) fn remove(&mut self, data: DataId) {
        if let Some(old) = self.entries.remove(&data) {
            self.used -= old.bytes;
        }
    }

    /// The least recently used item other than `keep`, while over budget.
    pub(crate) fn victim(&self, keep: &[DataId]) -> Option<DataId> {
        if self.used <= self.budget {
            return None;
        }
        self.entries
            .iter()
            .filter(|(d, _)| !keep.contains(d))
            .min_by_key(|(_, e)| e.last_use)
            .map(|(&d, _)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_over_budget_only() {
        let mut cache = TileCache::new(100);
        cache.insert(DataId(0), Arc::new(0), 60, true);
        cache.insert(DataId(1), Arc::new(1), 30, false);
        assert_eq!(cache.victim(&[]), None);
        assert!(cache.get(DataId(0)).is_some());
        cache.insert(DataId(2), Arc::new(2), 30, true);
        assert_eq!(cache.victim(&[]), Some(DataId(1)));
        assert_eq!(cache.victim(&[DataId(1)]), Some(DataId(0)));
        assert!(!cache.entry(DataId(1)).unwrap().durable);
        cache.mark_durable(DataId(1));
        assert!(cache.entry(DataId(1)).unwrap().durable);
        cache.remove(DataId(1));
        assert_eq!(cache.victim(&[]), None);
        assert_eq!(cache.bytes_of(DataId(0)), 60);
        assert!(cache.entry(DataId(1)).is_none());
    }
}
