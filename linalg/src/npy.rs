//! Whole matrices in `.npy` files, the format numpy's `np.save` writes and
//! `np.load` reads.
//!
//! [`NpyMatrix`] maps a file into memory and copies it out tile by tile, so a
//! matrix is held once, as tiles: the pages of the file that have been copied
//! are handed back to the kernel as the reader moves on. C and Fortran order,
//! little- and big-endian `float64` are read as they are; `float32` is
//! converted (and says so); every other element type, a header that is not
//! `.npy`, a truncated file, an array that is not 2-D and a NaN or infinity
//! are errors that say what is wrong and where.
//!
//! [`write_matrix`] and [`write_vector`] stream a result to a new file tile
//! row by tile row and make it visible under its name only once it is
//! complete, so a failed write never leaves a partial file behind, and an
//! existing file is replaced only when the caller asks for it. The `stage_*`
//! functions split that in two, so that several results become visible only
//! once all of them are written ([`Staged::commit`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, UncheckedAdvice};
use ndarray::Array2;

use crate::tile::{self, Tile};
use crate::{BlockMatrix, LinalgError, TileLayout};

/// What is wrong with a `.npy` file, or with reading or writing one. Each
/// variant's message completes the sentence "cannot read FILE: …".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The operating system refused an operation on the file.
    #[error("{action} failed: {source}")]
    Io {
        /// What was being done (`open`, `map`, `create`, `write`, `rename`…).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the `.npy` magic string.
    #[error(
        "it is not a .npy file (it does not start with \\x93NUMPY); save the array with numpy.save"
    )]
    NotNpy,
    /// A format version this reader does not know.
    #[error("its .npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)")]
    Version {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The header dictionary cannot be parsed.
    #[error("its .npy header is malformed: {detail}")]
    Header {
        /// What the parser found.
        detail: String,
    },
    /// The elements are not floating-point numbers of a supported width.
    #[error(
        "it holds {kind} values (dtype '{descr}'): a matrix must be float64 ('<f8'; float32 is converted)"
    )]
    Dtype {
        /// The dtype as the header gives it.
        descr: String,
        /// What that dtype is, in words.
        kind: String,
    },
    /// The array is not 2-D.
    #[error("it holds a {}-D array of shape {}: a matrix must be 2-D{}", shape.len(), format_shape(shape), one_d_hint(shape))]
    Dimensions {
        /// The array's shape.
        shape: Vec<usize>,
    },
    /// The array has no elements.
    #[error("it holds an empty {rows}×{cols} matrix")]
    Empty {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// The file ends before the data the header promises.
    #[error(
        "it is truncated: its header promises a {rows}×{cols} array of {width}-byte values, {expected} bytes after the header, but {actual} bytes follow it"
    )]
    Truncated {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Bytes per value.
        width: usize,
        /// Bytes of data the header promises.
        expected: u64,
        /// Bytes of data present.
        actual: u64,
    },
    /// An entry is NaN or infinite.
    #[error(
        "it holds {value} at row {row}, column {col} (counted from 0): every entry must be finite"
    )]
    NonFinite {
        /// Row of the entry.
        row: usize,
        /// Column of the entry.
        col: usize,
        /// The entry.
        value: f64,
    },
    /// The path is not a regular file (a directory, a pipe, a device).
    #[error(
        "it is not a regular file (a pipe or a device cannot be memory-mapped): save the array to a file"
    )]
    NotAFile,
    /// The destination exists and the caller did not ask to replace it.
    #[error(
        "it exists already: choose another output directory, remove it, or pass --force to replace it"
    )]
    Exists,
}

fn format_shape(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn one_d_hint(shape: &[usize]) -> String {
    match shape {
        [n] => format!(" (numpy: a.reshape({n}, 1) for a column, a.reshape(1, {n}) for a row)"),
        _ => String::new(),
    }
}

/// How the elements of a `.npy` file are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    /// 8-byte IEEE doubles, little-endian (numpy's `<f8`).
    F64Le,
    /// 8-byte IEEE doubles, big-endian (`>f8`).
    F64Be,
    /// 4-byte IEEE floats, little-endian (`<f4`), converted on reading.
    F32Le,
    /// 4-byte IEEE floats, big-endian (`>f4`), converted on reading.
    F32Be,
}

impl Element {
    fn width(self) -> usize {
        match self {
            Element::F64Le | Element::F64Be => 8,
            Element::F32Le | Element::F32Be => 4,
        }
    }

    /// Whether reading converts the values to `f64` (and may round nothing,
    /// but the caller should know the file is not `float64`).
    pub fn is_converted(self) -> bool {
        matches!(self, Element::F32Le | Element::F32Be)
    }

    /// numpy's name of the element type.
    pub fn name(self) -> &'static str {
        match self {
            Element::F64Le | Element::F64Be => "float64",
            Element::F32Le | Element::F32Be => "float32",
        }
    }

    fn parse(descr: &str) -> Result<Self, NpyError> {
        let (order, code) = match descr.as_bytes().first() {
            Some(b'<' | b'>' | b'|' | b'=') => descr.split_at(1),
            _ => ("=", descr),
        };
        let little = match order {
            "<" => true,
            ">" => false,
            _ => cfg!(target_endian = "little"),
        };
        let kind = |kind: &str| NpyError::Dtype {
            descr: descr.to_owned(),
            kind: kind.to_owned(),
        };
        let bits = |width: &str| {
            width
                .parse::<usize>()
                .map(|bytes| format!("{}-bit ", bytes * 8))
                .unwrap_or_default()
        };
        match (code.get(..1).unwrap_or(""), code.get(1..).unwrap_or("")) {
            ("f", "8") => Ok(if little {
                Element::F64Le
            } else {
                Element::F64Be
            }),
            ("f", "4") => Ok(if little {
                Element::F32Le
            } else {
                Element::F32Be
            }),
            ("f", width) => Err(kind(&format!("{}floating-point", bits(width)))),
            ("i", width) => Err(kind(&format!("{}integer", bits(width)))),
            ("u", width) => Err(kind(&format!("{}unsigned integer", bits(width)))),
            ("c", width) => Err(kind(&format!(
                "{}complex",
                width
                    .parse::<usize>()
                    .map(|bytes| format!("{}-bit ", bytes * 8))
                    .unwrap_or_default()
            ))),
            ("b", _) => Err(kind("boolean")),
            ("O", _) => Err(kind("Python object")),
            ("U" | "S", _) => Err(kind("string")),
            ("M" | "m", _) => Err(kind("date or time")),
            _ => Err(kind("unsupported")),
        }
    }
}

/// A 2-D array in a `.npy` file, mapped into memory and read tile by tile.
pub struct NpyMatrix {
    path: PathBuf,
    map: Mmap,
    data: usize,
    rows: usize,
    cols: usize,
    fortran: bool,
    element: Element,
    vector: bool,
}

impl std::fmt::Debug for NpyMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpyMatrix")
            .field("path", &self.path)
            .field("shape", &(self.rows, self.cols))
            .field("fortran_order", &self.fortran)
            .field("element", &self.element)
            .finish()
    }
}

fn read_error(path: &Path, problem: NpyError) -> LinalgError {
    LinalgError::Npy {
        action: "read",
        path: path.to_owned(),
        problem,
    }
}

fn write_error(path: &Path, problem: NpyError) -> LinalgError {
    LinalgError::Npy {
        action: "write",
        path: path.to_owned(),
        problem,
    }
}

/// A parsed header: element type, order, shape and where the data start.
struct Header {
    element: Element,
    fortran: bool,
    shape: Vec<usize>,
    data: usize,
}

impl NpyMatrix {
    /// Opens `path` and reads its header. Checks that the file is a `.npy`
    /// file holding a non-empty 2-D array of `float64` or `float32` whose data
    /// are all present; the values themselves are checked as they are read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LinalgError> {
        Self::open_with(path.as_ref(), false)
    }

    /// Like [`open`](Self::open), but also takes a 1-D array of `n` values,
    /// as an `n × 1` column (a vector of right-hand sides, say).
    pub fn open_vector_or_matrix(path: impl AsRef<Path>) -> Result<Self, LinalgError> {
        Self::open_with(path.as_ref(), true)
    }

    fn open_with(path: &Path, vector: bool) -> Result<Self, LinalgError> {
        let error = |problem| read_error(path, problem);
        let io = |action| move |source| error(NpyError::Io { action, source });
        let file = File::open(path).map_err(io("open"))?;
        let metadata = file.metadata().map_err(io("stat"))?;
        if !metadata.is_file() {
            return Err(error(NpyError::NotAFile));
        }
        if metadata.len() == 0 {
            return Err(error(NpyError::NotNpy));
        }
        // SAFETY: the map is read-only and private to this reader; another
        // process that truncates the file while it is mapped would make a
        // read fault, which no reader of a shared file can rule out.
        let map = unsafe { Mmap::map(&file) }.map_err(io("map"))?;
        let header = parse_header(&map).map_err(error)?;
        let (rows, cols) = match header.shape[..] {
            [rows, cols] => (rows, cols),
            [n] if vector => (n, 1),
            _ => {
                return Err(error(NpyError::Dimensions {
                    shape: header.shape,
                }));
            }
        };
        if rows == 0 || cols == 0 {
            return Err(error(NpyError::Empty { rows, cols }));
        }
        let width = header.element.width();
        // Sizes from a header are untrusted: none may overflow.
        let expected = rows
            .checked_mul(cols)
            .and_then(|values| values.checked_mul(width))
            .filter(|bytes| bytes.checked_add(header.data).is_some())
            .ok_or_else(|| {
                error(NpyError::Header {
                    detail: format!(
                        "its shape ({rows}, {cols}) has more values than any file can hold"
                    ),
                })
            })?;
        let actual = map.len().saturating_sub(header.data);
        if actual < expected {
            return Err(error(NpyError::Truncated {
                rows,
                cols,
                width,
                expected: expected as u64,
                actual: actual as u64,
            }));
        }
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(Self {
            path: path.to_owned(),
            map,
            data: header.data,
            rows,
            cols,
            fortran: header.fortran,
            element: header.element,
            vector: header.shape.len() == 1,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// How the values are stored.
    pub fn element(&self) -> Element {
        self.element
    }

    /// Whether the file holds a 1-D array (read as one column).
    pub fn is_vector(&self) -> bool {
        self.vector
    }

    /// Whether the array is in Fortran (column-major) order.
    pub fn is_fortran_order(&self) -> bool {
        self.fortran
    }

    /// Bytes of the data (checked against the file's length when opened).
    pub fn data_bytes(&self) -> u64 {
        (self.rows * self.cols * self.element.width()) as u64
    }

    /// The value at `(row, col)` of the array.
    fn value_at(&self, index: usize) -> f64 {
        let width = self.element.width();
        let at = self.data + index * width;
        let bytes = &self.map[at..at + width];
        match self.element {
            Element::F64Le => f64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])),
            Element::F64Be => f64::from_be_bytes(bytes.try_into().unwrap_or([0; 8])),
            Element::F32Le => f64::from(f32::from_le_bytes(bytes.try_into().unwrap_or([0; 4]))),
            Element::F32Be => f64::from(f32::from_be_bytes(bytes.try_into().unwrap_or([0; 4]))),
        }
    }

    /// Copies `count` consecutive values starting at element `index` into `out`.
    fn copy_run(&self, index: usize, out: &mut [f64]) {
        let width = self.element.width();
        let start = self.data + index * width;
        let bytes = &self.map[start..start + out.len() * width];
        match self.element {
            Element::F64Le => {
                for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                    *value = f64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                }
            }
            _ => {
                for (offset, value) in out.iter_mut().enumerate() {
                    *value = self.value_at(index + offset);
                }
            }
        }
    }

    /// Hands the pages of elements `[from, to)` back to the kernel: they were
    /// copied, and the file still holds them should anyone read them again.
    fn release(&self, from: usize, to: usize) {
        let width = self.element.width();
        let (start, end) = (self.data + from * width, self.data + to * width);
        if end > start {
            // SAFETY: the map is a read-only mapping of a file and no slice
            // into this range outlives this call; dropped pages of such a map
            // are read back from the file on the next access (memmap2 widens
            // the range to whole pages).
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }

    /// The matrix cut into `tile_rows × tile_cols` tiles, each value read
    /// once; fails on the first NaN or infinity, naming its row and column.
    pub fn read_tiles(
        &self,
        tile_rows: usize,
        tile_cols: usize,
    ) -> Result<BlockMatrix, LinalgError> {
        let layout = TileLayout::new(self.rows, self.cols, tile_rows, tile_cols)?;
        let (grid_rows, grid_cols) = layout.grid();
        let mut tiles: Vec<Option<Arc<Tile>>> = vec![None; layout.num_tiles()];
        if self.fortran {
            // Columns are contiguous: a column of tiles is one range of the file.
            for j in 0..grid_cols {
                let (c0, width) = (layout.col_offset(j), layout.tile_shape(0, j).1);
                for i in 0..grid_rows {
                    let (r0, height) = (layout.row_offset(i), layout.tile_shape(i, 0).0);
                    let mut block = tile::zeros(height, width);
                    for c in 0..width {
                        // Tiles are column-major: each column is one run.
                        if let Some(column) = block.column_mut(c).into_slice() {
                            self.copy_run((c0 + c) * self.rows + r0, column);
                        }
                    }
                    self.check_finite(&block, r0, c0)?;
                    tiles[layout.tile_index(i, j)] = Some(Arc::new(block));
                }
                self.release(c0 * self.rows, (c0 + width) * self.rows);
            }
        } else {
            let mut row = vec![0.0; self.cols];
            for i in 0..grid_rows {
                let (r0, height) = (layout.row_offset(i), layout.tile_shape(i, 0).0);
                let mut blocks: Vec<Tile> = (0..grid_cols)
                    .map(|j| tile::zeros(height, layout.tile_shape(i, j).1))
                    .collect();
                for r in 0..height {
                    self.copy_run((r0 + r) * self.cols, &mut row);
                    for (j, block) in blocks.iter_mut().enumerate() {
                        let c0 = layout.col_offset(j);
                        let width = block.ncols();
                        block
                            .row_mut(r)
                            .iter_mut()
                            .zip(&row[c0..c0 + width])
                            .for_each(|(t, v)| *t = *v);
                    }
                }
                for (j, block) in blocks.into_iter().enumerate() {
                    self.check_finite(&block, r0, layout.col_offset(j))?;
                    tiles[layout.tile_index(i, j)] = Some(Arc::new(block));
                }
                self.release(r0 * self.cols, (r0 + height) * self.cols);
            }
        }
        let tiles = tiles.into_iter().flatten().collect();
        BlockMatrix::from_tiles(layout, tiles)
    }

    /// The whole matrix, column-major (for a whole-matrix reference call).
    pub fn read_whole(&self) -> Result<Array2<f64>, LinalgError> {
        let matrix = self.read_tiles(self.rows, self.cols)?;
        let tile = Arc::clone(matrix.tile(0, 0));
        drop(matrix);
        Ok(tile::unshared(tile))
    }

    fn check_finite(&self, block: &Tile, r0: usize, c0: usize) -> Result<(), LinalgError> {
        match tile::first_non_finite(block.view()) {
            Some((r, c, value)) => Err(read_error(
                &self.path,
                NpyError::NonFinite {
                    row: r0 + r,
                    col: c0 + c,
                    value,
                },
            )),
            None => Ok(()),
        }
    }
}

/// Parses the magic string, version and header dictionary of a `.npy` file.
fn parse_header(bytes: &[u8]) -> Result<Header, NpyError> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let truncated_header = || NpyError::Header {
        detail: "the file ends inside the header".into(),
    };
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(truncated_header()),
    };
    let (length, start) = match major {
        1 => {
            let b = bytes.get(8..10).ok_or_else(truncated_header)?;
            (usize::from(u16::from_le_bytes([b[0], b[1]])), 10)
        }
        2 | 3 => {
            let b = bytes.get(8..12).ok_or_else(truncated_header)?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        _ => return Err(NpyError::Version { major, minor }),
    };
    let text = bytes
        .get(start..start + length)
        .ok_or_else(truncated_header)?;
    let text = std::str::from_utf8(text).map_err(|_| NpyError::Header {
        detail: "the header is not text".into(),
    })?;
    let dict = literal::parse_dict(text).map_err(|detail| NpyError::Header { detail })?;
    let field = |name: &str| {
        dict.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
            .ok_or_else(|| NpyError::Header {
                detail: format!("it has no '{name}' entry"),
            })
    };
    let element = match field("descr")? {
        literal::Value::Str(descr) => Element::parse(descr)?,
        literal::Value::List => {
            return Err(NpyError::Dtype {
                descr: "[…]".into(),
                kind: "structured (record)".into(),
            });
        }
        other => {
            return Err(NpyError::Header {
                detail: format!("'descr' is {other:?}, not a string"),
            });
        }
    };
    let fortran = match field("fortran_order")? {
        literal::Value::Bool(value) => *value,
        other => {
            return Err(NpyError::Header {
                detail: format!("'fortran_order' is {other:?}, not True or False"),
            });
        }
    };
    let shape = match field("shape")? {
        literal::Value::Tuple(shape) => shape.clone(),
        other => {
            return Err(NpyError::Header {
                detail: format!("'shape' is {other:?}, not a tuple of integers"),
            });
        }
    };
    Ok(Header {
        element,
        fortran,
        shape,
        data: start + length,
    })
}

/// The few Python literals a `.npy` header dictionary holds.
mod literal {
    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Value {
        Str(String),
        Bool(bool),
        Tuple(Vec<usize>),
        /// A list (a structured dtype's fields); its contents do not matter here.
        List,
    }

    struct Cursor<'a> {
        text: &'a [u8],
        at: usize,
    }

    impl Cursor<'_> {
        fn skip_space(&mut self) {
            while self.at < self.text.len() && self.text[self.at].is_ascii_whitespace() {
                self.at += 1;
            }
        }

        fn peek(&mut self) -> Option<u8> {
            self.skip_space();
            self.text.get(self.at).copied()
        }

        fn expect(&mut self, byte: u8) -> Result<(), String> {
            match self.peek() {
                Some(found) if found == byte => {
                    self.at += 1;
                    Ok(())
                }
                Some(found) => Err(format!(
                    "expected '{}' at offset {}, found '{}'",
                    byte as char, self.at, found as char
                )),
                None => Err(format!("expected '{}' but the header ends", byte as char)),
            }
        }

        fn string(&mut self) -> Result<String, String> {
            let quote = match self.peek() {
                Some(q @ (b'\'' | b'"')) => q,
                _ => return Err(format!("expected a string at offset {}", self.at)),
            };
            self.at += 1;
            let start = self.at;
            while self.at < self.text.len() && self.text[self.at] != quote {
                self.at += 1;
            }
            if self.at == self.text.len() {
                return Err("a string is not closed".into());
            }
            let value = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
            self.at += 1;
            Ok(value)
        }

        fn word(&mut self) -> String {
            self.skip_space();
            let start = self.at;
            while self.at < self.text.len()
                && (self.text[self.at].is_ascii_alphanumeric() || self.text[self.at] == b'_')
            {
                self.at += 1;
            }
            String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
        }

        fn value(&mut self) -> Result<Value, String> {
            match self.peek() {
                Some(b'\'' | b'"') => Ok(Value::Str(self.string()?)),
                Some(b'(') => {
                    self.at += 1;
                    let mut shape = Vec::new();
                    loop {
                        match self.peek() {
                            Some(b')') => {
                                self.at += 1;
                                return Ok(Value::Tuple(shape));
                            }
                            Some(b',') if !shape.is_empty() => self.at += 1,
                            Some(_) => {
                                let word = self.word();
                                // numpy writes Python ints; old writers added an `L`.
                                let digits = word.trim_end_matches('L');
                                let dimension = digits.parse::<usize>().map_err(|_| {
                                    format!("the shape holds {word:?}, not a dimension")
                                })?;
                                shape.push(dimension);
                            }
                            None => return Err("the shape tuple is not closed".into()),
                        }
                    }
                }
                Some(b'[') => {
                    let mut depth = 0usize;
                    while let Some(&byte) = self.text.get(self.at) {
                        self.at += 1;
                        match byte {
                            b'[' => depth += 1,
                            b']' => {
                                depth -= 1;
                                if depth == 0 {
                                    return Ok(Value::List);
                                }
                            }
                            _ => {}
                        }
                    }
                    Err("a list is not closed".into())
                }
                Some(_) => match self.word().as_str() {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    other => Err(format!("unexpected value {other:?}")),
                },
                None => Err("the header ends where a value should be".into()),
            }
        }
    }

    /// Parses `{'key': value, …}`.
    pub(super) fn parse_dict(text: &str) -> Result<Vec<(String, Value)>, String> {
        let mut cursor = Cursor {
            text: text.as_bytes(),
            at: 0,
        };
        cursor.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            match cursor.peek() {
                Some(b'}') => return Ok(entries),
                Some(b',') if !entries.is_empty() => cursor.at += 1,
                Some(_) => {
                    let key = cursor.string()?;
                    cursor.expect(b':')?;
                    let value = cursor.value()?;
                    entries.push((key, value));
                }
                None => return Err("the dictionary is not closed".into()),
            }
        }
    }
}

/// The `.npy` version 1.0 header of a C-order `float64` array of `shape`.
fn header(shape: &[usize]) -> Vec<u8> {
    let shape = match shape {
        [n] => format!("({n},)"),
        _ => format_shape(shape),
    };
    header_bytes(&format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
    ))
}

/// Magic, version 1.0, length and `text`, padded with spaces and a newline
/// so that the data start at a multiple of 64 bytes.
fn header_bytes(text: &str) -> Vec<u8> {
    let mut text = text.to_owned();
    // Magic (6) + version (2) + length (2) + text + newline, padded to 64.
    let unpadded = 10 + text.len() + 1;
    text.push_str(&" ".repeat(unpadded.div_ceil(64) * 64 - unpadded));
    text.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// Whether [`write_matrix`] and [`write_vector`] may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Refuse: an existing file is an error and stays as it is.
    #[default]
    Refuse,
    /// Replace it, atomically: readers see the old file or the new one.
    Replace,
}

/// A result written in full and synced under a temporary name next to its
/// destination, and not visible under the destination's name until
/// [`commit`](Staged::commit)ted. Dropped uncommitted, it is removed.
#[derive(Debug)]
pub struct Staged {
    temporary: PathBuf,
    destination: PathBuf,
    done: bool,
}

/// Temporary names of this process, so that two writers never share one.
static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Staged {
    /// Creates a temporary file of a name no other writer uses (it never
    /// removes one it did not create).
    fn create(destination: &Path) -> Result<(Self, BufWriter<File>), LinalgError> {
        let name = destination
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "matrix.npy".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut attempt = 0;
        loop {
            let count = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let temporary = destination.with_file_name(format!(
                ".{name}.partial-{}-{nanos}-{count}",
                std::process::id()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)
            {
                Ok(file) => {
                    let staged = Self {
                        temporary,
                        destination: destination.to_owned(),
                        done: false,
                    };
                    return Ok((staged, BufWriter::with_capacity(1 << 20, file)));
                }
                Err(error)
                    if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 =>
                {
                    attempt += 1;
                }
                Err(source) => {
                    return Err(write_error(
                        destination,
                        NpyError::Io {
                            action: "create",
                            source,
                        },
                    ));
                }
            }
        }
    }

    /// Flushes and syncs the written file.
    fn finish(self, writer: BufWriter<File>) -> Result<Self, LinalgError> {
        let error =
            |action, source| write_error(&self.destination, NpyError::Io { action, source });
        let file = writer
            .into_inner()
            .map_err(|e| error("write", e.into_error()))?;
        file.sync_all().map_err(|e| error("sync", e))?;
        Ok(self)
    }

    /// Where the file goes.
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// Makes the file visible under its destination's name, atomically:
    /// with [`Overwrite::Refuse`] only if that name is free.
    pub fn commit(mut self, overwrite: Overwrite) -> Result<PathBuf, LinalgError> {
        let error =
            |action, source| write_error(&self.destination, NpyError::Io { action, source });
        match overwrite {
            Overwrite::Replace => std::fs::rename(&self.temporary, &self.destination)
                .map_err(|e| error("rename", e))?,
            // A hard link fails if the destination exists, atomically.
            Overwrite::Refuse => match std::fs::hard_link(&self.temporary, &self.destination) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.temporary);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(write_error(&self.destination, NpyError::Exists));
                }
                // A file system without hard links: check, then rename.
                Err(_) if self.destination.symlink_metadata().is_err() => {
                    std::fs::rename(&self.temporary, &self.destination)
                        .map_err(|e| error("rename", e))?
                }
                Err(_) => return Err(write_error(&self.destination, NpyError::Exists)),
            },
        }
        self.done = true;
        Ok(self.destination.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Fails with [`NpyError::Exists`] if `path` exists and may not be replaced.
pub fn check_writable(path: &Path, overwrite: Overwrite) -> Result<(), LinalgError> {
    if overwrite == Overwrite::Refuse && path.symlink_metadata().is_ok() {
        return Err(write_error(path, NpyError::Exists));
    }
    Ok(())
}

/// Stages a `float64` `.npy` file of `shape` whose data `fill` writes in C
/// order.
fn stage_npy(
    path: &Path,
    shape: &[usize],
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<Staged, LinalgError> {
    let (staged, mut writer) = Staged::create(path)?;
    writer
        .write_all(&header(shape))
        .and_then(|()| fill(&mut writer))
        .map_err(|source| {
            write_error(
                path,
                NpyError::Io {
                    action: "write",
                    source,
                },
            )
        })?;
    staged.finish(writer)
}

/// Stages `matrix` for `path` as a C-order `float64` `.npy` file, written one
/// tile row at a time (memory: one row of the matrix).
pub fn stage_matrix(path: impl AsRef<Path>, matrix: &BlockMatrix) -> Result<Staged, LinalgError> {
    let layout = matrix.layout();
    let (grid_rows, grid_cols) = layout.grid();
    stage_npy(path.as_ref(), &[layout.rows(), layout.cols()], |writer| {
        let mut row = Vec::with_capacity(layout.cols() * 8);
        for i in 0..grid_rows {
            for r in 0..layout.tile_shape(i, 0).0 {
                row.clear();
                for j in 0..grid_cols {
                    for value in matrix.tile(i, j).row(r) {
                        row.extend_from_slice(&value.to_le_bytes());
                    }
                }
                writer.write_all(&row)?;
            }
        }
        Ok(())
    })
}

/// Stages a whole matrix for `path` as a C-order `float64` `.npy` file.
pub fn stage_array(
    path: impl AsRef<Path>,
    matrix: ndarray::ArrayView2<'_, f64>,
) -> Result<Staged, LinalgError> {
    stage_npy(path.as_ref(), &[matrix.nrows(), matrix.ncols()], |writer| {
        let mut row = Vec::with_capacity(matrix.ncols() * 8);
        for values in matrix.rows() {
            row.clear();
            for value in values {
                row.extend_from_slice(&value.to_le_bytes());
            }
            writer.write_all(&row)?;
        }
        Ok(())
    })
}

/// Stages `values` for `path` as a 1-D `float64` `.npy` file.
pub fn stage_vector(path: impl AsRef<Path>, values: &[f64]) -> Result<Staged, LinalgError> {
    stage_npy(path.as_ref(), &[values.len()], |writer| {
        values
            .iter()
            .try_for_each(|value| writer.write_all(&value.to_le_bytes()))
    })
}

/// Writes `matrix` to `path` as a C-order `float64` `.npy` file (see
/// [`stage_matrix`]): complete and synced under a temporary name, then
/// visible under `path` at once; an existing `path` is replaced only with
/// [`Overwrite::Replace`].
pub fn write_matrix(
    path: impl AsRef<Path>,
    matrix: &BlockMatrix,
    overwrite: Overwrite,
) -> Result<(), LinalgError> {
    check_writable(path.as_ref(), overwrite)?;
    stage_matrix(path, matrix)?.commit(overwrite).map(drop)
}

/// Writes a whole matrix to `path` as a C-order `float64` `.npy` file, like
/// [`write_matrix`].
pub fn write_array(
    path: impl AsRef<Path>,
    matrix: ndarray::ArrayView2<'_, f64>,
    overwrite: Overwrite,
) -> Result<(), LinalgError> {
    check_writable(path.as_ref(), overwrite)?;
    stage_array(path, matrix)?.commit(overwrite).map(drop)
}

/// Writes `values` to `path` as a 1-D `float64` `.npy` file, like [`write_matrix`].
pub fn write_vector(
    path: impl AsRef<Path>,
    values: &[f64],
    overwrite: Overwrite,
) -> Result<(), LinalgError> {
    check_writable(path.as_ref(), overwrite)?;
    stage_vector(path, values)?.commit(overwrite).map(drop)
}

#[cfg(test)]
mod tests;
