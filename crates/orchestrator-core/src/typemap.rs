//! Maps keyed by a type's `TypeId`, hashed by the identity of the id's own bits.
//!
//! A `TypeId` is already a hash of its type (its `Hash` writes one well-mixed `u64`), so
//! hashing it again only costs time: the map's hasher keeps the written value as it is.

use core::any::TypeId;
use core::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashMap;

/// A map from a type's `TypeId` to `V`.
pub(crate) type TypeMap<V> = HashMap<TypeId, V, BuildHasherDefault<TypeIdHasher>>;

/// Returns an empty [`TypeMap`].
pub(crate) fn type_map<V>() -> TypeMap<V> {
    HashMap::with_hasher(BuildHasherDefault::default())
}

/// Keeps the `u64` a `TypeId` writes; folds any other input (not expected) into it.
#[derive(Default)]
pub(crate) struct TypeIdHasher(u64);

impl Hasher for TypeIdHasher {
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(5) ^ n;
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(5) ^ u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_found_by_their_own_id() {
        let mut map = type_map();
        map.insert(TypeId::of::<u8>(), "u8");
        map.insert(TypeId::of::<u16>(), "u16");
        map.insert(TypeId::of::<alloc::string::String>(), "String");
        assert_eq!(map.get(&TypeId::of::<u16>()), Some(&"u16"));
        assert_eq!(
            map.get(&TypeId::of::<alloc::string::String>()),
            Some(&"String")
        );
        assert_eq!(map.get(&TypeId::of::<u32>()), None);
        assert_eq!(map.len(), 3);
    }
}
