//! A byte-bounded cache of per-image model input (the 65 spliced tokens), keyed by the image's
//! content hash, so an image met in many groups goes through the vision tower once per run.

use std::collections::{HashMap, VecDeque};

use candle_core::Tensor;

use crate::compare::CacheStats;

/// Least-recently-used eviction once the stored tensors exceed `max_bytes`.
#[derive(Debug)]
pub(crate) struct EmbeddingCache {
    max_bytes: usize,
    used_bytes: usize,
    entries: HashMap<u64, Tensor>,
    /// Keys from least to most recently used.
    order: VecDeque<u64>,
    hits: u64,
    misses: u64,
}

fn bytes_of(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

impl EmbeddingCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            used_bytes: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// The tensor stored for `key`, counted as a hit or a miss.
    pub(crate) fn get(&mut self, key: u64) -> Option<Tensor> {
        let Some(hit) = self.entries.get(&key).cloned() else {
            self.misses += 1;
            return None;
        };
        self.hits += 1;
        self.touch(key);
        Some(hit)
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            bytes: self.used_bytes as u64,
        }
    }

    fn touch(&mut self, key: u64) {
        if let Some(pos) = self.order.iter().position(|&k| k == key) {
            self.order.remove(pos);
        }
        self.order.push_back(key);
    }

    /// Stores `value` unless it alone exceeds the bound; evicts the least recently used first.
    pub(crate) fn insert(&mut self, key: u64, value: Tensor) {
        let size = bytes_of(&value);
        if size > self.max_bytes {
            return;
        }
        if let Some(old) = self.entries.remove(&key) {
            self.used_bytes -= bytes_of(&old);
        }
        while self.used_bytes + size > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.used_bytes -= bytes_of(&old);
            }
        }
        self.used_bytes += size;
        self.entries.insert(key, value);
        self.touch(key);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn tensor(n: usize) -> Tensor {
        Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn evicts_least_recently_used_within_the_byte_bound() {
        let mut cache = EmbeddingCache::new(3 * 4 * 10);
        for key in 0..3 {
            cache.insert(key, tensor(10));
        }
        assert!(cache.get(0).is_some()); // 1 is now the least recently used
        cache.insert(3, tensor(10));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(1).is_none());
        assert!(cache.get(0).is_some() && cache.get(2).is_some() && cache.get(3).is_some());
    }

    #[test]
    fn counts_hits_misses_and_bytes() {
        let mut cache = EmbeddingCache::new(2 * 4 * 10);
        assert!(cache.get(0).is_none());
        cache.insert(0, tensor(10));
        assert!(cache.get(0).is_some());
        cache.insert(1, tensor(10));
        cache.insert(2, tensor(10)); // evicts 0
        assert!(cache.get(0).is_none());
        assert!(cache.get(2).is_some());
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 2,
                misses: 2,
                bytes: 80
            }
        );
    }

    #[test]
    fn zero_bound_caches_nothing() {
        let mut cache = EmbeddingCache::new(0);
        cache.insert(7, tensor(1));
        assert!(cache.get(7).is_none());
    }
}
