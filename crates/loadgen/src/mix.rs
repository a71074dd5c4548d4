//! Realistic events: the six event types in a configurable mix, across many organizations and
//! workspaces, each padded to a size drawn between `min_size` and `max_size` (log-uniform, so
//! most are small and a few are large, as audit logs are). Every event carries its send time
//! (`data.loadgen_sent_ns`, Unix nanoseconds) so a receiver can measure end-to-end latency.

use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde_json::{Value, json};

/// The six event types and their share of the mix (weights).
pub const DEFAULT_MIX: [(&str, u32); 6] = [
    ("job_status", 30),
    ("job_details", 15),
    ("user_activity", 15),
    ("api_platform", 25),
    ("log_event", 10),
    ("genie_conversation", 5),
];

#[derive(Debug, Clone)]
pub struct Shape {
    /// Organizations `lg-org-<first_org>` … `lg-org-<first_org + orgs - 1>`.
    pub orgs: usize,
    pub first_org: usize,
    pub workspaces_per_org: usize,
    pub min_size: usize,
    pub max_size: usize,
    pub mix: Vec<(String, u32)>,
    /// Distinguishes the ids of one run from another's.
    pub run: String,
    /// Send an `id` with every event (the producer's idempotency key: the gateway stores
    /// each alone, de-duplicated by id). Off: the gateway assigns ids (and packs the events
    /// of a request per organization); the sender learns them from the answer.
    pub producer_ids: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            orgs: 10,
            first_org: 0,
            workspaces_per_org: 10,
            min_size: 200,
            max_size: 16 * 1024,
            mix: DEFAULT_MIX
                .iter()
                .map(|(t, w)| ((*t).to_owned(), *w))
                .collect(),
            run: "lg".into(),
            producer_ids: false,
        }
    }
}

impl Shape {
    pub fn org(i: usize) -> String {
        format!("lg-org-{i}")
    }

    pub fn workspace(org: usize, ws: usize) -> String {
        format!("lg-ws-{org}-{ws}")
    }
}

/// One generated event.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Empty when the gateway assigns the id.
    pub id: String,
    pub event_type: &'static str,
    pub org_id: String,
    pub workspace_id: String,
    /// The envelope as JSON (HTTP).
    pub envelope: String,
    /// `data` alone (gRPC's `data_json`).
    pub data: String,
    pub occurred_at: String,
}

pub struct Generator {
    shape: Shape,
    rng: StdRng,
    total_weight: u32,
    seq: u64,
}

impl Generator {
    pub fn new(shape: Shape, seed: u64) -> Generator {
        assert!(shape.min_size >= 1 && shape.min_size <= shape.max_size);
        let total_weight = shape.mix.iter().map(|(_, w)| *w).sum();
        assert!(total_weight > 0, "the mix needs a weight above 0");
        Generator {
            shape,
            rng: StdRng::seed_from_u64(seed),
            total_weight,
            seq: 0,
        }
    }

    fn pick_type(&mut self) -> &'static str {
        let mut n = self.rng.random_range(0..self.total_weight);
        for (t, w) in &self.shape.mix {
            if n < *w {
                return DEFAULT_MIX
                    .iter()
                    .find(|(name, _)| name == t)
                    .map(|(name, _)| *name)
                    .unwrap_or("log_event");
            }
            n -= w;
        }
        "log_event"
    }

    fn size(&mut self) -> usize {
        let (lo, hi) = (self.shape.min_size as f64, self.shape.max_size as f64);
        if hi <= lo {
            return self.shape.min_size;
        }
        let x: f64 = self.rng.random_range(lo.ln()..=hi.ln());
        x.exp() as usize
    }

    /// The next event, stamped with `now_ns`.
    pub fn next(&mut self, now_ns: u128) -> Generated {
        self.seq += 1;
        let seq = self.seq;
        let event_type = self.pick_type();
        let org = self.shape.first_org + self.rng.random_range(0..self.shape.orgs.max(1));
        let ws = self
            .rng
            .random_range(0..self.shape.workspaces_per_org.max(1));
        let org_id = Shape::org(org);
        let workspace_id = Shape::workspace(org, ws);
        let id = if self.shape.producer_ids {
            format!("{}-{seq}", self.shape.run)
        } else {
            String::new()
        };
        let occurred_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut data = template(event_type, seq);
        data["loadgen_sent_ns"] = json!(now_ns.to_string());
        let target = self.size();
        let envelope_base = envelope(&id, event_type, &occurred_at, &org_id, &workspace_id, &data);
        if envelope_base.len() + 20 < target {
            // The padding goes where each type has free text.
            let pad = "x".repeat(target - envelope_base.len() - 20);
            data["padding"] = json!(pad);
        }
        let envelope = envelope(&id, event_type, &occurred_at, &org_id, &workspace_id, &data);
        Generated {
            id,
            event_type,
            org_id,
            workspace_id,
            data: data.to_string(),
            envelope,
            occurred_at,
        }
    }
}

fn envelope(
    id: &str,
    event_type: &str,
    occurred_at: &str,
    org_id: &str,
    workspace_id: &str,
    data: &Value,
) -> String {
    let mut envelope = json!({
        "event_type": event_type,
        "occurred_at": occurred_at,
        "org_id": org_id,
        "workspace_id": workspace_id,
        "data": data,
    });
    if !id.is_empty() {
        envelope["id"] = json!(id);
    }
    envelope.to_string()
}

/// A plausible `data` per type (the shapes of `tests/data/ingest-events.ndjson`).
fn template(event_type: &str, seq: u64) -> Value {
    let job = format!("j-{seq:012}");
    match event_type {
        "job_status" => json!({
            "id": job, "recipe_id": seq % 997, "title": "Sync new hires", "status": "succeeded",
            "started_at": "2026-11-21T10:15:00.000Z", "completed_at": "2026-11-21T10:15:02.100Z",
            "is_test": false,
            "context": {"user_id": 1234, "recipe_id": seq % 997, "recipe_name": "Sync new hires", "job_id": job}
        }),
        "job_details" => json!({
            "id": job, "recipe_id": seq % 997, "status": "failed", "error": "HTTP 500 from target",
            "context": {"user_id": 1234, "recipe_id": seq % 997, "job_id": job},
            "lines": [
                {"adapter_name": "http", "action": "post", "input": {"url": "https://example.invalid/hook"}, "output": {"status": 500}},
                {"adapter_name": "logger", "action": "log", "input": {"message": "retrying"}, "output": {}}
            ]
        }),
        "user_activity" => json!({
            "category": "recipe", "action": "stopped",
            "user": {"id": 991, "name": "Dana Admin", "email": "dana@customer.example"},
            "team": {"id": 1234, "name": "Customer"},
            "resource": {"type": "recipe", "id": seq % 997, "name": "Sync new hires"},
            "details": {"request": {"ip": "192.0.2.10", "user_agent": "Mozilla/5.0"}}
        }),
        "api_platform" => json!({
            "collection": "hr-api", "endpoint": "GET /employees", "client": "payroll-app",
            "status": 200, "duration_ms": seq % 250, "request_id": format!("r-{seq}")
        }),
        "genie_conversation" => json!({
            "genie_id": "g-77", "conversation_id": format!("c-{seq}"), "user": {"id": 991},
            "messages": [
                {"role": "user", "text": "How many jobs failed today?"},
                {"role": "genie", "text": "3 jobs failed."}
            ]
        }),
        _ => json!({
            "log_type": "recipe", "level": "error", "message": "lookup table row missing",
            "recipe_id": seq % 997
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_shape() {
        let shape = Shape {
            orgs: 3,
            workspaces_per_org: 4,
            min_size: 200,
            max_size: 16 * 1024,
            ..Shape::default()
        };
        let mut g = Generator::new(shape, 7);
        let mut types = std::collections::HashSet::new();
        let mut sizes = Vec::new();
        for _ in 0..2000 {
            let e = g.next(1);
            let v: Value = serde_json::from_str(&e.envelope).unwrap();
            // By default the gateway assigns the ids.
            assert!(e.id.is_empty() && v.get("id").is_none(), "{v}");
            assert_eq!(v["data"]["loadgen_sent_ns"], "1");
            assert!(e.workspace_id.starts_with("lg-ws-"));
            types.insert(e.event_type);
            sizes.push(e.envelope.len());
        }
        assert_eq!(types.len(), 6, "every type appears");
        let (min, max) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
        assert!(
            min < 1000 && max > 8000 && max <= 16 * 1024 + 64,
            "{min}..{max}"
        );
        let small = sizes.iter().filter(|s| **s < 2000).count();
        assert!(small > sizes.len() / 3, "log-uniform: many small events");

        let mut g = Generator::new(
            Shape {
                producer_ids: true,
                run: "r".into(),
                ..Shape::default()
            },
            7,
        );
        let ids: Vec<String> = (0..3).map(|_| g.next(1).id).collect();
        assert_eq!(ids, ["r-1", "r-2", "r-3"]);
        let v: Value = serde_json::from_str(&g.next(1).envelope).unwrap();
        assert_eq!(v["id"], "r-4");
    }
}
