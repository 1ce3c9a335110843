//! Tiles on the wire and at rest: a `.npy` file (so numpy's `np.load` reads a
//! stored tile as it is; numpy ignores bytes after the array) followed by a
//! 16-byte trailer that carries a CRC-32 of the `.npy` bytes:
//! `crc32 (u32 LE) · npy length (u64 LE) · b"WKCK"`.

use bytes::Bytes;
use ndarray::Array2;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use crate::{ObjectKey, StorageError};

const MAGIC: &[u8; 4] = b"WKCK";
const TRAILER: usize = 16;

/// Encodes a tile as `.npy` plus checksum trailer.
pub fn encode_tile(key: &ObjectKey, tile: &Array2<f64>) -> Result<Bytes, StorageError> {
    let mut out = Vec::with_capacity(tile.len() * 8 + 128 + TRAILER);
    tile.write_npy(&mut out)
        .map_err(|_| StorageError::Corrupt {
            key: key.clone(),
            reason: "the tile could not be encoded as .npy",
        })?;
    let crc = crc32fast::hash(&out);
    let len = out.len() as u64;
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(Bytes::from(out))
}

/// Decodes a tile written by [`encode_tile`]; truncation, a flipped bit or a
/// foreign object give [`StorageError::Corrupt`] naming `key`.
pub fn decode_tile(key: &ObjectKey, bytes: &[u8]) -> Result<Array2<f64>, StorageError> {
    let corrupt = |reason| StorageError::Corrupt {
        key: key.clone(),
        reason,
    };
    if bytes.len() < TRAILER || &bytes[bytes.len() - 4..] != MAGIC {
        return Err(corrupt(
            "no checksum trailer: truncated, or not a wukong tile",
        ));
    }
    let body_len = bytes.len() - TRAILER;
    let trailer = &bytes[body_len..];
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&trailer[4..12]);
    if u64::from_le_bytes(len) != body_len as u64 {
        return Err(corrupt(
            "length in the trailer does not match: truncated or extended",
        ));
    }
    let body = &bytes[..body_len];
    if crc32fast::hash(body) != crc {
        return Err(corrupt("checksum mismatch: the tile's bytes were altered"));
    }
    Array2::<f64>::read_npy(body)
        .map_err(|_| corrupt("checksum matches but the .npy body is not a 2-D float64 array"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobId;

    fn key() -> ObjectKey {
        JobId::new("j").unwrap().key("tiles/a/1_2").unwrap()
    }

    #[test]
    fn round_trip_keeps_values_and_layout_independent_shape() {
        let tile = Array2::from_shape_fn((7, 3), |(i, j)| i as f64 * 0.5 - j as f64);
        let bytes = encode_tile(&key(), &tile).unwrap();
        assert!(bytes.starts_with(b"\x93NUMPY"));
        assert_eq!(decode_tile(&key(), &bytes).unwrap(), tile);
        let fortran = tile.t().as_standard_layout().t().to_owned();
        assert_eq!(
            decode_tile(&key(), &encode_tile(&key(), &fortran).unwrap()).unwrap(),
            tile
        );
    }

    #[test]
    fn every_kind_of_damage_is_caught_and_names_the_key() {
        let tile = Array2::from_elem((4, 4), 1.25);
        let good = encode_tile(&key(), &tile).unwrap().to_vec();
        let mut flipped = good.clone();
        flipped[100] ^= 0x01;
        let truncated = &good[..good.len() - 20];
        let mut extended = good.clone();
        extended.splice(10..10, [0u8; 3]);
        for (bytes, expected) in [
            (&flipped[..], "checksum mismatch"),
            (truncated, "no checksum trailer"),
            (&extended[..], "length in the trailer"),
            (&b"hello"[..], "no checksum trailer"),
            (&[][..], "no checksum trailer"),
        ] {
            let err = decode_tile(&key(), bytes).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
            assert!(err.to_string().contains("j/tiles/a/1_2"), "{err}");
        }
    }
}

/// A value that executors can keep in a store: tiles, and the small values of
/// tests and benchmarks. Decoding checks what encoding wrote and names the key
/// of anything damaged.
pub trait StoredValue: Send + Sync + Sized + 'static {
    /// The bytes stored at `key`.
    fn encode(&self, key: &ObjectKey) -> Result<Bytes, StorageError>;
    /// The value that [`encode`](StoredValue::encode) wrote at `key`.
    fn decode(key: &ObjectKey, bytes: &[u8]) -> Result<Self, StorageError>;
    /// Bytes the value occupies in memory, for cache budgets.
    fn memory_bytes(&self) -> u64;
}

impl StoredValue for Array2<f64> {
    fn encode(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        encode_tile(key, self)
    }
    fn decode(key: &ObjectKey, bytes: &[u8]) -> Result<Self, StorageError> {
        decode_tile(key, bytes)
    }
    fn memory_bytes(&self) -> u64 {
        (self.len() * std::mem::size_of::<f64>()) as u64
    }
}

impl StoredValue for () {
    fn encode(&self, _: &ObjectKey) -> Result<Bytes, StorageError> {
        Ok(Bytes::new())
    }
    fn decode(key: &ObjectKey, bytes: &[u8]) -> Result<Self, StorageError> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(StorageError::Corrupt {
                key: key.clone(),
                reason: "an empty value was expected",
            })
        }
    }
    fn memory_bytes(&self) -> u64 {
        0
    }
}

macro_rules! stored_integer {
    ($($ty:ty),*) => {$(
        impl StoredValue for $ty {
            fn encode(&self, _: &ObjectKey) -> Result<Bytes, StorageError> {
                Ok(Bytes::copy_from_slice(&self.to_le_bytes()))
            }
            fn decode(key: &ObjectKey, bytes: &[u8]) -> Result<Self, StorageError> {
                bytes.try_into().map(<$ty>::from_le_bytes).map_err(|_| StorageError::Corrupt {
                    key: key.clone(),
                    reason: concat!("not the little-endian bytes of a ", stringify!($ty)),
                })
            }
            fn memory_bytes(&self) -> u64 {
                std::mem::size_of::<$ty>() as u64
            }
        }
    )*};
}
stored_integer!(u64, i64);
