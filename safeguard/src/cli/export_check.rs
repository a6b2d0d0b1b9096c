//! Reading a certified export back for `safeguard verify --export`: text
//! formats go straight to `casework::certified`; a PDF gives up the record
//! attached to it (`export.json`) and the digest of its pages, which must
//! be the pages the record certifies.

use casework::certified::{self, Kind, Problem, Report};
use ed25519_dalek::VerifyingKey;

/// A PDF's pages may not unpack to more than this (a hostile file's
/// compressed streams could otherwise fill memory).
const MAX_PAGE_BYTES: usize = 256 << 20;

/// Checks an export's bytes with the gateway's and the export keys.
pub fn check(bytes: &[u8], gateway: &[VerifyingKey], exporter: &[VerifyingKey]) -> Report {
    if bytes.starts_with(b"%PDF") {
        return check_pdf(bytes, gateway, exporter);
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return certified::unreadable("the export is not UTF-8 text") };
    match certified::parse(text) {
        Ok(parsed) => certified::verify(&parsed, gateway, exporter),
        Err(e) => certified::unreadable(e),
    }
}

fn check_pdf(bytes: &[u8], gateway: &[VerifyingKey], exporter: &[VerifyingKey]) -> Report {
    let (attached, pages) = match read_pdf(bytes) {
        Ok(found) => found,
        Err(e) => return certified::unreadable(format!("the PDF does not read: {e}")),
    };
    let Ok(text) = String::from_utf8(attached) else {
        return certified::unreadable("the attached record is not UTF-8");
    };
    let parsed = match certified::parse(&text) {
        Ok(parsed) => parsed,
        Err(e) => return certified::unreadable(format!("the attached record: {e}")),
    };
    let mut report = certified::verify(&parsed, gateway, exporter);
    if parsed.certificate.format != "pdf" || parsed.certificate.pages.as_deref() != Some(pages.as_str()) {
        report.ok = false;
        report.problems.push(Problem {
            reference: None,
            kind: Kind::Altered,
            detail: "the PDF's pages are not the pages its attached record certifies".into(),
        });
    }
    report
}

/// The attached `export.json` and the SHA-256 of the pages' content, in order.
fn read_pdf(bytes: &[u8]) -> Result<(Vec<u8>, String), String> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| e.to_string())?;
    // Each page's content streams as they decode, nothing added between them.
    let mut contents = Vec::new();
    let mut budget = MAX_PAGE_BYTES;
    for page in doc.get_pages().values() {
        for id in doc.get_page_contents(*page) {
            let stream = doc.get_object(id).and_then(lopdf::Object::as_stream).map_err(|e| e.to_string())?;
            let content = if stream.dict.has(b"Filter") {
                stream.decompressed_content_with_limit(budget).map_err(|e| e.to_string())?
            } else {
                stream.content.clone()
            };
            budget = budget.checked_sub(content.len()).ok_or("the pages unpack to too much")?;
            contents.push(content);
        }
    }
    let pages = certified::pages_digest(&contents);
    let e = |m: &str| m.to_owned();
    let catalog = doc.catalog().map_err(|_| e("no catalog"))?;
    let names = catalog.get_deref(b"Names", &doc).and_then(lopdf::Object::as_dict).map_err(|_| e("no names"))?;
    let files =
        names.get_deref(b"EmbeddedFiles", &doc).and_then(lopdf::Object::as_dict).map_err(|_| e("no attached files"))?;
    let list = files.get_deref(b"Names", &doc).and_then(lopdf::Object::as_array).map_err(|_| e("no attached files"))?;
    for pair in list.chunks(2) {
        let [name, spec] = pair else { continue };
        if doc.dereference(name).ok().and_then(|(_, n)| n.as_str().ok()) != Some(b"export.json".as_slice()) {
            continue;
        }
        let (_, spec) = doc.dereference(spec).map_err(|_| e("the attachment does not read"))?;
        let spec = spec.as_dict().map_err(|_| e("the attachment does not read"))?;
        let ef = spec.get_deref(b"EF", &doc).and_then(lopdf::Object::as_dict).map_err(|_| e("no attached file"))?;
        let stream = ef.get_deref(b"F", &doc).and_then(lopdf::Object::as_stream).map_err(|_| e("no attached file"))?;
        let content = stream.decompressed_content().unwrap_or_else(|_| stream.content.clone());
        return Ok((content, pages));
    }
    Err("no export.json is attached".into())
}
