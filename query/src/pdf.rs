//! The certified export as a PDF a court would file: A4 pages, one block
//! per entry (serial, date, reference, agency, then each column that has
//! something to say), the entry's hash and chain link under it, a
//! certificate page at the end, and the certified JSON export attached as
//! `export.json` (`casework::certified`). The pages' content streams are
//! hashed into the certificate (`pages`) before the JSON is signed, so a page
//! changed after the export was made no longer matches what the attached
//! record certifies.
//!
//! Text is set in the PDF's standard Helvetica (no font is embedded, so
//! every reader has it), in WinAnsi encoding: a character outside it is
//! shown as `?` on the page, while the attached record keeps it exactly.

use casework::certified::{self, Covers, Link, Table};
use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str, TextStr};
use serde_json::{Map, Value};

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// One line set on a page.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    size: f32,
    bold: bool,
    /// 0 black .. 1 white.
    gray: f32,
    /// Space above it.
    lead: f32,
}

impl Line {
    fn new(text: impl Into<String>, size: f32) -> Self {
        Self { text: text.into(), size, bold: false, gray: 0.0, lead: size * 1.3 }
    }
    fn bold(mut self) -> Self {
        self.bold = true;
        self
    }
    fn gray(mut self, gray: f32) -> Self {
        self.gray = gray;
        self
    }
    fn after(mut self, space: f32) -> Self {
        self.lead += space;
        self
    }
}

/// Helvetica's advance widths, near enough to wrap by (thousandths of an em).
fn advance(c: char) -> f32 {
    match c {
        'i' | 'j' | 'l' | '\'' | '|' | '!' | '.' | ',' | ':' | ';' => 250.0,
        ' ' | 'f' | 't' | 'I' | '/' | '(' | ')' | '[' | ']' | '-' => 300.0,
        'r' => 333.0,
        'm' | 'M' => 850.0,
        'w' | 'W' => 950.0,
        c if c.is_ascii_uppercase() => 722.0,
        c if c.is_ascii_digit() => 556.0,
        _ => 560.0,
    }
}

fn width(text: &str, size: f32) -> f32 {
    text.chars().map(advance).sum::<f32>() * size / 1000.0
}

/// `text` broken into lines no wider than `room` at `size`; a word too long
/// for a line (a hash) is broken where it must be.
fn wrap(text: &str, size: f32, room: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
        if width(&candidate, size) <= room {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        let mut rest = word.to_owned();
        while width(&rest, size) > room {
            let mut cut = 0;
            let mut w = 0.0;
            for (i, c) in rest.char_indices() {
                w += advance(c) * size / 1000.0;
                if w > room {
                    break;
                }
                cut = i + c.len_utf8();
            }
            let cut = cut.max(rest.chars().next().map_or(1, char::len_utf8));
            lines.push(rest[..cut].to_owned());
            rest = rest[cut..].to_owned();
        }
        line = rest;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `text` in WinAnsi (Windows-1252), `?` for what it cannot hold.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            _ => b'?',
        })
        .collect()
}

/// One entry as the PDF and the printable page set it: a heading (serial,
/// date, reference, agency), each other column that has something to say,
/// and the event's hash and chain link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub heading: String,
    pub fields: Vec<(String, String)>,
    pub proof: Option<String>,
}

const HEADING: [&str; 4] = ["serial", "date", "reference", "agency"];

/// The table's entries as blocks.
pub(crate) fn blocks(table: &Table, links: &[Link]) -> Vec<Block> {
    let column = |name: &str| table.columns.iter().position(|c| *c == name);
    table
        .rows
        .iter()
        .map(|row| {
            let cell = |name: &str| column(name).and_then(|i| row.cells.get(i)).cloned().unwrap_or_default();
            Block {
                heading: format!("{}.  {}   {}   {}", cell("serial"), cell("date"), cell("reference"), cell("agency")),
                fields: table
                    .columns
                    .iter()
                    .zip(&row.cells)
                    .filter(|(name, value)| !HEADING.contains(name) && !value.trim().is_empty())
                    .map(|(name, value)| (name.replace('_', " "), value.clone()))
                    .collect(),
                proof: certified::link_of(links, row.sequence)
                    .map(|link| format!("event {} · sha256 {} · follows {}", link.sequence, link.hash, link.prevhash)),
            }
        })
        .collect()
}

/// What the certificate says, in a sentence.
pub(crate) fn certificate_summary(covers: &Covers) -> String {
    match &covers.checkpoint {
        Some((doc, head)) => format!(
            "Certified by the checkpoint at event stream position {} (root {}), signed {}: the history ends there at event {} with hash {}.",
            doc["covers"],
            doc["root"].as_str().unwrap_or(""),
            doc["at"].as_str().unwrap_or(""),
            head.sequence,
            head.hash
        ),
        None => "No signed checkpoint covered this child's history yet: entries are signed and linked, and a later export certifies their end.".to_owned(),
    }
}

/// What a certified export says of itself and how to check it.
pub(crate) const CERTIFIED: &str = "This chronology is certified. The record it was drawn from is attached to this file as \
     export.json, with the gateway's signed checkpoint, the proof that the child's history ended where this export \
     says, and each entry's hash, chain link and signatures. Check it with `safeguard verify --export FILE` and the \
     public keys: a page or an entry changed, left out or moved is found and named.";

/// Every line of the document, in reading order.
fn lines(table: &Table, links: &[Link], certificate: &str) -> Vec<Line> {
    let room = WIDTH - 2.0 * MARGIN;
    let mut out = vec![Line::new(&table.title, 15.0).bold()];
    for p in &table.preamble {
        out.extend(wrap(p, 9.0, room).into_iter().map(|l| Line::new(l, 9.0)));
    }
    for block in blocks(table, links) {
        out.push(Line::new(block.heading, 10.0).bold().after(8.0));
        for (name, value) in &block.fields {
            let text = format!("{name}: {value}");
            out.extend(wrap(&text, 9.0, room - 12.0).into_iter().map(|l| Line::new(format!("   {l}"), 9.0)));
        }
        if let Some(proof) = block.proof {
            let proof = format!("   {proof}");
            out.extend(wrap(&proof, 6.5, room - 12.0).into_iter().map(|l| Line::new(l, 6.5).gray(0.4)));
        }
    }
    out.push(Line::new("Certificate", 12.0).bold().after(14.0));
    for p in [CERTIFIED, certificate] {
        out.extend(wrap(p, 8.0, room).into_iter().map(|l| Line::new(l, 8.0)));
    }
    out
}

/// Lines laid out onto pages.
fn paginate(lines: Vec<Line>) -> Vec<Vec<(f32, Line)>> {
    let bottom = MARGIN + 20.0;
    let mut pages = vec![Vec::new()];
    let mut y = HEIGHT - MARGIN;
    for line in lines {
        if y - line.lead < bottom {
            pages.push(Vec::new());
            y = HEIGHT - MARGIN;
        }
        y -= line.lead;
        pages.last_mut().unwrap_or_else(|| unreachable!("never empty")).push((y, line));
    }
    pages
}

fn page_content(lines: &[(f32, Line)], footer: &str) -> Vec<u8> {
    let mut content = Content::new();
    for (y, line) in lines {
        content.set_fill_gray(line.gray);
        content.begin_text();
        content.set_font(if line.bold { BOLD } else { REGULAR }, line.size);
        content.next_line(MARGIN, *y);
        content.show(Str(&win_ansi(&line.text)));
        content.end_text();
    }
    content.set_fill_gray(0.4);
    content.begin_text();
    content.set_font(REGULAR, 7.5);
    content.next_line(MARGIN, MARGIN);
    content.show(Str(&win_ansi(footer)));
    content.end_text();
    content.finish().into_vec()
}

/// The certified PDF of `table`, its JSON entries attached.
pub fn certified(
    table: &Table,
    entries: Vec<(u64, Map<String, Value>)>,
    extra: Map<String, Value>,
    covers: &Covers,
    links: &[Link],
    key: &ed25519_dalek::SigningKey,
) -> Result<Vec<u8>, serde_json::Error> {
    let summary = certificate_summary(covers);
    let pages = paginate(lines(table, links, &summary));
    let total = pages.len();
    let contents: Vec<Vec<u8>> = pages
        .iter()
        .enumerate()
        .map(|(i, lines)| page_content(lines, &format!("{} · page {} of {total}", table.title, i + 1)))
        .collect();
    let record = certified::json(entries, extra, covers, links, key, Some(certified::pages_digest(&contents)));
    let attached = serde_json::to_vec_pretty(&record)?;

    let mut pdf = Pdf::new();
    let mut next = 1;
    let mut id = || {
        let r = Ref::new(next);
        next += 1;
        r
    };
    let (catalog, tree, regular, bold, info, spec, file) = (id(), id(), id(), id(), id(), id(), id());
    let page_ids: Vec<(Ref, Ref)> = (0..total).map(|_| (id(), id())).collect();
    {
        let mut c = pdf.catalog(catalog);
        c.pages(tree);
        c.names().embedded_files().names().insert(Str(b"export.json"), spec);
    }
    pdf.pages(tree).kids(page_ids.iter().map(|(p, _)| *p)).count(total as i32);
    for ((page_id, content_id), content) in page_ids.iter().zip(&contents) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT));
        page.parent(tree);
        page.contents(*content_id);
        page.resources().fonts().pair(REGULAR, regular).pair(BOLD, bold);
        drop(page);
        pdf.stream(*content_id, content);
    }
    pdf.type1_font(regular).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info).title(TextStr(&table.title)).producer(TextStr("Safeguard"));
    pdf.file_spec(spec)
        .path(Str(b"export.json"))
        .unic_file(TextStr("export.json"))
        .description(TextStr("The certified record these pages are drawn from"))
        .embedded_file(file);
    pdf.embedded_file(file, &attached).subtype(Name(b"application#2Fjson"));
    Ok(pdf.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wrap_within_the_page_and_long_words_are_broken() {
        let room = 100.0;
        let text = format!("a short start then {}", "f".repeat(200));
        for l in wrap(&text, 9.0, room) {
            assert!(width(&l, 9.0) <= room + 0.01, "{l}");
        }
        assert_eq!(wrap("", 9.0, room), Vec::<String>::new());
    }

    #[test]
    fn text_outside_win_ansi_is_a_question_mark() {
        assert_eq!(win_ansi("Zoë – ok ✓"), b"Zo\xeb \x96 ok ?".to_vec());
    }
}
