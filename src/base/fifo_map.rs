//! A map from tokens to what is remembered of them, bounded, the oldest entry evicted first:
//! the storage of the token cache and of the introspection answers.
//!
//! Keyed by the whole token (hashed by the map's SipHash with a per-VM random key, then compared
//! whole): no digest stands in for it, so no collision can be aimed at. First in, first out:
//! under a flood of distinct tokens an LRU would evict just as much, at the cost of bookkeeping
//! on every hit.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

#[derive(Debug)]
struct Slot<V> {
    value: V,
    /// Which insertion this is, to tell it apart from stale entries of the eviction queue.
    sequence: u64,
}

/// At most `capacity` entries; 0 stores nothing.
#[derive(Debug)]
pub struct FifoMap<V> {
    capacity: usize,
    slots: HashMap<Rc<str>, Slot<V>>,
    /// Insertion order for eviction; may hold entries already removed or replaced (their
    /// sequence no longer matches), and is compacted when it grows past twice the capacity.
    insertion_order: VecDeque<(Rc<str>, u64)>,
    next_sequence: u64,
}

impl<V> FifoMap<V> {
    pub fn new(capacity: usize) -> FifoMap<V> {
        FifoMap {
            capacity,
            slots: HashMap::new(),
            insertion_order: VecDeque::new(),
            next_sequence: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.slots.get(key).map(|slot| &slot.value)
    }

    pub fn remove(&mut self, key: &str) {
        self.slots.remove(key);
    }

    /// The eviction queue's length, stale items included (bounded by twice the capacity).
    #[cfg(test)]
    pub(crate) fn queue_len(&self) -> usize {
        self.insertion_order.len()
    }

    /// Stores `value` under `key`, evicting the oldest entries to stay within capacity.
    pub fn insert(&mut self, key: &str, value: V) {
        if self.capacity == 0 {
            return;
        }
        while self.slots.len() >= self.capacity && !self.slots.contains_key(key) {
            let Some((oldest, sequence)) = self.insertion_order.pop_front() else {
                break;
            };
            if self
                .slots
                .get(&oldest)
                .is_some_and(|slot| slot.sequence == sequence)
            {
                self.slots.remove(&oldest);
            }
        }
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let key: Rc<str> = Rc::from(key);
        self.slots.insert(Rc::clone(&key), Slot { value, sequence });
        self.insertion_order.push_back((key, sequence));
        if self.insertion_order.len() > self.capacity.saturating_mul(2) {
            let slots = &self.slots;
            self.insertion_order.retain(|(key, sequence)| {
                slots
                    .get(key)
                    .is_some_and(|slot| slot.sequence == *sequence)
            });
        }
    }
}
