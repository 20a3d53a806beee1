//! Stable-index storage that grows in chunks, so a large table wastes at most one chunk
//! instead of the half a doubling `Vec` can leave idle, and a small one stays small.

/// Indices below this live in chunks of 16, 16, 32, ... 512; above it, in chunks of this size.
const BIG: usize = 1024;
const FIRST: usize = 16;

fn locate(i: usize) -> (usize, usize) {
    if i < FIRST {
        (0, i)
    } else if i < BIG {
        let k = (usize::BITS - 1 - (i / FIRST).leading_zeros()) as usize + 1;
        (k, i - (FIRST << (k - 1)))
    } else {
        let small = (BIG / FIRST).trailing_zeros() as usize + 1;
        (small + (i - BIG) / BIG, (i - BIG) % BIG)
    }
}

fn chunk_len(k: usize) -> usize {
    let small = (BIG / FIRST).trailing_zeros() as usize + 1;
    match k {
        0 => FIRST,
        k if k < small => FIRST << (k - 1),
        _ => BIG,
    }
}

/// Slots addressed by `u32`, each empty or holding a `T`; indices never move.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    chunks: Vec<Box<[Option<T>]>>,
    /// One past the highest index ever used.
    len: usize,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// One past the highest index ever used: iterate `0..len()`.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, i: u32) -> Option<&T> {
        let (c, o) = locate(i as usize);
        self.chunks.get(c)?.get(o)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        let (c, o) = locate(i as usize);
        self.chunks.get_mut(c)?.get_mut(o)?.as_mut()
    }

    /// Stores `value`, reusing a freed index when there is one.
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = self.len;
                self.len += 1;
                let (c, _) = locate(i);
                if c == self.chunks.len() {
                    let chunk: Vec<Option<T>> = (0..chunk_len(c)).map(|_| None).collect();
                    self.chunks.push(chunk.into_boxed_slice());
                }
                i as u32
            }
        };
        let (c, o) = locate(i as usize);
        self.chunks[c][o] = Some(value);
        i
    }

    /// Empties slot `i`, returning what it held.
    pub(crate) fn remove(&mut self, i: u32) -> Option<T> {
        let (c, o) = locate(i as usize);
        let v = self.chunks.get_mut(c)?.get_mut(o)?.take();
        if v.is_some() {
            self.free.push(i);
        }
        v
    }

    /// Every occupied slot, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_has_its_own_place() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..5000 {
            let (c, o) = locate(i);
            assert!(o < chunk_len(c), "index {i}: offset {o} in chunk {c}");
            assert!(seen.insert((c, o)), "index {i} collides");
        }
        // Chunks fill in order: the first 1024 indices use exactly the small chunks.
        let small: usize = (0..7).map(chunk_len).sum();
        assert_eq!(small, BIG);
        assert_eq!(locate(BIG), (7, 0));
    }

    #[test]
    fn insert_remove_reuse_and_iterate() {
        let mut s = Slab::default();
        let ids: Vec<u32> = (0..3000).map(|i| s.insert(i)).collect();
        assert_eq!(ids, (0..3000).collect::<Vec<_>>());
        assert_eq!(s.get(2999), Some(&2999));
        assert_eq!(s.remove(17), Some(17));
        assert_eq!(s.remove(17), None);
        assert_eq!(s.get(17), None);
        assert_eq!(s.insert(42), 17);
        assert_eq!(s.get(17), Some(&42));
        assert_eq!(s.iter().count(), 3000);
        assert_eq!(s.len(), 3000);
        *s.get_mut(5).unwrap() = 7;
        assert_eq!(s.get(5), Some(&7));
        assert_eq!(s.get(1_000_000), None);
    }
}
