//! The `Destination` trait, and delivering one batch through it.
//!
//! A batch is cut into requests within the destination's hard caps (events and bytes per
//! request). A request refused as too large (413) or for its data (400) is split in halves
//! until the refusal is narrowed to single events: those go to the DLQ with the reason, the
//! rest is delivered. A transient or configuration answer stops the batch: what was not
//! confirmed is returned, so the caller retries it or moves it to the backlog. Requests go out
//! in order, so a stream's events reach the destination in the order they were batched.

use std::future::Future;

use crate::classify::Class;

/// One rendered message, as the router published it.
pub trait Item {
    /// Serialized size, as it counts against the destination's caps.
    fn size(&self) -> usize;
}

impl Item for Vec<u8> {
    fn size(&self) -> usize {
        self.len()
    }
}

/// Per-request hard caps of a destination (Azure Logs Ingestion: 1 MB; Datadog: 5 MB and
/// 1000 entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCaps {
    pub max_events: usize,
    pub max_bytes: usize,
}

/// A destination's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub class: Class,
    /// What the destination said (status, error code, message): shown to admins.
    pub detail: String,
    /// What to fix, for configuration errors and refusals (e.g. "the IAM role lacks
    /// s3:PutObject on bucket X"); empty when there is nothing to fix.
    pub hint: String,
}

impl Answer {
    pub fn delivered(detail: impl Into<String>) -> Self {
        Answer {
            class: Class::Delivered,
            detail: detail.into(),
            hint: String::new(),
        }
    }

    pub fn new(class: Class, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Answer {
            class,
            detail: detail.into(),
            hint: hint.into(),
        }
    }

    /// The destination is misconfigured: broken until its configuration changes.
    pub fn configuration(detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Answer::new(Class::Configuration, detail, hint)
    }
}

/// What a sink implements: encoding and sending a request, and a cheap probe. Everything
/// else (batching, retry, health, backlog, DLQ) is sink-core's.
pub trait Destination<I: Item>: Send + Sync {
    fn caps(&self) -> RequestCaps;
    /// Sends `items` as one request.
    fn send(&self, items: &[I]) -> impl Future<Output = Answer> + Send;
    /// Checks that the destination works (credentials, target), without delivering events.
    fn probe(&self) -> impl Future<Output = Answer> + Send;
}

/// One answer for a request a sink sent as several calls (one object per partition or per
/// event): the worst of theirs, `None` when all were delivered. Configuration beats transient
/// (a broken destination is not retried as if it were busy), transient beats refusals (the
/// refused part is narrowed down on the retry anyway); a transient answer waits for the
/// longest `Retry-After` among them. Calls that did succeed are simply repeated on the retry:
/// an object store's conditional write then finds its object and answers delivered.
pub fn worst(answers: Vec<Answer>) -> Option<Answer> {
    let rank = |a: &Answer| match a.class {
        Class::Configuration => 4,
        Class::Transient { .. } => 3,
        Class::TooLarge => 2,
        Class::Rejected => 1,
        Class::Delivered => 0,
    };
    let longest_wait = answers
        .iter()
        .filter_map(|a| match a.class {
            Class::Transient { retry_after } => retry_after,
            _ => None,
        })
        .max();
    let mut worst = answers
        .into_iter()
        .filter(|a| a.class != Class::Delivered)
        .max_by_key(rank)?;
    if let Class::Transient { retry_after } = &mut worst.class {
        *retry_after = longest_wait;
    }
    Some(worst)
}

/// What happened to a batch, by index into it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub delivered: Vec<usize>,
    /// Refused for good, with the destination's reason: for the DLQ.
    pub rejected: Vec<(usize, String)>,
    /// Not confirmed because the destination stopped answering usefully; to retry or back up.
    pub pending: Vec<usize>,
    /// The answer that stopped the batch, if any (transient or configuration).
    pub stopped_by: Option<Answer>,
    /// Requests sent, for metrics.
    pub requests: usize,
}

pub async fn deliver<I: Item, D: Destination<I>>(destination: &D, items: &[I]) -> Outcome {
    let mut outcome = Outcome::default();
    // Ranges still to send, last one on top: pushing halves right-then-left keeps the order.
    let mut todo: Vec<std::ops::Range<usize>> = chunks(items, destination.caps())
        .into_iter()
        .rev()
        .collect();
    while let Some(range) = todo.pop() {
        let answer = destination.send(&items[range.clone()]).await;
        outcome.requests += 1;
        match answer.class {
            Class::Delivered => outcome.delivered.extend(range),
            Class::TooLarge | Class::Rejected if range.len() > 1 => {
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
            Class::TooLarge | Class::Rejected => {
                outcome.rejected.push((range.start, answer.detail))
            }
            Class::Transient { .. } | Class::Configuration => {
                outcome.pending.extend(range);
                while let Some(rest) = todo.pop() {
                    outcome.pending.extend(rest);
                }
                outcome.stopped_by = Some(answer);
            }
        }
    }
    outcome
}

/// Cuts `items` into consecutive ranges within `caps`. An item larger than `max_bytes` gets
/// a range of its own: the destination's answer (413) decides its fate.
fn chunks<I: Item>(items: &[I], caps: RequestCaps) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let size = item.size();
        if i > start && (i - start >= caps.max_events || bytes + size > caps.max_bytes) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < items.len() {
        out.push(start..items.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Duration};

    use super::*;

    #[test]
    fn the_worst_answer_decides_with_the_longest_wait() {
        let t = |s: Option<u64>| {
            Answer::new(
                Class::Transient {
                    retry_after: s.map(Duration::from_secs),
                },
                "t",
                "",
            )
        };
        let k = Answer::new(Class::Configuration, "k", "h");
        let ok = Answer::delivered("ok");
        assert_eq!(worst(vec![ok.clone(), ok.clone()]), None);
        assert_eq!(worst(vec![]), None);
        assert_eq!(
            worst(vec![ok.clone(), t(Some(2)), t(Some(9)), t(None)])
                .unwrap()
                .class,
            Class::Transient {
                retry_after: Some(Duration::from_secs(9))
            }
        );
        assert_eq!(worst(vec![t(None), k, ok.clone()]).unwrap().detail, "k");
        let r = Answer::new(Class::Rejected, "r", "");
        assert_eq!(worst(vec![r, ok]).unwrap().class, Class::Rejected);
    }

    /// An in-memory destination for the algorithm's own tests (sinks are tested against real
    /// stand-ins): refuses items that contain `reject`, refuses requests over `too_large`
    /// bytes, and answers `fail_on` to the request with that number.
    struct Recorder {
        caps: RequestCaps,
        reject: &'static str,
        too_large: usize,
        fail_on: Option<(usize, Class)>,
        requests: Mutex<Vec<Vec<String>>>,
    }

    impl Recorder {
        fn new(max_events: usize, max_bytes: usize) -> Self {
            Recorder {
                caps: RequestCaps {
                    max_events,
                    max_bytes,
                },
                reject: "\u{0}",
                too_large: usize::MAX,
                fail_on: None,
                requests: Mutex::new(Vec::new()),
            }
        }
        fn sent(&self) -> Vec<Vec<String>> {
            self.requests.lock().unwrap().clone()
        }
    }

    impl Destination<Vec<u8>> for Recorder {
        fn caps(&self) -> RequestCaps {
            self.caps
        }
        async fn send(&self, items: &[Vec<u8>]) -> Answer {
            let texts: Vec<String> = items
                .iter()
                .map(|i| String::from_utf8(i.clone()).unwrap())
                .collect();
            let n = {
                let mut r = self.requests.lock().unwrap();
                r.push(texts.clone());
                r.len()
            };
            let answer = |class, detail: &str| Answer::new(class, detail, "");
            if let Some((at, class)) = &self.fail_on
                && *at == n
            {
                return answer(class.clone(), "503 Service Unavailable");
            }
            if items.iter().map(Vec::len).sum::<usize>() > self.too_large {
                return answer(Class::TooLarge, "413 Payload Too Large");
            }
            if texts.iter().any(|t| t.contains(self.reject)) {
                return answer(Class::Rejected, "400 bad field");
            }
            answer(Class::Delivered, "200")
        }
        async fn probe(&self) -> Answer {
            Answer::delivered("200")
        }
    }

    fn items(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[tokio::test]
    async fn requests_respect_the_caps_and_keep_order() {
        let d = Recorder::new(2, 10);
        let batch = items(&["aaaa", "bbbb", "cccc", "dddddddddddd", "e"]);
        let out = deliver(&d, &batch).await;
        assert_eq!(out.delivered, vec![0, 1, 2, 3, 4]);
        assert_eq!(
            d.sent(),
            vec![
                vec!["aaaa", "bbbb"],
                vec!["cccc"],
                vec!["dddddddddddd"],
                vec!["e"]
            ]
        );
        assert_eq!(out.requests, 4);
    }

    #[tokio::test]
    async fn a_rejection_is_narrowed_to_the_event_and_the_rest_delivered() {
        let mut d = Recorder::new(100, 1000);
        d.reject = "BAD";
        let batch = items(&["a", "b", "c", "BAD", "e", "f", "g"]);
        let out = deliver(&d, &batch).await;
        assert_eq!(out.rejected, vec![(3, "400 bad field".to_string())]);
        assert_eq!(out.delivered, vec![0, 1, 2, 4, 5, 6]);
        assert!(out.pending.is_empty() && out.stopped_by.is_none());
        // Delivered in order: every request's events come after the previous request's.
        let flat: Vec<String> = d
            .sent()
            .into_iter()
            .filter(|r| !r.iter().any(|t| t == "BAD"))
            .flatten()
            .collect();
        let mut sorted = flat.clone();
        sorted.sort();
        assert_eq!(flat, sorted);
    }

    #[tokio::test]
    async fn a_413_splits_until_requests_fit() {
        let mut d = Recorder::new(100, 1000);
        d.too_large = 8;
        let batch = items(&["aaa", "bbb", "ccc", "ddd", "eeeeeeeeeeee"]);
        let out = deliver(&d, &batch).await;
        assert_eq!(out.delivered, vec![0, 1, 2, 3]);
        assert_eq!(
            out.rejected,
            vec![(4, "413 Payload Too Large".to_string())],
            "too large even alone"
        );
    }

    #[tokio::test]
    async fn a_transient_answer_stops_the_batch_and_returns_the_rest() {
        let mut d = Recorder::new(2, 1000);
        d.fail_on = Some((2, Class::Transient { retry_after: None }));
        let batch = items(&["a", "b", "c", "d", "e"]);
        let out = deliver(&d, &batch).await;
        assert_eq!(out.delivered, vec![0, 1]);
        assert_eq!(out.pending, vec![2, 3, 4]);
        assert_eq!(out.stopped_by.unwrap().detail, "503 Service Unavailable");
        assert_eq!(out.requests, 2, "nothing sent after the failure");
    }
}
