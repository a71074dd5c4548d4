//! A real 3-node JetStream cluster on loopback: three nats-server processes joined by
//! routes, each with its own client port, cluster port and store, and the same users and
//! permissions as [`crate::NatsServer`]. Nodes can be SIGKILLed and restarted on their
//! ports and stores, and the leader of a stream found, for durability tests at replicas 3.

use std::process::Child;

use async_nats::jetstream;
use auditstream_bus::permissions::{Passwords, authorization_block};

use crate::nats::{TEST_SUPERUSER_PASSWORD, free_port, read_log, service_password, spawn_server};

struct Node {
    name: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

pub struct NatsCluster {
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `size` nodes (names `n0`, `n1`, …), each routed to all the others, with
    /// `max_file_store` of JetStream store each.
    pub fn start(size: usize, max_file_store: &str) -> NatsCluster {
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster)| format!("nats-route://127.0.0.1:{cluster}"))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (port, cluster))| {
                let dir = tempfile::Builder::new()
                    .prefix("auditstream-nats-cluster-")
                    .tempdir()
                    .expect("temp dir");
                let name = format!("n{i}");
                let store = dir.path().join("jetstream");
                let conf = format!(
                    "server_name: {name}\n\
                     listen: 127.0.0.1:{port}\n\
                     max_payload: 8MB\n\
                     jetstream {{\n  store_dir: {store:?}\n  max_file_store: {max_file_store}\n  max_memory_store: 64MB\n}}\n\
                     cluster {{\n  name: auditstream-test\n  listen: 127.0.0.1:{cluster}\n  routes: [{routes}]\n}}\n",
                    routes = routes.join(", "),
                ) + &authorization_block(
                    Passwords::Given(&service_password),
                    &[(crate::TEST_SUPERUSER, TEST_SUPERUSER_PASSWORD)],
                );
                std::fs::write(dir.path().join("nats.conf"), conf).expect("write nats.conf");
                Node {
                    name,
                    port: *port,
                    dir,
                    child: None,
                }
            })
            .collect();
        let mut cluster = NatsCluster { nodes };
        // Each node waits for its routes only once it is up: start them all before waiting.
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster
    }

    /// Every node's client URL, comma-separated (clients fail over between them).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// The index of the node named `name` (as stream info names a leader).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Node `i`'s process id while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(|c| c.id())
    }

    /// SIGKILLs node `i`; its store stays for [`Self::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its ports and store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.child = Some(spawn_server(node.dir.path(), node.port));
    }

    /// A superuser client that may connect to any node.
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .user_and_password(crate::TEST_SUPERUSER.into(), TEST_SUPERUSER_PASSWORD.into())
            .connect(
                self.nodes
                    .iter()
                    .map(|n| format!("nats://127.0.0.1:{}", n.port))
                    .collect::<Vec<_>>(),
            )
            .await
            .expect("connect to the test cluster")
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.connect().await)
    }

    /// Waits until the cluster has a JetStream meta leader (streams can be created).
    pub async fn wait_jetstream(&self, js: &jetstream::Context) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while js.query_account().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no JetStream meta leader after 30s; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The index of the node leading `stream` now, once it has a leader.
    pub async fn leader_of(&self, js: &jetstream::Context, stream: &str) -> usize {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let leader = match js.get_stream(stream).await {
                Ok(mut s) => s
                    .info()
                    .await
                    .ok()
                    .and_then(|i| i.cluster.as_ref().and_then(|c| c.leader.clone())),
                Err(_) => None,
            };
            if let Some(i) = leader.as_deref().and_then(|l| self.index_of(l)) {
                return i;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{stream} has no leader after 30s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = read_log(&n.dir.path().join("nats.log"));
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                format!(
                    "--- {}\n{}",
                    n.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
