//! The identifier index: keyed digests of NHS numbers, so a lookup can find
//! a child without any table holding the number (migration 0004).
//!
//! This is the one read model that needs personal data: the projector
//! opens a child's sealed `person` fields with the child's data key,
//! digests the NHS number under the lookup key and forgets both. Keys come
//! from the caller through [`ChildKeys`] (the trait is in `events::privacy`, the key store in
//! `platform`), so this crate holds no key of its own.

use casework::facts::History;
use casework::identifiers::{NHS_NUMBER, nhs_numbers};
use events::privacy::ChildKeys;
use events::privacy::identifier_digest;
use sqlx::{Postgres, Transaction};
use std::collections::BTreeSet;

/// Rewrites the identifier rows of `children` from their histories. A child
/// in `audit.erased_child` gets none, even if a key was still in hand: the
/// erasure ([`crate::audit`]) locks this table against such a race.
pub async fn refresh(
    tx: &mut Transaction<'_, Postgres>,
    keys: &dyn ChildKeys,
    children: &BTreeSet<uuid::Uuid>,
    histories: &[(&str, &History)],
) -> Result<(), crate::store::ApplyError> {
    let ids: Vec<uuid::Uuid> = children.iter().copied().collect();
    sqlx::query("delete from child_identifier where child_id = any($1)").bind(&ids).execute(&mut **tx).await?;
    let mut rows: (Vec<uuid::Uuid>, Vec<String>) = (Vec::new(), Vec::new());
    for &(subject, history) in histories {
        let Ok(child) = subject.parse::<uuid::Uuid>() else { continue };
        if !children.contains(&child) {
            continue;
        }
        // A key store that does not answer stops the batch: the index must not silently miss a child.
        let Some(key) = keys.key(child).await.map_err(crate::store::ApplyError::Keys)? else {
            continue; // erased: nothing can be read, nothing is indexed
        };
        for number in nhs_numbers(subject, history, &key) {
            rows.0.push(child);
            rows.1.push(identifier_digest(keys.lookup_key(), NHS_NUMBER, &number));
        }
    }
    if !rows.0.is_empty() {
        sqlx::query(
            "insert into child_identifier (child_id, kind, digest)
             select c, 'nhs_number', d from unnest($1::uuid[], $2::text[]) as t(c, d)
              where not exists (select 1 from audit.erased_child e where e.child_id = t.c)
             on conflict do nothing",
        )
        .bind(&rows.0)
        .bind(&rows.1)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
