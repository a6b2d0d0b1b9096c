//! Arbitrary histories that the catalogue and the gateway accept, for
//! property tests of everything downstream of ingest (feature `arbitrary`).
//!
//! The seeded population (`safeguard seed`) makes the histories we expect.
//! Real councils' data do not keep to them: a second referral while the
//! first is open, ids restated under new event ids, closures naming
//! referrals that never existed, plans with no conference, conferences with
//! no plan, facts dated before the registration or after a death,
//! corrections of corrections' targets, retractions of transfers and of
//! corrections, business times in any order. This module makes those. It
//! keeps to the subject's standing ([`crate::standing`]) as the gateway
//! does: no retraction of a registration or a joining, and no correction
//! of the council one of those or a transfer names.
//!
//! A history is drawn as plain numbers ([`Step`]s) and built into
//! CloudEvents by [`Population::events`], so proptest shrinks a failing
//! case to a few small numbers, and so the same numbers always give the
//! same events. Ids are picked from small pools on purpose: collisions,
//! dangling references and restatements are the point.

use crate::catalogue::EventType;
use crate::codes::{
    AssessmentFactor, CategoryOfAbuse, ClosureReason, ContactOutcome, CourtOrder, Disability, Ethnicity,
    PreProceedingsLetter, PreProceedingsMeeting, PreProceedingsOutcome, PrimaryNeed, ReferralSource, RelationshipRole,
    ReviewKind, SeenContext, Sex, StrategyDecision, WorkerRole,
};
use chrono::{Duration, NaiveDate};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Councils the histories use (Haringey, Islington, Leeds).
pub const COUNCILS: [&str; 3] = ["E09000014", "E09000019", "E08000035"];

/// The first business day a history may use; days are counted from it.
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2019, 1, 1).unwrap_or_default()
}

/// Business days a history spans (to the end of November 2026).
pub const DAYS: u16 = 2890;

/// One event of a subject's history, as numbers.
#[derive(Debug, Clone)]
pub struct Step {
    /// Which event type (taken modulo the subject kind's list).
    pub kind: u8,
    /// Picks ids, codes and targets.
    pub a: u8,
    pub b: u8,
    pub c: u8,
    /// Business day, counted from [`first_day`].
    pub day: u16,
    /// Minute of the day.
    pub minute: u16,
    pub flag: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), 0..DAYS, 0u16..1440, any::<bool>())
        .prop_map(|(kind, a, b, c, day, minute, flag)| Step { kind, a, b, c, day, minute, flag })
}

/// A population: councils configured, workers and children, and the order
/// their events are published in (interleaved across subjects).
#[derive(Debug, Clone)]
pub struct Population {
    /// Each child's id seed and history (its first event is the registration).
    pub children: Vec<(u128, Vec<Step>)>,
    pub workers: Vec<(u128, Vec<Step>)>,
    pub councils: Vec<Vec<Step>>,
    /// Picks the next subject to publish from, round by round.
    pub order: Vec<u8>,
}

/// Populations of up to `children` children (and a few workers and
/// councils), each child with up to `steps` events after its registration.
pub fn population(children: usize, steps: usize) -> impl Strategy<Value = Population> {
    let subject = |n: usize| (any::<u128>(), proptest::collection::vec(step(), 1..=n.max(1)));
    (
        proptest::collection::vec(subject(steps), 1..=children.max(1)),
        proptest::collection::vec(subject(4), 0..=3),
        // Every council is configured (a return needs its DfE code), and may be reconfigured.
        proptest::collection::vec(proptest::collection::vec(step(), 1..=3), COUNCILS.len()),
        proptest::collection::vec(any::<u8>(), 16..64),
    )
        .prop_map(|(children, workers, councils, order)| Population { children, workers, councils, order })
}

/// The child event types a history draws from, after the registration.
/// Amendments come twice so that they are common.
const CHILD_TYPES: &[EventType] = &[
    EventType::ChildDetailsUpdated,
    EventType::ChildTransferred,
    EventType::ChildDied,
    EventType::RelationshipRecorded,
    EventType::ContactRecorded,
    EventType::ReferralReceived,
    EventType::ReferralReceived,
    EventType::AssessmentStarted,
    EventType::AssessmentCompleted,
    EventType::StrategyDiscussionHeld,
    EventType::S47Started,
    EventType::S47Completed,
    EventType::ConferenceHeld,
    EventType::ConferenceHeld,
    EventType::CpPlanStarted,
    EventType::CpPlanCategoryChanged,
    EventType::CpPlanEnded,
    EventType::CinPlanStarted,
    EventType::CinPlanEnded,
    EventType::CinPlanReviewed,
    EventType::ChildSeen,
    EventType::ChildSeen,
    EventType::CaseAllocated,
    EventType::CaseDeallocated,
    EventType::CaseClosed,
    EventType::ConcernRaised,
    EventType::InformationShared,
    EventType::PreProceedingsStarted,
    EventType::PreProceedingsLetterSent,
    EventType::FamilyGroupMeetingOffered,
    EventType::FamilyGroupMeetingHeld,
    EventType::PreProceedingsMeetingHeld,
    EventType::PreProceedingsDecided,
    EventType::CourtApplicationFiled,
    EventType::CourtHearingHeld,
    EventType::CourtOrderMade,
    EventType::CourtProceedingsConcluded,
    EventType::RecordCorrected,
    EventType::RecordCorrected,
    EventType::RecordRetracted,
    EventType::RecordRetracted,
    EventType::RecordSealed,
    EventType::RecordUnsealed,
    EventType::ReviewOpened,
    EventType::ReviewClosed,
    EventType::AlertAcknowledged,
];

/// Amendments are child events in the catalogue: a worker's history is
/// amended by what follows it.
const WORKER_TYPES: &[EventType] = &[EventType::WorkerChanged, EventType::WorkerChanged, EventType::WorkerLeft];

fn pick<T: Copy>(list: &[T], n: u8) -> T {
    list[usize::from(n) % list.len()]
}

fn id(prefix: &str, n: u8) -> String {
    // Pools of three: ids collide and references dangle often.
    format!("{prefix}{}", n % 3)
}

fn date(day: u16) -> String {
    (first_day() + Duration::days(i64::from(day.min(DAYS)))).to_string()
}

fn time(s: &Step) -> String {
    let offset = if s.flag && s.minute.is_multiple_of(5) { "+01:00" } else { "Z" };
    format!("{}T{:02}:{:02}:00{offset}", date(s.day), (s.minute / 60) % 24, s.minute % 60)
}

/// A deterministic v4-shaped UUID from a seed.
pub fn uuid_of(seed: u128) -> String {
    uuid::Builder::from_random_bytes(seed.to_be_bytes()).into_uuid().to_string()
}

/// Data for `t`, chosen by the step's numbers. `workers` are ids an
/// allocation may name (with an id that never joined among them).
fn data(t: EventType, s: &Step, workers: &[String]) -> Value {
    use EventType as T;
    let (a, b, c) = (s.a, s.b, s.c);
    let text = |what: &str| format!("{what} {a}-{b}: free text a worker wrote");
    match t {
        T::ChildRegistered => {
            let mut d = json!({
                "council": pick(&COUNCILS, a), "la_child_id": format!("L{a}{b}"),
                "sex": pick(Sex::ALL, b).code(), "ethnicity": pick(Ethnicity::ALL, c).code(),
            });
            // Born before the history, in it, or not yet born.
            let born = s.day.saturating_sub(u16::from(c) * 20);
            if s.flag {
                d["expected_birth_date"] = json!(date(s.day.saturating_add(60)));
            } else {
                d["birth_date"] = json!(date(born));
            }
            if a % 2 == 0 {
                d["disabilities"] = json!([pick(Disability::ALL, c).code()]);
            }
            if b % 3 == 0 {
                d["person"] = json!({"given_name": format!("Given{a}"), "nhs_number": "9434765919"});
            }
            d
        }
        T::ChildDetailsUpdated => match a % 4 {
            0 => json!({"la_child_id": format!("U{b}")}),
            1 => json!({"ethnicity": pick(Ethnicity::ALL, b).code()}),
            2 => json!({"birth_date": date(s.day.saturating_sub(u16::from(b) * 30))}),
            _ => json!({"person": {"family_name": format!("Family{b}")}, "sex": pick(Sex::ALL, c).code()}),
        },
        T::ChildTransferred => json!({"council": pick(&COUNCILS, a)}),
        T::ChildDied => json!({"date": date(s.day.saturating_sub(u16::from(a % 4)))}),
        T::RelationshipRecorded => json!({"person_id": id("PER", a), "role": pick(RelationshipRole::ALL, b).code()}),
        T::ContactRecorded => {
            json!({"contact_id": id("C", a), "source": pick(ReferralSource::ALL, b).code(), "summary": text("contact"),
                   "outcome": pick(ContactOutcome::ALL, c).code()})
        }
        T::ReferralReceived => json!({
            "referral_id": id("R", a), "source": pick(ReferralSource::ALL, b).code(), "nfa": s.flag,
            "primary_need": pick(PrimaryNeed::ALL, c).code()
        }),
        T::AssessmentStarted => json!({"assessment_id": id("A", a), "referral_id": id("R", b)}),
        T::AssessmentCompleted => {
            let factors = if c % 4 == 0 {
                vec![AssessmentFactor::F21.code()]
            } else {
                let mut f: Vec<&str> =
                    vec![pick(AssessmentFactor::ALL, b).code(), pick(AssessmentFactor::ALL, c).code()];
                f.retain(|code| *code != AssessmentFactor::F21.code());
                f.dedup();
                if f.is_empty() {
                    f.push(AssessmentFactor::ALL[0].code());
                }
                f
            };
            json!({"assessment_id": id("A", a), "factors": factors, "child_seen": s.flag, "needs_support": b % 2 == 0})
        }
        T::StrategyDiscussionHeld => json!({
            "discussion_id": id("SD", a), "referral_id": id("R", b), "agencies": ["police", "health"],
            "decision": pick(StrategyDecision::ALL, c).code()
        }),
        T::S47Started => {
            let mut d = json!({"s47_id": id("S", a), "referral_id": id("R", b)});
            if s.flag {
                d["discussion_id"] = json!(id("SD", c));
            }
            d
        }
        T::S47Completed => json!({"s47_id": id("S", a), "icpc_required": s.flag}),
        T::ConferenceHeld => match b % 3 {
            0 => json!({"conference_id": id("CC", a), "kind": "initial", "s47_id": id("S", c),
                        "outcome": if s.flag { "plan" } else { "no_plan" }}),
            1 => json!({"conference_id": id("CC", a), "kind": "transfer_in",
                        "outcome": if s.flag { "plan" } else { "no_plan" }}),
            _ => json!({"conference_id": id("CC", a), "kind": "review", "plan_id": id("P", c),
                        "outcome": if s.flag { "continue" } else { "end" }}),
        },
        T::CpPlanStarted => json!({"plan_id": id("P", a), "conference_id": id("CC", b),
                                   "category": pick(CategoryOfAbuse::ALL, c).code()}),
        T::CpPlanCategoryChanged => json!({"plan_id": id("P", a), "category": pick(CategoryOfAbuse::ALL, c).code()}),
        T::CpPlanEnded => {
            let mut d = json!({"plan_id": id("P", a)});
            if s.flag {
                d["reason"] = json!(text("plan ended"));
            }
            d
        }
        T::CinPlanStarted => json!({"plan_id": id("CIN", a), "referral_id": id("R", b)}),
        T::CinPlanEnded | T::CinPlanReviewed => json!({"plan_id": id("CIN", a)}),
        T::ChildSeen => {
            json!({"seen_by": id("W", a), "seen_alone": s.flag, "context": pick(SeenContext::ALL, b).code()})
        }
        T::CaseAllocated => json!({"worker_id": &workers[usize::from(a) % workers.len()], "team_id": id("T", b)}),
        T::CaseDeallocated => json!({"worker_id": &workers[usize::from(a) % workers.len()]}),
        T::CaseClosed => json!({"referral_id": id("R", a), "reason": pick(ClosureReason::ALL, b).code()}),
        T::ConcernRaised => {
            let mut d = json!({"concern_id": id("CON", a), "summary": text("concern")});
            if s.flag {
                d["category"] = json!(pick(CategoryOfAbuse::ALL, b).code());
            }
            d
        }
        T::InformationShared => json!({"with_agency": "police", "purpose": text("purpose")}),
        T::PreProceedingsStarted | T::FamilyGroupMeetingOffered | T::FamilyGroupMeetingHeld => {
            json!({"pre_proceedings_id": id("PP", a)})
        }
        T::PreProceedingsLetterSent => {
            json!({"pre_proceedings_id": id("PP", a), "letter": pick(PreProceedingsLetter::ALL, b).code()})
        }
        T::PreProceedingsMeetingHeld => {
            json!({"pre_proceedings_id": id("PP", a), "kind": pick(PreProceedingsMeeting::ALL, b).code()})
        }
        T::PreProceedingsDecided => {
            json!({"pre_proceedings_id": id("PP", a), "outcome": pick(PreProceedingsOutcome::ALL, b).code()})
        }
        T::CourtApplicationFiled => {
            let mut d = json!({"proceedings_id": id("PR", a), "kind": if s.flag { "care" } else { "supervision" },
                               "court": "Family Court"});
            if s.flag {
                d["pre_proceedings_id"] = json!(id("PP", b));
            }
            d
        }
        T::CourtHearingHeld => json!({"proceedings_id": id("PR", a)}),
        T::CourtOrderMade => json!({"proceedings_id": id("PR", a), "order": pick(CourtOrder::ALL, b).code()}),
        T::CourtProceedingsConcluded => json!({"proceedings_id": id("PR", a)}),
        T::RecordSealed | T::RecordUnsealed => json!({"reason": text("seal")}),
        T::ReviewOpened => json!({"review_id": id("REV", a), "kind": pick(ReviewKind::ALL, b).code(),
                                  "reviewers": ["panel-reviewer"]}),
        T::ReviewClosed => json!({"review_id": id("REV", a)}),
        // An id of no alert as often as not: the read side must take both.
        T::AlertAcknowledged => {
            let mut d = json!({"alert_id": uuid::Uuid::from_u128(1 + u128::from(a % 4)).to_string()});
            if s.flag {
                d["note"] = json!(text("note"));
            }
            d
        }
        T::WorkerJoined => json!({
            "council": pick(&COUNCILS, a), "team_id": id("T", b), "role": pick(WorkerRole::ALL, c).code(),
            "fte": if s.flag { 1.0 } else { 0.5 }, "agency_staff": a % 4 == 0
        }),
        T::WorkerChanged => match a % 3 {
            0 => json!({"team_id": id("T", b)}),
            1 => json!({"role": pick(WorkerRole::ALL, b).code()}),
            _ => json!({"fte": 0.8}),
        },
        T::WorkerLeft => json!({}),
        T::CouncilConfigured => {
            let mut d = json!({"effective_from": date(s.day), "population_0_17": 20_000 + u64::from(a) * 500});
            if s.flag {
                d["dfe_la_code"] = json!(format!("{:03}", 200 + u16::from(b)));
                d["visit_interval_days"] = json!(1 + u32::from(c) % 60);
                d["assessment_timescale_days"] = json!(45);
                d["caseload_threshold"] = json!(1 + u32::from(b % 30));
                d["funded_social_worker_fte"] = json!(f64::from(a) + 0.5);
                d["pattern_events"] = json!(2 + u32::from(c) % 4);
                d["acknowledge_within_days"] = json!(1 + u32::from(b) % 3);
            }
            d
        }
        // Amendments are built by `Subject::next`, which knows the history.
        T::RecordCorrected | T::RecordRetracted => json!({}),
    }
}

/// A subject's events as they are built, for amendments to name.
struct Built {
    subject: String,
    events: Vec<(String, EventType)>,
    /// The council each registration, joining and transfer named, by id:
    /// a correction of one keeps it.
    councils: std::collections::HashMap<String, Value>,
}

impl Built {
    fn event(&mut self, n: &mut u64, t: EventType, s: &Step, data: Value) -> Value {
        *n += 1;
        let id = format!("gen-{n}");
        self.events.push((id.clone(), t));
        if crate::standing::places(t) {
            self.councils.insert(id.clone(), data["council"].clone());
        }
        json!({"specversion": "1.0", "id": id, "type": t.name(), "subject": self.subject, "time": time(s), "data": data})
    }

    /// The step as an event of `t`; an amendment names one of the
    /// subject's earlier originals (a correction's data is drawn for the
    /// type it corrects, with a new business time now and then).
    fn next(&mut self, n: &mut u64, t: EventType, s: &Step, workers: &[String]) -> Value {
        let originals: Vec<(String, EventType)> = self.events.iter().filter(|(_, t)| !t.amends()).cloned().collect();
        let data = match t {
            EventType::RecordCorrected => {
                let (target, target_type) = originals[usize::from(s.b) % originals.len()].clone();
                let mut corrected = data(target_type, s, workers);
                if let Some(council) = self.councils.get(&target) {
                    corrected["council"] = council.clone();
                }
                let mut d = json!({"corrects": target, "reason": "keyed wrongly", "data": corrected});
                if s.flag {
                    d["time"] = json!(time(&Step { day: s.day / 2, ..s.clone() }));
                }
                d
            }
            EventType::RecordRetracted => {
                // Any earlier event but a retraction (which cannot be
                // amended) or what placed the subject (which stays):
                // transfers and corrections included.
                let targets: Vec<&(String, EventType)> = self
                    .events
                    .iter()
                    .filter(|(_, t)| {
                        !matches!(t, EventType::RecordRetracted | EventType::ChildRegistered | EventType::WorkerJoined)
                    })
                    .collect();
                if targets.is_empty() {
                    // Nothing that may be retracted yet: a correction instead.
                    return self.next(n, EventType::RecordCorrected, s, workers);
                }
                let (target, _) = targets[usize::from(s.b) % targets.len()].clone();
                json!({"retracts": target, "reason": "entered on the wrong record"})
            }
            other => data(other, s, workers),
        };
        self.event(n, t, s, data)
    }
}

impl Population {
    /// The worker ids allocations may name: the workers', and one that never joined.
    pub fn worker_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.workers.iter().map(|(seed, _)| uuid_of(*seed)).collect();
        ids.push(uuid_of(u128::MAX / 3));
        ids
    }

    /// The child ids, in the order of [`Population::children`].
    pub fn child_ids(&self) -> Vec<String> {
        self.children.iter().map(|(seed, _)| uuid_of(*seed)).collect()
    }

    /// Every event, in publish order: each subject's events in their own
    /// order, subjects interleaved by [`Population::order`].
    pub fn events(&self) -> Vec<Value> {
        let workers = self.worker_ids();
        let mut n = 0u64;
        let mut queues: Vec<std::collections::VecDeque<Value>> = Vec::new();

        for (i, steps) in self.councils.iter().enumerate() {
            let mut b = Built {
                subject: COUNCILS[i % COUNCILS.len()].to_owned(),
                events: Vec::new(),
                councils: Default::default(),
            };
            let mut q = std::collections::VecDeque::new();
            for (j, s) in steps.iter().enumerate() {
                // The first configuration is complete: later ones change some settings.
                let s = if j == 0 { Step { flag: true, ..s.clone() } } else { s.clone() };
                let d = data(EventType::CouncilConfigured, &s, &workers);
                q.push_back(b.event(&mut n, EventType::CouncilConfigured, &s, d));
            }
            queues.push(q);
        }
        let mut seen = std::collections::HashSet::new();
        for (seed, steps) in &self.workers {
            let subject = uuid_of(*seed);
            if !seen.insert(subject.clone()) {
                continue;
            }
            let mut b = Built { subject, events: Vec::new(), councils: Default::default() };
            let mut q = std::collections::VecDeque::new();
            q.push_back(b.event(
                &mut n,
                EventType::WorkerJoined,
                &steps[0],
                data(EventType::WorkerJoined, &steps[0], &workers),
            ));
            for s in &steps[1..] {
                q.push_back(b.next(&mut n, pick(WORKER_TYPES, s.kind), s, &workers));
            }
            queues.push(q);
        }
        for (seed, steps) in &self.children {
            let subject = uuid_of(*seed);
            if !seen.insert(subject.clone()) {
                continue;
            }
            let mut b = Built { subject, events: Vec::new(), councils: Default::default() };
            let mut q = std::collections::VecDeque::new();
            let reg = &steps[0];
            q.push_back(b.event(
                &mut n,
                EventType::ChildRegistered,
                reg,
                data(EventType::ChildRegistered, reg, &workers),
            ));
            for s in &steps[1..] {
                q.push_back(b.next(&mut n, pick(CHILD_TYPES, s.kind), s, &workers));
            }
            queues.push(q);
        }

        let mut out = Vec::with_capacity(queues.iter().map(std::collections::VecDeque::len).sum());
        let mut turn = 0usize;
        while queues.iter().any(|q| !q.is_empty()) {
            let pick_at = usize::from(self.order[turn % self.order.len()]) + turn;
            turn += 1;
            let live: Vec<usize> = (0..queues.len()).filter(|i| !queues[*i].is_empty()).collect();
            let q = live[pick_at % live.len()];
            // A run of one to three events from the same subject.
            for _ in 0..=(pick_at % 3) {
                if let Some(e) = queues[q].pop_front() {
                    out.push(e);
                }
            }
        }
        out
    }
}

/// The data of each of `events` (CloudEvents as a publisher sends them, in
/// publication order) in the form the stream stores it, as the gateway
/// would store it for publisher `source`: a correction's data read as the
/// event it corrects, then every personal field sealed under a fixed test
/// key with the place it is bound to. So folds downstream can be tested on
/// exactly the form they read in production, without a gateway. An event
/// the catalogue refuses gives `None`.
pub fn stored_data(events: &[Value], source: &str) -> Vec<Option<crate::EventData>> {
    use crate::EventData;
    use crate::privacy::{DataKey, seal_fields};
    let key = DataKey::from_bytes([7; 32]);
    let mut types: std::collections::HashMap<(String, String), EventType> = std::collections::HashMap::new();
    let mut nonce = 0u64;
    events
        .iter()
        .map(|e| {
            let t = EventType::from_name(e["type"].as_str()?)?;
            let subject = e["subject"].as_str()?.to_owned();
            let id = e["id"].as_str()?.to_owned();
            let mut data = EventData::parse(t, &e["data"], "/data", &mut crate::Problems::new())?;
            if let EventData::RecordCorrected(c) = &mut data {
                let corrected = *types.get(&(subject.clone(), c.corrects.as_str().to_owned()))?;
                c.resolve(corrected, "/data").ok()?;
            }
            types.insert((subject.clone(), id.clone()), t);
            let mut doc = json!({ "data": serde_json::to_value(&data).ok()? });
            seal_fields(&mut doc, &crate::personal_pointers(&data, "/data"), &key, (&subject, source, &id), || {
                nonce += 1;
                let mut n = [0u8; 24];
                n[..8].copy_from_slice(&nonce.to_be_bytes());
                n
            });
            EventData::parse_stored(t, &doc["data"]).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::parse_received;
    use chrono::{DateTime, Utc};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").map(|t| t.to_utc()).unwrap_or_default()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Every event the generator makes passes the gateway's validation
        /// (the checks a history needs, such as amendments naming earlier
        /// events, are the gateway's and are tested through it).
        #[test]
        fn every_generated_event_is_catalogue_valid(p in population(6, 30)) {
            for e in p.events() {
                if let Err(problems) = parse_received(&e, now()) {
                    prop_assert!(false, "{e}: {problems}");
                }
            }
        }
    }
}
