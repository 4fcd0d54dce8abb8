//! Cases: idempotency keys.

use std::sync::Arc;

use super::Harness;
use crate::{NewTask, TaskQuery};

fn keyed(job: &str, key: &str) -> NewTask {
    NewTask {
        idempotency_key: Some(key.to_owned()),
        ..NewTask::new(job, "{}")
    }
}

/// Submitting twice with one key returns the first task and creates nothing.
pub async fn idempotency_key_returns_first_task(h: Harness) {
    let store = h.backend.store();
    let first = store.insert(vec![keyed("idem", "k1")]).await.unwrap()[0];
    assert!(first.created);
    let second = store.insert(vec![keyed("idem", "k1")]).await.unwrap()[0];
    assert!(!second.created);
    assert_eq!(second.id, first.id);
    let all = store
        .list(&TaskQuery {
            job: Some("idem".to_owned()),
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].idempotency_key.as_deref(), Some("k1"));
}

/// Keys are unique per job: the same key under two jobs makes two tasks.
pub async fn idempotency_key_is_per_job(h: Harness) {
    let store = h.backend.store();
    let a = store.insert(vec![keyed("idem-a", "shared")]).await.unwrap()[0];
    let b = store.insert(vec![keyed("idem-b", "shared")]).await.unwrap()[0];
    assert!(a.created && b.created);
    assert_ne!(a.id, b.id);
}

/// Within one batch, a repeated key returns the first task's id.
pub async fn idempotency_within_one_batch(h: Harness) {
    let inserted = h
        .backend
        .store()
        .insert(vec![
            keyed("idem-batch", "x"),
            keyed("idem-batch", "y"),
            keyed("idem-batch", "x"),
            NewTask::new("idem-batch", "{}"),
        ])
        .await
        .unwrap();
    assert!(inserted[0].created && inserted[1].created && inserted[3].created);
    assert!(!inserted[2].created);
    assert_eq!(inserted[2].id, inserted[0].id);
    assert_ne!(inserted[1].id, inserted[0].id);
}

/// A key stays taken after its task finishes (until the task is purged).
pub async fn idempotency_key_outlives_completion(h: Harness) {
    let first = h
        .backend
        .store()
        .insert(vec![keyed("idem-done", "k")])
        .await
        .unwrap()[0];
    let claimed = h.claim_one("idem-done").await;
    h.succeed(claimed.lease, "1").await;
    let again = h
        .backend
        .store()
        .insert(vec![keyed("idem-done", "k")])
        .await
        .unwrap()[0];
    assert!(!again.created);
    assert_eq!(again.id, first.id);
}

fn owned(owner: Option<&str>, key: &str) -> NewTask {
    NewTask {
        owner: owner.map(str::to_owned),
        ..keyed("idem-owner", key)
    }
}

/// Keys are scoped by owner: owner u2 submitting owner u1's key gets a task of its own, never
/// u1's; a task without an owner is a scope of its own; within one owner the key still returns
/// the first task, within one batch too; and records show the key as it was given.
pub async fn idempotency_key_is_per_owner(h: Harness) {
    let store = h.backend.store();
    let u1 = store.insert(vec![owned(Some("u1"), "k")]).await.unwrap()[0];
    let u2 = store.insert(vec![owned(Some("u2"), "k")]).await.unwrap()[0];
    let nobody = store.insert(vec![owned(None, "k")]).await.unwrap()[0];
    assert!(u1.created && u2.created && nobody.created);
    assert_ne!(u2.id, u1.id, "owner u2 received owner u1's task");
    assert_ne!(nobody.id, u1.id);
    assert_ne!(nobody.id, u2.id);

    let again = store
        .insert(vec![
            owned(Some("u2"), "k"),
            owned(Some("u1"), "k"),
            owned(Some("u3"), "k"),
            owned(Some("u3"), "k"),
        ])
        .await
        .unwrap();
    assert_eq!((again[0].id, again[0].created), (u2.id, false));
    assert_eq!((again[1].id, again[1].created), (u1.id, false));
    assert!(again[2].created);
    assert_eq!((again[3].id, again[3].created), (again[2].id, false));

    for (id, owner) in [(u1.id, Some("u1")), (u2.id, Some("u2")), (nobody.id, None)] {
        let task = h.get(id).await;
        assert_eq!(task.owner.as_deref(), owner);
        assert_eq!(
            task.idempotency_key.as_deref(),
            Some("k"),
            "the key is shown as given"
        );
    }
    let listed = store
        .list(&TaskQuery {
            job: Some("idem-owner".to_owned()),
            owner: Some("u2".to_owned()),
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].idempotency_key.as_deref(), Some("k"));
}

/// One rule for every caller of the store: a key or owner that is empty, too long or holds a
/// control character is refused with [`Error::InvalidInput`](crate::Error::InvalidInput), and
/// nothing of the batch is stored.
pub async fn idempotency_key_and_owner_are_checked(h: Harness) {
    let store = h.backend.store();
    let long = "x".repeat(crate::MAX_KEY_LEN + 1);
    let bad = [
        owned(Some("u1"), ""),
        owned(Some("u1"), &long),
        owned(Some("u1"), "tab\there"),
        owned(Some("u\u{1f}1"), "k"),
        owned(Some(""), "k"),
        owned(Some(&long), "k"),
    ];
    for task in bad {
        let good = owned(Some("u9"), "fine");
        let good_id = good.id;
        let answer = store.insert(vec![good, task.clone()]).await;
        assert!(
            matches!(answer, Err(crate::Error::InvalidInput(_))),
            "accepted owner {:?} with key {:?}: {answer:?}",
            task.owner,
            task.idempotency_key
        );
        assert!(
            store.get(good_id).await.unwrap().is_none(),
            "half a refused batch was stored"
        );
    }
    let longest = "y".repeat(crate::MAX_KEY_LEN);
    let ok = store
        .insert(vec![owned(Some(&longest), &longest)])
        .await
        .unwrap()[0];
    assert_eq!(
        h.get(ok.id).await.idempotency_key.as_deref(),
        Some(longest.as_str())
    );
}

/// Sixteen submits with one key at once, through two instances (as from two processes), create
/// one task: every submit gets its id, and exactly one says it created it. (Ten rounds, each
/// with a key of its own, so that a race that only sometimes goes wrong shows.)
pub async fn concurrent_idempotent_submits_create_one_task(h: Harness) {
    const SUBMITS: usize = 16;
    const ROUNDS: usize = 10;
    let other = h.open_instance().await;
    for round in 0..ROUNDS {
        let key = format!("once-{round}");
        let start = Arc::new(tokio::sync::Barrier::new(SUBMITS));
        let mut submits = Vec::new();
        for i in 0..SUBMITS {
            let store = if i % 2 == 0 { &h.backend } else { &other }.store().clone();
            let (start, key) = (start.clone(), key.clone());
            submits.push(tokio::spawn(async move {
                let task = NewTask {
                    idempotency_key: Some(key),
                    ..NewTask::new("idem-race", super::numbered(i))
                };
                // Hold a connection first, so that the submits meet at the server at once.
                store.get(crate::TaskId::new()).await.expect("get failed");
                start.wait().await;
                store.insert(vec![task]).await.expect("insert failed")[0]
            }));
        }
        let mut inserted = Vec::new();
        for submit in submits {
            inserted.push(submit.await.expect("a submit panicked"));
        }
        let id = inserted[0].id;
        assert!(
            inserted.iter().all(|i| i.id == id),
            "round {round}: every submit returns the same task: {inserted:?}"
        );
        assert_eq!(
            inserted.iter().filter(|i| i.created).count(),
            1,
            "round {round}: exactly one submit creates it: {inserted:?}"
        );
        let stored = h
            .backend
            .store()
            .list(&TaskQuery {
                job: Some("idem-race".to_owned()),
                limit: 1_000,
                ..TaskQuery::default()
            })
            .await
            .unwrap();
        let with_key: Vec<_> = stored
            .iter()
            .filter(|t| t.idempotency_key.as_deref() == Some(key.as_str()))
            .collect();
        assert_eq!(
            with_key.len(),
            1,
            "round {round}: one task stored: {with_key:?}"
        );
        assert_eq!(with_key[0].id, id);
        // The creator's parameters, not a later submit's.
        let creator = inserted.iter().position(|i| i.created).unwrap();
        super::assert_json_eq(&with_key[0].params, &super::numbered(creator));
    }
}
