//! Pages for people, served by the query role under `/ui`: the indicators
//! dashboard, the caseload board, a worker's cases and a child's
//! chronology as swimlanes. They are a second face of the same reads: the
//! same principals and role matrix (decided in [`crate::policy`], as for
//! the API), the same access log (every child-level page view is recorded,
//! with the person signed in as the acting user, before the page is sent),
//! the same read models.
//!
//! - [`session`]: sign-in, the session cookie and CSRF.
//! - [`layout`]: the frame, the error page, numbers and times for people.
//! - [`chart`]: trend charts as server-drawn SVG.
//! - [`timeline`]: the swimlanes.
//!
//! HTML is built with `maud`, which escapes every value it is given. The
//! pages work without script; `assets/app.js` adds live indicator updates
//! (Server-Sent Events) and opens an entry when its marker is followed.
//! Nothing personal goes in a URL: child and worker ids are random UUIDs
//! (as in the API and the NATS subjects), and an operator's token travels
//! only in the sign-in form's body. People sign in through their identity
//! provider (`/ui/sign-in/with/{issuer}`, back at `/ui/sign-in/callback`).

pub mod chart;
pub mod layout;
pub mod session;
pub mod timeline;

use crate::caller::Caller;
use crate::error::QueryError;
use crate::{
    CouncilParams, Lookup, Need, QueryState, admit_child, admitted_worker_cases, council_param, find_children,
    indicator_events, period_of, record, uuid_param,
};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use casework::indicators::Period;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone as _, Utc};
use chrono_tz::Europe::London;
use events::calendar::business_date;
use events::ids::CouncilCode;
use futures::{StreamExt as _, TryStreamExt as _};
use layout::{
    Frame, error_page, format_count, format_value, forward_page, page, respond, see_other, see_other_to, unit_words,
};
use maud::{Markup, html};
use platform::principals::Principal;
use serde::Deserialize;
use session::Session;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub fn router() -> axum::Router<Arc<QueryState>> {
    axum::Router::new()
        .route("/ui", get(home))
        .route("/ui/sign-in", get(sign_in_form).post(sign_in))
        .route("/ui/sign-in/with/{issuer}", get(sign_in_with))
        .route("/ui/sign-in/callback", get(sign_in_callback))
        .route("/ui/sign-out", post(sign_out))
        .route("/ui/find", post(find))
        .route("/ui/indicators", get(dashboard))
        .route("/ui/indicators/stream", get(dashboard_stream))
        .route("/ui/caseloads", get(board))
        .route("/ui/workers/{worker}", get(worker_page))
        .route("/ui/children/{child}", get(child_page))
        .route("/ui/children/{child}/print", get(print_page))
        .route("/ui/children/{child}/export.pdf", get(export_pdf))
        .route("/ui/assets/app.css", get(|| async { asset("text/css; charset=utf-8", include_str!("assets/app.css")) }))
        .route(
            "/ui/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("assets/app.js")) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Who is at the browser: the session, and the principal it names as that principal stands now.
#[derive(Debug, Clone)]
struct Viewer {
    caller: Caller,
    session: Session,
    csrf: String,
}

impl Viewer {
    fn frame(&self) -> Frame<'_> {
        Frame { session: Some(&self.session), csrf: Some(&self.csrf) }
    }
}

async fn viewer(app: &QueryState, headers: &HeaderMap) -> Result<Viewer, QueryError> {
    let (caller, session) = Caller::from_session(app, headers).await?;
    let csrf = app.sessions.csrf(&session);
    Ok(Viewer { caller, session, csrf })
}

/// Runs a page for a signed-in viewer, counts it, and turns a failure into an error page.
async fn serve<F, Fut>(app: &Arc<QueryState>, headers: &HeaderMap, endpoint: &'static str, render: F) -> Response
where
    F: FnOnce(Viewer, Arc<QueryState>) -> Fut,
    Fut: Future<Output = Result<Response, QueryError>>,
{
    let response = match viewer(app, headers).await {
        Err(e) => error_page(e, Frame { session: None, csrf: None }),
        Ok(v) => {
            let frame_viewer = v.clone();
            match render(v, app.clone()).await {
                Ok(r) => r,
                Err(e) => error_page(e, frame_viewer.frame()),
            }
        }
    };
    app.metrics.requests.get_or_create(&crate::RequestLabel { endpoint, status: response.status().as_u16() }).inc();
    response
}

// ---------------------------------------------------------------- sign-in

async fn sign_in_form(State(app): State<Arc<QueryState>>, headers: HeaderMap) -> Response {
    if viewer(&app, &headers).await.is_ok() {
        return see_other("/ui");
    }
    respond(StatusCode::OK, sign_in_page(&app, &[], ""))
}

fn sign_in_page(app: &QueryState, problems: &[(&str, &str)], acting_user: &str) -> Markup {
    let problem = |field: &str| problems.iter().find(|(f, _)| *f == field).map(|(_, m)| *m);
    let providers: Vec<(String, String)> =
        app.principals.sign_in_issuers().into_iter().filter_map(|i| i.sign_in.map(|s| (i.name, s.label))).collect();
    let tokens = app.principals.token_sign_in();
    let body = html! {
        h1 { "Sign in" }
        p { "Everything you open about a child is recorded with your name." }
        @if !problems.is_empty() {
            div class="problem" role="alert" id="sign-in-problems" {
                h2 { "There is a problem" }
                ul { @for (field, message) in problems { li { a href=(format!("#{field}")) { (field) ": " (message) } } } }
            }
        }
        @if !providers.is_empty() {
            ul class="providers" id="sign-in" {
                @for (name, label) in &providers {
                    li { a class="button" href=(format!("/ui/sign-in/with/{name}")) { (label) } }
                }
            }
        }
        @if tokens {
            @if !providers.is_empty() { h2 { "Operators" } }
            p { "Sign in with your organisation's Safeguard token." }
            form method="post" action="/ui/sign-in" class="sign-in" {
                div class="field" {
                    label for="acting_user" { "Your name" }
                    @if let Some(m) = problem("acting_user") { p class="field-error" id="acting_user-error" { (m) } }
                    input id="acting_user" name="acting_user" type="text" autocomplete="name" required maxlength="200"
                        value=(acting_user) aria-invalid=[problem("acting_user").map(|_| "true")];
                }
                div class="field" {
                    label for="purpose" { "Purpose (optional)" }
                    input id="purpose" name="purpose" type="text" maxlength="200";
                }
                div class="field" {
                    label for="token" { "Token" }
                    @if let Some(m) = problem("token") { p class="field-error" id="token-error" { (m) } }
                    input id="token" name="token" type="password" autocomplete="off" required
                        aria-invalid=[problem("token").map(|_| "true")];
                }
                button type="submit" { "Sign in" }
            }
        }
        @if providers.is_empty() && !tokens {
            p { "No way to sign in is configured. Ask your administrator." }
        }
    };
    page("Sign in", Frame { session: None, csrf: None }, body)
}

/// Where this query role is, as the browser reached it: the configured
/// redirect address's origin, else the request's host (`http` only on the
/// loopback, as for the providers themselves).
fn own_origin(headers: &HeaderMap, sign_in: &platform::principals::SignIn) -> Option<String> {
    if let Some(url) = &sign_in.redirect_url {
        return url.strip_suffix("/ui/sign-in/callback").map(str::to_owned);
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok())?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        return None;
    }
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let scheme = if ["127.0.0.1", "localhost", "[::1]"].contains(&name) { "http" } else { "https" };
    Some(format!("{scheme}://{host}"))
}

/// The identity provider of this name that people sign in through.
fn sign_in_issuer(
    app: &QueryState,
    name: &str,
) -> Option<(platform::principals::Issuer, platform::principals::SignIn)> {
    let issuer = app.principals.issuer_named(name)?;
    let sign_in = issuer.sign_in.clone()?;
    Some((issuer, sign_in))
}

/// Starts a person's sign-in: sends the browser to their identity provider
/// with a code request, keeping the sign-in's secrets in its own cookie.
async fn sign_in_with(State(app): State<Arc<QueryState>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((issuer, sign_in)) = sign_in_issuer(&app, &name) else {
        return respond(
            StatusCode::NOT_FOUND,
            sign_in_page(&app, &[("sign-in", "names no identity provider of this service")], ""),
        );
    };
    let Some(origin) = own_origin(&headers, &sign_in) else {
        return respond(
            StatusCode::BAD_REQUEST,
            sign_in_page(&app, &[("sign-in", "came with no host to come back to")], ""),
        );
    };
    let endpoints = match app.principals.verifier().endpoints(&issuer).await {
        Ok(endpoints) => endpoints,
        Err(e) => {
            let problem = format!("{e}; try again in a moment");
            return respond(StatusCode::SERVICE_UNAVAILABLE, sign_in_page(&app, &[("sign-in", &problem)], ""));
        }
    };
    let login = session::Login::new(issuer.name.clone(), (app.now)());
    let redirect_uri = format!("{origin}/ui/sign-in/callback");
    let url = platform::oidc::authorization_url(
        &endpoints,
        &sign_in,
        &redirect_uri,
        &login.state,
        &login.nonce,
        &login.verifier,
    );
    let mut response = see_other_to(&url);
    response.headers_mut().insert(header::SET_COOKIE, session::set_login_cookie(&app.sessions.seal_login(&login)));
    response
}

#[derive(Debug, Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The provider's answer: checks it is this browser's sign-in, redeems the
/// code, verifies the ID token, and opens the person's session.
async fn sign_in_callback(
    State(app): State<Arc<QueryState>>,
    Query(answer): Query<Callback>,
    headers: HeaderMap,
) -> Response {
    let failed = |status: StatusCode, problem: &str| {
        let mut response = respond(status, sign_in_page(&app, &[("sign-in", problem)], ""));
        response.headers_mut().insert(header::SET_COOKIE, session::clear_login_cookie());
        response
    };
    let Some(login) = session::login_cookie(&headers).and_then(|v| app.sessions.open_login(v, (app.now)())) else {
        return failed(
            StatusCode::BAD_REQUEST,
            "was not started in this browser, or took longer than ten minutes; start again",
        );
    };
    if !answer.state.as_deref().is_some_and(|s| login.same_state(s)) {
        return failed(StatusCode::BAD_REQUEST, "came back with an answer to another sign-in; start again");
    }
    if let Some(error) = answer.error {
        // The error code only: the provider's description is not ours to show.
        let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
        return failed(StatusCode::UNAUTHORIZED, &format!("your identity provider did not sign you in ({code})"));
    }
    let Some(code) = answer.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return failed(StatusCode::BAD_REQUEST, "came back without a code");
    };
    let Some((issuer, sign_in)) = sign_in_issuer(&app, &login.issuer) else {
        return failed(StatusCode::UNAUTHORIZED, "was through an identity provider this service no longer takes");
    };
    let Some(origin) = own_origin(&headers, &sign_in) else {
        return failed(StatusCode::BAD_REQUEST, "came with no host");
    };
    let redirect_uri = format!("{origin}/ui/sign-in/callback");
    let verifier = app.principals.verifier();
    let answer = platform::oidc::Answer {
        code: &code,
        code_verifier: &login.verifier,
        redirect_uri: &redirect_uri,
        nonce: &login.nonce,
    };
    let signed_in = match verifier.redeem(&app.principals, &issuer, &sign_in, &answer).await {
        Ok(signed_in) => signed_in,
        Err(platform::oidc::SignInFailed::Unreachable) => {
            return failed(StatusCode::SERVICE_UNAVAILABLE, "your identity provider could not be reached; try again");
        }
        Err(platform::oidc::SignInFailed::IdToken(platform::oidc::Refused::Unmapped)) => {
            let problem =
                format!("your groups at {} give you no role in Safeguard; ask your administrator", issuer.name);
            return failed(StatusCode::FORBIDDEN, &problem);
        }
        Err(e) => {
            tracing::warn!(issuer = %issuer.name, error = %e, "a sign-in through an identity provider failed");
            return failed(StatusCode::UNAUTHORIZED, &e.to_string());
        }
    };
    tracing::info!(issuer = %issuer.name, principal = signed_in.principal.name.as_str(), "a person signed in to the pages");
    let session = Session::for_person(&app.sessions, &signed_in, (app.now)());
    let mut response = respond(StatusCode::OK, forward_page("Signed in", "/ui", "You are signed in."));
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, session::set_cookie(&app.sessions.seal(&session)));
    h.append(header::SET_COOKIE, session::clear_login_cookie());
    response
}

/// A sign-in or sign-out form is a few short fields: far less than this.
const FORM_LIMIT: usize = 4 * 1024;

/// A small form's fields, read only up to [`FORM_LIMIT`] bytes.
async fn small_form(headers: &HeaderMap, body: axum::body::Body) -> Result<HashMap<String, String>, QueryError> {
    let bytes = crate::bounded_body(headers, body, FORM_LIMIT).await?;
    serde_urlencoded::from_bytes(&bytes).map_err(|_| QueryError::invalid("form", "is not a form this page sent"))
}

async fn sign_in(State(app): State<Arc<QueryState>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    if !app.principals.token_sign_in() {
        let problem = [("token", "sign-in is switched off here: sign in through your identity provider")];
        return respond(StatusCode::FORBIDDEN, sign_in_page(&app, &problem, ""));
    }
    if !session::same_origin(&headers) {
        return respond(
            StatusCode::FORBIDDEN,
            sign_in_page(&app, &[("form", "must be sent from this site's own page")], ""),
        );
    }
    // The token is in the body, so the body is read before anyone is known:
    // only as much of it as a sign-in form can be.
    let form = match small_form(&headers, body).await {
        Ok(form) => form,
        Err(e) => {
            let status = e.status();
            return respond(status, sign_in_page(&app, &[("form", "is not a sign-in form this page sent")], ""));
        }
    };
    let field = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let acting_user = field("acting_user").unwrap_or_default();
    let mut problems = Vec::new();
    if acting_user.is_empty() {
        problems.push(("acting_user", "is required: it is recorded with everything you open"));
    } else if acting_user.chars().count() > 200 || acting_user.chars().any(char::is_control) {
        problems.push(("acting_user", "must be at most 200 printable characters"));
    }
    let purpose = field("purpose");
    if purpose.is_some_and(|p| p.chars().count() > 200 || p.chars().any(char::is_control)) {
        problems.push(("purpose", "must be at most 200 printable characters"));
    }
    let principal = match field("token") {
        None => {
            problems.push(("token", "is required"));
            None
        }
        Some(token) => {
            // Only a principal holding a token signs in with one (those
            // reached through an identity provider hold none).
            let found =
                app.principals.authenticate(token).and_then(|p| p.token_sha256().copied().map(|held| (p, held)));
            if found.is_none() {
                problems.push(("token", "is not a token this service knows"));
            }
            found
        }
    };
    let Some((principal, held)) = principal.filter(|_| problems.is_empty()) else {
        let status = if problems.iter().all(|(f, _)| *f == "token") {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return respond(status, sign_in_page(&app, &problems, acting_user));
    };
    let session = Session::new(
        principal.name.as_str().to_owned(),
        app.sessions.credential(&held),
        acting_user.to_owned(),
        purpose.map(str::to_owned),
        (app.now)(),
    );
    let mut response = see_other("/ui");
    response.headers_mut().insert(header::SET_COOKIE, session::set_cookie(&app.sessions.seal(&session)));
    response
}

async fn sign_out(State(app): State<Arc<QueryState>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let Ok(v) = viewer(&app, &headers).await else { return see_other("/ui/sign-in") };
    let form = match small_form(&headers, body).await {
        Ok(form) => form,
        Err(e) => return error_page(e, v.frame()),
    };
    let token = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !session::same_origin(&headers) || !app.sessions.csrf_ok(&v.session, token) {
        return error_page(QueryError::Forbidden("sign-out must come from this site's own page".into()), v.frame());
    }
    // Remembered before the cookie goes: a copy of it must not outlive the sign-out.
    if let Err(e) = app.signed_out.put(&v.session.nonce, v.session.expires.to_string().into()).await {
        tracing::error!(error = %e, "could not record a sign-out");
        let reason = "the sign-out could not be recorded, so you are still signed in; try again";
        return error_page(QueryError::unavailable(reason), v.frame());
    }
    // A person is signed out at their provider too, where it offers that.
    let at_provider = match v.session.issuer.as_deref().and_then(|name| sign_in_issuer(&app, name)) {
        None => None,
        Some((issuer, sign_in)) => {
            match (app.principals.verifier().endpoints(&issuer).await, own_origin(&headers, &sign_in)) {
                (Ok(endpoints), Some(origin)) => {
                    platform::oidc::end_session_url(&endpoints, &sign_in, &format!("{origin}/ui/sign-in"))
                }
                _ => None,
            }
        }
    };
    let mut response = match at_provider {
        Some(url) => respond(
            StatusCode::OK,
            forward_page("Signed out", &url, "You are signed out here; now signing you out at your identity provider."),
        ),
        None => see_other("/ui/sign-in"),
    };
    response.headers_mut().insert(header::SET_COOKIE, session::clear_cookie());
    response
}

// ---------------------------------------------------------------- home

async fn home(State(app): State<Arc<QueryState>>, headers: HeaderMap) -> Response {
    serve(&app, &headers, "ui_home", |v, app| async move {
        let councils = projections::reads::councils(&app.pool).await?;
        let councils: Vec<CouncilCode> = councils
            .iter()
            .filter_map(|c| CouncilCode::parse(c).ok())
            .filter(|c| crate::policy::may_read_aggregates(&v.caller.principal, c).is_ok())
            .collect();
        // Reviewers start from the children whose open reviews name them.
        let reviewed: Vec<uuid::Uuid> = if crate::policy::starts_from_reviews(&v.caller.principal) {
            projections::reads::reviewed_by(&app.pool, v.caller.principal.name.as_str()).await?
        } else {
            vec![]
        };
        if !reviewed.is_empty() {
            record(&app, &v.caller, "GET /ui (open reviews)", &reviewed, crate::access::Outcome::Allowed).await?;
        }
        let body = html! {
            h1 { "Safeguard" }
            @if councils.is_empty() && reviewed.is_empty() {
                p { "There is nothing here for " (v.caller.principal.name.as_str()) " to see." }
            }
            @if !councils.is_empty() {
                h2 { "Councils" }
                table class="data" {
                    caption class="visually-hidden" { "Councils and their pages" }
                    thead { tr { th scope="col" { "Council" } th scope="col" { "Pages" } } }
                    tbody {
                        @for c in &councils {
                            tr {
                                th scope="row" { (c.as_str()) }
                                td {
                                    a href=(format!("/ui/indicators?council={}", c.as_str())) { "Indicators" }
                                    " · "
                                    a href=(format!("/ui/caseloads?council={}", c.as_str())) { "Caseload board" }
                                }
                            }
                        }
                    }
                }
            }
            @if crate::policy::sees_children(&v.caller.principal) {
                (find_form(&v, &councils, &FindForm::default(), &[]))
            }
            @if !reviewed.is_empty() {
                h2 { "Reviews you are named in" }
                ul {
                    @for child in &reviewed {
                        li { a href=(format!("/ui/children/{child}")) { "Child " (short(child)) } }
                    }
                }
            }
        };
        Ok(respond(StatusCode::OK, page("Start", v.frame(), body)))
    })
    .await
}

/// What the find form was given (kept to show the form again with its problems).
#[derive(Debug, Default)]
struct FindForm {
    nhs_number: String,
    council: String,
    la_child_id: String,
}

/// Finding a child by NHS number or by council and local id. A POST, so
/// the number is never in an address; CSRF-checked, since it is logged.
fn find_form(v: &Viewer, councils: &[CouncilCode], form: &FindForm, problems: &[(String, String)]) -> Markup {
    let problem = |field: &str| problems.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str());
    html! {
        h2 id="find-heading" { "Find a child" }
        @if !problems.is_empty() {
            div class="problem" role="alert" id="find-problems" {
                ul { @for (field, message) in problems { li { a href=(format!("#{field}")) { (field) ": " (message) } } } }
            }
        }
        form method="post" action="/ui/find" class="find" aria-labelledby="find-heading" {
            input type="hidden" name="csrf" value=(v.csrf);
            div class="field" {
                label for="nhs_number" { "NHS number" }
                @if let Some(m) = problem("nhs_number") { p class="field-error" { (m) } }
                input id="nhs_number" name="nhs_number" type="text" inputmode="numeric" autocomplete="off"
                    maxlength="12" value=(form.nhs_number) aria-invalid=[problem("nhs_number").map(|_| "true")];
            }
            p { "or" }
            div class="field" {
                label for="council" { "Council" }
                @if let Some(m) = problem("council") { p class="field-error" { (m) } }
                select id="council" name="council" {
                    option value="" { "Choose a council" }
                    @for c in councils { option value=(c.as_str()) selected[form.council == c.as_str()] { (c.as_str()) } }
                }
            }
            div class="field" {
                label for="la_child_id" { "Council's own child id" }
                @if let Some(m) = problem("la_child_id") { p class="field-error" { (m) } }
                input id="la_child_id" name="la_child_id" type="text" autocomplete="off" maxlength="20"
                    value=(form.la_child_id) aria-invalid=[problem("la_child_id").map(|_| "true")];
            }
            button type="submit" { "Find" }
        }
    }
}

async fn councils_for(app: &QueryState, principal: &Principal) -> Result<Vec<CouncilCode>, QueryError> {
    let councils = projections::reads::councils(&app.pool).await?;
    Ok(councils
        .iter()
        .filter_map(|c| CouncilCode::parse(c).ok())
        .filter(|c| crate::policy::may_look_up_in(principal, c).is_ok())
        .collect())
}

async fn find(State(app): State<Arc<QueryState>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let same_origin = session::same_origin(&headers);
    let form_headers = headers.clone();
    serve(&app, &headers, "ui_find", |v, app| async move {
        let endpoint = "POST /ui/find";
        // Read only once the session is known, and only a form's worth.
        let fields = small_form(&form_headers, body).await?;
        let given = |name: &str| fields.get(name).map(|t| t.trim().to_owned()).unwrap_or_default();
        if !same_origin || !app.sessions.csrf_ok(&v.session, &given("csrf")) {
            return Err(QueryError::Forbidden("a search must come from this site's own page".into()));
        }
        if crate::policy::may_look_up(&v.caller.principal).is_err() {
            record(&app, &v.caller, endpoint, &[], crate::access::Outcome::Refused).await?;
            return Err(QueryError::Forbidden("finding a child needs the practitioner or admin role".into()));
        }
        let form = FindForm { nhs_number: given("nhs_number"), council: given("council"), la_child_id: given("la_child_id") };
        let councils = councils_for(&app, &v.caller.principal).await?;
        let wanted = if !form.nhs_number.is_empty() {
            Lookup::nhs_number(&form.nhs_number)
        } else if form.council.is_empty() && form.la_child_id.is_empty() {
            Err(QueryError::invalid("nhs_number", "give an NHS number, or a council and its child id"))
        } else {
            Lookup::local(Some(form.council.as_str()).filter(|c| !c.is_empty()), Some(form.la_child_id.as_str()).filter(|c| !c.is_empty()))
        };
        let wanted = match wanted {
            Ok(w) => w,
            Err(QueryError::Invalid(errors)) => {
                let problems: Vec<(String, String)> = errors.into_iter().map(|e| (e.parameter, e.message)).collect();
                let body = html! { h1 { "Find a child" } (find_form(&v, &councils, &form, &problems)) };
                return Ok(respond(StatusCode::UNPROCESSABLE_ENTITY, page("Find a child", v.frame(), body)));
            }
            Err(e) => return Err(e),
        };
        let found = find_children(&app, &v.caller, endpoint, &wanted).await?;
        let body = html! {
            h1 { "Find a child" }
            h2 id="found-heading" { "Found" }
            @if found.is_empty() {
                p id="found" { "No child you may see matches." }
            } @else {
                ul id="found" aria-labelledby="found-heading" {
                    @for (child, council) in &found {
                        li { a href=(format!("/ui/children/{child}")) { "Child " (short(child)) } " – council " (council) }
                    }
                }
            }
            (find_form(&v, &councils, &FindForm::default(), &[]))
        };
        Ok(respond(StatusCode::OK, page("Find a child", v.frame(), body)))
    })
    .await
}

/// The first block of a UUID: enough to tell rows apart on a page.
fn short(id: &uuid::Uuid) -> String {
    id.to_string().chars().take(8).collect()
}

// ---------------------------------------------------------------- indicators

#[derive(Debug, Clone, Default, Deserialize)]
struct DashboardParams {
    council: Option<String>,
    period: Option<String>,
}

/// The council and financial year a dashboard asks for, once the viewer may see its aggregates.
fn dashboard_scope(v: &Viewer, p: &DashboardParams, today: NaiveDate) -> Result<(CouncilCode, Period), QueryError> {
    let council = council_param(p.council.as_deref())?;
    crate::policy::may_read_aggregates(&v.caller.principal, &council).map_err(QueryError::Forbidden)?;
    let period = period_of(&CouncilParams { period: p.period.clone(), ..CouncilParams::default() }, today)?;
    Ok((council, period))
}

/// How many quarters the trend charts cover.
const TREND_QUARTERS: usize = 8;

/// How many of the trend's periods the dashboard reads at once.
const TREND_READS_AT_ONCE: usize = 3;

async fn dashboard(
    State(app): State<Arc<QueryState>>,
    Query(p): Query<DashboardParams>,
    headers: HeaderMap,
) -> Response {
    serve(&app, &headers, "ui_indicators", |v, app| async move {
        let today = business_date(&(app.now)());
        let (council, period) = dashboard_scope(&v, &p, today)?;
        let doc = projections::indicators::document(&app.pool, &council, period, today).await?;
        // Twelve months to each quarter end, up to the period's last quarter (or today's).
        let trend_periods = Period::rolling_years_to_quarters(period.to.min(today), TREND_QUARTERS);
        let mut trends: BTreeMap<casework::indicators::Name, Vec<chart::Point>> = BTreeMap::new();
        // A few periods at once, in order: each read is a handful of short
        // queries, and the pool's other callers keep the rest of it.
        let (pool, place) = (&app.pool, &council);
        let docs: Vec<_> = futures::stream::iter(trend_periods.iter().copied())
            .map(|tp| projections::indicators::document(pool, place, tp, today))
            .buffered(TREND_READS_AT_ONCE)
            .try_collect()
            .await?;
        for (tp, doc) in trend_periods.iter().zip(docs) {
            let label = tp.to.format("%b %Y").to_string();
            for ind in doc.indicators {
                trends.entry(ind.name).or_default().push(chart::Point { label: label.clone(), value: ind.value });
            }
        }
        let current = Period::containing(today);
        let years: Vec<Period> = (0..5)
            .filter_map(|back| Period::financial_year(&year_label(current.from.format("%Y").to_string(), back)).ok())
            .collect();
        let stream = format!("/ui/indicators/stream?council={}&period={}", council.as_str(), doc.period);
        let body = html! {
            h1 { "Indicators: " (council.as_str()) ", " (doc.period) }
            form method="get" action="/ui/indicators" class="controls" {
                input type="hidden" name="council" value=(council.as_str());
                label for="period" { "Financial year" }
                select id="period" name="period" {
                    @for y in &years {
                        option value=(y.label()) selected[y.label() == doc.period] { (y.label()) }
                    }
                }
                button type="submit" { "Show" }
                " "
                a href=(format!("/ui/caseloads?council={}", council.as_str())) { "Caseload board" }
            }
            p class="live" id="live-status" role="status" aria-live="polite" { "Figures as the page was drawn." }
            p class="note" {
                "Figures from " (doc.from) " to " (doc.to) "; indicators of a moment are taken at "
                (period.to.min(today)) ". Each chart point is the twelve months to a quarter's end; "
                "the dashed line is England's figure where one is published. Beside each figure are the published "
                "figures it is read against (data/comparators.json, each with its source and year)."
            }
            div class="cards" data-stream=(stream) {
                @for ind in &doc.indicators {
                    @let id = format!("ind-{}", ind.name);
                    @let national = casework::indicators::national(ind.name);
                    section class="card" data-indicator=(ind.name) data-unit=(ind.unit) aria-labelledby=(id) {
                        h2 id=(id) { (ind.name.label()) }
                        p class="value" {
                            span class="figure" { (ind.value.map_or("not computable".into(), |x| format_value(x, ind.unit))) }
                            " " span class="unit" { (unit_words(ind.unit)) }
                        }
                        dl class="nd" {
                            dt { "Numerator" } dd class="numerator" { (format_count(ind.numerator)) }
                            dt { "Denominator" } dd class="denominator" { (ind.denominator.map_or("none".into(), format_count)) }
                            // England's, then the region's and the statistical neighbours' where shipped.
                            @for c in &ind.comparators {
                                dt { (c.area) }
                                dd class=(if c.kind == "england" { "national" } else { "comparator" }) data-kind=(c.kind) {
                                    (format_value(c.value, ind.unit)) " (" (c.source) ", " (c.year) ")"
                                }
                            }
                        }
                        @let points = trends.get(&ind.name).cloned().unwrap_or_default();
                        (chart::trend(&format!("chart-{}", ind.name), ind.name.label(), ind.unit, &points, national.map(|n| n.value)))
                        details {
                            summary { "Trend as a table" }
                            table class="data" {
                                thead { tr { th scope="col" { "Twelve months to" } th scope="col" { "Value" } } }
                                tbody {
                                    @for pt in &points {
                                        tr { th scope="row" { (pt.label) } td { (pt.value.map_or("not computable".into(), |x| format_value(x, ind.unit))) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        };
        Ok(respond(StatusCode::OK, page("Indicators", v.frame(), body)))
    })
    .await
}

/// "2025-26" moved back `back` years from the financial year starting in `start`.
fn year_label(start: String, back: i32) -> String {
    let year: i32 = start.parse().unwrap_or(2025) - back;
    format!("{year}-{:02}", (year + 1) % 100)
}

async fn dashboard_stream(
    State(app): State<Arc<QueryState>>,
    Query(p): Query<DashboardParams>,
    headers: HeaderMap,
) -> Response {
    // A stream answers errors as problem+json: EventSource reads no pages.
    let result = async {
        let v = viewer(&app, &headers).await?;
        let today = business_date(&(app.now)());
        let (council, period) = dashboard_scope(&v, &p, today)?;
        let resume = crate::streams::last_event_id(&headers)?;
        let ticket = app.streams.admit(v.caller.principal.name.as_str())?;
        // The session must still be signed in, with the token it was opened
        // with, as a principal that may read this council's figures.
        let still_allowed = {
            let app = app.clone();
            move || {
                let (app, headers, p) = (app.clone(), headers.clone(), p.clone());
                async move {
                    let today = business_date(&(app.now)());
                    match viewer(&app, &headers).await {
                        Ok(v) => dashboard_scope(&v, &p, today).is_ok(),
                        Err(_) => false,
                    }
                }
            }
        };
        indicator_events(&app, &council, period, today, resume, ticket, still_allowed).await
    }
    .await;
    crate::count(&app, "ui_indicators_stream", result)
}

// ---------------------------------------------------------------- caseloads

#[derive(Debug, Default, Deserialize)]
struct BoardParams {
    council: Option<String>,
    team: Option<String>,
    sort: Option<String>,
    order: Option<String>,
}

/// One worker's row on the board.
#[derive(Debug, Clone)]
struct WorkerRow {
    load: projections::caseload::WorkerLoad,
    visits_overdue: usize,
    reviews_overdue: usize,
    never_seen: usize,
    never_seen_alone: usize,
    /// Days since the least recently seen child was seen.
    longest_unseen: Option<i64>,
    /// Alerts waiting on the worker (open and escalated), and of them escalated.
    alerts: i64,
    escalated: i64,
}

impl WorkerRow {
    fn per_fte(&self) -> f64 {
        if self.load.fte > 0.0 { self.load.open_cases as f64 / self.load.fte } else { 0.0 }
    }
}

/// The sortable columns: (key, heading).
const BOARD_COLUMNS: [(&str, &str); 11] = [
    ("worker", "Worker"),
    ("team", "Team"),
    ("role", "Role"),
    ("cases", "Open cases"),
    ("per_fte", "Cases per FTE"),
    ("visits", "Visits overdue"),
    ("reviews", "Reviews overdue"),
    ("unseen", "Longest unseen (days)"),
    ("never", "Never seen"),
    ("never_alone", "Never seen alone"),
    ("alerts", "Alerts waiting (escalated)"),
];

fn sort_params(
    sort: Option<&str>,
    order: Option<&str>,
    columns: &[(&str, &str)],
    default: &'static str,
) -> Result<(String, bool), QueryError> {
    let sort = sort.unwrap_or(default);
    if !columns.iter().any(|(k, _)| *k == sort) {
        let keys: Vec<&str> = columns.iter().map(|(k, _)| *k).collect();
        return Err(QueryError::invalid("sort", format!("must be one of {}", keys.join(", "))));
    }
    let descending = match order.unwrap_or("desc") {
        "asc" => false,
        "desc" => true,
        _ => return Err(QueryError::invalid("order", "must be asc or desc")),
    };
    Ok((sort.to_owned(), descending))
}

/// A column heading that sorts by its column, saying how the table is sorted now.
fn sort_heading(base: &str, key: &str, heading: &str, sort: &str, descending: bool) -> Markup {
    let active = key == sort;
    let next = if active && descending { "asc" } else { "desc" };
    let aria = if !active {
        None
    } else if descending {
        Some("descending")
    } else {
        Some("ascending")
    };
    html! {
        th scope="col" aria-sort=[aria] {
            a href=(format!("{base}&sort={key}&order={next}")) {
                (heading)
                @if active { span aria-hidden="true" { (if descending { " ▼" } else { " ▲" }) } }
                span class="visually-hidden" { ", sort " (if next == "asc" { "ascending" } else { "descending" }) }
            }
        }
    }
}

async fn board(State(app): State<Arc<QueryState>>, Query(p): Query<BoardParams>, headers: HeaderMap) -> Response {
    serve(&app, &headers, "ui_caseloads", |v, app| async move {
        let council = council_param(p.council.as_deref())?;
        crate::policy::may_read_aggregates(&v.caller.principal, &council).map_err(QueryError::Forbidden)?;
        let (sort, descending) = sort_params(p.sort.as_deref(), p.order.as_deref(), &BOARD_COLUMNS, "cases")?;
        let now = (app.now)();
        let today = business_date(&now);
        let loads = projections::caseload::council(&app.pool, &council, today).await?;
        let cases = projections::caseload::council_cases(&app.pool, &council, today).await?;
        let waiting = projections::alerts::waiting(&app.pool, &council, now).await?;
        let waiting_on = |pick: &dyn Fn(&Option<events::ids::LocalId>, &Option<uuid::Uuid>) -> bool| {
            waiting.iter().filter(|((t, w), _)| pick(t, w)).fold((0, 0), |(n, e), (_, c)| (n + c.open + c.escalated, e + c.escalated))
        };
        // Counts only: the board names no child, so it is an aggregate read.
        let mut rows: Vec<WorkerRow> = loads
            .workers
            .iter()
            .filter(|w| p.team.as_deref().is_none_or(|t| t == w.team.as_str()))
            .map(|w| {
                let held: Vec<&projections::caseload::Case> =
                    cases.iter().filter(|(worker, _)| *worker == w.worker).map(|(_, c)| c).collect();
                WorkerRow {
                    load: w.clone(),
                    visits_overdue: held.iter().filter(|c| c.visit_overdue).count(),
                    reviews_overdue: held.iter().filter(|c| c.review_overdue).count(),
                    never_seen: held.iter().filter(|c| c.last_seen.is_none()).count(),
                    never_seen_alone: held.iter().filter(|c| c.last_seen_alone.is_none()).count(),
                    longest_unseen: held.iter().filter_map(|c| c.last_seen).map(|t| layout::days_since(&t, &now)).max(),
                    alerts: waiting_on(&|_, worker| *worker == Some(w.worker)).0,
                    escalated: waiting_on(&|_, worker| *worker == Some(w.worker)).1,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            let order = match sort.as_str() {
                "worker" => a.load.worker.cmp(&b.load.worker),
                "team" => a.load.team.cmp(&b.load.team),
                "role" => a.load.role.cmp(&b.load.role),
                "per_fte" => a.per_fte().total_cmp(&b.per_fte()),
                "visits" => a.visits_overdue.cmp(&b.visits_overdue),
                "reviews" => a.reviews_overdue.cmp(&b.reviews_overdue),
                "unseen" => a.longest_unseen.cmp(&b.longest_unseen),
                "never" => a.never_seen.cmp(&b.never_seen),
                "never_alone" => a.never_seen_alone.cmp(&b.never_seen_alone),
                "alerts" => (a.escalated, a.alerts).cmp(&(b.escalated, b.alerts)),
                _ => a.load.open_cases.cmp(&b.load.open_cases),
            };
            let order = if descending { order.reverse() } else { order };
            order.then(a.load.worker.cmp(&b.load.worker))
        });
        let practitioner = crate::policy::sees_children(&v.caller.principal);
        let team_query = p.team.as_deref().map(|t| format!("&team={}", encode(t))).unwrap_or_default();
        let base = format!("/ui/caseloads?council={}{team_query}", council.as_str());
        let over = rows.iter().filter(|r| r.load.over_threshold).count();
        let body = html! {
            h1 { "Caseload board: " (council.as_str()) }
            p class="note" {
                "On " (today) ". Workers above " (format_count(loads.threshold)) " open cases per FTE are flagged. "
                "Counts include every open allocation; a case holder's children are listed on their own page."
                @if !practitioner { " Your role sees counts, not children." }
            }
            p { a href=(format!("/ui/indicators?council={}", council.as_str())) { "Indicators" } }
            h2 { "Teams" }
            table class="data" id="teams" {
                thead { tr {
                    th scope="col" { "Team" } th scope="col" { "Workers" } th scope="col" { "Open cases" }
                    th scope="col" { "Visits overdue" } th scope="col" { "Reviews overdue" }
                    th scope="col" { "Alerts waiting (escalated)" }
                } }
                tbody {
                    @for t in &loads.teams {
                        @let in_team = |f: fn(&projections::caseload::Case) -> bool| cases.iter()
                            .filter(|(w, c)| f(c) && loads.workers.iter().any(|l| l.worker == *w && l.team == t.team)).count();
                        tr {
                            th scope="row" { a href=(format!("/ui/caseloads?council={}&team={}", council.as_str(), encode(t.team.as_str()))) { (t.team) } }
                            td { (t.workers) } td { (t.open_cases) }
                            td { (in_team(|c| c.visit_overdue)) } td { (in_team(|c| c.review_overdue)) }
                            @let (n, e) = waiting_on(&|team, _| team.as_ref() == Some(&t.team));
                            td class=[(e > 0).then_some("overdue")] { (n) " (" (e) ")" }
                        }
                    }
                }
            }
            @let (unallocated, unallocated_escalated) = waiting_on(&|team, _| team.is_none());
            p id="unallocated-alerts" {
                "Alerts about children with no allocated worker, for team managers: "
                strong { (unallocated) } " waiting, " (unallocated_escalated) " escalated."
            }
            h2 id="workers-heading" {
                "Workers"
                @if let Some(t) = &p.team { " in team " (t) " " a href=(format!("/ui/caseloads?council={}", council.as_str())) { "(all teams)" } }
            }
            p { (over) " of " (rows.len()) " workers over the threshold." }
            table class="data sortable" id="workers" aria-labelledby="workers-heading" {
                thead { tr {
                    @for (key, heading) in BOARD_COLUMNS { (sort_heading(&base, key, heading, &sort, descending)) }
                } }
                tbody {
                    @for r in &rows {
                        tr class=[r.load.over_threshold.then_some("over")] data-worker=(r.load.worker) {
                            th scope="row" {
                                @if practitioner { a href=(format!("/ui/workers/{}", r.load.worker)) { (short(&r.load.worker)) } }
                                @else { (short(&r.load.worker)) }
                                @if r.load.over_threshold { " " span class="badge over" { "over threshold" } }
                            }
                            td { (r.load.team) }
                            td { (r.load.role.label()) }
                            td class="cases" { (r.load.open_cases) }
                            td { (format!("{:.1}", r.per_fte())) }
                            td class=[(r.visits_overdue > 0).then_some("overdue")] { (r.visits_overdue) }
                            td class=[(r.reviews_overdue > 0).then_some("overdue")] { (r.reviews_overdue) }
                            td { (r.longest_unseen.map_or("–".into(), |d| d.to_string())) }
                            td class=[(r.never_seen > 0).then_some("overdue")] { (r.never_seen) }
                            td class=[(r.never_seen_alone > 0).then_some("overdue")] { (r.never_seen_alone) }
                            td class=[(r.escalated > 0).then_some("overdue")] { (r.alerts) " (" (r.escalated) ")" }
                        }
                    }
                }
            }
        };
        Ok(respond(StatusCode::OK, page("Caseload board", v.frame(), body)))
    })
    .await
}

/// Percent-encodes a value for a query string (team ids are free text).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Who is involved with the child (`GET /v1/children/{child}/involvement`'s document).
fn involvement_aside(doc: &serde_json::Value) -> Markup {
    let list = |key: &str| doc[key].as_array().cloned().unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    html! {
        aside class="involvement" aria-labelledby="involvement-heading" {
            h2 id="involvement-heading" { "Who is involved" }
            @if let Some(held) = doc["allocated"].as_object() {
                p {
                    "Case held by "
                    a href=(format!("/ui/workers/{}", text(&held["worker"]))) {
                        (held["name"].as_str().map_or_else(|| format!("worker {}", short_text(&text(&held["worker"]))), str::to_owned))
                    }
                    ", team " (text(&held["team"])) ", since " (text(&held["since"])) "."
                }
            } @else {
                p { "No worker holds the case." }
            }
            table class="data" id="agencies" {
                caption { "Agencies that have recorded something" }
                thead { tr { th scope="col" { "Agency" } th scope="col" { "First" } th scope="col" { "Last" } th scope="col" { "Entries" } } }
                tbody {
                    @for a in list("agencies") {
                        tr {
                            th scope="row" { (text(&a["name"])) @if let Some(kind) = a["kind"].as_str() { " (" (kind.replace('_', " ")) ")" } }
                            td { (text(&a["first"])) } td { (text(&a["last"])) } td { (text(&a["events"])) }
                        }
                    }
                }
            }
            @let seen = list("seen_by");
            @if !seen.is_empty() {
                table class="data" id="seen-by" {
                    caption { "Professionals who have seen the child" }
                    thead { tr { th scope="col" { "Who" } th scope="col" { "Agency" } th scope="col" { "Last seen" } th scope="col" { "Times" } } }
                    tbody {
                        @for s in seen {
                            tr {
                                th scope="row" { (s["name"].as_str().map_or_else(|| text(&s["id"]), str::to_owned)) }
                                td { (s["agency"].as_str().unwrap_or("–")) } td { (text(&s["last"])) } td { (text(&s["times"])) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn short_text(id: &str) -> String {
    id.chars().take(8).collect()
}

/// A worker's waiting alerts: each links to the chronology entry that raised it.
fn alert_list(alerts: &[projections::alerts::Read], principals: &platform::principals::Principals) -> Markup {
    let agency = |p: &events::ids::PrincipalName| {
        principals.named(p.as_str()).map_or_else(|| p.as_str().to_owned(), |x| x.display_name)
    };
    html! {
        section class="alerts" aria-labelledby="alerts-heading" {
            h2 id="alerts-heading" { "Alerts waiting (" (alerts.len()) ")" }
            @if alerts.is_empty() {
                p { "No alerts are waiting." }
            } @else {
                p class="note" {
                    "Acknowledge an alert from the case system (an alert.acknowledged event); "
                    "one not acknowledged by the end of the next working day goes to the team manager."
                }
                ul id="alerts" {
                    @for r in alerts {
                        @let a = &r.alert;
                        @let reference = casework::narrative::reference_of(u64::try_from(a.sequence).unwrap_or(0));
                        li class=(format!("alert {}", r.status.code())) data-alert=(a.id) {
                            span class=(format!("badge {}", r.status.code())) { (r.status.code()) }
                            " "
                            a href=(format!("/ui/children/{}#{reference}", r.child)) {
                                (capitalised(a.kind.label())) ": child " (short(&r.child)) ", entry " (reference)
                            }
                            @if let Some(by) = &a.raised_by { " from " (agency(by)) }
                            span class="when" {
                                " raised " (layout::london(&a.raised_at)) "; due by " (layout::london(&a.due_by))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[derive(Debug, Default, Deserialize)]
struct WorkerParams {
    sort: Option<String>,
    order: Option<String>,
}

const CASE_COLUMNS: [(&str, &str); 6] = [
    ("child", "Child"),
    ("allocated", "Allocated"),
    ("seen", "Last seen"),
    ("alone", "Last seen alone"),
    ("visit", "Visit overdue"),
    ("review", "Review overdue"),
];

async fn worker_page(
    State(app): State<Arc<QueryState>>,
    Path(worker): Path<String>,
    Query(p): Query<WorkerParams>,
    headers: HeaderMap,
) -> Response {
    serve(&app, &headers, "ui_worker", |v, app| async move {
        let worker = uuid_param("worker", &worker)?;
        let (sort, descending) = sort_params(p.sort.as_deref(), p.order.as_deref(), &CASE_COLUMNS, "seen")?;
        let now = (app.now)();
        let today = business_date(&now);
        let (council, mut cases) =
            admitted_worker_cases(&app, &v.caller, "GET /ui/workers/{worker}", worker, today).await?;
        // The alerts waiting on this worker: open and escalated, newest first.
        // Their children are logged as read here, each once with the cases'.
        let filter = projections::alerts::Filter {
            council: council.clone(),
            holder: projections::alerts::Holder::Worker(events::ids::WorkerId::from_uuid(worker)),
            status: None,
            children: None,
            limit: 1000,
        };
        let with_sealed = crate::policy::may_see_case(&v.caller.principal, &council, true);
        let alerts: Vec<projections::alerts::Read> = projections::alerts::list(&app.pool, &filter, now, with_sealed)
            .await?
            .into_iter()
            .filter(|r| matches!(r.status, casework::alerts::Status::Open | casework::alerts::Status::Escalated))
            .collect();
        let mut unlisted: Vec<uuid::Uuid> =
            alerts.iter().map(|r| r.child).filter(|c| !cases.iter().any(|case| case.child == *c)).collect();
        unlisted.sort_unstable();
        unlisted.dedup();
        if !unlisted.is_empty() {
            record(&app, &v.caller, "GET /ui/workers/{worker}", &unlisted, crate::Outcome::Allowed).await?;
        }
        // "Last seen" sorts by how long since: descending (the default) puts
        // the child unseen longest, or never seen, first.
        let unseen = |t: &Option<DateTime<Utc>>| t.map_or(i64::MAX, |t| (now - t).num_seconds());
        cases.sort_by(|a, b| {
            let order = match sort.as_str() {
                "child" => a.child.cmp(&b.child),
                "allocated" => a.allocated_at.cmp(&b.allocated_at),
                "alone" => unseen(&a.last_seen_alone).cmp(&unseen(&b.last_seen_alone)),
                "visit" => a.visit_overdue.cmp(&b.visit_overdue),
                "review" => a.review_overdue.cmp(&b.review_overdue),
                _ => unseen(&a.last_seen).cmp(&unseen(&b.last_seen)),
            };
            let order = if descending { order.reverse() } else { order };
            order.then(a.child.cmp(&b.child))
        });
        let base = format!("/ui/workers/{worker}?");
        let seen = |t: &Option<DateTime<Utc>>| match t {
            Some(t) => format!("{} ({} days ago)", layout::london_date(t), layout::days_since(t, &now)),
            None => "never".into(),
        };
        let body = html! {
            h1 { "Cases held by worker " (short(&worker)) }
            p class="note" {
                "Council " (council) ", on " (today) ". Overdue visits and reviews are highlighted; "
                "sorted by last seen, the child unseen longest comes first."
            }
            (alert_list(&alerts, &app.principals))
            table class="data sortable" id="cases" {
                caption class="visually-hidden" { "Open cases" }
                thead { tr {
                    @for (key, heading) in CASE_COLUMNS { (sort_heading(&base, key, heading, &sort, descending)) }
                } }
                tbody {
                    @for c in &cases {
                        tr class=[(c.visit_overdue || c.review_overdue).then_some("late")] data-child=(c.child) {
                            th scope="row" { a href=(format!("/ui/children/{}", c.child)) { "Child " (short(&c.child)) } }
                            td { (layout::london_date(&c.allocated_at)) }
                            td class=[c.last_seen.is_none().then_some("overdue")] { (seen(&c.last_seen)) }
                            td { (seen(&c.last_seen_alone)) }
                            td class=[c.visit_overdue.then_some("overdue")] { (if c.visit_overdue { "overdue" } else if c.on_plan { "no" } else { "not on a plan" }) }
                            td class=[c.review_overdue.then_some("overdue")] { (if c.review_overdue { "overdue" } else { "no" }) }
                        }
                    }
                }
            }
            @if cases.is_empty() { p { "No open cases." } }
        };
        Ok(respond(StatusCode::OK, page("Worker's cases", v.frame(), body)))
    })
    .await
}

// ---------------------------------------------------------------- chronology

#[derive(Debug, Default, Deserialize)]
struct ChildParams {
    as_of: Option<String>,
    from: Option<String>,
    to: Option<String>,
    view: Option<String>,
}

/// A date field of a form: empty means not given.
fn form_date(name: &str, text: Option<&str>) -> Result<Option<NaiveDate>, QueryError> {
    crate::date_param(name, text.filter(|t| !t.is_empty()))
}

/// `as_of` as the page's control sends it (a London wall-clock time from a
/// `datetime-local` input, seconds optional) or as RFC 3339.
fn parse_as_of(text: &str) -> Result<DateTime<Utc>, QueryError> {
    let problem = || QueryError::invalid("as_of", "must be a date and time such as 2025-01-14T09:30");
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .map_err(|_| problem())?;
    // The hour the clocks go back happens twice: the earlier is meant; the hour they skip never happens.
    London.from_local_datetime(&naive).earliest().map(|t| t.to_utc()).ok_or_else(problem)
}

async fn child_page(
    State(app): State<Arc<QueryState>>,
    Path(child): Path<String>,
    Query(p): Query<ChildParams>,
    headers: HeaderMap,
) -> Response {
    serve(&app, &headers, "ui_chronology", |v, app| async move {
        let child = uuid_param("child", &child)?;
        let now = (app.now)();
        let as_of = p.as_of.as_deref().filter(|t| !t.is_empty()).map(parse_as_of).transpose()?;
        let (publication, family) = match p.view.as_deref() {
            None | Some("record") => (false, false),
            Some("publication") => (true, false),
            Some("family") => (false, true),
            Some(_) => return Err(QueryError::invalid("view", "must be record, family or publication")),
        };
        let from = form_date("from", p.from.as_deref())?;
        let to = form_date("to", p.to.as_deref())?;
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            return Err(QueryError::invalid("to", "must not be before from"));
        }
        if publication && as_of.is_some() {
            return Err(QueryError::invalid("as_of", "the publication view is the record as it stands now"));
        }
        let endpoint = if publication {
            "GET /ui/children/{child}?view=publication"
        } else if family {
            "GET /ui/children/{child}?view=family"
        } else {
            "GET /ui/children/{child}"
        };
        let info = admit_child(&app, &v.caller, endpoint, child, Need::Record).await?;
        let as_of_or_now = as_of.unwrap_or(now);
        let (heading, items) = if publication {
            let x = crate::export::build_export(&app, child).await?;
            (x.title.clone(), publication_items(&x))
        } else if family {
            // A lane a child: the child asked about first, then each linked
            // child the reader may read (each read logged).
            let mut members = vec![child];
            members.extend(crate::family_members(&app, &v.caller, endpoint, child).await?);
            let mut items = Vec::new();
            for (i, member) in members.iter().enumerate() {
                let q = projections::chronology::Query::whole(*member, as_of_or_now);
                let entries = projections::chronology::read(&app.pool, &q).await?;
                let record = crate::full_record(&app, *member, as_of_or_now).await?;
                items.extend(record_items(&entries, &record).into_iter().map(|mut item| {
                    item.lane = format!("Child {} ({})", i + 1, short(member));
                    item
                }));
            }
            items.sort_by_key(|item| item.at);
            for (i, item) in items.iter_mut().enumerate() {
                item.serial = i + 1;
                // Links between entries name serials within one child's record only.
                item.corrected_by = None;
                item.retracted_by = None;
            }
            (format!("The family of child {}", short(&child)), items)
        } else {
            let q = projections::chronology::Query::whole(child, as_of_or_now);
            let entries = projections::chronology::read(&app.pool, &q).await?;
            let record = crate::full_record(&app, child, as_of_or_now).await?;
            (format!("Child {}", short(&child)), record_items(&entries, &record))
        };
        // Who is involved, beside the full record (the same admitted read).
        let involved = if publication || family { None } else { Some(crate::involvement::read(&app, child).await?) };
        // Business dates narrow the view; serial numbers stay those of the whole chronology.
        let total = items.len();
        let mut items = items;
        items.retain(|i| {
            let day = business_date(&i.at);
            from.is_none_or(|f| day >= f) && to.is_none_or(|t| day <= t)
        });
        let here = format!("/ui/children/{child}");
        let date_value = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let body = html! {
            h1 { (heading) }
            @if !publication {
                p class="note" {
                    "Council " (info.council.as_ref().map_or("not recorded", CouncilCode::as_str))
                    @if info.sealed { " · " strong { "sealed record" } }
                    " · " (total) " entries"
                    @if items.len() != total { ", " (items.len()) " between the dates chosen" }
                }
            }
            nav class="views" aria-label="Views of this chronology" {
                a href=(here) aria-current=[(!publication && !family).then_some("page")] { "Full record" }
                " · "
                a href=(format!("{here}?view=family")) aria-current=[family.then_some("page")] { "Family" }
                " · "
                a href=(format!("{here}?view=publication")) aria-current=[publication.then_some("page")] { "Anonymised for publication" }
                " · "
                a href=(format!("{here}/print{}", if publication { "?record=anonymised" } else { "" })) { "Printable, as the court PDF" }
            }
            @if publication {
                p class="note" { "As it stands now: names, identifiers and personal details removed; people appear by role." }
            }
            form method="get" action=(here) class="controls as-of" {
                @if publication {
                    input type="hidden" name="view" value="publication";
                } @else {
                    @if family { input type="hidden" name="view" value="family"; }
                    label for="as_of" { "As known at" }
                    input id="as_of" name="as_of" type="datetime-local" step="1" value=(layout::datetime_local(&as_of_or_now))
                        aria-describedby="as_of-hint";
                }
                label for="from" { "From" }
                input id="from" name="from" type="date" value=(date_value(from));
                label for="to" { "To" }
                input id="to" name="to" type="date" value=(date_value(to));
                button type="submit" { "Show" }
                " " a href=(if publication {
                    format!("{here}?view=publication")
                } else if family {
                    format!("{here}?view=family")
                } else {
                    here.clone()
                }) { "Reset" }
                @if !publication {
                    p id="as_of-hint" class="hint" {
                        @if as_of.is_some() {
                            "Showing only what had been recorded by " strong { (layout::london(&as_of_or_now)) } ", as it then stood."
                        } @else {
                            "Showing everything recorded up to now. Pick a moment (London time) to see what was known then; "
                            "from and to are the dates things happened."
                        }
                    }
                }
            }
            @if let Some(involved) = &involved { (involvement_aside(involved)) }
            (timeline::render(&items))
        };
        Ok(respond(StatusCode::OK, page(&heading, v.frame(), body)))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
struct PrintParams {
    record: Option<String>,
}

fn print_record(p: &PrintParams) -> Result<casework::certified::Record, QueryError> {
    match p.record.as_deref() {
        None | Some("full") => Ok(casework::certified::Record::Full),
        Some("anonymised") => Ok(casework::certified::Record::Anonymised),
        Some(_) => Err(QueryError::invalid("record", "must be full or anonymised")),
    }
}

/// The chronology as the court PDF sets it, for the browser's print: the
/// same blocks (`crate::pdf::blocks`), the same certificate, and the PDF
/// itself one link away.
async fn print_page(
    State(app): State<Arc<QueryState>>,
    Path(child): Path<String>,
    Query(p): Query<PrintParams>,
    headers: HeaderMap,
) -> Response {
    serve(&app, &headers, "ui_print", |v, app| async move {
        let child = uuid_param("child", &child)?;
        let record = print_record(&p)?;
        admit_child(&app, &v.caller, "GET /ui/children/{child}/print", child, Need::Record).await?;
        let prepared = crate::export::prepare(&app, child, record, "pdf").await?;
        let blocks = crate::pdf::blocks(&prepared.table, &prepared.links);
        let which = if record == casework::certified::Record::Anonymised { "anonymised" } else { "full" };
        let body = html! {
            div class="printable" {
                p class="no-print" {
                    a href=(format!("/ui/children/{child}/export.pdf?record={which}")) { "Download the certified PDF" }
                    " · " a href=(format!("/ui/children/{child}")) { "Back to the timeline" }
                }
                h1 { (prepared.table.title) }
                @for line in &prepared.table.preamble { p class="note" { (line) } }
                ol class="print-entries" {
                    @for block in &blocks {
                        li {
                            h2 { (block.heading) }
                            dl {
                                @for (name, value) in &block.fields { dt { (name) } dd { (value) } }
                            }
                            @if let Some(proof) = &block.proof { p class="proof" { (proof) } }
                        }
                    }
                }
                h2 { "Certificate" }
                p {
                    "The certified PDF of this page carries the record it is drawn from, with the gateway's signed "
                    "checkpoint and each entry's hash, chain link and signatures. Check it with "
                    code { "safeguard verify --export FILE" } " and the public keys."
                }
                p class="proof" { (crate::pdf::certificate_summary(&prepared.covers)) }
            }
        };
        Ok(respond(StatusCode::OK, page(&prepared.table.title, v.frame(), body)))
    })
    .await
}

/// The certified PDF, for a signed-in reader (the same export as the API's).
async fn export_pdf(
    State(app): State<Arc<QueryState>>,
    Path(child): Path<String>,
    Query(p): Query<PrintParams>,
    headers: HeaderMap,
) -> Response {
    serve(&app, &headers, "ui_export_pdf", |v, app| async move {
        let child = uuid_param("child", &child)?;
        let record = print_record(&p)?;
        admit_child(&app, &v.caller, "GET /ui/children/{child}/export.pdf", child, Need::Record).await?;
        let prepared = crate::export::prepare(&app, child, record, "pdf").await?;
        let document = crate::export::document(prepared, casework::format::Format::Pdf, &app.export_key)?;
        let mut response = document.into_response();
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"chronology-{}.pdf\"", short(&child)))
        {
            response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
        }
        Ok(response)
    })
    .await
}

/// The full record's entries, each with what was written (opened for this
/// reader; "[erased]" once the child's key is gone), its lasting
/// reference, its source as people name it and its significance.
fn record_items(entries: &[projections::chronology::Entry], record: &crate::FullRecord) -> Vec<timeline::Item> {
    let serial_of: HashMap<&str, usize> = entries.iter().enumerate().map(|(i, e)| (e.id.as_str(), i + 1)).collect();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let plo = record.plo.get(&e.sequence);
            let agency = record.agencies.get(e.source.as_str()).map(casework::narrative::Agency::line);
            timeline::Item {
                serial: i + 1,
                reference: Some(casework::narrative::reference(e)),
                at: e.occurred_at,
                date_only: false,
                recorded_at: Some(e.recorded_at),
                lane: e.source.as_str().to_owned(),
                source: match (agency, plo.and_then(|p| p.author.as_ref())) {
                    (Some(a), Some(role)) => Some(format!("{a}; author: {role}")),
                    (agency, _) => agency,
                },
                significant: plo.is_some_and(|p| p.significant),
                kind: e.event_type.name().to_owned(),
                summary: e.summary.clone(),
                detail: casework::narrative::of(&record.narratives, e).map(casework::narrative::Narrative::line),
                status: e.status,
                corrected_by: e
                    .corrected_by
                    .as_ref()
                    .map(events::ids::EventId::as_str)
                    .and_then(|id| serial_of.get(id).copied()),
                retracted_by: e
                    .retracted_by
                    .as_ref()
                    .map(events::ids::EventId::as_str)
                    .and_then(|id| serial_of.get(id).copied()),
            }
        })
        .collect()
}

fn publication_items(x: &casework::anonymise::Export) -> Vec<timeline::Item> {
    x.entries
        .iter()
        .map(|e| timeline::Item {
            serial: e.serial,
            reference: Some(e.reference.clone()),
            source: e.author.as_ref().map(|role| format!("{}; author: {role}", e.agency)),
            significant: false,
            // Dates only are published; noon keeps a day's markers in that day.
            at: e.date.and_hms_opt(12, 0, 0).map_or_else(Utc::now, |t| t.and_utc()),
            date_only: true,
            recorded_at: None,
            lane: e.agency.clone(),
            kind: e.event.clone(),
            summary: e.summary.clone(),
            detail: e.detail.clone(),
            status: e.status,
            corrected_by: e.corrected_by,
            retracted_by: e.retracted_by,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_reads_london_wall_clock_time() {
        let summer = parse_as_of("2025-07-01T09:30").map(|t| t.to_rfc3339());
        assert_eq!(summer.ok().as_deref(), Some("2025-07-01T08:30:00+00:00"));
        let winter = parse_as_of("2025-01-14T09:30:15").map(|t| t.to_rfc3339());
        assert_eq!(winter.ok().as_deref(), Some("2025-01-14T09:30:15+00:00"));
        assert!(parse_as_of("2025-01-14T09:30:00Z").is_ok());
        assert!(parse_as_of("yesterday").is_err());
        // 01:30 on 30 March 2025 did not happen in London.
        assert!(parse_as_of("2025-03-30T01:30").is_err());
    }

    #[test]
    fn sorting_is_checked_and_named() {
        assert_eq!(sort_params(None, None, &BOARD_COLUMNS, "cases").ok(), Some(("cases".into(), true)));
        assert!(
            matches!(sort_params(Some("name"), None, &BOARD_COLUMNS, "cases"), Err(QueryError::Invalid(e)) if e[0].parameter == "sort")
        );
        assert!(
            matches!(sort_params(None, Some("up"), &BOARD_COLUMNS, "cases"), Err(QueryError::Invalid(e)) if e[0].parameter == "order")
        );
        let th = sort_heading("/ui/caseloads?council=E09000014", "cases", "Open cases", "cases", true).into_string();
        assert!(th.contains(r#"aria-sort="descending""#), "{th}");
        assert!(th.contains("order=asc"), "{th}");
    }

    #[test]
    fn team_ids_are_encoded_in_links() {
        assert_eq!(encode("north & east"), "north%20%26%20east");
    }
}
