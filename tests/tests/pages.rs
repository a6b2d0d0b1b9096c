//! The pages in a real browser: headless Chromium (Debian's, through its
//! ChromeDriver) against a real gateway, projector and query role seeded
//! with a known council. Each test owns its system and its browser, and
//! saves screenshots under `target/browser-artifacts/<test>/`.
//!
//! The fixture (Haringey, financial year 2025-26, population 20,000, four
//! funded social worker posts, caseload threshold 2 per FTE):
//! - worker A (team north) holds children 1, 2 and 3; worker B (south) holds child 4;
//! - four referrals (rate 2.0 per 10,000);
//! - child 1: conference 11 working days after the section 47 started (in time),
//!   child 2: 23 working days (late), so 50.0% within 15 working days;
//!   both on plans at 31 March 2026 (1.0 per 10,000), both visits and
//!   reviews long overdue; children 2 and 3 never seen;
//! - the police raised a concern about child 1 before the referral; a visit
//!   to child 1 recorded as "seen alone" is later corrected to "not alone".

use chrono::{DurationRound as _, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use tests::browser::Browser;
use tests::fixtures::{event, registered};
use tests::gateway::tokens;
use tests::query::access_events;
use tests::system::System;

const HARINGEY: &str = "E09000014";

struct Fixture {
    worker_a: String,
    worker_b: String,
    children: Vec<String>,
    /// London wall-clock time after the corrected visit was recorded and before its correction.
    before_correction: String,
}

/// Publishes the fixture and returns what the tests need to know of it.
async fn seed(sys: &System) -> Fixture {
    let worker_a = uuid::Uuid::new_v4().to_string();
    let worker_b = uuid::Uuid::new_v4().to_string();
    let children: Vec<String> = (0..4).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let setup = vec![
        event(
            "cfg",
            "council.configured",
            HARINGEY,
            "2024-01-01T00:00:00Z",
            json!({"effective_from": "2024-01-01", "population_0_17": 20000, "caseload_threshold": 2, "visit_interval_days": 14, "funded_social_worker_fte": 4}),
        ),
        event(
            "wa",
            "worker.joined",
            &worker_a,
            "2024-01-01T09:00:00Z",
            json!({"council": HARINGEY, "team_id": "north", "role": "social_worker", "fte": 1.0, "agency_staff": false}),
        ),
        event(
            "wb",
            "worker.joined",
            &worker_b,
            "2024-01-01T09:00:00Z",
            json!({"council": HARINGEY, "team_id": "south", "role": "social_worker", "fte": 1.0, "agency_staff": false}),
        ),
    ];
    sys.publish(tokens::ADMIN, setup).await;
    let mut events = Vec::new();
    let referred = ["2025-05-01", "2025-06-10", "2025-09-01", "2025-10-01"];
    for (i, child) in children.iter().enumerate() {
        let (worker, team) = if i < 3 { (&worker_a, "north") } else { (&worker_b, "south") };
        events.push(registered(&format!("reg{i}"), child, HARINGEY));
        events.push(event(
            &format!("ref{i}"),
            "referral.received",
            child,
            &format!("{}T10:00:00Z", referred[i]),
            json!({"referral_id": format!("R{i}"), "source": "6", "nfa": false}),
        ));
        events.push(event(
            &format!("alloc{i}"),
            "case.allocated",
            child,
            &format!("{}T11:00:00Z", referred[i]),
            json!({"worker_id": worker, "team_id": team}),
        ));
    }
    let (c1, c2) = (&children[0], &children[1]);
    events.extend([
        event("s47-1", "s47.started", c1, "2025-05-05T10:00:00Z", json!({"s47_id": "S1", "referral_id": "R0"})),
        event(
            "icpc-1",
            "conference.held",
            c1,
            "2025-05-20T10:00:00Z",
            json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "plan"}),
        ),
        event(
            "plan-1",
            "cp_plan.started",
            c1,
            "2025-05-20T11:00:00Z",
            json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"}),
        ),
        event(
            "seen-1",
            "child.seen",
            c1,
            "2025-06-01T11:00:00Z",
            json!({"seen_by": worker_a, "seen_alone": true, "context": "statutory_visit"}),
        ),
        event("s47-2", "s47.started", c2, "2025-06-12T10:00:00Z", json!({"s47_id": "S2", "referral_id": "R1"})),
        event(
            "icpc-2",
            "conference.held",
            c2,
            "2025-07-15T10:00:00Z",
            json!({"conference_id": "C2", "kind": "initial", "s47_id": "S2", "outcome": "plan"}),
        ),
        event(
            "plan-2",
            "cp_plan.started",
            c2,
            "2025-07-15T11:00:00Z",
            json!({"plan_id": "P2", "conference_id": "C2", "category": "PHY"}),
        ),
        event(
            "visit-1",
            "child.seen",
            c1,
            "2025-06-20T11:00:00Z",
            json!({"seen_by": worker_a, "seen_alone": true, "context": "statutory_visit"}),
        ),
    ]);
    sys.publish(tokens::HARINGEY, events).await;
    let concern = sys
        .publish(
            tokens::POLICE,
            vec![event(
                "concern-1",
                "concern.raised",
                c1,
                "2025-04-28T22:00:00Z",
                json!({"concern_id": "K1", "summary": "Neighbour heard shouting", "category": "EMO"}),
            )],
        )
        .await;
    // The first whole second after the last fact before the correction was
    // recorded (the page's control takes seconds), and the correction only
    // once the clock has passed it.
    let recorded = concern.last().and_then(|r| r["recorded_at"].as_str()).expect("recorded_at");
    let recorded = chrono::DateTime::parse_from_rfc3339(recorded).expect("an RFC 3339 time").to_utc();
    let between =
        recorded.duration_trunc(chrono::TimeDelta::seconds(1)).expect("truncate") + chrono::TimeDelta::seconds(1);
    let before_correction = between.with_timezone(&chrono_tz::Europe::London).format("%Y-%m-%dT%H:%M:%S").to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while Utc::now() <= between {
        assert!(std::time::Instant::now() < deadline, "the clock did not pass {between}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sys.publish(
        tokens::HARINGEY,
        vec![event("fix-1", "record.corrected", c1, "2025-06-21T09:00:00Z", json!({"corrects": "visit-1", "reason": "the child was not seen alone", "data": {"seen_by": worker_a, "seen_alone": false, "context": "statutory_visit"}}))],
    )
    .await;
    Fixture { worker_a, worker_b, children, before_correction }
}

/// Signs in through the form, as a person would, and lands on the start page.
async fn sign_in(browser: &Browser, sys: &System, token: &str, name: &str) {
    browser.goto(&sys.query.url("/ui")).await;
    // Not signed in: sent to the sign-in page.
    browser.find("form.sign-in").await;
    browser.type_into("#acting_user", name).await;
    browser.type_into("#token", token).await;
    browser.click("form.sign-in button[type=submit]").await;
    browser.wait_until("return location.pathname === '/ui'", json!([]), 10, "signed in").await;
}

/// The value of a card's element on the dashboard.
async fn card(browser: &Browser, indicator: &str, part: &str) -> String {
    browser.text(&format!("[data-indicator=\"{indicator}\"] {part}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_caseload_board_show_the_fixture_and_follow_changes_live() {
    let sys = System::start().await;
    let fx = seed(&sys).await;
    let browser = Browser::start("dashboard_and_board").await;
    sign_in(&browser, &sys, tokens::HARINGEY, "Team Manager North").await;
    // The session cookie is out of the page's reach, and the token in no address.
    assert_eq!(browser.execute("return document.cookie", json!([])).await, json!(""));
    assert!(!browser.url().await.contains(tokens::HARINGEY));
    browser.screenshot("start").await;
    browser.assert_accessible("the start page").await;

    browser.click(&format!("a[href=\"/ui/indicators?council={HARINGEY}\"]")).await;
    browser.find("select#period").await;
    browser.goto(&sys.query.url(&format!("/ui/indicators?council={HARINGEY}&period=2025-26"))).await;
    assert_eq!(browser.text("h1").await, format!("Indicators: {HARINGEY}, 2025-26"));
    assert_eq!(card(&browser, "referrals", ".figure").await, "2.0");
    assert_eq!(card(&browser, "referrals", ".numerator").await, "4");
    assert_eq!(card(&browser, "referrals", ".denominator").await, "20,000");
    assert_eq!(card(&browser, "icpc_within_15_working_days", ".figure").await, "50.0%");
    assert_eq!(card(&browser, "icpc_within_15_working_days", ".numerator").await, "1");
    assert_eq!(card(&browser, "icpc_within_15_working_days", ".denominator").await, "2");
    assert!(card(&browser, "icpc_within_15_working_days", ".national").await.starts_with("81.4%"));
    assert_eq!(card(&browser, "plans_open_at_period_end", ".figure").await, "1.0");
    assert_eq!(card(&browser, "vacancy_rate", ".figure").await, "50.0%");
    assert_eq!(card(&browser, "caseload_per_worker", ".figure").await, "2.0");
    // Each chart has a point for each of eight quarters, and says so in words too.
    let points = browser
        .execute("return document.querySelectorAll('[data-indicator=\"referrals\"] svg circle').length", json!([]))
        .await;
    assert_eq!(points, json!(8));
    browser.click("[data-indicator=\"referrals\"] details summary").await;
    let described = browser.text("[data-indicator=\"referrals\"] details table").await;
    assert!(described.contains("Mar 2026\t2.0"), "{described}");

    // A referral arriving now reaches the open page through the indicators stream, without a reload.
    browser
        .wait_until(
            "return document.getElementById('live-status').innerText.startsWith('Live')",
            json!([]),
            20,
            "stream connected",
        )
        .await;
    browser.execute("document.title = 'not reloaded'", json!([])).await;
    // A child newly referred: a new referral (one received while a child's
    // episode is open would not be).
    let newcomer = uuid::Uuid::new_v4().to_string();
    sys.publish(
        tokens::HARINGEY,
        vec![
            registered("reg-late", &newcomer, HARINGEY),
            event(
                "ref-late",
                "referral.received",
                &newcomer,
                "2025-12-01T10:00:00Z",
                json!({"referral_id": "R9", "source": "6", "nfa": false}),
            ),
        ],
    )
    .await;
    browser
        .wait_until(
            "return document.querySelector('[data-indicator=\"referrals\"] .numerator').innerText === '5'",
            json!([]),
            30,
            "the referral count follows the stream",
        )
        .await;
    assert_eq!(card(&browser, "referrals", ".figure").await, "2.5");
    assert_eq!(browser.execute("return document.title", json!([])).await, json!("not reloaded"));
    browser.screenshot("indicators").await;
    browser.assert_accessible("the indicators dashboard").await;

    // The board: worker A over the threshold, with overdue visits and reviews; sortable.
    browser.goto(&sys.query.url(&format!("/ui/caseloads?council={HARINGEY}"))).await;
    let row_a = format!("#workers tr[data-worker=\"{}\"]", fx.worker_a);
    let row_b = format!("#workers tr[data-worker=\"{}\"]", fx.worker_b);
    let cells = |row: &str| format!("{row} td");
    // Team, role, open cases, per FTE, visits overdue, reviews overdue, longest unseen (moves with today),
    // never seen, never seen alone (child 1 was, on the first visit), then
    // the alerts waiting (their statutory clocks: nine, eight escalated long since).
    let a = browser.texts(&cells(&row_a)).await;
    let expected = ["north", "social worker", "3", "3.0", "2", "2"].map(String::from);
    assert_eq!((&a[..6], &a[7..9]), (&expected[..], &["2".to_owned(), "2".to_owned()][..]));
    assert_eq!(a[9], "9 (8)");
    assert!(browser.text(&format!("{row_a} th")).await.contains("over threshold"));
    assert!(!browser.text(&format!("{row_b} th")).await.contains("over threshold"));
    assert_eq!(browser.texts(&cells(&row_b)).await[2..6], ["1".to_owned(), "1.0".into(), "0".into(), "0".into()]);
    let order = || {
        browser
            .execute("return [...document.querySelectorAll('#workers tbody tr')].map(r => r.dataset.worker)", json!([]))
    };
    assert_eq!(order().await, json!([fx.worker_a, fx.worker_b]), "most cases first by default");
    assert_eq!(
        browser
            .execute("return document.querySelector('#workers th[aria-sort]').innerText", json!([]))
            .await
            .as_str()
            .map(|t| t.starts_with("Open cases")),
        Some(true)
    );
    browser.click("#workers thead a[href*=\"sort=cases&order=asc\"]").await;
    browser.wait_until("return location.search.includes('order=asc')", json!([]), 10, "sorted").await;
    assert_eq!(order().await, json!([fx.worker_b, fx.worker_a]));
    assert_eq!(
        browser
            .execute("return document.querySelector('#workers th[aria-sort]').getAttribute('aria-sort')", json!([]))
            .await,
        json!("ascending")
    );
    browser.screenshot("caseload_board").await;
    browser.assert_accessible("the caseload board").await;

    // Worker A's cases: a child-level page, logged with the person signed in.
    browser.click(&format!("a[href=\"/ui/workers/{}\"]", fx.worker_a)).await;
    browser.find("#cases").await;
    let listed = browser
        .execute("return [...document.querySelectorAll('#cases tbody tr')].map(r => r.dataset.child)", json!([]))
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    let late = browser.execute("return document.querySelectorAll('#cases tbody tr.late').length", json!([])).await;
    assert_eq!(late, json!(2), "children 1 and 2 have overdue visits and reviews");
    // Sorted by last seen, the children never seen come first.
    assert_eq!(listed.as_array().and_then(|l| l.last()), Some(&json!(fx.children[0])));
    browser.screenshot("worker_cases").await;
    browser.assert_accessible("a worker's cases").await;
    let logged: Vec<Value> = access_events(&sys.nats.url())
        .await
        .into_iter()
        .filter(|e| e["endpoint"] == "GET /ui/workers/{worker}")
        .collect();
    assert_eq!(logged.len(), 3, "one access event per child listed: {logged:?}");
    assert!(logged.iter().all(|e| e["acting_user"] == "Team Manager North" && e["principal"] == "haringey-csc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_replays_what_was_known_and_a_later_correction_is_hidden() {
    let sys = System::start().await;
    let fx = seed(&sys).await;
    let child = &fx.children[0];
    let browser = Browser::start("timeline").await;
    sign_in(&browser, &sys, tokens::HARINGEY, "Duty Social Worker").await;

    // Found by the council's own id, with a form (the id is never in an address), then opened.
    browser.execute("document.getElementById('council').value = arguments[0]", json!([HARINGEY])).await;
    browser.type_into("#la_child_id", &format!("L{}", &child[..8])).await;
    browser.click("form.find button[type=submit]").await;
    browser.find("#found a").await;
    assert_eq!(browser.texts("#found a").await, [format!("Child {}", &child[..8])]);
    assert!(!browser.url().await.contains(&child[..8]));
    browser.assert_accessible("the search results").await;
    browser.click("#found a").await;
    browser.find("svg.lanes").await;
    assert!(browser.url().await.ends_with(&format!("/ui/children/{child}")));
    assert_eq!(browser.texts("svg.lanes .lane-label").await, ["haringey-csc", "met-police"]);
    let entries = browser.texts("ol.entries > li .what").await;
    assert_eq!(entries.len(), 10, "{entries:?}");
    // The police concern comes first in business time, though it was recorded last but one.
    assert_eq!(browser.text("ol.entries > li:nth-child(2) .agency").await, "met-police");
    // The corrected visit is marked, linked to its correction both ways, on the lanes and in the list.
    let corrected = browser.execute("return document.querySelector('ol.entries li.corrected').id", json!([])).await;
    let corrected = corrected.as_str().unwrap_or_default().to_owned();
    assert_eq!(browser.text(&format!("#{corrected} .badge")).await, "corrected by entry 10");
    assert_eq!(
        browser.text("#entry-10 .badge").await,
        format!("corrects entry {}", corrected.trim_start_matches("entry-"))
    );
    assert_eq!(
        browser.execute("return document.querySelectorAll('svg.lanes path.link.corrected').length", json!([])).await,
        json!(1)
    );
    browser.screenshot("timeline_now").await;
    browser.assert_accessible("the timeline").await;

    // Keyboard: focus the corrected visit's marker and press Enter; its entry opens with focus on it.
    browser.execute(&format!("document.querySelector('svg.lanes a[href=\"#{corrected}\"]').focus()"), json!([])).await;
    browser.press("\u{E007}").await;
    browser
        .wait_until(
            &format!("return document.querySelector('#{corrected} details').open === true"),
            json!([]),
            10,
            "the entry opens",
        )
        .await;
    assert_eq!(browser.execute("return document.activeElement.tagName", json!([])).await, json!("SUMMARY"));
    let detail = browser.text(&format!("#{corrected} dl")).await;
    assert!(detail.contains("Corrected by") && detail.contains("entry 10"), "{detail}");

    // As known between the visit and its correction: no correction, the visit as it then stood.
    browser.execute("document.getElementById('as_of').value = arguments[0]", json!([fx.before_correction])).await;
    browser.click("form.as-of button[type=submit]").await;
    browser.wait_until("return location.search.includes('as_of=')", json!([]), 10, "as-of applied").await;
    assert_eq!(browser.texts("ol.entries > li .what").await.len(), 9);
    assert!(!browser.has("ol.entries li.corrected").await);
    assert!(!browser.has("svg.lanes path.link").await);
    assert!(browser.text("#as_of-hint").await.starts_with("Showing only what had been recorded by"));
    browser.screenshot("timeline_as_known_before_correction").await;

    // From a date: only what happened since, numbered as in the whole chronology.
    browser.goto(&sys.query.url(&format!("/ui/children/{child}?from=2025-06-01"))).await;
    browser.find("ol.entries").await;
    assert_eq!(browser.texts("ol.entries > li .serial").await, ["8", "9", "10"]);
    assert_eq!(browser.text(&format!("#{corrected} .badge")).await, "corrected by entry 10");
    browser.goto(&sys.query.url(&format!("/ui/children/{child}?from=2025-06-01&to=2025-05-01"))).await;
    assert!(browser.text("main .problem").await.contains("to: must not be before from"));
    browser.goto(&sys.query.url(&format!("/ui/children/{child}"))).await;

    // The anonymised view: Child A, people by role, and neither the child's id nor the concern's author's words about names.
    browser.click("nav.views a[href$=\"view=publication\"]").await;
    browser.wait_until("return location.search.includes('view=publication')", json!([]), 10, "publication view").await;
    assert_eq!(browser.text("h1").await, "Chronology of Child A");
    let page = browser.text("main").await;
    assert!(!page.contains(child.as_str()) && !page.contains(&child[..8]), "the child's id is not published");
    assert!(!page.contains(fx.worker_a.as_str()));
    assert!(page.contains("Referral 1 from police (6)"), "ids become labels, named once: {page}");
    assert!(!browser.has("#as_of").await, "the publication view is the record as it stands now");
    browser.screenshot("timeline_publication").await;
    browser.assert_accessible("the publication view").await;

    // The printable view sets the full record as the court PDF does, the PDF one link away.
    browser.goto(&sys.query.url(&format!("/ui/children/{child}/print"))).await;
    browser.find("ol.print-entries").await;
    assert_eq!(browser.texts("ol.print-entries > li").await.len(), 10);
    assert!(browser.text("ol.print-entries > li h2").await.contains("E1"), "entries by their lasting reference");
    assert!(browser.has("a[href$=\"export.pdf?record=full\"]").await);
    browser.screenshot("print").await;
    browser.assert_accessible("the printable chronology").await;

    let logged: Vec<(String, String)> = access_events(&sys.nats.url())
        .await
        .into_iter()
        .filter(|e| e["child"] == json!(child) && e["acting_user"] == "Duty Social Worker")
        .map(|e| {
            (
                e["endpoint"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let found = ("POST /ui/find".to_owned(), "allowed".to_owned());
    let view = ("GET /ui/children/{child}".to_owned(), "allowed".to_owned());
    let publication = ("GET /ui/children/{child}?view=publication".to_owned(), "allowed".to_owned());
    let print = ("GET /ui/children/{child}/print".to_owned(), "allowed".to_owned());
    // The search, then now, as known before the correction, from June, now
    // again, the publication view and the printable one: each logged once;
    // the refused dates not at all.
    assert_eq!(
        logged,
        [found, view.clone(), view.clone(), view.clone(), view, publication, print],
        "each page view is logged once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_without_the_right_see_nothing() {
    let sys = System::start().await;
    let fx = seed(&sys).await;
    let child = &fx.children[0];
    let browser = Browser::start("refusals").await;

    // Not signed in: a child's page sends you to sign in, and shows nothing of the child.
    browser.goto(&sys.query.url(&format!("/ui/children/{child}"))).await;
    browser.find("form.sign-in").await;
    assert!(!browser.has("ol.entries").await);
    // A wrong token is refused, naming the field.
    browser.type_into("#acting_user", "Someone").await;
    browser.type_into("#token", "not-a-token").await;
    browser.click("form.sign-in button[type=submit]").await;
    browser.find("#sign-in-problems").await;
    assert!(browser.text("#sign-in-problems").await.contains("token: is not a token this service knows"));
    browser.screenshot("sign_in_refused").await;
    browser.assert_accessible("the sign-in page with its problems").await;

    // The partnership dashboard may see aggregates but no child, and has no search.
    sign_in(&browser, &sys, tokens::DASHBOARD, "Board Analyst").await;
    assert!(!browser.has("form.find").await);
    browser.goto(&sys.query.url(&format!("/ui/children/{child}"))).await;
    assert_eq!(browser.text("h1").await, "You cannot see this");
    assert!(!browser.has("ol.entries").await && !browser.has("svg.lanes").await);
    browser.screenshot("child_refused").await;
    browser.assert_accessible("a refusal").await;
    browser.goto(&sys.query.url(&format!("/ui/workers/{}", fx.worker_a))).await;
    assert_eq!(browser.text("h1").await, "You cannot see this");
    assert!(!browser.has("#cases").await);
    // The board shows counts and no link to any child or caseload.
    browser.goto(&sys.query.url(&format!("/ui/caseloads?council={HARINGEY}"))).await;
    browser.find("#workers").await;
    assert!(!browser.has("a[href^=\"/ui/workers/\"]").await && !browser.has("a[href^=\"/ui/children/\"]").await);
    let refused: Vec<Value> = access_events(&sys.nats.url())
        .await
        .into_iter()
        .filter(|e| e["principal"] == "partnership-dashboard")
        .collect();
    assert!(
        refused
            .iter()
            .any(|e| e["child"] == json!(child) && e["outcome"] == "refused" && e["acting_user"] == "Board Analyst")
    );
    assert!(refused.iter().all(|e| e["outcome"] == "refused"), "{refused:?}");

    // Islington's people see nothing of Haringey.
    let islington = Browser::start("refusals_islington").await;
    sign_in(&islington, &sys, tokens::ISLINGTON, "Islington Worker").await;
    islington.goto(&sys.query.url(&format!("/ui/indicators?council={HARINGEY}"))).await;
    assert_eq!(islington.text("h1").await, "You cannot see this");
    assert!(!islington.has("[data-indicator]").await);

    // A review panel member starts from the children whose open review names them, and sees only those.
    let reviewed = &fx.children[1];
    sys.publish(
        tokens::ADMIN,
        vec![event(
            "rev-1",
            "review.opened",
            reviewed,
            "2025-12-01T09:00:00Z",
            json!({"review_id": "RV1", "kind": "rapid_review", "reviewers": ["panel-reviewer"]}),
        )],
    )
    .await;
    let panel = Browser::start("refusals_reviewer").await;
    sign_in(&panel, &sys, tokens::REVIEWER, "Panel Chair").await;
    assert_eq!(panel.texts("main li a").await, [format!("Child {}", &reviewed[..8])]);
    assert!(!panel.has("form.find").await && !panel.has("a[href^=\"/ui/indicators\"]").await);
    panel.click("main li a").await;
    panel.find("svg.lanes").await;
    panel.goto(&sys.query.url(&format!("/ui/children/{child}"))).await;
    assert_eq!(panel.text("h1").await, "You cannot see this");
    // One wording for every refusal of a child (issue 17 item 5); the reason is in the access log.
    assert_eq!(panel.text("main .problem").await, "This principal may not read this child's record");

    // Outside a browser: the cookie's attributes, and state changes from elsewhere refused.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let form = [("token", tokens::HARINGEY), ("acting_user", "Someone")];
    let foreign = http
        .post(sys.query.url("/ui/sign-in"))
        .header("origin", "https://elsewhere.example")
        .form(&form)
        .send()
        .await
        .expect("answer");
    assert_eq!(foreign.status(), 403);
    assert!(foreign.headers().get("set-cookie").is_none());
    let host = sys.query.url("").trim_end_matches('/').to_owned();
    let ours =
        http.post(sys.query.url("/ui/sign-in")).header("origin", &host).form(&form).send().await.expect("answer");
    assert_eq!(ours.status(), 303);
    let cookie = ours.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    for attribute in ["__Host-sg_session=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap_or_default().to_owned();
    let no_csrf = http
        .post(sys.query.url("/ui/sign-out"))
        .header("origin", &host)
        .header("cookie", &session)
        .form(&[("csrf", "guess")])
        .send()
        .await
        .expect("answer");
    assert_eq!(no_csrf.status(), 403);
    let page = http.get(sys.query.url("/ui")).header("cookie", &session).send().await.expect("answer");
    assert_eq!(page.status(), 200);
    let csp =
        page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));

    // Signing out ends the session everywhere: a copy of the cookie taken before is refused after.
    let person = tests::query::PageSession::sign_in(&host, tokens::HARINGEY, "Someone").await;
    let copy = person.cookie.clone();
    let out = person.sign_out(&person.csrf().await).await;
    assert_eq!(out.status(), 303);
    assert!(out.headers().get("set-cookie").and_then(|v| v.to_str().ok()).is_some_and(|c| c.contains("Max-Age=0")));
    let copied = http.get(sys.query.url("/ui")).header("cookie", &copy).send().await.expect("answer");
    assert_eq!(copied.status(), 303, "a signed-out session's cookie no longer opens a page");
    assert_eq!(copied.headers().get("location").and_then(|v| v.to_str().ok()), Some("/ui/sign-in"));
}

/// A person signs in through their council's identity provider (a real
/// OpenID Connect provider, its own login page, authorization code with
/// PKCE), sees the dashboard, opens a child (the access log names the
/// person from the ID token, never a typed name), and signs out here and
/// at the provider. With `[pages] token_sign_in = false` the token form
/// is gone and a token posted anyway is refused.
#[tokio::test]
async fn a_person_signs_in_through_their_identity_provider_and_the_access_log_names_them() {
    let sys = System::start().await;
    let fx = seed(&sys).await;
    let child = &fx.children[0];
    let provider = tests::oidc::IdentityProvider::start(
        &[],
        vec![json!({"id": "u-ada", "name": "Ada Okafor", "email": "ada@haringey.example",
                    "password": "correct horse battery", "groups": ["haringey-social-workers"]})],
    )
    .await;
    let mut principals = std::fs::read_to_string(sys.gateway.path("principals.toml")).expect("principals");
    principals.push_str(&format!(
        "\n[pages]\ntoken_sign_in = false\n\n\
         [[principal]]\nname = \"haringey-practitioners\"\ndisplay_name = \"Haringey social workers\"\n\
         agency = \"council_childrens_services\"\nroles = [\"practitioner\"]\ncouncils = [\"{HARINGEY}\"]\n\n\
         [[issuer]]\nname = \"haringey-idp\"\nurl = \"{}\"\naudience = \"{}\"\n\
         [[issuer.group]]\ngroup = \"haringey-social-workers\"\nprincipal = \"haringey-practitioners\"\n\
         [issuer.sign_in]\nclient_id = \"{}\"\nscopes = [\"openid\", \"profile\", \"email\", \"groups\"]\n\
         label = \"Sign in with Haringey Council\"\n",
        provider.issuer(),
        tests::oidc::AUDIENCE,
        tests::oidc::PAGES_CLIENT,
    ));
    std::fs::write(sys.gateway.path("principals.toml"), principals).expect("write principals");
    let query = tests::query::TestQuery::start(&sys.nats.url(), sys.db.url(), &sys.gateway).await;
    let browser = Browser::start("identity_provider").await;

    browser.goto(&query.url("/ui")).await;
    assert_eq!(browser.text("#sign-in a.button").await, "Sign in with Haringey Council");
    assert!(!browser.has("form.sign-in").await, "the token form is switched off");
    browser.assert_accessible("the sign-in page with an identity provider").await;
    browser.click("#sign-in a.button").await;
    // The provider's own login page: a wrong password first.
    browser.find("#login").await;
    browser.type_into("#login", "u-ada").await;
    browser.type_into("#password", "wrong").await;
    browser.click("#sign-in").await;
    browser.find("#problem").await;
    browser.type_into("#login", "u-ada").await;
    browser.type_into("#password", "correct horse battery").await;
    browser.screenshot("provider_login").await;
    browser.click("#sign-in").await;
    browser.wait_until("return location.pathname === '/ui'", json!([]), 15, "signed in through the provider").await;
    let who = browser.text(".who").await;
    assert!(who.contains("Ada Okafor (haringey-idp:u-ada)") && who.contains("haringey-practitioners"), "{who}");
    browser.goto(&query.url(&format!("/ui/indicators?council={HARINGEY}"))).await;
    browser.find("[data-indicator]").await;
    browser.goto(&query.url(&format!("/ui/children/{child}"))).await;
    browser.find("svg.lanes").await;
    browser.screenshot("child_as_a_person").await;
    let mine: Vec<Value> = access_events(&sys.nats.url())
        .await
        .into_iter()
        .filter(|e| e["principal"] == "haringey-practitioners")
        .collect();
    assert!(!mine.is_empty(), "the child's page was logged");
    assert!(
        mine.iter().all(|e| e["acting_user"] == "Ada Okafor (haringey-idp:u-ada)"),
        "every read names the person the provider vouched for: {mine:?}"
    );
    assert!(mine.iter().any(|e| e["child"] == json!(child) && e["outcome"] != "refused"), "{mine:?}");

    // Signing out ends the session here, then at the provider (it asks first).
    browser.click("form[action=\"/ui/sign-out\"] button").await;
    browser.find("button[name=logout][value=yes]").await;
    browser.click("button[name=logout][value=yes]").await;
    browser.wait_until("return location.pathname === '/ui/sign-in'", json!([]), 15, "back at the sign-in page").await;
    browser.goto(&query.url(&format!("/ui/children/{child}"))).await;
    browser.find("#sign-in a.button").await;
    assert!(!browser.has("svg.lanes").await);
    // Signed out at the provider too: signing in again asks for the password.
    browser.click("#sign-in a.button").await;
    browser.find("#login").await;

    // With token sign-in switched off, a token posted anyway opens nothing.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let refused = http
        .post(query.url("/ui/sign-in"))
        .header("origin", query.url(""))
        .form(&[("token", tests::gateway::tokens::HARINGEY), ("acting_user", "Someone")])
        .send()
        .await
        .expect("sign-in");
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("set-cookie").is_none());
}
