//! The frame every page shares, the error page, and how numbers and times
//! are written for people (percentages, "per 10,000", London time).

use super::session::Session;
use crate::error::QueryError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use casework::indicators::Unit;
use chrono::{DateTime, Utc};
use chrono_tz::Europe::London;
use maud::{DOCTYPE, Markup, html};

/// What the frame needs to know about who is signed in.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub session: Option<&'a Session>,
    /// The CSRF token for the sign-out form.
    pub csrf: Option<&'a str>,
}

pub fn page(title: &str, frame: Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – Safeguard" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/ui" { "Safeguard" }
                    @if let Some(session) = frame.session {
                        nav aria-label="Signed in" {
                            span class="who" { "Signed in as " strong { (session.acting_user) } " for " (session.principal) }
                            form method="post" action="/ui/sign-out" {
                                input type="hidden" name="csrf" value=(frame.csrf.unwrap_or_default());
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
}

/// HTML with the headers every page carries: nothing cached (pages hold
/// personal data), nothing framed, no address leaves in a referrer, and scripts and
/// styles only from our own assets.
/// A page that sends the browser on to `to` at once (a refresh, not a
/// redirect): after a provider sent the browser here from its own site, a
/// navigation this page starts is our own, so the strict session cookie
/// goes with it; and leaving for a provider's sign-out this way is not a
/// form's redirect, which `form-action 'self'` would stop. `words` is what
/// shows if the browser does not move on by itself.
pub fn forward_page(title: &str, to: &str, words: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(format!("0;url={to}"));
                title { (title) " – Safeguard" }
                link rel="stylesheet" href="/ui/assets/app.css";
            }
            body {
                main id="main" {
                    h1 { (title) }
                    p { (words) " " a href=(to) { "Continue" } }
                }
            }
        }
    }
}

pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(h);
    response
}

pub fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Addresses (which hold child ids) never leave for another site; our own
    // forms still carry their Origin, which sign-in and sign-out check.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A redirect after a form, or to sign in.
pub fn see_other(location: &'static str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_static(location));
    secure_headers(response.headers_mut());
    response
}

/// A redirect to an address made at run time (an identity provider's).
pub fn see_other_to(location: &str) -> Response {
    let Ok(value) = HeaderValue::from_str(location) else { return see_other("/ui/sign-in") };
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, value);
    secure_headers(response.headers_mut());
    response
}

/// An error as a page: the same decisions as the API's problem+json, for
/// people. Someone not signed in is sent to sign in; a refusal shows the
/// reason and nothing of the record.
pub fn error_page(error: QueryError, frame: Frame<'_>) -> Response {
    let status = error.status();
    let (heading, lines): (&str, Vec<String>) = match error {
        QueryError::Unauthorized | QueryError::TokenRefused(_) => return see_other("/ui/sign-in"),
        QueryError::Forbidden(reason) => ("You cannot see this", vec![capitalise(&reason)]),
        QueryError::NotFound(reason) => ("Not found", vec![capitalise(&reason)]),
        QueryError::NotConfigured(reason) => ("Not set up yet", vec![capitalise(&reason)]),
        QueryError::BeyondStream(wanted) => {
            ("Not in the records", vec![format!("Nothing has been recorded at position {wanted} yet.")])
        }
        QueryError::TooLarge(reason) => ("Too much sent", vec![capitalise(&reason)]),
        QueryError::TooManyStreams(reason) => ("Too many open pages", vec![capitalise(&reason)]),
        QueryError::Invalid(errors) => (
            "Something in the address is not right",
            errors.into_iter().map(|e| format!("{}: {}", e.parameter, e.message)).collect(),
        ),
        QueryError::Behind { position, wanted } => (
            "Not up to date yet",
            vec![format!("The records hold everything up to {position}, not yet {wanted}. Try again in a moment.")],
        ),
        QueryError::Unavailable { detail, cause } => {
            platform::telemetry::report(&detail, cause.as_ref());
            ("Not available just now", vec![capitalise(&detail)])
        }
        QueryError::Internal(cause) => {
            let id = platform::telemetry::report("internal error on a page", Some(&cause));
            let mut lines = vec!["The query role failed; the cause is in its log.".to_owned()];
            if let Some(id) = id {
                lines.push(format!("Quote this reference if you report it: {id}."));
            }
            ("Something went wrong", lines)
        }
    };
    let body = html! {
        h1 { (heading) }
        div class="problem" role="alert" {
            @for line in &lines { p { (line) } }
        }
        p { a href="/ui" { "Back to the start" } }
    };
    respond(status, page(heading, frame, body))
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// An indicator's value as people read it: shares as percentages, rates
/// per 10,000 and per FTE to one decimal place.
pub fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Share => format!("{:.1}%", value * 100.0),
        Unit::Per10000 | Unit::PerFte => format!("{value:.1}"),
        Unit::WorkingDays => format!("{value:.0}"),
    }
}

/// Counts with thousands separators; other numbers to two places.
pub fn format_count(value: f64) -> String {
    if value.fract() != 0.0 {
        return format!("{value:.2}");
    }
    let digits = format!("{}", value.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

pub fn unit_words(unit: Unit) -> &'static str {
    match unit {
        Unit::Share => "",
        Unit::Per10000 => "per 10,000 children",
        Unit::PerFte => "cases per FTE",
        Unit::WorkingDays => "working days",
    }
}

/// A time in London, as people in England read it.
pub fn london(t: &DateTime<Utc>) -> String {
    t.with_timezone(&London).format("%-d %b %Y %H:%M").to_string()
}

pub fn london_date(t: &DateTime<Utc>) -> String {
    t.with_timezone(&London).format("%-d %b %Y").to_string()
}

/// The value of a `datetime-local` input for `t` (London time, to the second).
pub fn datetime_local(t: &DateTime<Utc>) -> String {
    t.with_timezone(&London).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Whole days from `then` to `now`.
pub fn days_since(then: &DateTime<Utc>, now: &DateTime<Utc>) -> i64 {
    (*now - *then).num_days()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(format_value(0.814, Unit::Share), "81.4%");
        assert_eq!(format_value(525.04, Unit::Per10000), "525.0");
        assert_eq!(format_count(1234567.0), "1,234,567");
        assert_eq!(format_count(999.0), "999");
        assert_eq!(format_count(2.5), "2.50");
        assert_eq!(format_count(-1000.0), "-1,000");
    }

    #[test]
    fn times_are_shown_in_london() {
        let summer = DateTime::parse_from_rfc3339("2025-07-01T08:30:00Z").map(|t| t.to_utc()).unwrap_or_default();
        assert_eq!(london(&summer), "1 Jul 2025 09:30");
        assert_eq!(datetime_local(&summer), "2025-07-01T09:30:00");
    }
}
