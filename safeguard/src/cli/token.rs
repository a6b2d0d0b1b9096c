//! `safeguard token`: a new random bearer token, printed once, with the
//! `principals.toml` entry that holds only its SHA-256; and `safeguard
//! nkey`, a NATS user key for one role.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use events::ids::{CouncilCode, PrincipalName};
use platform::principals::token_sha256;
use rand::RngCore;

/// A token: `sg_` and 32 random bytes, URL-safe base64.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("sg_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// `safeguard nkey`: a new NATS user nkey. The seed is written to `out`,
/// readable by its owner only, and never printed; the public key is
/// returned for the server's accounts file.
pub fn new_nkey(out: &std::path::Path) -> Result<String, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().map_err(|e| format!("could not make a seed: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("cannot create {} (an existing seed is never overwritten): {e}", out.display()))?;
    writeln!(file, "{seed}").map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(pair.public_key())
}

/// The text `safeguard token` prints.
/// Who a principal is to people: its display name and agency kind (both optional).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub display_name: Option<String>,
    pub agency: Option<String>,
}

pub fn render(
    name: &str,
    identity: &Identity,
    roles: &[String],
    councils: &[String],
    event_types: &[String],
    token: &str,
) -> Result<String, String> {
    PrincipalName::parse(name).map_err(|m| format!("--name {m}"))?;
    const ROLES: [&str; 6] = ["publish", "practitioner", "reviewer", "dashboard", "auditor", "admin"];
    if roles.is_empty() {
        return Err("give at least one --role".into());
    }
    for role in roles {
        if !ROLES.contains(&role.as_str()) {
            return Err(format!("--role {role:?} is not one of {}", ROLES.join(", ")));
        }
    }
    // No default: a token for every council must be asked for by name.
    if councils.is_empty() {
        return Err("give --council for each council in scope, or --council '*' for every council".into());
    }
    if roles.iter().any(|r| r == "admin") && councils.iter().any(|c| c != "*") {
        return Err("--role admin covers every council: give --council '*' (or the practitioner and auditor roles for one council)".into());
    }
    for council in councils.iter().filter(|c| c.as_str() != "*") {
        CouncilCode::parse(council).map_err(|m| format!("--council {council:?} {m}"))?;
    }
    for t in event_types.iter().filter(|t| t.as_str() != "*") {
        if events::EventType::from_name(t).is_none() {
            return Err(format!("--event-type {t:?} is not an event type"));
        }
    }
    if let Some(agency) = &identity.agency
        && events::codes::AgencyKind::from_code(agency).is_none()
    {
        let codes: Vec<&str> = events::codes::AgencyKind::ALL.iter().map(|k| k.code()).collect();
        return Err(format!("--agency {agency:?} is not one of {}", codes.join(", ")));
    }
    let mut identity_lines = String::new();
    if let Some(display) = &identity.display_name {
        if display.trim().is_empty() || display.chars().count() > 100 || display.chars().any(char::is_control) {
            return Err("--display-name must be 1 to 100 printable characters".into());
        }
        identity_lines.push_str(&format!("display_name = {display:?}\n"));
    }
    if let Some(agency) = &identity.agency {
        identity_lines.push_str(&format!("agency = {agency:?}\n"));
    }
    let list = |items: &[String]| items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let event_types = if event_types.is_empty() { vec!["*".to_owned()] } else { event_types.to_vec() };
    Ok(format!(
        "# token (shown once; keep it secret): {token}\n[[principal]]\nname = {name:?}\n{identity_lines}token_sha256 = {:?}\nroles = [{}]\ncouncils = [{}]\nevent_types = [{}]\n",
        token_sha256(token),
        list(roles),
        list(councils),
        list(&event_types),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::principals::Principals;

    #[test]
    fn the_printed_entry_authenticates_the_printed_token() {
        let token = new_token();
        let identity = Identity {
            display_name: Some("Haringey children's services".into()),
            agency: Some("council_childrens_services".into()),
        };
        let text =
            render("haringey-csc", &identity, &["publish".into()], &["E09000014".into()], &[], &token).expect("valid");
        let principals = Principals::from_text(&text).expect("parses");
        let who = principals.authenticate(&token).expect("known");
        assert_eq!(who.display_name, "Haringey children's services");
        assert_eq!(who.agency, events::codes::AgencyKind::CouncilChildrensServices);
        let unknown = Identity { agency: Some("navy".into()), ..Identity::default() };
        assert!(render("x", &unknown, &["publish".into()], &["*".into()], &[], &token).is_err());
        assert!(!text.lines().skip(1).any(|l| l.contains(&token)), "only the comment line shows the token");
        assert!(render("x", &Identity::default(), &["emperor".into()], &[], &[], &token).is_err());
    }

    #[test]
    fn a_token_names_its_councils_and_an_admin_token_every_council() {
        let token = new_token();
        let unscoped =
            render("x", &Identity::default(), &["practitioner".into()], &[], &[], &token).expect_err("refused");
        assert!(unscoped.contains("--council"), "{unscoped}");
        let narrow = render("x", &Identity::default(), &["admin".into()], &["E09000014".into()], &[], &token)
            .expect_err("refused");
        assert!(narrow.contains("admin"), "{narrow}");
        assert!(render("x", &Identity::default(), &["admin".into()], &["*".into()], &[], &token).is_ok());
    }
}
