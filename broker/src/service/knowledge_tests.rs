//! Tests of the knowledge-base matcher.
use super::*;

/// A base of `(id, "question | question")`; entry n answers "answer n".
fn kb(entries: &[(u64, &str)]) -> KnowledgeBase {
    let entry = |&(id, qs): &(u64, &str)| Entry {
        id: EntryId(id),
        questions: qs.split(" | ").map(String::from).collect(),
        answer: format!("answer {id}"),
    };
    KnowledgeBase::new(entries.iter().map(entry).collect())
}

fn english() -> KnowledgeBase {
    kb(&[
        (
            1,
            "How do I reset my password? | I can't log in to my account",
        ),
        (2, "When will my order be delivered? | Where is my parcel?"),
        (3, "How do I get a refund? | Can I return an item?"),
        (4, "How do I change my shipping address?"),
        (
            5,
            "Which payment methods do you accept? | Can I pay with PayPal?",
        ),
        (6, "How do I delete my account?"),
    ])
}

fn chinese() -> KnowledgeBase {
    kb(&[
        (1, "怎么申请退款 | 退款多久到账"),
        (2, "怎么修改收货地址"),
        (3, "订单什么时候发货 | 快递到哪里了"),
        (4, "忘记密码怎么办 | 怎么重置登录密码"),
        (5, "支持哪些付款方式"),
        (6, "怎么开发票"),
    ])
}

/// The entries of `base` other than `id`, for building a fresh base to compare with.
fn entries_but(base: KnowledgeBase, id: u64) -> Vec<Entry> {
    let all = base.entries.into_values().map(|i| i.entry);
    all.filter(|e| e.id != EntryId(id)).collect()
}

#[test]
fn paraphrased_english_question_finds_its_entry() {
    let found = english().best("forgot my password, how to change it", 3);
    assert_eq!(
        (found[0].entry, found[0].question),
        (EntryId(1), 0),
        "{found:?}"
    );
    assert!(found[0].confidence >= DEFAULT_THRESHOLD, "{found:?}");
    assert!(found[1..]
        .iter()
        .all(|m| m.confidence < found[0].confidence));
}

#[test]
fn paraphrased_chinese_question_finds_its_entry() {
    let found = chinese().best("我想退款，要怎么操作", 3);
    assert_eq!(found[0].entry, EntryId(1), "{found:?}");
    assert!(found[0].confidence >= DEFAULT_THRESHOLD, "{found:?}");
    let found = chinese().best("密码忘了登录不了", 3);
    assert_eq!(
        (found[0].entry, found[0].question),
        (EntryId(4), 1),
        "{found:?}"
    );
}

#[test]
fn unrelated_query_scores_below_threshold_for_every_entry() {
    let cat = "my cat sleeps all day in the cardboard boxes from my order";
    for (base, query) in [
        (english(), "what's the weather like in Paris tomorrow"),
        (english(), cat),
        (chinese(), "今天天气怎么样"),
        (chinese(), "你们公司的地址在哪里"),
    ] {
        let found = base.best(query, 10);
        assert!(
            found.iter().all(|m| m.confidence < 0.3),
            "{query}: {found:?}"
        );
    }
    // These share a word with an entry ("order", 地址): scored, but low.
    assert!(!english().best(cat, 1).is_empty());
    assert!(!chinese().best("你们公司的地址在哪里", 1).is_empty());
}

#[test]
fn exact_question_has_full_confidence() {
    let found = english().best("How do I change my shipping address?", 1);
    assert_eq!(found[0].entry, EntryId(4));
    assert!((found[0].confidence - 1.0).abs() < 1e-6, "{found:?}");
}

#[test]
fn mixed_script_query_matches_on_both_kinds_of_terms() {
    let base = kb(&[
        (1, "iPhone 怎么退货"),
        (2, "安卓手机怎么退货"),
        (3, "iPhone 怎么维修"),
    ]);
    assert_eq!(base.best("ｉＰｈｏｎｅ退货", 3)[0].entry, EntryId(1));
    assert_eq!(terms("ｉＰｈｏｎｅ退货"), ["iphon", "退货"]);
}

#[test]
fn english_terms_drop_stop_words_and_stem() {
    let found = terms("The orders were SHIPPED, can't you see?");
    assert_eq!(found, ["order", "ship", "see"]);
    for group in [
        &["change", "changes", "changed", "changing"][..],
        &["ship", "ships", "shipped", "shipping"],
        &["policy", "policies"],
        &["box", "boxes"],
        &["cancel", "cancelled", "canceling"],
    ] {
        assert!(group.iter().all(|w| stem(w) == stem(group[0])), "{group:?}");
    }
    assert_eq!(
        (stem("need"), stem("status")),
        ("need".into(), "status".into())
    );
}

#[test]
fn cjk_runs_become_bigrams_cut_at_function_words() {
    assert_eq!(terms("退货流程"), ["退货", "货流", "流程"]);
    assert_eq!(terms("我想退款，要怎么操作"), ["退款", "操作"]);
    assert_eq!(terms("买 书"), ["买", "书"]);
    assert_eq!(terms("パスワード"), ["パス", "スワ", "ワー", "ード"]);
}

#[test]
fn empty_or_stop_word_only_query_returns_nothing() {
    for query in ["", "   ", "?!", "How do I?", "请问怎么"] {
        assert!(english().best(query, 5).is_empty(), "{query}");
        assert!(chinese().best(query, 5).is_empty(), "{query}");
    }
    assert!(english().best("reset password", 0).is_empty());
    assert!(KnowledgeBase::default()
        .best("reset password", 5)
        .is_empty());
}

#[test]
fn results_are_highest_first_and_at_most_n() {
    let query = "how do I change my account password or delete my account";
    let found = english().best(query, 10);
    assert!(found.len() >= 3, "{found:?}");
    assert!(found.windows(2).all(|p| p[0].confidence >= p[1].confidence));
    assert_eq!(english().best(query, 2), found[..2]);
}

#[test]
fn upsert_replaces_an_entry_and_its_index() {
    let mut base = english();
    assert_eq!(base.best("paypal", 1)[0].entry, EntryId(5));
    let abroad = Entry {
        id: EntryId(5),
        questions: vec!["Do you ship abroad?".into()],
        answer: "yes".into(),
    };
    base.upsert(abroad.clone());
    assert_eq!(base.len(), 6);
    assert!(base.best("paypal", 5).is_empty());
    assert!(!base.postings.contains_key("paypal"));
    assert_eq!(base.best("shipping abroad", 1)[0].entry, EntryId(5));
    assert_eq!(base.get(EntryId(5)), Some(&abroad));
    // DF, lengths and postings are as in a base built afresh.
    let fresh = KnowledgeBase::new([entries_but(english(), 5), vec![abroad]].concat());
    let query = "shipping abroad: change the shipping address of my order";
    assert_eq!(base.best(query, 10), fresh.best(query, 10));
}

#[test]
fn remove_drops_an_entry_from_results() {
    let mut base = english();
    assert!(base.remove(EntryId(1)));
    assert!(!base.remove(EntryId(1)));
    assert!(base.get(EntryId(1)).is_none());
    assert!(base.best("reset my password", 5).is_empty());
    assert!(!base.postings.contains_key("password"));
    // DF, lengths and postings are as in a base built afresh (a repeated query term
    // makes the average length count).
    let query = "delete my account: I can't log in to my account";
    let fresh = KnowledgeBase::new(entries_but(english(), 1));
    assert_eq!(base.best(query, 10), fresh.best(query, 10));
}

#[test]
fn answer_applies_the_threshold() {
    let (base, query) = (english(), "How can I get my money back with a refund?");
    let (found, entry) = base.answer(query, DEFAULT_THRESHOLD).unwrap();
    assert_eq!(
        (found.entry, entry.answer.as_str()),
        (EntryId(3), "answer 3")
    );
    assert!(base.answer(query, 0.9).is_none());
}

#[test]
fn wants_human_in_chinese() {
    for yes in ["转人工", "我要人工客服", "人工", "能不能找个真人"] {
        assert!(wants_human(yes), "{yes}");
    }
    for no in ["人工智能客服好用吗", "安装的人工费多少", "怎么退款"] {
        assert!(!wants_human(no), "{no}");
    }
}

#[test]
fn wants_human_in_english_as_whole_words() {
    for yes in [
        "I want a human",
        "connect me to an agent",
        "AGENT!!",
        "Can I talk to a person?",
        "let me speak with someone",
        "is there a real person here",
        "operator please",
        "human客服",
    ] {
        assert!(wants_human(yes), "{yes}");
    }
    for no in [
        "the agent of change in chemistry",
        "that was humane",
        "which user agent does the app send",
        "my mobile operator blocks SMS",
        "a personal question",
        "how do I reset my password",
    ] {
        assert!(!wants_human(no), "{no}");
    }
}

