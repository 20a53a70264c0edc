//! qrank's wire messages, generated from `proto/qrank/v1/` by prost.

/// Package `qrank.v1`.
pub mod v1 {
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/qrank.v1.rs"));
}
