//! Membership against a real PostgreSQL server (a schema of its own per test).

use super::*;
use crate::database::ScratchSchema;

fn settings(node: &str, lease_ms: u64) -> NodeSettings {
    NodeSettings {
        node: node.into(),
        url: format!("http://{node}.invalid:8080"),
        lease: Duration::from_millis(lease_ms),
        capacity: 2,
        max_sandboxes_per_tenant: 3,
    }
}

/// A scratch schema, its database, and nodes `one` and `two` joined to it (leases of a minute).
async fn two_nodes() -> (ScratchSchema, Database, Cluster, Cluster) {
    let schema = ScratchSchema::new().await;
    let db = Database::open(&schema.url).await.unwrap();
    let one = Cluster::join(db.clone(), db.clone(), settings("one", 60_000), vec![]).await.unwrap();
    let two = Cluster::join(db.clone(), db.clone(), settings("two", 60_000), vec![]).await.unwrap();
    (schema, db, one, two)
}

/// A new sandbox of `acme`'s.
fn new(id: &str) -> NewSandbox<'_> {
    NewSandbox { id, tenant: "acme", template: "python" }
}

#[tokio::test]
async fn a_node_owns_what_it_claims_and_the_others_see_it_live() {
    let (schema, _db, one, two) = two_nodes().await;
    assert!(one.is_live() && two.is_live());
    one.claim(new("sbx-a")).await.unwrap();
    assert!(one.serves("sbx-a") && !two.serves("sbx-a"));
    let owner = two.owner_of("sbx-a").await.unwrap().expect("an owner");
    assert_eq!((owner.node.as_str(), owner.url.as_str(), owner.live), ("one", "http://one.invalid:8080", true));
    assert!(matches!(two.claim(new("sbx-a")).await, Err(ClusterError::AlreadyOwned(_))));
    assert_eq!(two.owner_of("sbx-unknown").await.unwrap(), None);
    // The tenant's bound holds across nodes: three open, the fourth refused wherever it is.
    two.claim(new("sbx-b")).await.unwrap();
    one.claim(new("sbx-c")).await.unwrap();
    assert!(matches!(two.claim(new("sbx-d")).await, Err(ClusterError::TenantQuota(3))));
    two.claim(NewSandbox { id: "sbx-e", tenant: "other", template: "python" }).await.unwrap();
    let nodes = one.nodes().await.unwrap();
    let listed: Vec<(&str, bool, &[String])> =
        nodes.iter().map(|n| (n.id.as_str(), n.live, n.sandboxes.as_slice())).collect();
    let (a, c) = ("sbx-a".to_owned(), "sbx-c".to_owned());
    let (b, e) = ("sbx-b".to_owned(), "sbx-e".to_owned());
    assert_eq!(listed, [("one", true, &[a, c][..]), ("two", true, &[b, e][..])]);
    // A node that leaves is not live for the others; its sandbox stays its own.
    one.leave().await;
    assert!(!one.is_live() && !one.serves("sbx-a"));
    let owner = two.owner_of("sbx-a").await.unwrap().expect("still an owner");
    assert_eq!((owner.node.as_str(), owner.live), ("one", false));
    schema.drop_schema().await;
}

#[tokio::test]
async fn a_live_nodes_name_is_not_taken_but_a_left_or_expired_one_is_and_its_sandboxes_adopted() {
    let schema = ScratchSchema::new().await;
    let db = Database::open(&schema.url).await.unwrap();
    // A lease of 3 s renewed every 200 ms: a renewal late by more than the lease (a loaded
    // machine) would let the name go.
    let first = Cluster::join(db.clone(), db.clone(), settings("one", 3_000), vec![]).await.unwrap();
    first.claim(new("sbx-kept")).await.unwrap();
    first.claim(new("sbx-not-local")).await.unwrap();
    // Renewed while another process waits for the name: it gives up.
    let renewing = tokio::spawn({
        let first = first.clone();
        async move {
            loop {
                first.renew(0).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let taken = Cluster::join(db.clone(), db.clone(), settings("one", 3_000), vec![]).await;
    assert!(matches!(taken, Err(ClusterError::NameTaken(ref node)) if node == "one"), "{taken:?}");
    renewing.abort();
    // The process ends (its lease runs out); the next process of the node adopts what it
    // took back from disk, and only that.
    db.expire_node("one").await;
    let second = Cluster::join(db.clone(), db.clone(), settings("one", 1_000), vec!["sbx-kept".into()]).await.unwrap();
    assert!(second.serves("sbx-kept") && !second.serves("sbx-not-local"));
    let owner = second.owner_of("sbx-kept").await.unwrap().unwrap();
    assert!(owner.live, "the new incarnation owns it");
    schema.drop_schema().await;
}

#[tokio::test]
async fn a_node_whose_lease_ran_out_registers_again_and_keeps_only_what_no_other_node_took() {
    let (schema, db, one, two) = two_nodes().await;
    one.claim(new("sbx-stays")).await.unwrap();
    one.claim(new("sbx-taken")).await.unwrap();
    let before = one.membership().incarnation.clone();
    // One's lease runs out (its database was out of reach), and two takes a sandbox over.
    db.expire_node("one").await;
    db.hand_sandbox_to("sbx-taken", "two").await;
    one.renew(2).await.unwrap();
    assert_ne!(one.membership().incarnation, before, "a new incarnation");
    assert!(one.is_live() && one.serves("sbx-stays"));
    assert!(!one.serves("sbx-taken"), "a sandbox another node took stays taken");
    assert_eq!(one.membership().stale, ["sbx-taken"], "its copy here is stale: the lease task closes it");
    assert_eq!(two.owner_of("sbx-taken").await.unwrap().unwrap().node, "two");
    assert_eq!(two.owner_of("sbx-stays").await.unwrap().unwrap().node, "one");
    assert!(two.owner_of("sbx-stays").await.unwrap().unwrap().live);
    // One's registry still has its copy of the taken sandbox: what it reports of it (killed,
    // say) does not reach the row the other node owns; the owner's reports do.
    let change = |node: &str, state: &str| crate::database::RegistryChange {
        node: Some(node.into()),
        entry: serde_json::from_value(serde_json::json!({
            "id": "sbx-taken", "owner": "acme", "template": "python", "state": state,
            "checkpoints": [], "created_at_ms": 1, "at_ms": 2, "why": null,
        }))
        .unwrap(),
    };
    db.record_sandboxes(&[change("one", "killed")]).await.unwrap();
    assert_eq!(two.owner_of("sbx-taken").await.unwrap().unwrap().node, "two", "still open, still two's");
    db.record_sandboxes(&[change("two", "paused")]).await.unwrap();
    let rows = db.sandboxes(Some("acme"), None).await.unwrap();
    let taken = rows.iter().find(|row| row.id == "sbx-taken").unwrap();
    assert_eq!(taken.state, "paused");
    schema.drop_schema().await;
}

#[tokio::test]
async fn a_node_that_cannot_reach_its_database_stops_serving_before_its_lease_runs_out() {
    let schema = ScratchSchema::new().await;
    let db = Database::open(&schema.url).await.unwrap();
    let one = Cluster::join(db.clone(), db.clone(), settings("one", 60_000), vec![]).await.unwrap();
    one.claim(new("sbx-a")).await.unwrap();
    // What it believes against what the database says: it stops first.
    let lease_until_ms = one.nodes().await.unwrap()[0].lease_until_ms;
    let serving_left = one.membership().live_until.saturating_duration_since(Instant::now());
    let lease_left = lease_until_ms - crate::database::now_ms();
    assert!(
        (serving_left.as_millis() as i64) < lease_left - i64::from(60_000 / SAFETY_DIVISOR) / 2,
        "serving ends {serving_left:?} from now, the lease {lease_left} ms from now"
    );
    // Its lease time passes without a renewal (as when the database is out of reach).
    one.membership().live_until = Instant::now();
    assert!(!one.is_live() && !one.serves("sbx-a"));
    assert!(matches!(one.claim(new("sbx-b")).await, Err(ClusterError::NotLive)));
    schema.drop_schema().await;
}

#[tokio::test]
async fn a_keys_running_executions_are_bounded_across_nodes_and_a_dead_nodes_stop_counting() {
    let (schema, db, one, two) = two_nodes().await;
    assert_eq!(two.live_nodes(), 2, "counted when it joined");
    let busy = |taken: Result<ClusterSlot, ClusterError>| matches!(taken, Err(ClusterError::KeyBusy(2)));
    let first = one.take_execution_slot("key_a", 2).await.unwrap();
    let second = two.take_execution_slot("key_a", 2).await.unwrap();
    assert!(busy(one.take_execution_slot("key_a", 2).await));
    assert!(busy(two.take_execution_slot("key_a", 2).await));
    let _other_key = two.take_execution_slot("key_b", 2).await.unwrap();
    // A slot that ends stays its node's for a moment: that node reuses it, the other cannot
    // have it until it is given back.
    drop(first);
    assert!(busy(two.take_execution_slot("key_a", 2).await), "one keeps its slot a moment");
    let reused = one.take_execution_slot("key_a", 2).await.unwrap();
    drop(reused);
    tokio::spawn(one.clone().give_back_idle_slots());
    let mut given = None;
    for _ in 0..200 {
        match two.take_execution_slot("key_a", 2).await {
            Ok(slot) => {
                given = Some(slot);
                break;
            }
            Err(ClusterError::KeyBusy(_)) => tokio::time::sleep(slots::KEEP_IDLE / 10).await,
            Err(error) => panic!("{error}"),
        }
    }
    assert!(given.is_some(), "one gave its idle slot back");
    // A dead node's slots stop counting at once; what it held is forgotten.
    db.expire_node("two").await;
    let _third = one.take_execution_slot("key_a", 2).await.unwrap();
    let _fourth = one.take_execution_slot("key_a", 2).await.unwrap();
    drop(second);
    assert!(busy(one.take_execution_slot("key_a", 2).await));
    one.renew(0).await.unwrap();
    assert_eq!(one.live_nodes(), 1);
    schema.drop_schema().await;
}

#[tokio::test]
async fn the_sandboxes_of_a_node_gone_for_a_lease_are_settled_without_a_request() {
    let (schema, db, one, two) = two_nodes().await;
    for id in ["sbx-a", "sbx-b", "sbx-c"] {
        one.claim(new(id)).await.unwrap();
    }
    assert!(matches!(two.claim(new("sbx-d")).await, Err(ClusterError::TenantQuota(3))));
    let never = |_: String| async { Err::<(), String>("no hand-over to open".into()) };
    // Gone, but not for a lease yet: left alone (a restart may adopt them).
    db.expire_node("one").await;
    assert_eq!(two.reap_once(never).await.unwrap(), 0);
    // Gone for longer: without hand-overs they are lost, with why, and free the tenant's bound.
    db.expire_node_long_ago("one").await;
    assert_eq!(two.reap_once(never).await.unwrap(), 3);
    let lost = two.lost("sbx-a").await.unwrap().expect("lost");
    assert!(lost.why.unwrap().contains("without a checkpoint"));
    two.claim(new("sbx-d")).await.unwrap();
    assert_eq!(two.reap_once(never).await.unwrap(), 0, "nothing left to settle");
    schema.drop_schema().await;
}

#[tokio::test]
async fn a_sandbox_without_a_hand_over_is_kept_a_lease_for_its_node_to_come_back_then_lost() {
    let (schema, db, one, two) = two_nodes().await;
    one.claim(new("sbx-adopted")).await.unwrap();
    one.claim(new("sbx-not-adopted")).await.unwrap();
    let never = |_: String| async { Err::<(), String>("no hand-over to open".into()) };
    // One drains and leaves (a restart): its lease ends now. The other node neither takes its
    // sandboxes nor finds them lost yet.
    one.leave().await;
    assert_eq!(two.take_over("sbx-adopted", never).await.unwrap(), Some(TakeOver::Awaited));
    assert_eq!(two.lost("sbx-adopted").await.unwrap(), None);
    // Its next process adopts what it took back from disk: live again, nothing to take.
    let again = Cluster::join(db.clone(), db.clone(), settings("one", 60_000), vec!["sbx-adopted".into()]).await;
    let again = again.unwrap();
    assert!(again.serves("sbx-adopted"));
    assert_eq!(two.take_over("sbx-adopted", never).await.unwrap(), None);
    // What it did not adopt waits while it may still (it registered moments ago)...
    assert_eq!(two.take_over("sbx-not-adopted", never).await.unwrap(), Some(TakeOver::Awaited));
    // ...and is lost, with why, once its node has been gone for a lease.
    db.expire_node_long_ago("one").await;
    let taken = two.take_over("sbx-not-adopted", never).await.unwrap();
    assert!(matches!(taken, Some(TakeOver::Lost(why)) if why.contains("without a checkpoint")), "{taken:?}");
    assert!(two.lost("sbx-not-adopted").await.unwrap().is_some());
    schema.drop_schema().await;
}
