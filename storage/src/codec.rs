//! Tiles on the wire and at rest: a `.npy` file (so numpy's `np.load` reads a
//! stored tile as it is; numpy ignores bytes after the array) followed by a
//! 16-byte trailer that carries a CRC-32 of the `.npy` bytes:
//! `crc32 (u32 LE) · npy length (u64 LE) · b"WKCK"`.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use ndarray::Array2;
use ndarray_npy::ReadNpyExt;

use crate::{ObjectKey, StorageError};

const MAGIC: &[u8; 4] = b"WKCK";
const TRAILER: usize = 16;

/// Encodes a tile as `.npy` plus checksum trailer. Every tile can be
/// encoded; the `Result` leaves room for values that cannot.
pub fn encode_tile(_key: &ObjectKey, tile: &Array2<f64>) -> Result<Bytes, StorageError> {
    let (rows, cols) = tile.dim();
    let layout = contiguous(tile);
    // A tile with gaps or reversed axes is written in row-major order.
    let order = layout.map_or(Order::Rows, |(order, _)| order);
    let header = npy_header(order, rows, cols);
    let mut out =
        Vec::with_capacity(header.len() + tile.len() * std::mem::size_of::<f64>() + TRAILER);
    out.extend_from_slice(&header);
    match layout {
        Some((_, values)) if cfg!(target_endian = "little") => {
            // SAFETY: f64 has no padding and any alignment suits u8; on a
            // little-endian target these are the values' little-endian bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    values.as_ptr().cast::<u8>(),
                    std::mem::size_of_val(values),
                )
            };
            out.extend_from_slice(bytes);
        }
        Some((_, values)) => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        None => tile
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
    }
    let crc = crc32fast::hash(&out);
    let len = out.len() as u64;
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(Bytes::from(out))
}

/// The length of [`encode_tile`]'s bytes, computed without encoding.
pub fn encoded_tile_len(tile: &Array2<f64>) -> u64 {
    let order = contiguous(tile).map_or(Order::Rows, |(order, _)| order);
    (npy_header_len(order, tile.nrows(), tile.ncols())
        + tile.len() * std::mem::size_of::<f64>()
        + TRAILER) as u64
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

/// How a contiguous tile lies in memory.
#[derive(Clone, Copy)]
enum Order {
    Rows,
    Columns,
}

/// A tile's order and values in memory; `None` for a tile with gaps or
/// reversed axes.
fn contiguous(tile: &Array2<f64>) -> Option<(Order, &[f64])> {
    let order = match (tile.is_standard_layout(), tile.t().is_standard_layout()) {
        (true, _) => Order::Rows,
        (false, true) => Order::Columns,
        (false, false) => return None,
    };
    Some((order, tile.as_slice_memory_order()?))
}

/// The pieces of a tile's `.npy` header text around its order and shape.
const HEADER_START: &str = "{'descr': '<f8', 'fortran_order': ";
const HEADER_SHAPE: &str = ", 'shape': (";
const HEADER_END: &str = "), }";

impl Order {
    fn word(self) -> &'static str {
        match self {
            Self::Rows => "False",
            Self::Columns => "True",
        }
    }
}

/// Bytes before the data: magic, version and header length, then the header
/// text and a newline, padded with spaces to a multiple of 64.
fn npy_header_len(order: Order, rows: usize, cols: usize) -> usize {
    let digits = |n: usize| n.checked_ilog10().unwrap_or(0) as usize + 1;
    let text = HEADER_START.len()
        + order.word().len()
        + HEADER_SHAPE.len()
        + digits(rows)
        + 2
        + digits(cols)
        + HEADER_END.len();
    (NPY_MAGIC.len() + 2 + text + 1).next_multiple_of(64)
}

/// The `.npy` magic, version, header length and header of a tile, padded so
/// that the data starts on a 64-byte boundary.
fn npy_header(order: Order, rows: usize, cols: usize) -> Vec<u8> {
    let total = npy_header_len(order, rows, cols);
    let prefix = NPY_MAGIC.len() + 2;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(NPY_MAGIC);
    // Two numbers and fixed text: far below u16::MAX.
    out.extend_from_slice(&((total - prefix) as u16).to_le_bytes());
    out.extend_from_slice(
        format!(
            "{HEADER_START}{}{HEADER_SHAPE}{rows}, {cols}{HEADER_END}",
            order.word()
        )
        .as_bytes(),
    );
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Reads a `.npy` body of the shape [`encode_tile`] writes (format 1.0,
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
    use ndarray_npy::WriteNpyExt;

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
            assert_eq!(bytes.len() as u64, encoded_tile_len(tile));
            assert_eq!(bytes.len() as u64, StoredValue::encoded_len(tile));
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
    fn header_lengths_are_computed_as_written() {
        for (rows, cols) in [
            (0, 0),
            (1, 9),
            (10, 99),
            (512, 512),
            (usize::MAX, usize::MAX),
        ] {
            for order in [Order::Rows, Order::Columns] {
                let header = npy_header(order, rows, cols);
                assert_eq!(header.len(), npy_header_len(order, rows, cols));
                assert_eq!(header.len() % 64, 0);
                assert_eq!(header.last(), Some(&b'\n'));
                let text_len = u16::from_le_bytes([header[8], header[9]]) as usize;
                assert_eq!(text_len + 10, header.len());
            }
        }
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
    /// The length of [`encode`](StoredValue::encode)'s bytes, for meters of
    /// stores that keep the value itself.
    fn encoded_len(&self) -> u64;
}

/// A [`StoredValue`] behind a pointer: what a store that lives in this
/// process keeps instead of bytes, so that readers share the value without
/// a copy (see [`ObjectStore::put_value`](crate::ObjectStore::put_value)).
pub trait SharedValue: Send + Sync + 'static {
    /// The value's bytes, as [`StoredValue::encode`] gives them.
    fn to_bytes(&self, key: &ObjectKey) -> Result<Bytes, StorageError>;
    /// Their length, as [`StoredValue::encoded_len`] gives it.
    fn byte_len(&self) -> u64;
    /// The value, for a downcast to its type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: StoredValue> SharedValue for T {
    fn to_bytes(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        self.encode(key)
    }
    fn byte_len(&self) -> u64 {
        self.encoded_len()
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
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
    fn encoded_len(&self) -> u64 {
        encoded_tile_len(self)
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
    fn encoded_len(&self) -> u64 {
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
            fn encoded_len(&self) -> u64 {
                std::mem::size_of::<$ty>() as u64
            }
        }
    )*};
}
stored_integer!(u64, i64);
