//! Compact binary (postcard) and JSON encodings.
//!
//! Only the declarations travel; decoding compiles them again, so a decoded
//! graph is validated exactly like a built one and can never carry derived data
//! that disagrees with its declarations.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::dag::{Csr, Dag, DataInfo};
use crate::{DagBuilder, DagError, DataId, Operation};

#[derive(Serialize)]
struct SpecRef<'a, Op> {
    ops: &'a [Op],
    reads: &'a Csr<DataId>,
    writes: &'a Csr<DataId>,
    data: &'a [DataInfo],
    outputs: &'a [DataId],
}

#[derive(Deserialize)]
struct Spec<Op> {
    ops: Vec<Op>,
    reads: Csr<DataId>,
    writes: Csr<DataId>,
    data: Vec<DataInfo>,
    outputs: Vec<DataId>,
}

impl<Op: Serialize> Dag<Op> {
    fn spec(&self) -> SpecRef<'_, Op> {
        SpecRef {
            ops: &self.ops,
            reads: &self.reads,
            writes: &self.writes,
            data: &self.data,
            outputs: &self.outputs,
        }
    }

    /// Encodes the graph in a compact binary form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, DagError> {
        postcard::to_stdvec(&self.spec()).map_err(|e| DagError::Encode {
            format: "binary",
            source: Box::new(e),
        })
    }

    /// Encodes the graph as JSON.
    pub fn to_json(&self) -> Result<String, DagError> {
        serde_json::to_string(&self.spec()).map_err(|e| DagError::Encode {
            format: "JSON",
            source: Box::new(e),
        })
    }
}

impl<Op: Operation + DeserializeOwned> Dag<Op> {
    /// Decodes and validates a graph encoded by [`Dag::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DagError> {
        let spec: Spec<Op> = postcard::from_bytes(bytes).map_err(|e| DagError::Decode {
            format: "binary",
            source: Box::new(e),
        })?;
        Self::from_spec(spec)
    }

    /// Decodes and validates a graph encoded by [`Dag::to_json`].
    pub fn from_json(text: &str) -> Result<Self, DagError> {
        let spec: Spec<Op> = serde_json::from_str(text).map_err(|e| DagError::Decode {
            format: "JSON",
            source: Box::new(e),
        })?;
        Self::from_spec(spec)
    }

    fn from_spec(spec: Spec<Op>) -> Result<Self, DagError> {
        DagBuilder {
            ops: spec.ops,
            reads: spec.reads,
            writes: spec.writes,
            data: spec.data,
            outputs: spec.outputs,
        }
        .build()
    }
}
