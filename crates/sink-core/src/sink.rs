//! What a sink crate provides: how to build a [`Destination`] from a stream's saved
//! destination and its connection (with secrets), its batching defaults, and (where the
//! destination type has such a thing) the targets a connection can reach. The runtime does
//! the rest.

use std::future::Future;

use auditstream_model::SinkType;
use auditstream_proto::v1::{self as pb, destination::Target};

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

/// The type of a destination's target.
pub fn target_type(target: &Target) -> SinkType {
    match target {
        Target::S3(_) => SinkType::S3,
        Target::AzureBlob(_) => SinkType::AzureBlob,
        Target::AzureMonitor(_) => SinkType::AzureMonitor,
        Target::Http(_) => SinkType::Http,
    }
}

/// What [`Sink::build`] answers for a destination whose target is not of the sink's type `want`
/// (a stream routed to the wrong sink) or that has no target.
pub fn wrong_target(want: SinkType, target: Option<&Target>) -> Answer {
    match target {
        Some(t) => Answer::configuration(
            format!("the destination is of type {}, not {want}", target_type(t)),
            "route this stream to a sink of its destination's type",
        ),
        None => Answer::configuration(
            "the destination has no target",
            format!("set the stream's destination (a {want} target)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_targets_are_named() {
        let s3 = Target::S3(pb::S3Target::default());
        let a = wrong_target(SinkType::Http, Some(&s3));
        assert_eq!(a.class, crate::classify::Class::Configuration);
        assert_eq!(a.detail, "the destination is of type s3, not http");
        let a = wrong_target(SinkType::AzureMonitor, None);
        assert_eq!(a.detail, "the destination has no target");
        assert!(a.hint.contains("azure_monitor"), "{a:?}");
    }
}
