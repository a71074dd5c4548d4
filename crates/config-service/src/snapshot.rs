//! The routing snapshot in pages (H5): `StreamRoutingSnapshot` sends the nodes, then the
//! streams, of one [`World`] (so every page has the same revision) in messages of at most
//! `snapshot_page_bytes`, so no tree is too large for a follower's decode limit. A node or a
//! stream larger than a page on its own gets a page of its own.
//!
//! Pages are built lazily, one at a time as the transport takes them, from the shared world:
//! a large snapshot is never held encoded in memory as a whole.

use std::{ops::Bound, sync::Arc};

use auditstream_proto::v1::{RoutingSnapshotPage, Stream};
use prost::Message;

use crate::store::World;

/// What a repeated field adds to a message besides the item: its tag and length prefix.
fn field_len(item_len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(item_len as u64) + item_len
}

/// Iterates the pages of `world`'s snapshot.
pub struct Pager {
    world: Arc<World>,
    page_bytes: usize,
    present: fn(&World, &Stream) -> Stream,
    feed_public_key: Vec<u8>,
    /// The last node id / stream id sent; `None` before the first.
    after_node: Option<String>,
    after_stream: Option<String>,
    nodes_done: bool,
    done: bool,
}

impl Pager {
    /// `present` turns a stored stream into what followers get (its connection's current
    /// version filled in).
    pub fn new(
        world: Arc<World>,
        page_bytes: usize,
        feed_public_key: Vec<u8>,
        present: fn(&World, &Stream) -> Stream,
    ) -> Pager {
        Pager {
            world,
            page_bytes: page_bytes.max(1),
            present,
            feed_public_key,
            after_node: None,
            after_stream: None,
            nodes_done: false,
            done: false,
        }
    }
}

fn after<'a, V>(
    map: &'a std::collections::BTreeMap<String, V>,
    key: &Option<String>,
) -> std::collections::btree_map::Range<'a, String, V> {
    match key {
        None => map.range::<String, _>(..),
        Some(k) => map.range::<String, _>((Bound::Excluded(k), Bound::Unbounded)),
    }
}

impl Iterator for Pager {
    type Item = RoutingSnapshotPage;

    fn next(&mut self) -> Option<RoutingSnapshotPage> {
        if self.done {
            return None;
        }
        let world = self.world.clone();
        let mut page = RoutingSnapshotPage {
            revision: world.revision,
            // Only the first page carries the key.
            feed_public_key: std::mem::take(&mut self.feed_public_key),
            ..Default::default()
        };
        let mut size = page.encoded_len() + field_len(0) /* `last` */;
        let fits = |size: usize, len: usize, empty: bool| empty || size + len <= self.page_bytes;
        if !self.nodes_done {
            for (id, node) in after(&world.nodes, &self.after_node) {
                let len = field_len(node.encoded_len());
                if !fits(size, len, page.nodes.is_empty()) {
                    return Some(page);
                }
                size += len;
                page.nodes.push(node.clone());
                self.after_node = Some(id.clone());
            }
            self.nodes_done = true;
        }
        for (id, stream) in after(&world.streams, &self.after_stream) {
            let stream = (self.present)(&world, stream);
            let len = field_len(stream.encoded_len());
            if !fits(size, len, page.nodes.is_empty() && page.streams.is_empty()) {
                return Some(page);
            }
            size += len;
            page.streams.push(stream);
            self.after_stream = Some(id.clone());
        }
        page.last = true;
        self.done = true;
        Some(page)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use auditstream_proto::v1::{Node, NodeKind};

    use super::*;

    fn world(nodes: usize, streams: usize, template: usize) -> Arc<World> {
        let mut n = BTreeMap::new();
        n.insert(
            "org".to_owned(),
            Node {
                id: "org".into(),
                kind: NodeKind::Organization as i32,
                ..Default::default()
            },
        );
        for i in 0..nodes {
            let id = format!("w{i:05}");
            n.insert(
                id.clone(),
                Node {
                    id,
                    parent_id: "org".into(),
                    kind: NodeKind::Workspace as i32,
                    name: "x".repeat(100),
                    ..Default::default()
                },
            );
        }
        let mut s = BTreeMap::new();
        for i in 0..streams {
            let id = format!("s{i:05}");
            s.insert(
                id.clone(),
                Stream {
                    id,
                    node_id: "org".into(),
                    template: "y".repeat(template),
                    ..Default::default()
                },
            );
        }
        Arc::new(World::new(7, n, BTreeMap::new(), s).unwrap())
    }

    fn present(_: &World, s: &Stream) -> Stream {
        s.clone()
    }

    #[test]
    fn pages_stay_under_the_limit_and_hold_everything_once_at_one_revision() {
        let w = world(2_000, 300, 3_000);
        let pages: Vec<_> = Pager::new(w.clone(), 64 * 1024, vec![1; 32], present).collect();
        assert!(pages.len() > 10, "{}", pages.len());
        for (i, p) in pages.iter().enumerate() {
            assert!(
                p.encoded_len() <= 64 * 1024,
                "page {i}: {}",
                p.encoded_len()
            );
            assert_eq!(p.revision, 7);
            assert_eq!(p.last, i == pages.len() - 1);
            assert_eq!(p.feed_public_key.is_empty(), i != 0);
        }
        let nodes: Vec<_> = pages.iter().flat_map(|p| p.nodes.clone()).collect();
        let streams: Vec<_> = pages.iter().flat_map(|p| p.streams.clone()).collect();
        assert_eq!(nodes, w.nodes.values().cloned().collect::<Vec<_>>());
        assert_eq!(streams, w.streams.values().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn an_item_larger_than_a_page_gets_a_page_of_its_own() {
        let w = world(0, 3, 10_000);
        let pages: Vec<_> = Pager::new(w, 1_000, vec![], present).collect();
        // The organization, then one stream per page.
        assert_eq!(pages.len(), 4, "{pages:#?}");
        assert_eq!(pages[0].nodes.len(), 1);
        assert!(pages[1..].iter().all(|p| p.streams.len() == 1));
    }

    #[test]
    fn an_empty_world_is_one_last_page() {
        let w = Arc::new(World::new(0, BTreeMap::new(), BTreeMap::new(), BTreeMap::new()).unwrap());
        let pages: Vec<_> = Pager::new(w, 1024, vec![], present).collect();
        assert_eq!(pages.len(), 1);
        assert!(pages[0].last);
    }
}
