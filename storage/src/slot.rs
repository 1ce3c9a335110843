use std::sync::Arc;

use parking_lot::Mutex;

use crate::StorageError;

/// A fixed number of single-assignment slots shared between threads.
///
/// Guarantees: a slot is written at most once between two [`take`](Self::take)s
/// (a second [`put`](Self::put) fails with [`StorageError::AlreadyExists`] and
/// leaves the first value in place); every operation on one slot is atomic;
/// operations on different slots never block each other for longer than a
/// pointer copy.
#[derive(Debug)]
pub struct SlotStore<V> {
    slots: Box<[Mutex<Option<Arc<V>>>]>,
}

impl<V> SlotStore<V> {
    /// A store of `len` empty slots.
    pub fn new(len: usize) -> Self {
        Self {
            slots: (0..len).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the store has no slots at all.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&self, slot: usize) -> Result<&Mutex<Option<Arc<V>>>, StorageError> {
        self.slots.get(slot).ok_or(StorageError::OutOfRange {
            slot,
            len: self.slots.len(),
        })
    }

    /// Writes a value into an empty slot.
    pub fn put(&self, slot: usize, value: Arc<V>) -> Result<(), StorageError> {
        let mut guard = self.slot(slot)?.lock();
        if guard.is_some() {
            return Err(StorageError::AlreadyExists { slot });
        }
        *guard = Some(value);
        Ok(())
    }

    /// A shared handle to the value in a slot.
    pub fn get(&self, slot: usize) -> Result<Arc<V>, StorageError> {
        self.slot(slot)?
            .lock()
            .clone()
            .ok_or(StorageError::NotFound { slot })
    }

    /// Removes the value from a slot and returns it; the slot may be written again.
    pub fn take(&self, slot: usize) -> Result<Arc<V>, StorageError> {
        self.slot(slot)?
            .lock()
            .take()
            .ok_or(StorageError::NotFound { slot })
    }

    /// Whether a slot holds a value.
    pub fn contains(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|s| s.lock().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_assignment_keeps_the_first_value() {
        let store = SlotStore::new(1);
        store.put(0, Arc::new(1)).unwrap();
        assert_eq!(
            store.put(0, Arc::new(2)),
            Err(StorageError::AlreadyExists { slot: 0 })
        );
        assert_eq!(*store.get(0).unwrap(), 1);
    }

    #[test]
    fn take_empties_the_slot() {
        let store = SlotStore::new(1);
        store.put(0, Arc::new(5)).unwrap();
        assert_eq!(*store.take(0).unwrap(), 5);
        assert!(!store.contains(0));
        assert_eq!(store.take(0), Err(StorageError::NotFound { slot: 0 }));
        store.put(0, Arc::new(6)).unwrap();
        assert_eq!(*store.get(0).unwrap(), 6);
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let store: SlotStore<u8> = SlotStore::new(3);
        assert_eq!(
            store.get(3),
            Err(StorageError::OutOfRange { slot: 3, len: 3 })
        );
        assert!(!store.contains(9));
    }

    #[test]
    fn concurrent_writers_of_one_slot_agree_on_one_winner() {
        let store = SlotStore::new(1);
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    s.spawn({
                        let store = &store;
                        move || store.put(0, Arc::new(i)).is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(wins, 1);
    }
}
