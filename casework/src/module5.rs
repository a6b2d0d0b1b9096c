//! The DfE's rules for the 2026-27 census's module 5 (pre-proceedings and
//! family group decision making), run on a census as written: for
//! `safeguard return check`, because the DfE's validator as released
//! (`csc-validator-be-cin` 0.1.13) has none of them yet. Pure: each
//! `PreProceedingsandFGDM` block's elements as text in, findings out.
//!
//! The rules, in the DfE's numbering (as the open-source validator's
//! development branch implements them): 9005, 9006, 9008, 9009, 9012 and
//! 9013 put each date in the collection year and after the one it follows;
//! 9007 asks for a letter wherever an offer of a family group meeting is
//! said; 9011 holds the outcome to code set CS131 (A, B, C); and the
//! queries 9010Q (an offer with nothing said of a meeting held), 9015Q (an
//! initial meeting with no count of reviews) and 8995Q (no child has the
//! module at all).

use crate::cin::CollectionYear;
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// One `PreProceedingsandFGDM` block: its child's `LAchildID` and each
/// element's text, so a value that is wrong is reported rather than lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Block {
    pub child: String,
    pub fields: BTreeMap<String, String>,
}

/// A rule a block breaks. Codes ending in Q are queries: for the analyst
/// to explain, not errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub child: String,
    pub field: &'static str,
    pub detail: String,
}

impl Finding {
    pub fn is_query(&self) -> bool {
        self.rule.ends_with('Q')
    }
}

/// A date rule: its code, the date's element, and the element (with its
/// date) it must not precede.
type Ordered = (&'static str, &'static str, Option<(&'static str, Option<NaiveDate>)>);

/// Every finding of module 5's rules on the blocks of a census for `year`.
pub fn findings(year: &CollectionYear, blocks: &[Block]) -> Vec<Finding> {
    let mut out = Vec::new();
    if blocks.is_empty() {
        out.push(Finding {
            rule: "8995Q",
            child: String::new(),
            field: "PreProceedingsandFGDM",
            detail: "no child has module 5 (pre-proceedings and family group decision making): say why".into(),
        });
    }
    for b in blocks {
        let mut finding = |rule: &'static str, field: &'static str, detail: String| {
            out.push(Finding { rule, child: b.child.clone(), field, detail });
        };
        let text = |field: &str| b.fields.get(field).map(|v| v.trim()).filter(|v| !v.is_empty());
        // A date that is not one is as good as absent for ordering; the
        // schema names it.
        let date = |field: &str| text(field).and_then(|v| v.parse::<NaiveDate>().ok());
        let in_year = |d: NaiveDate| year.start <= d && d <= year.reference_date;
        let ordered: [Ordered; 6] = [
            ("9005", "PPStartDate", None),
            ("9006", "LBPSentDate", Some(("PPStartDate", date("PPStartDate")))),
            ("9008", "InitialPPMeetingDate", None),
            ("9009", "StepDecisionDate", Some(("PPStartDate", date("PPStartDate")))),
            ("9012", "CourtAppDate", Some(("StepDecisionDate", date("StepDecisionDate")))),
            ("9013", "LetterInitCPDate", Some(("CourtAppDate", date("CourtAppDate")))),
        ];
        for (rule, field, after) in ordered {
            let Some(on) = date(field) else { continue };
            if !in_year(on) {
                finding(
                    rule,
                    field,
                    format!("{on} is outside the collection year {} to {}", year.start, year.reference_date),
                );
            } else if let Some((earlier_field, Some(earlier))) = after
                && on < earlier
            {
                finding(rule, field, format!("{on} is before {earlier_field} {earlier}"));
            }
        }
        if text("FGDMMeetingOffer").is_some() && text("LBPSentDate").is_none() {
            finding(
                "9007",
                "FGDMMeetingOffer",
                "says whether the letter offered a meeting, but no letter was sent".into(),
            );
        }
        if let Some(outcome) = text("PPOutcome")
            && !["A", "B", "C"].contains(&outcome)
        {
            finding("9011", "PPOutcome", format!("{outcome:?} is not one of A, B, C (code set CS131)"));
        }
        if text("FGDMMeetingOffer") == Some("1") && text("FGDMMeetingFac").is_none() {
            finding("9010Q", "FGDMMeetingFac", "a meeting was offered: say whether one was held".into());
        }
        if text("InitialPPMeetingDate").is_some() && text("ReviewMeetingsCount").is_none() {
            finding(
                "9015Q",
                "ReviewMeetingsCount",
                "an initial meeting was held: say how many reviews followed".into(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fields: &[(&str, &str)]) -> Block {
        Block { child: "A1".into(), fields: fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    fn rules(year: &str, blocks: &[Block]) -> Vec<&'static str> {
        findings(&CollectionYear::parse(year).expect("year"), blocks).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn a_whole_block_in_order_breaks_nothing() {
        let good = block(&[
            ("PPStartDate", "2026-09-09"),
            ("LBPSentDate", "2026-09-20"),
            ("FGDMMeetingOffer", "1"),
            ("FGDMMeetingFac", "1"),
            ("InitialPPMeetingDate", "2026-09-28"),
            ("ReviewMeetingsCount", "3"),
            ("StepDecisionDate", "2026-12-01"),
            ("PPOutcome", "A"),
            ("CourtAppDate", "2026-12-18"),
            ("LetterInitCPDate", "2027-02-05"),
        ]);
        assert_eq!(rules("2026-27", &[good]), Vec::<&str>::new());
    }

    #[test]
    fn each_rule_by_a_block_that_breaks_it() {
        let cases: [(&[(&str, &str)], &str); 10] = [
            (&[("PPStartDate", "2026-03-31")], "9005"),
            (&[("PPStartDate", "2026-05-02"), ("LBPSentDate", "2026-05-01"), ("FGDMMeetingOffer", "0")], "9006"),
            (&[("PPStartDate", "2026-05-02"), ("FGDMMeetingOffer", "0")], "9007"),
            (
                &[("PPStartDate", "2026-05-02"), ("InitialPPMeetingDate", "2027-04-01"), ("ReviewMeetingsCount", "0")],
                "9008",
            ),
            (&[("PPStartDate", "2026-05-02"), ("StepDecisionDate", "2026-05-01")], "9009"),
            (&[("PPStartDate", "2026-05-02"), ("LBPSentDate", "2026-05-03"), ("FGDMMeetingOffer", "1")], "9010Q"),
            (&[("PPStartDate", "2026-05-02"), ("PPOutcome", "D")], "9011"),
            (
                &[("PPStartDate", "2026-05-02"), ("StepDecisionDate", "2026-06-02"), ("CourtAppDate", "2026-06-01")],
                "9012",
            ),
            (
                &[("PPStartDate", "2026-05-02"), ("CourtAppDate", "2026-06-02"), ("LetterInitCPDate", "2026-06-01")],
                "9013",
            ),
            (&[("PPStartDate", "2026-05-02"), ("InitialPPMeetingDate", "2026-05-09")], "9015Q"),
        ];
        for (fields, rule) in cases {
            assert_eq!(rules("2026-27", &[block(fields)]), [rule], "{fields:?}");
        }
        assert_eq!(rules("2026-27", &[]), ["8995Q"]);
    }
}
