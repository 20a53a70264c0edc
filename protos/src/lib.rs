//! qrank's wire messages, generated from `proto/qrank/v1/` by prost. `README.md` describes the
//! AMQP contract they travel in.

/// Package `qrank.v1`.
pub mod v1 {
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/qrank.v1.rs"));
}

/// The AMQP `content-type` of every qrank message.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// The AMQP `type` property of each message: its full protobuf name.
pub mod message_type {
    pub const RANK_JOB: &str = "qrank.v1.RankJob";
    pub const RANK_RESULT: &str = "qrank.v1.RankResult";
    pub const RANK_PROGRESS: &str = "qrank.v1.RankProgress";
    pub const GROUP_TASK: &str = "qrank.v1.GroupTask";
    pub const GROUP_ANSWER: &str = "qrank.v1.GroupAnswer";
}
