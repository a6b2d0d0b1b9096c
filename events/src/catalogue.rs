//! The v1 event catalogue: one variant per event type, one data struct per
//! variant, every field a domain type.
//!
//! [`data_struct!`] writes each struct, its `FromJson` (every problem, unknown
//! fields refused) and its `Serialize` (optional fields left out when absent)
//! from one field list, so the three cannot drift apart. Rules that span
//! fields ("21 stands alone", "a review names its plan") are plain functions
//! named after the struct's `check`.

use crate::codes::*;
use crate::fields::{Fields, FromJson, no_repeats};
use crate::ids::*;
use crate::personal::Personal;
use crate::problem::{Form, Problems, child_pointer};
use crate::schema::{self as rules, Schema};
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

macro_rules! field_type {
    (req, $t:ty) => { $t };
    (opt, $t:ty) => { Option<$t> };
}

macro_rules! read_field {
    (req, $fields:ident, $name:expr, $t:ty) => {
        $fields.required::<$t>($name)
    };
    (opt, $fields:ident, $name:expr, $t:ty) => {
        $fields.optional::<$t>($name)
    };
}

macro_rules! write_field {
    (req, $map:ident, $name:expr, $v:expr) => {
        $map.serialize_entry($name, $v)?;
    };
    (opt, $map:ident, $name:expr, $v:expr) => {
        if let Some(v) = $v {
            $map.serialize_entry($name, v)?;
        }
    };
}

macro_rules! field_value {
    (req, $v:expr) => {
        Some($v)
    };
    (opt, $v:expr) => {
        $v.as_ref()
    };
}

macro_rules! data_struct {
    (
        $(#[doc = $doc:literal])*
        $name:ident { $( $kind:ident $field:ident : $t:ty $([$lo:literal, $hi:literal])? ),* $(,)? }
        $( check $check:ident )?
        $( schema $refine:path )?
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( pub $field: field_type!($kind, $t), )*
        }

        impl FromJson for $name {
            #[allow(unused_mut, unused_variables)]
            fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
                let mut fields = Fields::open(value, at, problems)?;
                $( let $field = read_field!($kind, fields, stringify!($field), $t); )*
                if !fields.finish() {
                    return None;
                }
                let parsed = Self { $( $field: $field?, )* };
                let before = problems.len();
                $($(
                    if let Some(&v) = field_value!($kind, &parsed.$field) {
                        crate::schema::check_range(u64::from(v), ($lo, $hi), &child_pointer(at, stringify!($field)), problems);
                    }
                )?)*
                $( $check(&parsed, at, problems); )?
                if problems.len() > before {
                    return None;
                }
                Some(parsed)
            }
        }

        impl Serialize for $name {
            #[allow(unused_mut)]
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                $( write_field!($kind, map, stringify!($field), &self.$field); )*
                map.end()
            }
        }

        /// An object of exactly these fields, each with its type's schema
        /// and range; rules across fields, where a schema can say them, in
        /// the `schema` function beside the `check` that enforces them.
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            #[allow(unused_mut, unused_variables)]
            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let mut object = crate::schema::Object::new(&[$($doc),*]);
                $(
                    let mut field = generator.subschema_for::<$t>();
                    $( crate::schema::bound(&mut field, ($lo, $hi)); )?
                    object.field(stringify!($field), field, stringify!($kind) == "req");
                )*
                let mut schema = object.finish();
                $( $refine(&mut schema); )?
                schema
            }
        }
    };
}

/// What kind of thing an event's `subject` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// A child's UUID.
    Child,
    /// A worker's UUID.
    Worker,
    /// A council's ONS code.
    Council,
}

macro_rules! catalogue {
    ( $( $variant:ident = $name:literal, $subject:ident, $data:ident ; )+ ) => {
        /// Every event type of catalogue v1. The names are stable forever.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $( $variant ),+ }

        impl EventType {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The CloudEvents `type`, such as `referral.received`.
            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)+ _ => None }
            }

            /// The schema of this type's `data` (`schema`), its definitions
            /// added to `generator`.
            pub fn data_schema(self, generator: &mut schemars::SchemaGenerator) -> Schema {
                match self { $(Self::$variant => generator.subschema_for::<$data>()),+ }
            }

            /// What this type's `subject` must name.
            pub const fn subject_kind(self) -> SubjectKind {
                match self { $(Self::$variant => SubjectKind::$subject),+ }
            }
        }

        /// The typed `data` of an event.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventData { $( $variant($data) ),+ }

        impl EventData {
            pub fn event_type(&self) -> EventType {
                match self { $(Self::$variant(_) => EventType::$variant),+ }
            }

            /// Reads the data of an event of `event_type` as the stream
            /// stores it (personal fields sealed). A correction's data is
            /// left unresolved: only the subject's history knows the type of
            /// the event it corrects ([`RecordCorrected::resolve_stored`]).
            pub fn parse_stored(event_type: EventType, value: &Value) -> Result<Self, Problems> {
                let mut problems = Problems::reading(Form::Stored);
                match Self::parse(event_type, value, "/data", &mut problems) {
                    Some(data) if problems.is_empty() => Ok(data),
                    _ => Err(problems),
                }
            }

            /// Parses `value` as the data of `event_type`, recording every
            /// problem under `at`.
            pub fn parse(event_type: EventType, value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
                match event_type {
                    $( EventType::$variant => $data::from_json(value, at, problems).map(Self::$variant), )+
                }
            }
        }

        impl Serialize for EventData {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $(Self::$variant(d) => d.serialize(s)),+ }
            }
        }
    };
}

catalogue! {
    ChildRegistered = "child.registered", Child, ChildRegistered;
    ChildDetailsUpdated = "child.details_updated", Child, ChildDetailsUpdated;
    ChildTransferred = "child.transferred", Child, ChildTransferred;
    ChildDied = "child.died", Child, ChildDied;
    RelationshipRecorded = "relationship.recorded", Child, RelationshipRecorded;
    ContactRecorded = "contact.recorded", Child, ContactRecorded;
    ReferralReceived = "referral.received", Child, ReferralReceived;
    AssessmentStarted = "assessment.started", Child, AssessmentStarted;
    AssessmentCompleted = "assessment.completed", Child, AssessmentCompleted;
    StrategyDiscussionHeld = "strategy_discussion.held", Child, StrategyDiscussionHeld;
    S47Started = "s47.started", Child, S47Started;
    S47Completed = "s47.completed", Child, S47Completed;
    ConferenceHeld = "conference.held", Child, ConferenceHeld;
    CpPlanStarted = "cp_plan.started", Child, CpPlanStarted;
    CpPlanCategoryChanged = "cp_plan.category_changed", Child, CpPlanCategoryChanged;
    CpPlanEnded = "cp_plan.ended", Child, CpPlanEnded;
    CinPlanStarted = "cin_plan.started", Child, CinPlanStarted;
    CinPlanEnded = "cin_plan.ended", Child, CinPlanStep;
    CinPlanReviewed = "cin_plan.reviewed", Child, CinPlanStep;
    ChildSeen = "child.seen", Child, ChildSeen;
    CaseAllocated = "case.allocated", Child, CaseAllocated;
    CaseDeallocated = "case.deallocated", Child, CaseDeallocated;
    CaseClosed = "case.closed", Child, CaseClosed;
    ConcernRaised = "concern.raised", Child, ConcernRaised;
    InformationShared = "information.shared", Child, InformationShared;
    PreProceedingsStarted = "pre_proceedings.started", Child, PreProceedingsStep;
    PreProceedingsLetterSent = "pre_proceedings.letter_sent", Child, PreProceedingsLetterSent;
    FamilyGroupMeetingOffered = "family_group_meeting.offered", Child, PreProceedingsStep;
    FamilyGroupMeetingHeld = "family_group_meeting.held", Child, PreProceedingsStep;
    PreProceedingsMeetingHeld = "pre_proceedings.meeting_held", Child, PreProceedingsMeetingHeld;
    PreProceedingsDecided = "pre_proceedings.decided", Child, PreProceedingsDecided;
    CourtApplicationFiled = "court.application_filed", Child, CourtApplicationFiled;
    CourtHearingHeld = "court.hearing_held", Child, CourtHearingHeld;
    CourtOrderMade = "court.order_made", Child, CourtOrderMade;
    CourtProceedingsConcluded = "court.proceedings_concluded", Child, CourtProceedingsConcluded;
    RecordCorrected = "record.corrected", Child, RecordCorrected;
    RecordRetracted = "record.retracted", Child, RecordRetracted;
    RecordSealed = "record.sealed", Child, SealChange;
    RecordUnsealed = "record.unsealed", Child, SealChange;
    ReviewOpened = "review.opened", Child, ReviewOpened;
    ReviewClosed = "review.closed", Child, ReviewClosed;
    AlertAcknowledged = "alert.acknowledged", Child, AlertAcknowledged;
    WorkerJoined = "worker.joined", Worker, WorkerJoined;
    WorkerChanged = "worker.changed", Worker, WorkerChanged;
    WorkerLeft = "worker.left", Worker, WorkerLeft;
    CouncilConfigured = "council.configured", Council, CouncilConfigured;
}

impl EventType {
    /// Types only a principal with the `admin` role may publish, whatever its
    /// `event_types` say: they change who may read a record or how a council
    /// is measured.
    pub fn admin_only(self) -> bool {
        matches!(
            self,
            Self::ReviewOpened
                | Self::ReviewClosed
                | Self::RecordSealed
                | Self::RecordUnsealed
                | Self::CouncilConfigured
        )
    }

    /// Whether this type amends an earlier event rather than stating a new fact.
    pub fn amends(self) -> bool {
        matches!(self, Self::RecordCorrected | Self::RecordRetracted)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for EventType {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        Self::from_name(&name).ok_or_else(|| "is not a known event type".to_owned())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_name(&name).ok_or_else(|| serde::de::Error::custom("not a known event type"))
    }
}

// ----- people -------------------------------------------------------------

data_struct! {
    /// A child's identifying details. The whole object is personal data.
    ChildPerson {
        opt given_name: Label,
        opt family_name: Label,
        opt nhs_number: NhsNumber,
        opt upn: Upn,
        opt former_upn: Upn,
        opt upn_unknown: UpnUnknown,
        opt address: Text,
    }
    check check_child_person
    schema schema_child_person
}

fn check_child_person(p: &ChildPerson, at: &str, problems: &mut Problems) {
    if p.upn.is_some() && p.upn_unknown.is_some() {
        problems.push(child_pointer(at, "upn_unknown"), "must not be given with a upn: it says why there is none");
    }
    let empty = p.given_name.is_none()
        && p.family_name.is_none()
        && p.nhs_number.is_none()
        && p.upn.is_none()
        && p.former_upn.is_none()
        && p.upn_unknown.is_none()
        && p.address.is_none();
    if empty {
        problems.push(at, "must give at least one detail, or be left out");
    }
}

data_struct! {
    /// A person related to the child. The whole object is personal data.
    RelatedPerson {
        opt given_name: Label,
        opt family_name: Label,
        opt address: Text,
    }
    check check_related_person
    schema rules::some_field
}

fn schema_child_person(schema: &mut Schema) {
    rules::some_field(schema);
    rules::not_together(schema, "upn", "upn_unknown");
}

fn check_related_person(p: &RelatedPerson, at: &str, problems: &mut Problems) {
    if p.given_name.is_none() && p.family_name.is_none() && p.address.is_none() {
        problems.push(at, "must give at least one detail, or be left out");
    }
}

// ----- the child ----------------------------------------------------------

data_struct! {
    /// A child becomes known to the backbone. Exactly once per child.
    ChildRegistered {
        req council: CouncilCode,
        req la_child_id: LaChildId,
        req sex: Sex,
        opt birth_date: NaiveDate,
        opt expected_birth_date: NaiveDate,
        opt ethnicity: Ethnicity,
        opt disabilities: Vec<Disability>,
        opt person: Personal<ChildPerson>,
    }
    check check_child_registered
    schema schema_child_registered
}

fn check_child_registered(e: &ChildRegistered, at: &str, problems: &mut Problems) {
    if e.birth_date.is_none() && e.expected_birth_date.is_none() {
        problems.push(child_pointer(at, "birth_date"), "is required (or expected_birth_date, for an unborn child)");
    }
    if let Some(d) = &e.disabilities {
        check_disabilities(d, &child_pointer(at, "disabilities"), problems);
    }
}

fn schema_child_registered(schema: &mut Schema) {
    rules::either_of(schema, "birth_date", "expected_birth_date");
    rules::list(schema, "disabilities", Some(Disability::None.code()));
}

fn check_disabilities(list: &[Disability], at: &str, problems: &mut Problems) {
    if list.len() > 1 && list.contains(&Disability::None) {
        problems.push(at, "NONE must stand alone: it cannot be listed with other disabilities");
    }
    no_repeats(list, at, problems);
}

data_struct! {
    /// New values for some of the child's details (never the council: that
    /// changes only by transfer).
    ChildDetailsUpdated {
        opt la_child_id: LaChildId,
        opt sex: Sex,
        opt birth_date: NaiveDate,
        opt expected_birth_date: NaiveDate,
        opt ethnicity: Ethnicity,
        opt disabilities: Vec<Disability>,
        opt person: Personal<ChildPerson>,
    }
    check check_child_details_updated
    schema schema_child_details_updated
}

fn check_child_details_updated(e: &ChildDetailsUpdated, at: &str, problems: &mut Problems) {
    let nothing = e.la_child_id.is_none()
        && e.sex.is_none()
        && e.birth_date.is_none()
        && e.expected_birth_date.is_none()
        && e.ethnicity.is_none()
        && e.disabilities.is_none()
        && e.person.is_none();
    if nothing {
        problems.push(at, "must update at least one detail");
    }
    if let Some(d) = &e.disabilities {
        check_disabilities(d, &child_pointer(at, "disabilities"), problems);
    }
}

fn schema_child_details_updated(schema: &mut Schema) {
    rules::some_field(schema);
    rules::list(schema, "disabilities", Some(Disability::None.code()));
}

data_struct! {
    /// The child's case moves to another council (the receiving one).
    ChildTransferred { req council: CouncilCode }
}

data_struct! {
    /// The child has died.
    ChildDied { req date: NaiveDate }
}

data_struct! {
    /// A person in the child's life, by role.
    RelationshipRecorded {
        req person_id: LocalId,
        req role: RelationshipRole,
        opt person: Personal<RelatedPerson>,
        opt child_id: ChildId,
    }
}

// ----- the life of a case -------------------------------------------------

data_struct! {
    /// Someone got in touch about the child.
    ContactRecorded {
        req contact_id: LocalId,
        req source: ReferralSource,
        req summary: Personal<Text>,
        opt outcome: ContactOutcome,
    }
}

data_struct! {
    /// A referral to children's social care starts an episode.
    ReferralReceived {
        req referral_id: LocalId,
        req source: ReferralSource,
        req nfa: bool,
        opt primary_need: PrimaryNeed,
    }
}

data_struct! {
    /// A single assessment starts.
    AssessmentStarted {
        req assessment_id: LocalId,
        req referral_id: LocalId,
    }
}

data_struct! {
    /// A single assessment is authorised, with the factors it found.
    AssessmentCompleted {
        req assessment_id: LocalId,
        req factors: Vec<AssessmentFactor>,
        req child_seen: bool,
        req needs_support: bool,
    }
    check check_assessment_completed
    schema schema_assessment_completed
}

fn check_assessment_completed(e: &AssessmentCompleted, at: &str, problems: &mut Problems) {
    let at = child_pointer(at, "factors");
    if e.factors.len() > 1 && e.factors.contains(&AssessmentFactor::F21) {
        problems.push(&at, "factor 21 (no factors identified) must stand alone");
    }
    no_repeats(&e.factors, &at, problems);
}

fn schema_assessment_completed(schema: &mut Schema) {
    rules::list(schema, "factors", Some(AssessmentFactor::F21.code()));
}

data_struct! {
    /// Police, health and social care discussed whether to start a section 47 enquiry.
    StrategyDiscussionHeld {
        req discussion_id: LocalId,
        req referral_id: LocalId,
        req agencies: Vec<Label>,
        req decision: StrategyDecision,
    }
}

data_struct! {
    /// A section 47 enquiry starts; the ICPC clock starts with it.
    S47Started {
        req s47_id: LocalId,
        req referral_id: LocalId,
        opt discussion_id: LocalId,
    }
}

data_struct! {
    /// A section 47 enquiry ends.
    S47Completed {
        req s47_id: LocalId,
        req icpc_required: bool,
    }
}

data_struct! {
    /// A child protection conference took place.
    ConferenceHeld {
        req conference_id: LocalId,
        req kind: ConferenceKind,
        opt s47_id: LocalId,
        opt plan_id: LocalId,
        req outcome: ConferenceOutcome,
    }
    check check_conference
    schema schema_conference
}

fn check_conference(e: &ConferenceHeld, at: &str, problems: &mut Problems) {
    use ConferenceKind as K;
    use ConferenceOutcome as O;
    let fits = match e.kind {
        K::Initial | K::TransferIn => matches!(e.outcome, O::Plan | O::NoPlan),
        K::Review => matches!(e.outcome, O::Continue | O::End),
    };
    if !fits {
        let allowed = if e.kind == K::Review { "continue or end" } else { "plan or no_plan" };
        problems.push(child_pointer(at, "outcome"), format!("must be {allowed} for a {} conference", e.kind.code()));
    }
    if e.kind == K::Review && e.plan_id.is_none() {
        problems.push(child_pointer(at, "plan_id"), "is required for a review conference: it names the plan reviewed");
    }
}

fn schema_conference(schema: &mut Schema) {
    use ConferenceKind as K;
    use ConferenceOutcome as O;
    let codes = |list: &[&'static str]| list.to_vec();
    rules::when(
        schema,
        "kind",
        &codes(&[K::Initial.code(), K::TransferIn.code()]),
        serde_json::json!({"properties": {"outcome": {"enum": [O::Plan.code(), O::NoPlan.code()]}}}),
    );
    rules::when(
        schema,
        "kind",
        &codes(&[K::Review.code()]),
        serde_json::json!({
            "properties": {"outcome": {"enum": [O::Continue.code(), O::End.code()]}},
            "allOf": [rules::given("plan_id")],
        }),
    );
}

data_struct! {
    /// A child protection plan starts, decided at a conference.
    CpPlanStarted {
        req plan_id: LocalId,
        req conference_id: LocalId,
        req category: CategoryOfAbuse,
    }
}

data_struct! {
    /// A plan's category of abuse changes.
    CpPlanCategoryChanged {
        req plan_id: LocalId,
        req category: CategoryOfAbuse,
    }
}

data_struct! {
    /// A child protection plan ends.
    CpPlanEnded {
        req plan_id: LocalId,
        opt reason: Personal<Text>,
    }
}

data_struct! {
    /// A child in need plan starts.
    CinPlanStarted {
        req plan_id: LocalId,
        req referral_id: LocalId,
    }
}

data_struct! {
    /// A step of a child in need plan on its day: it ended, or it was
    /// reviewed (the review clock of `casework::alerts`).
    CinPlanStep { req plan_id: LocalId }
}

data_struct! {
    /// A professional saw the child.
    ChildSeen {
        req seen_by: LocalId,
        req seen_alone: bool,
        req context: SeenContext,
        opt agency: Label,
    }
}

data_struct! {
    /// The case is allocated to a worker in a team.
    CaseAllocated {
        req worker_id: WorkerId,
        req team_id: LocalId,
    }
}

data_struct! {
    /// A worker no longer holds the case.
    CaseDeallocated { req worker_id: WorkerId }
}

data_struct! {
    /// The episode that began with a referral is closed.
    CaseClosed {
        req referral_id: LocalId,
        req reason: ClosureReason,
    }
}

data_struct! {
    /// Another agency raised a concern. `category`, when given, is the
    /// category of abuse the concern points to.
    ConcernRaised {
        req concern_id: LocalId,
        req summary: Personal<Text>,
        opt category: CategoryOfAbuse,
    }
}

data_struct! {
    /// Information about the child was shared with another agency.
    InformationShared {
        req with_agency: Label,
        req purpose: Personal<Text>,
        opt summary: Personal<Text>,
    }
}

// ----- pre-proceedings and family group decision making --------------------

data_struct! {
    /// A step of the Public Law Outline's pre-proceedings, on its day: the
    /// decision to start them (a legal planning meeting), a family group
    /// decision making meeting offered to the family, and held.
    PreProceedingsStep { req pre_proceedings_id: LocalId }
}

data_struct! {
    /// A letter to the parents: before proceedings, or initiating them.
    PreProceedingsLetterSent {
        req pre_proceedings_id: LocalId,
        req letter: PreProceedingsLetter,
    }
}

data_struct! {
    /// A meeting with the parents: the initial pre-proceedings meeting, or a review.
    PreProceedingsMeetingHeld {
        req pre_proceedings_id: LocalId,
        req kind: PreProceedingsMeeting,
    }
}

data_struct! {
    /// The decision meeting: what happens next. Any outcome but `continue`
    /// ends the pre-proceedings.
    PreProceedingsDecided {
        req pre_proceedings_id: LocalId,
        req outcome: PreProceedingsOutcome,
    }
}

// ----- court --------------------------------------------------------------

data_struct! {
    /// The council applied to court.
    CourtApplicationFiled {
        req proceedings_id: LocalId,
        req kind: ApplicationKind,
        req court: Label,
        opt pre_proceedings_letter_date: NaiveDate,
        opt pre_proceedings_id: LocalId,
    }
}

data_struct! {
    /// A hearing in the proceedings took place.
    CourtHearingHeld {
        req proceedings_id: LocalId,
        opt summary: Personal<Text>,
    }
}

data_struct! {
    /// The court made an order.
    CourtOrderMade {
        req proceedings_id: LocalId,
        req order: CourtOrder,
    }
}

data_struct! {
    /// The proceedings ended.
    CourtProceedingsConcluded { req proceedings_id: LocalId }
}

// ----- alerts --------------------------------------------------------------

data_struct! {
    /// A worker acknowledges an alert about the child (`casework::alerts`):
    /// who knew what, and when, is part of the signed history. The first
    /// acknowledgement of an alert stands; the gateway cannot know the read
    /// side's alerts, so one naming no alert of this child changes nothing.
    AlertAcknowledged {
        req alert_id: AlertId,
        opt note: Personal<Text>,
    }
}

// ----- amendments, sealing and reviews -----------------------------------

data_struct! {
    /// A publisher corrects one of its own earlier events. `data` is the
    /// corrected event's data, whole; `time`, when given, corrects its
    /// business time.
    RecordCorrected {
        req corrects: EventId,
        req reason: Personal<Text>,
        req data: CorrectedData,
        opt time: DateTime<FixedOffset>,
    }
}

impl RecordCorrected {
    /// Checks the corrected data against the type of the event it corrects,
    /// which only the subject's history knows. On success the data is typed,
    /// so its personal fields are known too.
    pub fn resolve(&mut self, corrected: EventType, at: &str) -> Result<(), Problems> {
        self.resolve_in(Form::Received, corrected, at)
    }

    /// [`Self::resolve`] for a correction read back from the stream, whose
    /// corrected data has its personal fields sealed.
    pub fn resolve_stored(&mut self, corrected: EventType) -> Result<(), Problems> {
        self.resolve_in(Form::Stored, corrected, "/data")
    }

    fn resolve_in(&mut self, form: Form, corrected: EventType, at: &str) -> Result<(), Problems> {
        let mut problems = Problems::reading(form);
        if corrected.amends() {
            problems.push(
                child_pointer(at, "corrects"),
                "must name an original event, not another correction or retraction",
            );
            return Err(problems);
        }
        let raw = match &self.data {
            CorrectedData::Unresolved(raw) => Value::Object(raw.clone()),
            CorrectedData::Resolved(data) if data.event_type() == corrected => return Ok(()),
            CorrectedData::Resolved(data) => serde_json::to_value(data).unwrap_or(Value::Null),
        };
        match EventData::parse(corrected, &raw, &child_pointer(at, "data"), &mut problems) {
            Some(data) => {
                self.data = CorrectedData::Resolved(Box::new(data));
                Ok(())
            }
            None => Err(problems),
        }
    }
}

/// The data of a correction: an object whose shape depends on the type of the
/// event corrected, so it is checked in two steps.
#[derive(Debug, Clone, PartialEq)]
pub enum CorrectedData {
    /// An object, not yet checked against the corrected event's type.
    Unresolved(Map<String, Value>),
    /// Checked and typed by [`RecordCorrected::resolve`].
    Resolved(Box<EventData>),
}

impl FromJson for CorrectedData {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self::Unresolved(map.clone())),
            other => {
                problems.push(
                    at,
                    format!(
                        "must be an object (the corrected event's data, whole), not {}",
                        crate::fields::kind_of(other)
                    ),
                );
                None
            }
        }
    }
}

/// What a schema can say of a correction's data: an object. Its shape is
/// the corrected event's type's, which only the subject's history knows.
impl schemars::JsonSchema for CorrectedData {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CorrectedData".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> Schema {
        rules::any_object(
            "The corrected event's data, whole: valid against the data schema of the type of the event it corrects.",
        )
    }
}

impl Serialize for CorrectedData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Unresolved(map) => map.serialize(s),
            Self::Resolved(data) => data.serialize(s),
        }
    }
}

data_struct! {
    /// A publisher withdraws one of its own earlier events as made in error.
    RecordRetracted {
        req retracts: EventId,
        req reason: Personal<Text>,
    }
}

data_struct! {
    /// The child's record is sealed (or unsealed): only admins may read it.
    SealChange { req reason: Personal<Text> }
}

data_struct! {
    /// A practice review opens, naming the principals who may read the child's record.
    ReviewOpened {
        req review_id: LocalId,
        req kind: ReviewKind,
        req reviewers: Vec<PrincipalName>,
    }
    check check_review_opened
    schema schema_review_opened
}

fn check_review_opened(e: &ReviewOpened, at: &str, problems: &mut Problems) {
    no_repeats(&e.reviewers, &child_pointer(at, "reviewers"), problems);
}

fn schema_review_opened(schema: &mut Schema) {
    rules::list(schema, "reviewers", None);
}

data_struct! {
    /// A practice review closes; its reviewers lose access.
    ReviewClosed { req review_id: LocalId }
}

// ----- workforce and councils --------------------------------------------

data_struct! {
    /// A professional's name, as a chronology names who did what. The whole
    /// object is personal data, sealed under the worker's own data key.
    WorkerPerson {
        opt given_name: Label,
        opt family_name: Label,
    }
    check check_worker_person
    schema rules::some_field
}

fn check_worker_person(p: &WorkerPerson, at: &str, problems: &mut Problems) {
    if p.given_name.is_none() && p.family_name.is_none() {
        problems.push(at, "must give a given or family name, or be left out");
    }
}

data_struct! {
    /// A worker joins a council's children's services.
    WorkerJoined {
        req council: CouncilCode,
        req team_id: LocalId,
        req role: WorkerRole,
        req fte: Fte,
        req agency_staff: bool,
        opt person: Personal<WorkerPerson>,
    }
}

data_struct! {
    /// A worker's team, role, hours or name change.
    WorkerChanged {
        opt team_id: LocalId,
        opt role: WorkerRole,
        opt fte: Fte,
        opt person: Personal<WorkerPerson>,
    }
    check check_worker_changed
    schema rules::some_field
}

fn check_worker_changed(e: &WorkerChanged, at: &str, problems: &mut Problems) {
    if e.team_id.is_none() && e.role.is_none() && e.fte.is_none() && e.person.is_none() {
        problems.push(at, "must change at least one of team_id, role, fte, person");
    }
}

data_struct! {
    /// A worker leaves.
    WorkerLeft {}
}

data_struct! {
    /// A council's settings, in force from a date.
    CouncilConfigured {
        req effective_from: NaiveDate,
        opt dfe_la_code: DfeLaCode,
        opt population_0_17: u64 [1, 9_007_199_254_740_991],
        opt assessment_timescale_days: u32 [1, 365],
        opt visit_interval_days: u32 [1, 365],
        opt cin_visit_interval_days: u32 [1, 365],
        opt caseload_threshold: u32 [1, 4_294_967_295],
        opt funded_social_worker_fte: FteTotal,
        // The alert settings (`casework::alerts`): a pattern needs two
        // agencies and two events at the least, or every concern would be
        // a pattern.
        opt pattern_agencies: u32 [2, 20],
        opt pattern_events: u32 [2, 100],
        opt pattern_window_days: u32 [1, 365],
        opt acknowledge_within_days: u32 [1, 20],
        opt alert_lead_days: u32 [0, 20],
    }
}
