//! What a sink crate provides: how to build a [`Destination`] from a stream's saved
//! destination and its connection (with secrets), its batching defaults, and (where the
//! destination type has such a thing) the targets a connection can reach. The runtime does
//! the rest.

use std::future::Future;

use auditstream_model::SinkType;
use auditstream_proto::v1 as pb;

use crate::{
    deliver::{Answer, Destination},
    event::Event,
};

pub trait Sink: Send + Sync + 'static {
    type Destination: Destination<Event> + 'static;

    /// The destination type this sink serves (its subjects: `audit.deliver.<type>.>`).
    const TYPE: SinkType;

    /// Builds the destination of `destination` with `connection`'s credentials. An error is
    /// a configuration answer (`Class::Configuration` with a hint): the stream is broken
    /// until its configuration changes.
    fn build(
        &self,
        destination: &pb::Destination,
        connection: &pb::Connection,
    ) -> Result<Self::Destination, Answer>;

    /// The buckets / containers `connection` reaches (ListTargets); `Err` says why not.
    fn list_targets(
        &self,
        connection: &pb::Connection,
    ) -> impl Future<Output = Result<Vec<String>, String>> + Send {
        let _ = connection;
        async move {
            Err(format!(
                "{} connections have no targets to list",
                Self::TYPE.as_str()
            ))
        }
    }
}
