//! Who may read what: the role matrix of CONTRACT.md, decided here and
//! nowhere else. The API's handlers and the pages ask the same questions
//! of the same functions; each answer is `Ok` or the reason for a refusal,
//! in words the caller may be told. Pure: the principal and what the read
//! models say about the child or council in, a decision out.
//!
//! | role | child-level reads (chronology, export) | access log | lookups, worker caseloads | aggregates | verify |
//! |---|---|---|---|---|---|
//! | practitioner | children of its councils | no | its councils | its councils | no |
//! | reviewer | children with an open review naming it | no | no | no | no |
//! | dashboard | no | no | no | its councils | no |
//! | auditor | no | children of its councils | no | no | a child of its councils; the whole stream with `["*"]` |
//! | admin | everything | everything | everything | everything | everything |
//!
//! A sealed child is refused to all but admin, left out of lookups and of
//! worker caseloads, and still counted in aggregates.

use events::ids::{CouncilCode, PrincipalName};
use platform::principals::{Principal, Role, Scope};

/// Why a read is refused. For a child-level read it goes to the access log
/// only; the caller is told [`CHILD_REFUSED`].
pub type Refusal = String;

/// What a caller refused one child's record is told, whatever the reason.
pub const CHILD_REFUSED: &str = "this principal may not read this child's record";

/// What a child-level request wants to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The child's record: chronology, export, a place in a caseload.
    Record,
    /// Who has looked at the record, and whether its chain holds.
    Audit,
}

/// What the access rules need to know about a child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildInfo {
    pub council: Option<CouncilCode>,
    pub sealed: bool,
    /// Principals named by the child's open reviews.
    pub reviewers: Vec<PrincipalName>,
}

impl From<projections::reads::ChildAccess> for ChildInfo {
    fn from(a: projections::reads::ChildAccess) -> Self {
        Self { council: a.council, sealed: a.sealed, reviewers: a.reviewers }
    }
}

/// Aggregates (indicators, council caseloads): practitioners, dashboards and admins of the council.
pub fn may_read_aggregates(principal: &Principal, council: &CouncilCode) -> Result<(), Refusal> {
    if !(principal.has(Role::Practitioner) || principal.has(Role::Dashboard)) {
        return Err("aggregates need the practitioner, dashboard or admin role".into());
    }
    if !principal.councils.allows(council) {
        return Err(format!("council {} is outside this principal's scope", council.as_str()));
    }
    Ok(())
}

/// One child's record or audit trail.
pub fn may_read_child(principal: &Principal, child: &ChildInfo, need: Need) -> Result<(), Refusal> {
    if principal.is_admin() {
        return Ok(());
    }
    // Scope first: whether a child is sealed is itself something only
    // those otherwise entitled to the record may learn (in the access log).
    let in_scope = child.council.as_ref().is_some_and(|c| principal.councils.allows(c));
    let entitled: Result<(), Refusal> = match need {
        Need::Record => {
            let practitioner = principal.has(Role::Practitioner);
            let reviewer = principal.has(Role::Reviewer);
            if (practitioner && in_scope) || (reviewer && child.reviewers.contains(&principal.name)) {
                Ok(())
            } else {
                Err(match (practitioner, reviewer) {
                    (false, false) => "child-level reads need the practitioner, reviewer or admin role".into(),
                    (true, false) => "this child is outside this principal's councils".into(),
                    (_, true) => "no open review of this child names this principal".into(),
                })
            }
        }
        Need::Audit => match (principal.has(Role::Auditor), in_scope) {
            (true, true) => Ok(()),
            (true, false) => Err("this child is outside this principal's councils".into()),
            (false, _) => Err("access logs and verification need the auditor or admin role".into()),
        },
    };
    entitled?;
    if child.sealed {
        return Err("this child's record is sealed".into());
    }
    Ok(())
}

/// Council-wide child-level reads (returns, data-quality lists): the
/// practitioner or admin role for the council.
pub fn may_read_council_children(principal: &Principal, council: &CouncilCode) -> Result<(), Refusal> {
    let scope = ChildInfo { council: Some(council.clone()), ..ChildInfo::default() };
    if principal.has(Role::Practitioner) && may_read_child(principal, &scope, Need::Record).is_ok() {
        return Ok(());
    }
    Err(format!("council-wide child-level reads need the practitioner or admin role for council {}", council.as_str()))
}

/// Finding children by NHS number or local id: practitioners and admins.
/// (Which children found may be shown is [`may_read_child`]'s.)
pub fn may_look_up(principal: &Principal) -> Result<(), Refusal> {
    if principal.has(Role::Practitioner) { Ok(()) } else { Err("lookups need the practitioner or admin role".into()) }
}

/// Finding children by a council's own id: within the principal's councils.
pub fn may_look_up_in(principal: &Principal, council: &CouncilCode) -> Result<(), Refusal> {
    may_look_up(principal)?;
    if principal.councils.allows(council) {
        Ok(())
    } else {
        Err(format!("council {} is outside this principal's scope", council.as_str()))
    }
}

/// Whether pages offer this principal children and workers by name (a
/// search, links to a worker's cases): practitioners and admins. Anyone
/// else sees counts.
pub fn sees_children(principal: &Principal) -> bool {
    principal.has(Role::Practitioner)
}

/// Whether the start page lists the children whose open reviews name this
/// principal (a reviewer reaches children no other way).
pub fn starts_from_reviews(principal: &Principal) -> bool {
    principal.has(Role::Reviewer) && !principal.is_admin()
}

/// Whether the principal is told that a child it asked for is known to
/// the stream but parked before the read models have it: admins only
/// (anyone else learns nothing, since the council that would decide their
/// access is not known yet either).
pub fn learns_of_parked(principal: &Principal) -> bool {
    principal.is_admin()
}

/// A worker's caseload, the worker belonging to `council`.
pub fn may_read_worker(principal: &Principal, council: &CouncilCode) -> Result<(), Refusal> {
    if !principal.has(Role::Practitioner) {
        return Err("caseloads need the practitioner or admin role".into());
    }
    let scope = ChildInfo { council: Some(council.clone()), ..ChildInfo::default() };
    may_read_child(principal, &scope, Need::Record)
        .map_err(|_| "this worker is outside this principal's councils".into())
}

/// One case in a worker's caseload: left out if it is sealed or held in a
/// council outside the principal's (after a transfer).
pub fn may_see_case(principal: &Principal, council: &CouncilCode, sealed: bool) -> bool {
    principal.is_admin() || (!sealed && principal.councils.allows(council))
}

/// Whether sealed children appear in lists (lookups, quality flags): admins only.
pub fn sees_sealed(principal: &Principal) -> bool {
    principal.is_admin()
}

/// Verifying the whole stream: an auditor of every council (or admin).
pub fn may_verify_stream(principal: &Principal) -> Result<(), Refusal> {
    if !principal.has(Role::Auditor) {
        return Err("verification needs the auditor or admin role".into());
    }
    if !matches!(principal.councils, Scope::All) {
        return Err("verifying the whole stream needs an auditor of every council; name a child instead".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::principals::{Principals, token_sha256};

    fn principal(name: &str, roles: &str, councils: &str) -> Principal {
        let text = format!(
            "[[principal]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nroles = [{roles}]\ncouncils = [{councils}]\n",
            token_sha256("t")
        );
        Principals::from_text(&text).expect("valid").authenticate("t").expect("known")
    }

    const HARINGEY: &str = "\"E09000014\"";

    fn code(c: &str) -> CouncilCode {
        CouncilCode::parse(c).expect("a code")
    }

    fn child(council: &str, sealed: bool, reviewers: &[&str]) -> ChildInfo {
        ChildInfo {
            council: Some(CouncilCode::parse(council).expect("a code")),
            sealed,
            reviewers: reviewers.iter().map(|r| PrincipalName::parse(r).expect("a name")).collect(),
        }
    }

    #[test]
    fn the_role_matrix_for_one_child() {
        let haringey = child("E09000014", false, &["panel-1"]);
        let islington = child("E09000019", false, &[]);
        let practitioner = principal("p", "\"practitioner\"", HARINGEY);
        assert_eq!(may_read_child(&practitioner, &haringey, Need::Record), Ok(()));
        assert!(may_read_child(&practitioner, &islington, Need::Record).is_err());
        assert!(may_read_child(&practitioner, &haringey, Need::Audit).is_err(), "no access log for practitioners");
        let reviewer = principal("panel-1", "\"reviewer\"", "");
        assert_eq!(may_read_child(&reviewer, &haringey, Need::Record), Ok(()));
        assert!(may_read_child(&reviewer, &islington, Need::Record).is_err(), "only children whose review names it");
        let auditor = principal("a", "\"auditor\"", HARINGEY);
        assert_eq!(may_read_child(&auditor, &haringey, Need::Audit), Ok(()));
        assert!(may_read_child(&auditor, &haringey, Need::Record).is_err());
        assert!(may_read_child(&auditor, &islington, Need::Audit).is_err());
        let dashboard = principal("d", "\"dashboard\"", HARINGEY);
        assert!(may_read_child(&dashboard, &haringey, Need::Record).is_err());
        let admin = principal("root", "\"admin\"", "\"*\"");
        let sealed = child("E09000014", true, &["panel-1"]);
        assert_eq!(may_read_child(&admin, &sealed, Need::Record), Ok(()));
        // Entitlement is decided first: only those who could otherwise read
        // the record learn (in the access log) that it is sealed.
        for (p, need) in [(&practitioner, Need::Record), (&reviewer, Need::Record), (&auditor, Need::Audit)] {
            assert_eq!(may_read_child(p, &sealed, need), Err("this child's record is sealed".to_owned()));
        }
        let sealed_elsewhere = child("E09000019", true, &[]);
        assert_eq!(
            may_read_child(&practitioner, &sealed_elsewhere, Need::Record),
            Err("this child is outside this principal's councils".to_owned())
        );
        assert!(may_read_child(&auditor, &sealed, Need::Record).is_err_and(|r| !r.contains("sealed")));
    }

    #[test]
    fn aggregates_lookups_caseloads_and_verification() {
        let council = CouncilCode::parse("E09000014").expect("a code");
        let other = CouncilCode::parse("E09000019").expect("a code");
        let dashboard = principal("d", "\"dashboard\"", HARINGEY);
        assert_eq!(may_read_aggregates(&dashboard, &council), Ok(()));
        assert!(may_read_aggregates(&dashboard, &other).is_err());
        assert!(may_look_up(&dashboard).is_err());
        assert!(may_read_council_children(&dashboard, &council).is_err());
        let practitioner = principal("p", "\"practitioner\"", HARINGEY);
        assert_eq!(may_look_up(&practitioner), Ok(()));
        assert_eq!(may_read_council_children(&practitioner, &council), Ok(()));
        assert_eq!(may_read_worker(&practitioner, &code("E09000014")), Ok(()));
        assert!(may_read_worker(&practitioner, &code("E09000019")).is_err());
        assert!(may_see_case(&practitioner, &code("E09000014"), false));
        assert!(!may_see_case(&practitioner, &code("E09000014"), true), "sealed cases are left out");
        assert!(!may_see_case(&practitioner, &code("E09000019"), false), "a transferred case is left out");
        assert!(!sees_sealed(&practitioner));
        let auditor = principal("a", "\"auditor\"", HARINGEY);
        assert!(may_verify_stream(&auditor).is_err(), "one council's auditor names a child");
        assert_eq!(may_verify_stream(&principal("a", "\"auditor\"", "\"*\"")), Ok(()));
        let admin = principal("root", "\"admin\"", "\"*\"");
        assert!(sees_sealed(&admin) && may_see_case(&admin, &code("E09000019"), true));
    }
}
