//! The tenant's bot: what it says when a conversation opens, and how it answers a
//! visitor's message or menu choice: a knowledge-base answer, suggestions, or a
//! handoff to a skill group. Pure rules; the tenant router applies them.

use super::knowledge::{wants_human, EntryId, KnowledgeBase};
use switchboard_protocol::GroupId;
use switchboard_raft_store::BotRecord;

/// Below this confidence a knowledge-base entry is not even suggested.
pub const SUGGEST_FLOOR: f32 = 0.15;
/// At most this many suggestions.
pub const MAX_SUGGESTIONS: usize = 3;

/// What the bot does with a visitor's turn.
#[derive(Clone, Debug, PartialEq)]
pub enum BotReply {
    /// Say this and stay in charge.
    Say(String),
    /// Say this and hand the conversation to a skill group.
    Handoff {
        /// Where it goes.
        group: GroupId,
        /// What the visitor is told.
        say: String,
    },
}

/// Why the bot answered as it did (for the counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A knowledge-base answer was sent.
    Answered,
    /// Closest answers were offered.
    Suggested,
    /// Nothing matched.
    NoMatch,
    /// Handed to a human.
    HandedOff,
}

/// The opening message: welcome text, the numbered menu, and how to reach a human.
pub fn welcome(bot: &BotRecord) -> String {
    let mut text = bot.welcome.trim().to_string();
    for (i, item) in bot.menu.iter().enumerate() {
        text.push_str(&format!("\n{}. {}", i + 1, item.label));
    }
    text.push_str("\n(Type 'human' or 人工 at any time to talk to an agent.)");
    text
}

fn handoff(group: GroupId) -> BotReply {
    BotReply::Handoff { group, say: "Connecting you to an agent… 正在为您转接人工客服…".into() }
}

/// The visitor picked menu item `item` (1-based).
pub fn on_choice(bot: &BotRecord, kb: &KnowledgeBase, item: usize) -> (BotReply, Outcome) {
    let Some(choice) = item.checked_sub(1).and_then(|i| bot.menu.get(i)) else {
        return (BotReply::Say(format!("Please pick a number from 1 to {}.", bot.menu.len())), Outcome::NoMatch);
    };
    if let Some(group) = choice.group {
        return (handoff(group), Outcome::HandedOff);
    }
    match choice.answer.and_then(|id| kb.get(EntryId(id))) {
        Some(entry) => (BotReply::Say(entry.answer.clone()), Outcome::Answered),
        None => (handoff(bot.handoff_group), Outcome::HandedOff),
    }
}

/// The visitor wrote `text` while the bot is in charge.
pub fn on_text(bot: &BotRecord, kb: &KnowledgeBase, text: &str) -> (BotReply, Outcome) {
    let trimmed = text.trim();
    if wants_human(trimmed) {
        return (handoff(bot.handoff_group), Outcome::HandedOff);
    }
    // A menu pick typed as its number or label.
    let picked = trimmed.parse::<usize>().ok().or_else(|| {
        bot.menu.iter().position(|m| m.label.trim().eq_ignore_ascii_case(trimmed)).map(|i| i + 1)
    });
    if let Some(item) = picked.filter(|i| (1..=bot.menu.len()).contains(i)) {
        return on_choice(bot, kb, item);
    }
    let matches = kb.best(trimmed, MAX_SUGGESTIONS);
    if let Some(top) = matches.first().filter(|m| m.confidence >= bot.confidence) {
        if let Some(entry) = kb.get(top.entry) {
            return (BotReply::Say(entry.answer.clone()), Outcome::Answered);
        }
    }
    let suggestions: Vec<&str> = matches
        .iter()
        .filter(|m| m.confidence >= SUGGEST_FLOOR)
        .filter_map(|m| kb.get(m.entry).and_then(|e| e.questions.get(m.question)).map(String::as_str))
        .collect();
    if suggestions.is_empty() {
        return (BotReply::Say("Sorry, I don't know that one. Type 'human' to talk to an agent.".into()), Outcome::NoMatch);
    }
    let mut say = String::from("Did you mean:");
    for s in suggestions {
        say.push_str("\n- ");
        say.push_str(s);
    }
    say.push_str("\nOr type 'human' to talk to an agent.");
    (BotReply::Say(say), Outcome::Suggested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::knowledge::Entry;
    use switchboard_protocol::TenantId;
    use switchboard_raft_store::MenuItemRecord;

    fn setup() -> (BotRecord, KnowledgeBase) {
        let kb = KnowledgeBase::new(vec![
            Entry { id: EntryId(1), questions: vec!["How do I reset my password?".into()], answer: "Use 'Forgot password' on the login page.".into() },
            Entry { id: EntryId(2), questions: vec!["怎么申请退款".into(), "如何退款".into()], answer: "在订单页点击申请退款。".into() },
            Entry { id: EntryId(3), questions: vec!["What are your opening hours?".into()], answer: "9:00-18:00, Monday to Friday.".into() },
        ]);
        let bot = BotRecord {
            tenant: TenantId(1),
            enabled: true,
            welcome: "Hi!".into(),
            menu: vec![
                MenuItemRecord { label: "Billing".into(), group: Some(GroupId(7)), answer: None },
                MenuItemRecord { label: "Opening hours".into(), group: None, answer: Some(3) },
            ],
            // a paraphrase sharing one content word scores ~0.29 (see docs/api.md)
            confidence: 0.25,
            handoff_group: GroupId(0),
        };
        (bot, kb)
    }

    #[test]
    fn welcome_lists_the_menu() {
        let (bot, _) = setup();
        let w = welcome(&bot);
        assert!(w.starts_with("Hi!\n1. Billing\n2. Opening hours"), "{w}");
    }

    #[test]
    fn menu_items_route_or_answer_by_number_label_or_frame() {
        let (bot, kb) = setup();
        assert_eq!(on_choice(&bot, &kb, 1).1, Outcome::HandedOff);
        assert!(matches!(on_choice(&bot, &kb, 1).0, BotReply::Handoff { group: GroupId(7), .. }));
        assert_eq!(on_text(&bot, &kb, " 2 ").0, BotReply::Say("9:00-18:00, Monday to Friday.".into()));
        assert!(matches!(on_text(&bot, &kb, "billing").0, BotReply::Handoff { group: GroupId(7), .. }));
        assert_eq!(on_choice(&bot, &kb, 9).1, Outcome::NoMatch);
    }

    #[test]
    fn paraphrases_are_answered_in_both_languages() {
        let (bot, kb) = setup();
        assert_eq!(on_text(&bot, &kb, "I forgot my password, how can I change it?").1, Outcome::Answered);
        assert_eq!(on_text(&bot, &kb, "我想退款，要怎么操作").0, BotReply::Say("在订单页点击申请退款。".into()));
    }

    #[test]
    fn asking_for_a_human_hands_off_and_nonsense_offers_it() {
        let (bot, kb) = setup();
        assert!(matches!(on_text(&bot, &kb, "转人工").0, BotReply::Handoff { group: GroupId(0), .. }));
        assert!(matches!(on_text(&bot, &kb, "I want to talk to a human").0, BotReply::Handoff { .. }));
        let (reply, outcome) = on_text(&bot, &kb, "purple elephants dancing");
        assert_eq!(outcome, Outcome::NoMatch);
        assert!(matches!(reply, BotReply::Say(s) if s.contains("human")));
    }
}
