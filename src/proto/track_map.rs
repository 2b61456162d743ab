//! A map from track index to per-track state, for the one or two tracks a
//! session sets up (RFC 2326 §10.4: SETUP is per track).
//!
//! A `BTreeMap` allocates a whole 11-slot node for the first key, which at
//! thousands of listeners was most of a session's memory. This keeps the
//! entries sorted in a vector sized to exactly what was set up.

/// Track index to `V`, iterated in track order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackMap<V> {
    entries: Vec<(usize, V)>,
}

impl<V> Default for TrackMap<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<V> TrackMap<V> {
    /// One track.
    pub fn one(track: usize, value: V) -> Self {
        Self {
            entries: vec![(track, value)],
        }
    }

    fn position(&self, track: usize) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&track, |(t, _)| *t)
    }

    /// Sets `track`'s value; returns the old one.
    pub fn insert(&mut self, track: usize, value: V) -> Option<V> {
        match self.position(track) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                // Grow by one: sessions have one or two tracks, and the
                // default growth would reserve four.
                self.entries.reserve_exact(1);
                self.entries.insert(i, (track, value));
                None
            }
        }
    }

    /// `track`'s value, inserting `value` first when there is none.
    pub fn get_or_insert(&mut self, track: usize, value: V) -> &mut V {
        let i = match self.position(track) {
            Ok(i) => i,
            Err(i) => {
                self.entries.reserve_exact(1);
                self.entries.insert(i, (track, value));
                i
            }
        };
        &mut self.entries[i].1
    }

    pub fn get(&self, track: usize) -> Option<&V> {
        self.position(track).ok().map(|i| &self.entries[i].1)
    }

    pub fn contains(&self, track: usize) -> bool {
        self.position(track).is_ok()
    }

    pub fn remove(&mut self, track: usize) -> Option<V> {
        self.position(track).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(track, value)` in track order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &V)> {
        self.entries.iter().map(|(t, v)| (*t, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_track_order_and_replaces() {
        let mut m = TrackMap::default();
        assert!(m.is_empty());
        assert_eq!(m.insert(3, 'c'), None);
        assert_eq!(m.insert(1, 'a'), None);
        assert_eq!(m.insert(2, 'b'), None);
        assert_eq!(m.insert(1, 'A'), Some('a'));
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [(1, &'A'), (2, &'b'), (3, &'c')]
        );
        assert_eq!(m.get(2), Some(&'b'));
        assert_eq!(m.get(4), None);
        assert_eq!(m.remove(2), Some('b'));
        assert!(!m.contains(2));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn get_or_insert_keeps_the_first_value() {
        let mut m = TrackMap::one(0, 10u32);
        assert_eq!(*m.get_or_insert(0, 20), 10);
        assert_eq!(*m.get_or_insert(1, 30), 30);
        assert_eq!(m.iter().map(|(t, _)| t).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn holds_exactly_what_was_set_up() {
        let mut m = TrackMap::default();
        m.insert(0, [0u8; 64]);
        assert_eq!(m.entries.capacity(), 1);
        m.insert(1, [0u8; 64]);
        assert_eq!(m.entries.capacity(), 2);
    }
}
