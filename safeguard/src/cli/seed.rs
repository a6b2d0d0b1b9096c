//! `safeguard seed`: a deterministic synthetic population of councils,
//! workers and children with plausible multi-agency histories, published
//! through the gateway like any agency system's events (so it is validated,
//! sealed, chained and signed the same way) and optionally written as NDJSON.
//!
//! Deterministic: the same `--seed`, sizes and `--until` give the same
//! events, ids included, so publishing twice stores nothing twice.
//!
//! This first cut follows the shape of a case (contact, referral,
//! assessment, strategy discussion, section 47, ICPC, plan, reviews,
//! visits, closure, re-referral) with rates near DOMAIN.md's; issue 6 tunes
//! them to the national figures.

use anyhow::Context as _;
use chrono::{Datelike, Days, NaiveDate, Weekday};
use events::calendar::Calendar;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// The seed: the same seed and sizes give the same population.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Councils (up to 8 London boroughs).
    #[arg(long, default_value_t = 2)]
    pub councils: usize,
    /// Children per council.
    #[arg(long, default_value_t = 50)]
    pub children: usize,
    /// The last business date of the histories (default: today). Histories start four years earlier.
    #[arg(long)]
    pub until: Option<NaiveDate>,
    /// The gateway to publish through.
    #[arg(long = "gateway-url", env = "SAFEGUARD_GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway_url: String,
    /// A token with the publish and admin roles (council.configured needs admin).
    #[arg(long, env = "SAFEGUARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Write the events as NDJSON here too.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only write NDJSON; publish nothing.
    #[arg(long)]
    pub no_publish: bool,
    /// With --health-token: also tell the demo's story, published by a
    /// police and a health principal of the first council (publish only,
    /// `concern.raised` and `child.seen`): a child on a plan about whom both
    /// raise concerns in the last days, so its worker has alerts waiting.
    #[arg(long = "police-token", env = "SAFEGUARD_POLICE_TOKEN", hide_env_values = true)]
    pub police_token: Option<String>,
    #[arg(long = "health-token", env = "SAFEGUARD_HEALTH_TOKEN", hide_env_values = true)]
    pub health_token: Option<String>,
}

/// Councils the seed draws from: (ONS code, DfE code, name).
pub const COUNCILS: [(&str, &str, &str); 8] = [
    ("E09000014", "309", "Haringey"),
    ("E09000019", "206", "Islington"),
    ("E09000007", "202", "Camden"),
    ("E09000012", "204", "Hackney"),
    ("E09000022", "208", "Lambeth"),
    ("E09000028", "210", "Southwark"),
    ("E09000030", "211", "Tower Hamlets"),
    ("E09000033", "213", "Westminster"),
];

/// SplitMix64: tiny, fast and fixed forever, so a seed means the same population in every version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
    /// One of `items`, each as likely as its weight.
    pub fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut roll = self.next_u64() % total.max(1);
        for (item, w) in items {
            if roll < u64::from(*w) {
                return item;
            }
            roll -= u64::from(*w);
        }
        &items[items.len() - 1].0
    }
    pub fn uuid(&mut self) -> uuid::Uuid {
        let bytes = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        uuid::Builder::from_random_bytes(bytes.to_be_bytes()).into_uuid()
    }
}

/// Referral sources, weighted as the CIN census reports them nationally
/// (police about 29%, schools 20%, health 14%, council services 10%, ...).
const SOURCES: [(&str, u32); 16] = [
    ("6", 29),
    ("2A", 19),
    ("2B", 1),
    ("3A", 3),
    ("3B", 2),
    ("3E", 4),
    ("3F", 5),
    ("1A", 4),
    ("1C", 2),
    ("1D", 1),
    ("4", 2),
    ("5A", 6),
    ("5C", 4),
    ("7", 5),
    ("8", 9),
    ("9", 1),
];
/// Categories of abuse of plans starting, as DOMAIN.md gives them (per mille).
const CATEGORIES: [(&str, u32); 5] = [("NEG", 505), ("EMO", 357), ("PHY", 74), ("SAB", 38), ("MUL", 26)];
const NEEDS: [(&str, u32); 8] =
    [("N1", 57), ("N2", 3), ("N3", 9), ("N4", 16), ("N5", 4), ("N6", 3), ("N8", 6), ("N9", 2)];
const FACTORS: [&str; 10] = ["3B", "4B", "2B", "1B", "16A", "18B", "3A", "6A", "5A", "22A"];
const ETHNICITY: [&str; 10] = ["WBRI", "WBRI", "WBRI", "WOTH", "BAFR", "BCRB", "MWBC", "ABAN", "APKN", "OOTH"];
const GIVEN: [&str; 10] = ["Sam", "Alex", "Jordan", "Riley", "Casey", "Morgan", "Taylor", "Jamie", "Robin", "Charlie"];
const FAMILY: [&str; 8] = ["Smith", "Jones", "Ahmed", "Okafor", "Brown", "Nowak", "Khan", "Williams"];

/// Builds events for one run; each subject's events stay together and in order.
struct Builder<'a> {
    seed: u64,
    n: u64,
    until: NaiveDate,
    calendar: &'a Calendar,
    out: Vec<Value>,
}

impl Builder<'_> {
    fn event(&mut self, event_type: &str, subject: &str, day: NaiveDate, data: Value) {
        // The histories end at `until`: what a story would do after it has
        // not happened yet (and the gateway refuses the future).
        if day > self.until {
            return;
        }
        self.n += 1;
        // Within a subject, times rise with each event (a minute apart from
        // 08:00 UTC), so same-day events keep the order they were written in.
        let minutes = 8 * 60 + self.out.len();
        let time = format!("{day}T{:02}:{:02}:00Z", (minutes / 60).min(23), minutes % 60);
        self.out.push(json!({
            "specversion": "1.0", "id": format!("seed-{}-{}", self.seed, self.n), "type": event_type,
            "subject": subject, "time": time, "data": data,
        }));
    }

    /// The id the next event will have.
    fn event_id_next(&self) -> String {
        format!("seed-{}-{}", self.seed, self.n + 1)
    }

    /// The next working day on or after `day`.
    fn working(&self, mut day: NaiveDate) -> NaiveDate {
        while !self.calendar.is_working_day(day) || matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            day = day + Days::new(1);
        }
        day
    }
}

/// One subject's events, the unit batches are cut along.
pub type Group = Vec<Value>;

/// Generates the population: the councils' and workers' groups first, then one group per child.
pub fn generate(seed: u64, councils: usize, children: usize, until: NaiveDate) -> anyhow::Result<Vec<Group>> {
    anyhow::ensure!((1..=COUNCILS.len()).contains(&councils), "--councils must be 1 to {}", COUNCILS.len());
    let calendar = Calendar::england_and_wales();
    let start = until.checked_sub_days(Days::new(4 * 365)).context("--until is too early")?;
    let mut rng = Rng::new(seed);
    let mut b = Builder { seed, n: 0, until, calendar, out: Vec::new() };
    let mut groups = Vec::new();
    for (index, (code, dfe, _)) in COUNCILS.iter().take(councils).enumerate() {
        let workers_needed = (children / 12).max(4);
        // The second council sets its own, shorter assessment timescale.
        let timescale = if index == 1 { json!(35) } else { Value::Null };
        let mut data = json!({
            "effective_from": start, "dfe_la_code": dfe,
            "visit_interval_days": 14, "caseload_threshold": 18,
            "funded_social_worker_fte": (workers_needed as f64 * 1.15).round(),
        });
        if !timescale.is_null() {
            data["assessment_timescale_days"] = timescale;
        }
        // Councils differ: referral rates from about four fifths to five
        // quarters of England's.
        let spread = 0.8 + rng.range(0, 45) as f64 / 100.0;
        // The council's configuration goes first; its population is known
        // once its children are (below).
        let council_at = groups.len();
        groups.push(Vec::new());

        let mut workers: Vec<(String, String)> = Vec::new();
        for w in 0..workers_needed {
            let id = rng.uuid().to_string();
            let team = format!("T{}", w / 6 + 1);
            let role = if w % 6 == 0 {
                "team_manager"
            } else if w % 6 == 1 {
                "senior_social_worker"
            } else {
                "social_worker"
            };
            let joined = start + Days::new(rng.range(0, 60));
            b.event(
                "worker.joined",
                &id,
                joined,
                json!({"council": code, "team_id": team, "role": role,
                       "fte": if rng.chance(0.8) { 1.0 } else { 0.8 }, "agency_staff": rng.chance(0.18)}),
            );
            if w >= 6 && rng.chance(0.1) {
                let left = joined + Days::new(rng.range(200, 1200));
                if left < until {
                    b.event("worker.left", &id, left, json!({}));
                    groups.push(std::mem::take(&mut b.out));
                    continue;
                }
            }
            groups.push(std::mem::take(&mut b.out));
            if role != "team_manager" {
                workers.push((id, team));
            }
        }

        let first_child = groups.len();
        for c in 0..children {
            child(&mut b, &mut rng, code, c, start, &workers);
            groups.push(std::mem::take(&mut b.out));
        }
        data["population_0_17"] = json!(population(&groups[first_child..], start, until, spread));
        b.event("council.configured", code, start, data);
        groups[council_at] = std::mem::take(&mut b.out);
    }
    Ok(groups)
}

/// England's referrals per 10,000 children a year (632,830 in 2024-25 over
/// about 12.05 million children aged 0 to 17: DOMAIN.md).
const ENGLAND_REFERRALS_PER_10000: f64 = 525.0;

/// The 0-17 population a council must have for its seeded children to be
/// referred at England's rate (times `spread`): the simulated children are
/// the few a council's children's services meet, so the population they
/// stand for is scaled from their referrals, not drawn at random. Counted
/// over the last two years, once re-referrals of children met earlier have
/// built up as they would in a real council.
fn population(children: &[Group], start: NaiveDate, until: NaiveDate, spread: f64) -> u64 {
    let from = (start + Days::new(365)).max(until - Days::new(2 * 365));
    let referrals = children
        .iter()
        .flatten()
        .filter(|e| e["type"] == "referral.received")
        .filter_map(|e| e["time"].as_str()?.get(..10)?.parse::<NaiveDate>().ok())
        .filter(|d| *d >= from && *d <= until)
        .count();
    let years = (until - from).num_days().max(1) as f64 / 365.25;
    let per_year = referrals as f64 / years;
    ((per_year * 10_000.0 / (ENGLAND_REFERRALS_PER_10000 * spread)).round() as u64).max(100)
}

/// The child's registration and its relatives: a mother nearly always, a
/// father often, siblings sometimes. Returns the child's id and the day.
fn register(b: &mut Builder<'_>, rng: &mut Rng, council: &str, index: usize, start: NaiveDate) -> (String, NaiveDate) {
    let id = rng.uuid().to_string();
    // Children come to notice all through the history, so every year has
    // its share of first referrals (not only the first three of four).
    let registered = start + Days::new(rng.range(0, 4 * 365 - 1));
    let born = registered.checked_sub_days(Days::new(rng.range(30, 16 * 365))).unwrap_or(registered);
    let family = *rng.pick(&FAMILY);
    let mut data = json!({
        "council": council, "la_child_id": format!("{}{:06}", &council[5..], index), "sex": *rng.pick(&["M", "F"]),
        "birth_date": born, "ethnicity": *rng.pick(&ETHNICITY),
        "person": {"given_name": *rng.pick(&GIVEN), "family_name": family},
    });
    if rng.chance(0.08) {
        data["disabilities"] = json!([*rng.pick(&["LD", "COMM", "AUT", "BEH", "MOB"])]);
    }
    b.event("child.registered", &id, registered, data);
    let mut relatives = vec![("mother", 0.92), ("father", 0.55)];
    for _ in 0..rng.range(0, 2) {
        relatives.push(("sibling", 1.0));
    }
    for (n, (role, p)) in relatives.into_iter().enumerate() {
        if rng.chance(p) {
            b.event(
                "relationship.recorded",
                &id,
                registered,
                json!({"person_id": format!("PER{n}"), "role": role, "person": {"given_name": *rng.pick(&GIVEN), "family_name": family}}),
            );
        }
    }

    (id, registered)
}

/// One child's life with children's services, following DOMAIN.md's
/// national funnel: per referral about 0.36 section 47 enquiries, per
/// enquiry 0.31 ICPCs (81% within 15 working days), per ICPC 0.86 plans
/// (4.4% lasting two years or more), re-referrals about a fifth of
/// referrals, assessments with a median near 33 working days (86% within
/// 45). Around it: relatives, contacts and concerns from other agencies,
/// information shared, CIN plans, changes of worker, visits (some late),
/// court proceedings for a few plans, a rare death, and a sprinkling of
/// corrections and retractions.
fn child(
    b: &mut Builder<'_>,
    rng: &mut Rng,
    council: &str,
    index: usize,
    start: NaiveDate,
    workers: &[(String, String)],
) {
    let (id, registered) = register(b, rng, council, index, start);

    let mut day = registered;
    let mut referral: u32 = 0;
    let mut plans: u32 = 0;
    loop {
        referral += 1;
        let r = format!("R{referral}");
        day = b.working(day);
        if day >= b.until {
            return;
        }
        let source = *rng.weighted(&SOURCES);
        let contact = format!("C{referral}");
        b.event(
            "contact.recorded",
            &id,
            day,
            json!({"contact_id": contact, "source": source, "summary": "Concerns reported", "outcome": "referral"}),
        );
        let nfa = rng.chance(0.1);
        let referral_id = b.event_id_next();
        let need = *rng.weighted(&NEEDS);
        b.event(
            "referral.received",
            &id,
            day,
            json!({"referral_id": r, "source": source, "nfa": nfa, "primary_need": need}),
        );
        // A few referrals are corrected later: the source was recorded wrongly.
        if rng.chance(0.02) {
            let fixed = if source == "6" { "2A" } else { "6" };
            let when = (day + Days::new(rng.range(1, 20))).min(b.until);
            b.event(
                "record.corrected",
                &id,
                when,
                json!({"corrects": referral_id, "reason": "referral source recorded wrongly",
                       "data": {"referral_id": r, "source": fixed, "nfa": nfa, "primary_need": need}}),
            );
        }
        // About a fifth of referrals come within a year of the one before
        // (counted from that referral, so a re-referral soon after a closure).
        let again = |rng: &mut Rng, from: NaiveDate| -> Option<NaiveDate> {
            if rng.chance(0.3) {
                Some(from + Days::new(rng.range(14, 200)))
            } else if rng.chance(0.1) {
                Some(from + Days::new(rng.range(370, 900)))
            } else {
                None
            }
        };
        if nfa {
            match again(rng, day) {
                Some(next) => {
                    day = next;
                    continue;
                }
                None => return,
            }
        }
        let (mut worker, team) = rng.pick(workers).clone();
        b.event("case.allocated", &id, day, json!({"worker_id": worker, "team_id": team}));
        if rng.chance(0.2) {
            b.event(
                "concern.raised",
                &id,
                day + Days::new(rng.range(1, 20)),
                json!({"concern_id": format!("CN{referral}"), "summary": "Further concern reported", "category": *rng.weighted(&CATEGORIES)}),
            );
        }
        let a = format!("A{referral}");
        let a_start = b.working(day + Days::new(rng.range(0, 2)));
        b.event("assessment.started", &id, a_start, json!({"assessment_id": a, "referral_id": r}));
        let seen_id = b.event_id_next();
        b.event(
            "child.seen",
            &id,
            a_start + Days::new(1),
            json!({"seen_by": worker, "seen_alone": rng.chance(0.7), "context": "assessment"}),
        );
        // One sighting in a hundred was recorded against the wrong child and is retracted.
        if rng.chance(0.01) {
            b.event(
                "record.retracted",
                &id,
                a_start + Days::new(3),
                json!({"retracts": seen_id, "reason": "recorded against the wrong child"}),
            );
        }
        let wd = if rng.chance(0.86) { rng.range(16, 45) } else { rng.range(46, 80) } as u32;
        let a_done = b.calendar.add_working_days(a_start, wd);
        let mut end = a_done;
        let enquiry = rng.chance(0.4);
        let mut cin_plan = false;
        // The assessment is authorised when it is done, whatever follows it.
        if a_done < b.until {
            let needs = enquiry || rng.chance(0.45);
            cin_plan = needs && !enquiry;
            b.event("assessment.completed", &id, a_done, json!({"assessment_id": a, "factors": [*rng.pick(&FACTORS)], "child_seen": true, "needs_support": needs}));
            if rng.chance(0.3) {
                b.event(
                    "information.shared",
                    &id,
                    a_done,
                    json!({"with_agency": *rng.pick(&["school", "health visitor", "GP", "police"]), "purpose": "Assessment outcome shared"}),
                );
            }
        }
        if enquiry {
            match section_47(b, rng, &id, referral, &r, a_start, end, &mut plans, &mut worker, workers) {
                Some(after) => end = after,
                None => return,
            }
        }
        if a_done >= b.until {
            return;
        }
        // Children in need without a protection plan are often supported on a CIN plan.
        if cin_plan {
            let p = format!("CIN{referral}");
            let from = b.working(a_done + Days::new(rng.range(1, 10)));
            // Six months to two years: children in need are most of the
            // 334 per 10,000 England counts at 31 March, so their plans last.
            let to = b.working(events::calendar::add_months(from, rng.range(6, 24) as u32));
            if from >= b.until {
                return;
            }
            b.event("cin_plan.started", &id, from, json!({"plan_id": p, "referral_id": r}));
            if to >= b.until {
                return;
            }
            b.event("cin_plan.ended", &id, to, json!({"plan_id": p}));
            end = end.max(to);
        }
        let close = b.working(end.max(a_done) + Days::new(rng.range(1, 20)));
        if close >= b.until {
            return;
        }
        // RC7: services ceased; RC8 / RC9: closed after assessment, with no further action or to early help.
        let reason = if enquiry || cin_plan {
            "RC7"
        } else if rng.chance(0.3) {
            "RC9"
        } else {
            "RC8"
        };
        b.event("case.closed", &id, close, json!({"referral_id": r, "reason": reason}));
        // Rarely, a child dies; nothing follows.
        if rng.chance(0.002) {
            let died = close + Days::new(rng.range(30, 400));
            if died < b.until {
                b.event("child.died", &id, died, json!({"date": died}));
            }
            return;
        }
        match again(rng, close) {
            Some(next) => day = next,
            None => return,
        }
    }
}

/// A section 47 enquiry after a strategy discussion, and for about a
/// third an initial conference; for most of those a protection plan, with
/// visits, reviews, sometimes court proceedings and a change of worker.
/// Returns when the child's episode can close, or `None` if the story ends
/// before today's horizon (a conference still to come, a plan still open).
#[allow(clippy::too_many_arguments)]
fn section_47(
    b: &mut Builder<'_>,
    rng: &mut Rng,
    id: &str,
    referral: u32,
    r: &str,
    a_start: NaiveDate,
    mut end: NaiveDate,
    plans: &mut u32,
    worker: &mut String,
    workers: &[(String, String)],
) -> Option<NaiveDate> {
    let sd = b.working(a_start + Days::new(rng.range(1, 5)));
    b.event("strategy_discussion.held", id, sd, json!({"discussion_id": format!("SD{referral}"), "referral_id": r, "agencies": ["police", "health", "social care"], "decision": "s47"}));
    b.event(
        "s47.started",
        id,
        sd,
        json!({"s47_id": format!("S{referral}"), "referral_id": r, "discussion_id": format!("SD{referral}")}),
    );
    let conference = rng.chance(0.31);
    let icpc_wd = if rng.chance(0.814) { rng.range(5, 15) } else { rng.range(16, 25) } as u32;
    let icpc = b.calendar.add_working_days(sd, icpc_wd);
    let s47_done = if conference {
        icpc.min(sd + Days::new(10))
    } else {
        b.calendar.add_working_days(sd, rng.range(5, 15) as u32)
    };
    if s47_done < b.until {
        b.event("s47.completed", id, s47_done, json!({"s47_id": format!("S{referral}"), "icpc_required": conference}));
    }
    end = end.max(s47_done);
    if conference && icpc >= b.until {
        return None; // the conference is still to come
    }
    if conference {
        let plan = rng.chance(0.86);
        let conf = format!("CC{referral}");
        b.event("conference.held", id, icpc, json!({"conference_id": conf, "kind": "initial", "s47_id": format!("S{referral}"), "outcome": if plan { "plan" } else { "no_plan" }}));
        if plan {
            *plans += 1;
            let p = format!("P{}", *plans);
            b.event(
                "cp_plan.started",
                id,
                icpc,
                json!({"plan_id": p, "conference_id": conf, "category": *rng.weighted(&CATEGORIES)}),
            );
            // A long plan is more likely than the 4.4% of endings: histories start four years back, so
            // long plans that began before them are missing from the endings seen.
            // England's plans open at 31 March are about 0.8 of a year's
            // starts: plans last about ten months on average.
            let months = if rng.chance(0.06) { rng.range(24, 36) } else { rng.range(3, 13) } as u32;
            let plan_end = b.working(events::calendar::add_months(icpc, months));
            // Pre-proceedings for a few children on plans (the Public Law
            // Outline): a letter before proceedings, a family group meeting
            // offered and mostly held, reviews, and a decision: most step
            // back down to the plan, some go to court.
            let mut to_court = None;
            if rng.chance(0.3) {
                let started = icpc + Days::new(rng.range(10, 40));
                to_court = pre_proceedings(b, rng, id, referral, started, plan_end);
            }
            // Court proceedings for a few children on plans, most after pre-proceedings.
            if to_court.is_some() || rng.chance(0.015) {
                let filed = to_court.unwrap_or_else(|| icpc + Days::new(rng.range(30, 120)));
                if filed < plan_end.min(b.until) {
                    let pid = format!("CP{referral}");
                    let mut application =
                        json!({"proceedings_id": pid, "kind": "care", "court": "Family Court at East London"});
                    if to_court.is_some() {
                        application["pre_proceedings_id"] = json!(format!("PP{referral}"));
                    }
                    b.event("court.application_filed", id, filed, application);
                    if to_court.is_some() {
                        let pp_id = format!("PP{referral}");
                        let letter = json!({"pre_proceedings_id": pp_id, "letter": "initiating_proceedings"});
                        b.event("pre_proceedings.letter_sent", id, b.working(filed + Days::new(1)), letter);
                    }
                    b.event("court.hearing_held", id, filed + Days::new(14), json!({"proceedings_id": pid}));
                    b.event(
                        "court.order_made",
                        id,
                        filed + Days::new(14),
                        json!({"proceedings_id": pid, "order": "interim_care"}),
                    );
                }
            }
            // Visits while the plan is open, mostly every one to two weeks; a few late.
            let mut visit = icpc + Days::new(rng.range(3, 10));
            let mut changed = false;
            while visit < plan_end.min(b.until) {
                b.event(
                    "child.seen",
                    id,
                    visit,
                    json!({"seen_by": *worker, "seen_alone": rng.chance(0.7), "context": "statutory_visit"}),
                );
                // Some cases change worker along the way.
                if !changed && rng.chance(0.02) {
                    changed = true;
                    let (next, next_team) = rng.pick(workers).clone();
                    if next != *worker {
                        b.event("case.deallocated", id, visit, json!({"worker_id": *worker}));
                        b.event("case.allocated", id, visit, json!({"worker_id": next, "team_id": next_team}));
                        *worker = next;
                    }
                }
                visit = visit + Days::new(if rng.chance(0.9) { rng.range(7, 14) } else { rng.range(15, 30) });
            }
            let mut review = events::calendar::add_months(icpc, 3);
            let mut k = 0;
            while review < plan_end.min(b.until) {
                k += 1;
                let held = if rng.chance(0.9) {
                    review.checked_sub_days(Days::new(rng.range(0, 10))).unwrap_or(review)
                } else {
                    review + Days::new(rng.range(1, 20))
                };
                let held = b.working(held);
                if held >= b.until || held >= plan_end {
                    break;
                }
                let last = events::calendar::add_months(held, 6) >= plan_end;
                b.event("conference.held", id, held, json!({"conference_id": format!("RC{referral}-{k}"), "kind": "review", "plan_id": p, "outcome": if last { "end" } else { "continue" }}));
                review = events::calendar::add_months(held, 6);
            }
            if plan_end >= b.until {
                return None; // still on a plan today
            }
            b.event("cp_plan.ended", id, plan_end, json!({"plan_id": p}));
            end = plan_end;
        }
    }
    Some(end)
}

/// Pre-proceedings from `started` while a plan runs to `plan_end`: the
/// letter before proceedings (most offering a family group decision making
/// meeting, most of those then held), the initial meeting, reviews, and the
/// decision. The day care proceedings are to be applied for, if that is
/// what was decided.
fn pre_proceedings(
    b: &mut Builder<'_>,
    rng: &mut Rng,
    id: &str,
    referral: u32,
    started: NaiveDate,
    plan_end: NaiveDate,
) -> Option<NaiveDate> {
    let pp_id = format!("PP{referral}");
    let pp = json!({"pre_proceedings_id": pp_id});
    let started = b.working(started);
    let decided = b.working(started + Days::new(rng.range(60, 100)));
    // Within the plan; what falls after `until` is not written (Builder::event).
    if decided >= plan_end || started > b.until {
        return None;
    }
    b.event("pre_proceedings.started", id, started, pp.clone());
    let letter = b.working(started + Days::new(rng.range(1, 7)));
    b.event(
        "pre_proceedings.letter_sent",
        id,
        letter,
        json!({"pre_proceedings_id": pp_id, "letter": "before_proceedings"}),
    );
    if rng.chance(0.8) {
        b.event("family_group_meeting.offered", id, letter, pp.clone());
        if rng.chance(0.7) {
            b.event("family_group_meeting.held", id, b.working(letter + Days::new(rng.range(10, 30))), pp.clone());
        }
    }
    let initial = b.working(letter + Days::new(rng.range(5, 12)));
    b.event("pre_proceedings.meeting_held", id, initial, json!({"pre_proceedings_id": pp_id, "kind": "initial"}));
    for k in 1..=rng.range(1, 2) {
        let review = b.working(initial + Days::new(28 * k));
        if review < decided {
            b.event("pre_proceedings.meeting_held", id, review, json!({"pre_proceedings_id": pp_id, "kind": "review"}));
        }
    }
    let court = rng.chance(0.35);
    let outcome = if court { "issue_proceedings" } else { "step_down_child_protection" };
    b.event("pre_proceedings.decided", id, decided, json!({"pre_proceedings_id": pp_id, "outcome": outcome}));
    court.then(|| b.working(decided + Days::new(rng.range(3, 15))))
}

/// Batches of at most `max` events that never split a subject's group, so
/// batches can be sent side by side.
pub fn batches(groups: &[Group], max: usize) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    for g in groups {
        if !current.is_empty() && current.len() + g.len() > max {
            out.push(std::mem::take(&mut current));
        }
        current.extend(g.iter().cloned());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Generates, writes and publishes.
pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    let until = args.until.unwrap_or_else(|| events::calendar::business_date(&chrono::Utc::now()));
    let groups = generate(args.seed, args.councils, args.children, until)?;
    let total: usize = groups.iter().map(Vec::len).sum();
    if let Some(path) = &args.out {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("could not create {}", path.display()))?,
        );
        for e in groups.iter().flatten() {
            serde_json::to_writer(&mut file, e)?;
            file.write_all(b"\n")?;
        }
        file.flush()?;
        eprintln!("wrote {total} events to {}", path.display());
    }
    if args.no_publish {
        return Ok(());
    }
    let token = args.token.context("set SAFEGUARD_TOKEN (or --token) to a token with the publish and admin roles")?;
    let gateway = super::client::RoleClient::gateway(&args.gateway_url, &token)?;
    let started = std::time::Instant::now();
    // Councils and workers first, alone: children's allocations name workers.
    let children_from =
        groups.iter().position(|g| g.first().is_some_and(|e| e["type"] == "child.registered")).unwrap_or(groups.len());
    let mut sent = 0;
    let mut position = 0;
    for part in [&groups[..children_from], &groups[children_from..]] {
        let list = batches(part, 1000);
        let mut in_flight = futures::stream::iter(list.into_iter().map(|batch| {
            let gateway = gateway.clone();
            async move { post(&gateway, batch).await }
        }))
        .buffer_unordered(4);
        use futures::StreamExt as _;
        while let Some(done) = in_flight.next().await {
            let (n, at) = done?;
            sent += n;
            position = position.max(at);
            eprint!("\rpublished {sent}/{total} events");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("\rpublished {sent} events in {secs:.1} s ({:.0} events/s)", sent as f64 / secs.max(1e-9));
    let given = |t: &Option<String>| t.clone().filter(|t| !t.is_empty());
    if let (Some(police), Some(health)) = (given(&args.police_token), given(&args.health_token)) {
        let worker = groups
            .iter()
            .flatten()
            .find(|e| e["type"] == "worker.joined" && e["data"]["role"] == "social_worker")
            .and_then(|e| e["subject"].as_str().map(str::to_owned))
            .context("the population has no social worker to hold the story's case")?;
        let story = story(args.seed, &worker, chrono::Utc::now());
        for (token, events) in [(token, story.council), (police, story.police), (health, story.health)] {
            let gateway = super::client::RoleClient::gateway(&args.gateway_url, &token)?;
            for event in events {
                position = position.max(post(&gateway, vec![event]).await?.1);
            }
        }
        eprintln!(
            "the story: police and health concerns about child {} on a plan; see /ui/workers/{worker} and /ui/children/{}",
            story.child, story.child
        );
    }
    eprintln!("to read it all as soon as it is applied: --min-position {position}");
    Ok(())
}

/// The demo's story, in the words of the issue that asked for it: a child
/// on a plan about whom police and health raise concerns. Times run up to
/// `now`, so the alerts are fresh when the demo starts.
struct Story {
    child: String,
    council: Vec<Value>,
    police: Vec<Value>,
    health: Vec<Value>,
}

fn story(seed: u64, worker: &str, now: chrono::DateTime<chrono::Utc>) -> Story {
    let child =
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("safeguard-story-{seed}").as_bytes()).to_string();
    let (code, _, _) = COUNCILS[0];
    let days_ago = |days: i64, hour: u32| {
        let day = (now - chrono::Duration::days(days)).date_naive();
        day.and_hms_opt(hour, 0, 0).map_or_else(|| now.to_rfc3339(), |t| t.and_utc().to_rfc3339()).min(now.to_rfc3339())
    };
    let event = |id: &str, kind: &str, time: String, data: Value| json!({"specversion": "1.0", "id": format!("story-{seed}-{id}"), "type": kind, "subject": child, "time": time, "data": data});
    let council = vec![
        event(
            "reg",
            "child.registered",
            days_ago(60, 9),
            json!({
            "council": code, "la_child_id": format!("STORY{seed}"), "sex": "F", "birth_date": "2019-06-12",
            "person": {"given_name": "Ellie", "family_name": "Story"}}),
        ),
        event(
            "ref",
            "referral.received",
            days_ago(56, 10),
            json!({"referral_id": "R-STORY", "source": "3A", "nfa": false, "primary_need": "N1"}),
        ),
        event("alloc", "case.allocated", days_ago(56, 11), json!({"worker_id": worker, "team_id": "T1"})),
        event(
            "sd",
            "strategy_discussion.held",
            days_ago(50, 10),
            json!({"discussion_id": "SD-STORY", "referral_id": "R-STORY", "agencies": ["police", "health"], "decision": "s47"}),
        ),
        event(
            "s47",
            "s47.started",
            days_ago(50, 12),
            json!({"s47_id": "S47-STORY", "referral_id": "R-STORY", "discussion_id": "SD-STORY"}),
        ),
        event(
            "icpc",
            "conference.held",
            days_ago(38, 10),
            json!({"conference_id": "C-STORY", "kind": "initial", "s47_id": "S47-STORY", "outcome": "plan"}),
        ),
        event(
            "plan",
            "cp_plan.started",
            days_ago(38, 12),
            json!({"plan_id": "P-STORY", "conference_id": "C-STORY", "category": "NEG"}),
        ),
        event(
            "visit",
            "child.seen",
            days_ago(8, 15),
            json!({"seen_by": worker, "seen_alone": true, "context": "statutory_visit"}),
        ),
    ];
    let police = vec![
        event(
            "police-1",
            "concern.raised",
            days_ago(5, 23),
            json!({"concern_id": "MPS-1", "category": "NEG",
            "summary": "Officers attended a domestic incident at the address; the child was present"}),
        ),
        event(
            "police-2",
            "child.seen",
            days_ago(2, 22),
            json!({"seen_by": "PC-4471", "seen_alone": false, "context": "police", "agency": "Metropolitan Police"}),
        ),
    ];
    let health = vec![
        event(
            "health-1",
            "concern.raised",
            days_ago(3, 11),
            json!({"concern_id": "HV-1", "category": "NEG",
            "summary": "Third missed health visitor appointment; weight below the 2nd centile"}),
        ),
        event(
            "health-2",
            "concern.raised",
            days_ago(1, 10),
            json!({"concern_id": "ED-1", "category": "PHY",
            "summary": "Seen at the emergency department with a bruise the parents could not explain"}),
        ),
    ];
    Story { child, council, police, health }
}

/// Publishes a batch: how many events, and the highest stream position they were given.
async fn post(gateway: &super::client::RoleClient, batch: Vec<Value>) -> anyhow::Result<(usize, u64)> {
    let body = serde_json::to_vec(&batch)?;
    let answer = gateway.publish(&body, 5).await?.success("gateway")?.json();
    let results = answer["results"].as_array().into_iter().flatten();
    Ok((batch.len(), results.filter_map(|r| r["stream_sequence"].as_u64()).max().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_population() {
        let until = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap_or_default();
        let a = generate(7, 2, 30, until).unwrap_or_default();
        let b = generate(7, 2, 30, until).unwrap_or_default();
        let c = generate(8, 2, 30, until).unwrap_or_default();
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_seeded_event_is_valid() {
        let until = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap_or_default();
        let now = chrono::DateTime::parse_from_rfc3339("2026-04-01T00:00:00Z").map(|t| t.to_utc()).unwrap_or_default();
        for e in generate(3, 3, 40, until).unwrap_or_default().iter().flatten() {
            let parsed = events::envelope::parse_received(e, now);
            assert!(parsed.is_ok(), "{e}: {parsed:?}");
        }
    }

    #[test]
    fn the_story_is_valid_and_tells_of_two_agencies() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T09:00:00Z").map(|t| t.to_utc()).unwrap_or_default();
        let story = story(1, "3a3b8f40-55d2-4c8e-9a51-2f7a0e0c1d11", now);
        for e in story.council.iter().chain(&story.police).chain(&story.health) {
            let parsed = events::envelope::parse_received(e, now);
            assert!(parsed.is_ok(), "{e}: {parsed:?}");
        }
        let concerns = story.police.iter().chain(&story.health).filter(|e| e["type"] == "concern.raised").count();
        assert_eq!(concerns, 3, "three concerns from two agencies: a pattern");
    }

    #[test]
    fn batches_never_split_a_subject() {
        let groups = vec![vec![json!(1), json!(2)], vec![json!(3), json!(4), json!(5)], vec![json!(6)]];
        assert_eq!(batches(&groups, 4), vec![vec![json!(1), json!(2)], vec![json!(3), json!(4), json!(5), json!(6)]]);
    }
}
