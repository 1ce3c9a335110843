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
    if !write_contiguous(tile, &mut out) {
        tile.write_npy(&mut out)
            .map_err(|_| StorageError::Corrupt {
                key: key.clone(),
                reason: "the tile could not be encoded as .npy",
            })?;
    }
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
    if let Some(tile) = read_contiguous(body) {
        return Ok(tile);
    }
    Array2::<f64>::read_npy(body)
        .map_err(|_| corrupt("checksum matches but the .npy body is not a 2-D float64 array"))
}

/// `.npy` format 1.0 magic and version.
const NPY_MAGIC: &[u8; 8] = b"\x93NUMPY\x01\x00";

/// Writes a tile stored contiguously (either order) as `.npy` with one copy
/// of its memory: the header, then the values' bytes as they lie. Returns
/// `false`, writing nothing, for a tile with gaps or a big-endian target.
fn write_contiguous(tile: &Array2<f64>, out: &mut Vec<u8>) -> bool {
    let fortran = match (tile.is_standard_layout(), tile.t().is_standard_layout()) {
        (true, _) => false,
        (false, true) => true,
        (false, false) => return false,
    };
    let (Some(values), true) = (tile.as_slice_memory_order(), cfg!(target_endian = "little"))
    else {
        return false;
    };
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': {}, 'shape': ({}, {}), }}",
        if fortran { "True" } else { "False" },
        tile.nrows(),
        tile.ncols()
    );
    // Pad so that the data starts on a 64-byte boundary, ending with '\n'.
    let unpadded = NPY_MAGIC.len() + 2 + header.len() + 1;
    header.extend(std::iter::repeat_n(
        ' ',
        unpadded.next_multiple_of(64) - unpadded,
    ));
    header.push('\n');
    let Ok(header_len) = u16::try_from(header.len()) else {
        return false;
    };
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    // SAFETY: f64 has no padding and any alignment suits u8; on a
    // little-endian target these are the values' little-endian bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    };
    out.extend_from_slice(bytes);
    true
}

/// Reads a `.npy` body of the shape [`write_contiguous`] writes (format 1.0,
/// `<f8`, two dimensions, either order) with one copy; `None` for anything
/// else, which the general reader then handles or rejects.
fn read_contiguous(body: &[u8]) -> Option<Array2<f64>> {
    use ndarray::ShapeBuilder;
    if !cfg!(target_endian = "little") || !body.starts_with(NPY_MAGIC) {
        return None;
    }
    let len_at = NPY_MAGIC.len();
    let header_len = usize::from(u16::from_le_bytes([
        *body.get(len_at)?,
        *body.get(len_at + 1)?,
    ]));
    let start = len_at + 2 + header_len;
    let header = std::str::from_utf8(body.get(len_at + 2..start)?).ok()?;
    let field = |name: &str| {
        let rest = &header[header.find(&format!("'{name}': "))? + name.len() + 4..];
        Some(rest)
    };
    if !field("descr")?.starts_with("'<f8'") {
        return None;
    }
    let fortran = match field("fortran_order")? {
        order if order.starts_with("True") => true,
        order if order.starts_with("False") => false,
        _ => return None,
    };
    let shape = field("shape")?;
    let dims = shape.strip_prefix('(')?.split(')').next()?;
    let mut parts = dims.split(',').map(str::trim).filter(|p| !p.is_empty());
    let (rows, cols): (usize, usize) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    if parts.next().is_some() {
        return None;
    }
    let data = body.get(start..)?;
    let count = rows.checked_mul(cols)?;
    if data.len() != count.checked_mul(8)? {
        return None;
    }
    let mut values: Vec<f64> = Vec::with_capacity(count);
    // SAFETY: the vector has room for `count` values, `data` holds exactly
    // their bytes (any bit pattern is an f64), and the regions are distinct.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), values.as_mut_ptr().cast::<u8>(), data.len());
        values.set_len(count);
    }
    let shape = if fortran {
        (rows, cols).f()
    } else {
        (rows, cols).into_shape_with_order()
    };
    Array2::from_shape_vec(shape, values).ok()
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
    fn contiguous_tiles_round_trip_in_both_orders_and_other_layouts_too() {
        use ndarray::{ShapeBuilder, s};
        let c = Array2::from_shape_fn((5, 3), |(i, j)| (i * 10 + j) as f64 + 0.25);
        let f = Array2::from_shape_fn((5, 3).f(), |(i, j)| (i * 10 + j) as f64 + 0.25);
        let column = Array2::from_shape_fn((6, 1).f(), |(i, _)| i as f64);
        let row = Array2::from_shape_fn((1, 6), |(_, j)| -(j as f64));
        let empty = Array2::<f64>::zeros((0, 4).f());
        let mut reversed = c.clone();
        reversed.invert_axis(ndarray::Axis(0));
        let gaps = c.slice(s![..;2, ..]).to_owned();
        for tile in [&c, &f, &column, &row, &empty, &reversed, &gaps] {
            let bytes = encode_tile(&key(), tile).unwrap();
            let back = decode_tile(&key(), &bytes).unwrap();
            assert_eq!(&back, tile);
            // The general reader agrees on the same bytes.
            let body = &bytes[..bytes.len() - TRAILER];
            assert_eq!(&Array2::<f64>::read_npy(body).unwrap(), tile);
            if tile.len() > 1 && (tile.is_standard_layout() || tile.t().is_standard_layout()) {
                // Data starts on a 64-byte boundary.
                let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
                assert_eq!((10 + header) % 64, 0);
            }
        }
        // A body in another dtype falls back to the general reader, which
        // rejects it with the corrupt-tile error.
        let ints = ndarray::Array2::<i32>::zeros((2, 2));
        let mut body = Vec::new();
        ints.write_npy(&mut body).unwrap();
        assert!(read_contiguous(&body).is_none());
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
