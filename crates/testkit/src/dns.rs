//! A DNS answer a test can change: what rebinding looks like to a sink (a name that resolved
//! to a permitted address when a destination was saved, and to an internal one later). Plugs
//! into the sinks' address rule (`auditstream_egress::Resolve`) and records what was asked.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

/// Every name resolves to the one current address.
#[derive(Clone)]
pub struct RebindingDns {
    answer: Arc<Mutex<IpAddr>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl RebindingDns {
    pub fn new(first: IpAddr) -> RebindingDns {
        RebindingDns {
            answer: Arc::new(Mutex::new(first)),
            asked: Arc::default(),
        }
    }

    /// From now on every name resolves to `ip`.
    pub fn answer(&self, ip: IpAddr) {
        *self.answer.lock().unwrap() = ip;
    }

    /// Whether `host` was resolved through this resolver.
    pub fn was_asked(&self, host: &str) -> bool {
        self.asked.lock().unwrap().iter().any(|h| h == host)
    }

    /// The resolver to give a sink.
    pub fn resolver(&self) -> auditstream_egress::Resolve {
        let (answer, asked) = (self.answer.clone(), self.asked.clone());
        Arc::new(move |host, port| {
            asked.lock().unwrap().push(host);
            let ip = *answer.lock().unwrap();
            Box::pin(async move { Ok(vec![SocketAddr::new(ip, port)]) })
        })
    }
}

/// The internal addresses a rebinding test moves a name to, with the word the refusal must
/// contain: another loopback address (outside an allow-listed 127.0.0.1/32) and the cloud
/// metadata address.
pub const REBIND_TARGETS: [([u8; 4], &str); 2] = [
    ([127, 0, 0, 2], "loopback"),
    ([169, 254, 169, 254], "metadata"),
];

/// Checks a sink's answer to a send after its endpoint's name moved to `ip`: a configuration
/// error that says the address rules refused it (naming the class) and where to allow it.
pub fn assert_refused_address(answer: &auditstream_sink_core::Answer, ip: IpAddr, class: &str) {
    assert_eq!(
        answer.class,
        auditstream_sink_core::classify::Class::Configuration,
        "{ip}: {answer:?}"
    );
    assert!(
        answer.detail.contains(auditstream_egress::REFUSED) && answer.detail.contains(class),
        "{ip}: {answer:?}"
    );
    assert!(answer.hint.contains("sink.allowed_networks"), "{answer:?}");
}
