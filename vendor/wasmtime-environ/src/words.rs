//! SoulBox patch (see `SOULBOX-PATCH.md`): a compiled module's per-function tables stored as
//! fixed-width words.
//!
//! postcard writes each `u32` as a varint and reads it back a byte at a time through serde's
//! visitors: about 20 ns an entry, over 5 ms for CPython's 89,103 functions, 47,157 table
//! entries and their code locations, paid by every process that loads the module. The tables
//! below are written instead as one byte string each, of little-endian `u32` words, and read
//! back by a plain loop over the borrowed bytes.
//!
//! A table's byte string must hold a whole number of entries and every entry must be valid
//! (an enum's tag known); anything else is a deserialization error, never a panic.

use crate::collections::{TryPrimaryMap, TryVec};
use crate::prelude::*;
use crate::{
    EngineOrModuleTypeIndex, EntityRef, FilePos, FuncIndex, FuncKeyIndex, FunctionLoc,
    FunctionType, VMSharedTypeIndex,
};
use core::fmt;
use core::marker::PhantomData;
use cranelift_entity::packed_option::ReservedValue;
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};

/// A value stored as [`Words::WORDS`] little-endian `u32` words.
pub(crate) trait Words: Sized {
    /// Words per value.
    const WORDS: usize;

    /// Appends the value's words to `out`.
    fn put(&self, out: &mut Vec<u8>);

    /// The value in `entry` (exactly `WORDS * 4` bytes), or `None` if they are not one.
    fn take(entry: &[u8]) -> Option<Self>;
}

fn put_word(out: &mut Vec<u8>, word: u32) {
    out.extend_from_slice(&word.to_le_bytes());
}

/// Word `i` of an entry.
#[inline(always)]
fn word(entry: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([entry[4 * i], entry[4 * i + 1], entry[4 * i + 2], entry[4 * i + 3]])
}

/// An entity index from its word: `u32::MAX` is the entity's reserved value (a null
/// function-table entry, a function that does not escape), as serde's derived newtype reads it.
#[inline]
fn entity<E: EntityRef + ReservedValue>(word: u32) -> E {
    match word {
        u32::MAX => E::reserved_value(),
        index => E::new(index as usize),
    }
}

impl Words for FuncIndex {
    const WORDS: usize = 1;
    fn put(&self, out: &mut Vec<u8>) {
        put_word(out, self.as_u32());
    }
    #[inline]
    fn take(entry: &[u8]) -> Option<Self> {
        Some(entity(word(entry, 0)))
    }
}

impl Words for FuncKeyIndex {
    const WORDS: usize = 1;
    fn put(&self, out: &mut Vec<u8>) {
        put_word(out, u32::from(*self));
    }
    #[inline]
    fn take(entry: &[u8]) -> Option<Self> {
        Some(FuncKeyIndex::from_raw(word(entry, 0)))
    }
}

impl Words for FilePos {
    const WORDS: usize = 1;
    fn put(&self, out: &mut Vec<u8>) {
        put_word(out, self.file_offset().unwrap_or(u32::MAX));
    }
    #[inline]
    fn take(entry: &[u8]) -> Option<Self> {
        Some(match word(entry, 0) {
            u32::MAX => FilePos::none(),
            offset => FilePos::new(offset),
        })
    }
}

impl Words for FunctionLoc {
    const WORDS: usize = 2;
    fn put(&self, out: &mut Vec<u8>) {
        put_word(out, self.start);
        put_word(out, self.length);
    }
    #[inline]
    fn take(entry: &[u8]) -> Option<Self> {
        Some(FunctionLoc { start: word(entry, 0), length: word(entry, 1) })
    }
}

/// `EngineOrModuleTypeIndex`'s variants as the first word of a [`FunctionType`].
const ENGINE: u32 = 0;
const MODULE: u32 = 1;
const REC_GROUP: u32 = 2;

impl Words for FunctionType {
    const WORDS: usize = 3;
    fn put(&self, out: &mut Vec<u8>) {
        let (tag, index) = match self.signature {
            EngineOrModuleTypeIndex::Engine(i) => (ENGINE, i.bits()),
            EngineOrModuleTypeIndex::Module(i) => (MODULE, i.as_u32()),
            EngineOrModuleTypeIndex::RecGroup(i) => (REC_GROUP, i.as_u32()),
        };
        put_word(out, tag);
        put_word(out, index);
        put_word(out, self.func_ref.as_u32());
    }
    #[inline]
    fn take(entry: &[u8]) -> Option<Self> {
        let signature = match word(entry, 0) {
            // `VMSharedTypeIndex::new` panics on its reserved value: an error here instead.
            ENGINE if word(entry, 1) == u32::MAX => return None,
            ENGINE => EngineOrModuleTypeIndex::Engine(VMSharedTypeIndex::new(word(entry, 1))),
            MODULE => EngineOrModuleTypeIndex::Module(entity(word(entry, 1))),
            REC_GROUP => EngineOrModuleTypeIndex::RecGroup(entity(word(entry, 1))),
            _ => return None,
        };
        Some(FunctionType { signature, func_ref: entity(word(entry, 2)) })
    }
}

fn encode<T: Words>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * T::WORDS * 4);
    for value in values {
        value.put(&mut out);
    }
    out
}

fn decode<T: Words, E: serde::de::Error>(bytes: &[u8]) -> Result<TryVec<T>, E> {
    let entry = T::WORDS * 4;
    if bytes.len() % entry != 0 {
        return Err(E::custom("a fixed-width table's length is not a whole number of entries"));
    }
    // A std `Vec` reserved once (fallibly, as `TryVec` would) and filled by a loop with each
    // entry's `take` inlined: twice as fast as a `TryVec::push` per entry with `take` called.
    let mut values = Vec::new();
    values.try_reserve_exact(bytes.len() / entry).map_err(|_| E::custom(OutOfMemory::new(bytes.len())))?;
    for chunk in bytes.chunks_exact(entry) {
        match T::take(chunk) {
            Some(value) => values.push(value),
            None => return Err(E::custom("invalid entry in a fixed-width table")),
        }
    }
    Ok(TryVec::from(values))
}

/// Reads one fixed-width table's byte string.
struct TableVisitor<T>(PhantomData<fn() -> T>);

impl<'de, T: Words> Visitor<'de> for TableVisitor<T> {
    type Value = TryVec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string of little-endian u32 words")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        decode(bytes)
    }

    fn visit_borrowed_bytes<E: serde::de::Error>(self, bytes: &'de [u8]) -> Result<Self::Value, E> {
        decode(bytes)
    }
}

fn deserialize_table<'de, D: Deserializer<'de>, T: Words>(deserializer: D) -> Result<TryVec<T>, D::Error> {
    deserializer.deserialize_bytes(TableVisitor(PhantomData))
}

/// `#[serde(with = "crate::words::primary_map")]`: a `TryPrimaryMap<K, T>` as one byte string.
pub(crate) mod primary_map {
    use super::*;

    pub fn serialize<S: Serializer, K: EntityRef, T: Words>(
        map: &TryPrimaryMap<K, T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&encode(map.as_values_slice()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, K: EntityRef, T: Words>(
        deserializer: D,
    ) -> Result<TryPrimaryMap<K, T>, D::Error> {
        deserialize_table(deserializer).map(TryPrimaryMap::from)
    }
}

/// `#[serde(with = "crate::words::map_of_vecs")]`: a `TryPrimaryMap<K, TryVec<T>>` as a
/// sequence of byte strings, one per key.
pub(crate) mod map_of_vecs {
    use super::*;

    /// One of the map's values, serialized as a byte string.
    struct Table<'a, T>(&'a [T]);

    impl<T: Words> serde::Serialize for Table<'_, T> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&encode(self.0))
        }
    }

    /// One of the map's values, deserialized from a byte string.
    struct OwnedTable<T>(TryVec<T>);

    impl<'de, T: Words> serde::Deserialize<'de> for OwnedTable<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize_table(deserializer).map(OwnedTable)
        }
    }

    pub fn serialize<S: Serializer, K: EntityRef, T: Words>(
        map: &TryPrimaryMap<K, TryVec<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(map.len()))?;
        for values in map.values() {
            seq.serialize_element(&Table(&values[..]))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, K: EntityRef, T: Words>(
        deserializer: D,
    ) -> Result<TryPrimaryMap<K, TryVec<T>>, D::Error> {
        struct MapVisitor<K, T>(PhantomData<fn() -> (K, T)>);

        impl<'de, K: EntityRef, T: Words> Visitor<'de> for MapVisitor<K, T> {
            type Value = TryPrimaryMap<K, TryVec<T>>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence of fixed-width tables")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut map = TryPrimaryMap::new();
                while let Some(OwnedTable(values)) = seq.next_element::<OwnedTable<T>>()? {
                    map.push(values).map_err(A::Error::custom)?;
                }
                Ok(map)
            }
        }

        deserializer.deserialize_seq(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FuncRefIndex, ModuleInternedTypeIndex};

    #[derive(serde_derive::Serialize, serde_derive::Deserialize)]
    struct Tables {
        #[serde(with = "primary_map")]
        functions: TryPrimaryMap<FuncIndex, FunctionType>,
        #[serde(with = "primary_map")]
        locs: TryPrimaryMap<FuncIndex, FunctionLoc>,
        #[serde(with = "map_of_vecs")]
        elements: TryPrimaryMap<FuncIndex, TryVec<FuncIndex>>,
    }

    #[test]
    fn tables_come_back_as_written_and_bad_ones_are_errors() {
        let mut tables = Tables {
            functions: TryPrimaryMap::new(),
            locs: TryPrimaryMap::new(),
            elements: TryPrimaryMap::new(),
        };
        let signature = EngineOrModuleTypeIndex::Module(ModuleInternedTypeIndex::from_u32(7));
        tables.functions.push(FunctionType { signature, func_ref: FuncRefIndex::reserved_value() }).unwrap();
        tables.locs.push(FunctionLoc { start: 16, length: 300 }).unwrap();
        let mut first = TryVec::new();
        first.push(FuncIndex::from_u32(3)).unwrap();
        first.push(FuncIndex::reserved_value()).unwrap();
        tables.elements.push(first).unwrap();
        tables.elements.push(TryVec::new()).unwrap();

        let bytes = postcard::to_allocvec(&tables).unwrap();
        let back: Tables = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.functions[FuncIndex::from_u32(0)].signature, signature);
        assert_eq!(back.locs[FuncIndex::from_u32(0)], FunctionLoc { start: 16, length: 300 });
        assert_eq!(back.elements.len(), 2);
        assert_eq!(&back.elements[FuncIndex::from_u32(0)][..], &[FuncIndex::from_u32(3), FuncIndex::reserved_value()]);
        assert!(back.functions[FuncIndex::from_u32(0)].func_ref.is_reserved_value());

        let mut bad_tag = bytes.clone();
        bad_tag[1] = 9; // the first function's variant (after its table's one-byte length)
        assert!(postcard::from_bytes::<Tables>(&bad_tag).is_err());
    }
}
