//! Knowledge-base matching: which entries' questions best match a visitor's message, in
//! Chinese, English or both, with no external model; and whether a message asks for a
//! human ([`wants_human`]). One [`KnowledgeBase`] per tenant.
//!
//! # Terms ([`terms`])
//! - Latin-script runs (any alphanumeric that is not CJK) are lowercased words; English
//!   stop words are dropped, the rest go through a light stemmer ([`stem`]) so "change",
//!   "changes", "changed" and "changing" meet.
//! - CJK runs (Han, Hiragana, Katakana, Hangul) have no spaces: they become overlapping
//!   character bigrams, and a run of one character a unigram. A few Chinese function
//!   words (怎么, 请问, 我想, 的, 吗, …) cut a run as a space would, so "我想退款" gives
//!   退款 and not also the noise bigram 想退; a lone 我/要/请 left over is dropped.
//! - Full-width ASCII (ｉＰｈｏｎｅ，) is folded to ASCII first. Mixed text gets both kinds.
//!
//! # Score
//! Each question variant is a BM25 document (k1 = 1.2, b = 0.75, lengths against the
//! average variant), and an entry scores as its best variant, not as one document of all
//! its variants: variants are alternative phrasings, so a query close to one of them must
//! not be diluted by the others, and an entry must not win for having many phrasings.
//! IDF, though, counts entries, not variants: ten phrasings of a refund question must not
//! make "refund" look common.
//!
//! # Confidence
//! Raw BM25 has no fixed scale, so a variant's score is normalised from both sides:
//! - precision = BM25(query → variant) / BM25(variant → variant): the share of the
//!   variant's weight that the query covers;
//! - recall = BM25(variant → query) / BM25(query → query), the query scored as a
//!   document: the share of the query's weight that the variant covers. Terms the base
//!   never saw get the highest IDF, so a message mostly about something else scores low.
//!
//! Confidence is their harmonic mean: 1 for a query equal to a question, 0 for no shared
//! term. When no term repeats, the length factors cancel and this is an IDF-weighted Dice
//! coefficient; BM25's saturation and length normalisation weigh repeated terms. Results
//! are ranked by it, so the order and an operator's threshold use the same number. In the
//! tests below paraphrases score 0.35–0.7 and unrelated text under 0.2, hence
//! [`DEFAULT_THRESHOLD`]. There are no
//! synonyms: a wrong entry sharing one content word with the query ("change" in "change
//! my shipping address" for "how to change password") can also pass 0.3, so reply with
//! the top match only, and expect misses when visitors use other words than the base.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

/// A sensible starting threshold for answering automatically; tune per tenant.
pub const DEFAULT_THRESHOLD: f32 = 0.3;

const K1: f64 = 1.2;
const B: f64 = 0.75;

/// A knowledge-base entry within one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub u64);

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k{}", self.0)
    }
}

/// Several phrasings of one question, and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Unique within the base; [`KnowledgeBase::upsert`] replaces by it.
    pub id: EntryId,
    /// Question variants, matched one by one.
    pub questions: Vec<String>,
    /// What the bot replies.
    pub answer: String,
}

/// An entry that matches a query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Match {
    /// The entry.
    pub entry: EntryId,
    /// Index in `questions` of the variant that matched best.
    pub question: usize,
    /// In [0, 1]; see the module docs.
    pub confidence: f32,
}

/// Term frequencies of one text.
#[derive(Debug, Default)]
struct Bag {
    tf: HashMap<String, u32>,
    len: u32,
}

impl Bag {
    fn of(text: &str) -> Bag {
        let mut bag = Bag::default();
        for term in terms(text) {
            *bag.tf.entry(term).or_insert(0) += 1;
            bag.len += 1;
        }
        bag
    }
}

#[derive(Debug)]
struct Indexed {
    entry: Entry,
    variants: Vec<Bag>,
}

/// A tenant's entries with their BM25 index, kept right by every change.
#[derive(Debug, Default)]
pub struct KnowledgeBase {
    entries: BTreeMap<EntryId, Indexed>,
    /// Term -> entries having it in any variant; the set's size is the term's DF.
    postings: HashMap<String, HashSet<EntryId>>,
    variants: u64,
    total_len: u64,
}

impl KnowledgeBase {
    /// A base of `entries`; of two with the same id, the later wins.
    pub fn new(entries: Vec<Entry>) -> Self {
        let mut kb = KnowledgeBase::default();
        for entry in entries {
            kb.upsert(entry);
        }
        kb
    }

    /// Adds `entry`, or replaces the one with its id.
    pub fn upsert(&mut self, entry: Entry) {
        self.remove(entry.id);
        let variants: Vec<Bag> = entry.questions.iter().map(|q| Bag::of(q)).collect();
        for bag in &variants {
            self.variants += 1;
            self.total_len += u64::from(bag.len);
            for term in bag.tf.keys() {
                self.postings
                    .entry(term.clone())
                    .or_default()
                    .insert(entry.id);
            }
        }
        self.entries.insert(entry.id, Indexed { entry, variants });
    }

    /// Removes the entry `id`; false if there was none.
    pub fn remove(&mut self, id: EntryId) -> bool {
        let Some(old) = self.entries.remove(&id) else {
            return false;
        };
        for bag in &old.variants {
            self.variants -= 1;
            self.total_len -= u64::from(bag.len);
            for term in bag.tf.keys() {
                if let Some(ids) = self.postings.get_mut(term) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.postings.remove(term);
                    }
                }
            }
        }
        true
    }

    /// The entry `id`.
    pub fn get(&self, id: EntryId) -> Option<&Entry> {
        self.entries.get(&id).map(|i| &i.entry)
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Up to `n` entries sharing a term with `query`, highest confidence first (ties by
    /// id). Empty for an empty or stop-word-only query.
    pub fn best(&self, query: &str, n: usize) -> Vec<Match> {
        let q = Bag::of(query);
        if n == 0 || q.len == 0 {
            return Vec::new();
        }
        let avgdl = if self.variants == 0 {
            1.0
        } else {
            self.total_len as f64 / self.variants as f64
        };
        let weight = |term: &str, tf: u32, len: u32| {
            let norm = K1 * (1.0 - B + B * f64::from(len) / avgdl);
            self.idf(term) * f64::from(tf) * (K1 + 1.0) / (f64::from(tf) + norm)
        };
        let q_self: f64 = q.tf.iter().map(|(t, &tf)| weight(t, tf, q.len)).sum();
        let candidates: BTreeSet<EntryId> =
            q.tf.keys()
                .filter_map(|t| self.postings.get(t))
                .flatten()
                .copied()
                .collect();

        let mut matches = Vec::new();
        for id in candidates {
            let mut best: Option<Match> = None;
            for (i, v) in self.entries[&id].variants.iter().enumerate() {
                let (mut v_self, mut shared_v, mut shared_q) = (0.0, 0.0, 0.0);
                for (term, &tf) in &v.tf {
                    let w = weight(term, tf, v.len);
                    v_self += w;
                    if let Some(&qtf) = q.tf.get(term) {
                        shared_v += w;
                        shared_q += weight(term, qtf, q.len);
                    }
                }
                if shared_v <= 0.0 {
                    continue;
                }
                let (precision, recall) = (shared_v / v_self, shared_q / q_self);
                let confidence =
                    (2.0 * precision * recall / (precision + recall)).clamp(0.0, 1.0) as f32;
                if best.is_none_or(|b| confidence > b.confidence) {
                    best = Some(Match {
                        entry: id,
                        question: i,
                        confidence,
                    });
                }
            }
            matches.extend(best);
        }
        matches.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.entry.cmp(&b.entry))
        });
        matches.truncate(n);
        matches
    }

    /// The best entry for `query` if its confidence reaches `threshold`.
    pub fn answer(&self, query: &str, threshold: f32) -> Option<(Match, &Entry)> {
        let top = self.best(query, 1).into_iter().next()?;
        (top.confidence >= threshold).then(|| (top, &self.entries[&top.entry].entry))
    }

    /// BM25 IDF with the +1 inside the log, so it is always positive; N and DF count
    /// entries. A term no entry has gets the highest value.
    fn idf(&self, term: &str) -> f64 {
        let n = self.entries.len() as f64;
        let df = self.postings.get(term).map_or(0, HashSet::len) as f64;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }
}

const EN_STOP: &[&str] = &[
    "a", "about", "all", "also", "am", "an", "and", "any", "are", "aren", "as", "at", "be", "been",
    "being", "but", "by", "can", "could", "d", "did", "didn", "do", "does", "doesn", "doing",
    "don", "for", "from", "get", "got", "had", "has", "hasn", "have", "haven", "he", "hello",
    "her", "here", "hi", "his", "how", "i", "if", "in", "into", "is", "isn", "it", "its", "just",
    "like", "ll", "m", "may", "me", "might", "must", "my", "need", "of", "on", "or", "our",
    "please", "re", "s", "shall", "she", "should", "so", "some", "t", "thank", "thanks", "that",
    "the", "their", "them", "there", "these", "they", "this", "those", "to", "too", "us", "ve",
    "very", "want", "was", "wasn", "we", "were", "what", "when", "where", "which", "who", "why",
    "will", "with", "won", "would", "you", "your",
];

/// Chinese function words that cut a CJK run like a space; longer before shorter.
const ZH_STOP: &str =
    "为什么 怎么样 怎么 怎样 如何 什么 请问 哪里 哪些 哪个 我想 我要 想要 可以 一下 \
    是否 能否 你们 我们 的 了 吗 呢 吧 啊 呀 嘛";

/// Characters dropped when one is left alone in a run.
const ZH_STOP_CHARS: &str = "我你他她它要想请在是有和就都也还把被给这那个么好";

fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3005}'..='\u{3007}'      // 々 〆 〇
        | '\u{3040}'..='\u{30FF}'    // Hiragana, Katakana
        | '\u{31F0}'..='\u{31FF}'    // Katakana extensions
        | '\u{3400}'..='\u{4DBF}'    // Han extension A
        | '\u{4E00}'..='\u{9FFF}'    // Han
        | '\u{F900}'..='\u{FAFF}'    // Han compatibility
        | '\u{FF66}'..='\u{FF9F}'    // half-width Katakana
        | '\u{1100}'..='\u{11FF}'    // Hangul Jamo
        | '\u{3130}'..='\u{318F}'    // Hangul compatibility Jamo
        | '\u{AC00}'..='\u{D7AF}'    // Hangul syllables
        | '\u{20000}'..='\u{3134F}'  // Han extensions B to G
    )
}

/// A run of one kind: a lowercased Latin-script word, or CJK characters.
enum Piece {
    Word(String),
    Cjk(String),
}

fn pieces(text: &str) -> Vec<Piece> {
    let (mut out, mut word, mut cjk) = (Vec::new(), String::new(), String::new());
    // The trailing space flushes the last run.
    for c in text.chars().chain([' ']) {
        // Full-width ASCII (U+FF01..U+FF5E) is ASCII shifted by 0xFEE0.
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        let (is_cjk, is_word) = (is_cjk(c), !is_cjk(c) && c.is_alphanumeric());
        if !is_word && !word.is_empty() {
            out.push(Piece::Word(std::mem::take(&mut word)));
        }
        if !is_cjk && !cjk.is_empty() {
            out.push(Piece::Cjk(std::mem::take(&mut cjk)));
        }
        if is_cjk {
            cjk.push(c);
        } else if is_word {
            word.extend(c.to_lowercase());
        }
    }
    out
}

/// The index terms of `text`, in order (see the module docs).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in pieces(text) {
        match piece {
            Piece::Word(w) if !EN_STOP.contains(&w.as_str()) => out.push(stem(&w)),
            Piece::Word(_) => {}
            Piece::Cjk(run) => cjk_terms(&run, &mut out),
        }
    }
    out
}

/// Cuts `run` at [`ZH_STOP`] words, then adds each segment's bigrams, or the segment if
/// it is one character not in [`ZH_STOP_CHARS`].
fn cjk_terms(run: &str, out: &mut Vec<String>) {
    let mut segment = |seg: &str| {
        let chars: Vec<char> = seg.chars().collect();
        match chars[..] {
            [] => {}
            [c] if ZH_STOP_CHARS.contains(c) => {}
            [c] => out.push(c.to_string()),
            _ => out.extend(chars.windows(2).map(|pair| pair.iter().collect::<String>())),
        }
    };
    let (mut start, mut at) = (0, 0);
    while at < run.len() {
        match ZH_STOP.split(' ').find(|stop| run[at..].starts_with(stop)) {
            Some(stop) => {
                segment(&run[start..at]);
                at += stop.len();
                start = at;
            }
            None => at += run[at..].chars().next().map_or(1, char::len_utf8),
        }
    }
    segment(&run[start..]);
}

/// A light English stemmer: -ies/-ied to -y, then one of -ing, -ed, -s (keeping a
/// stem of at least 2 letters with a vowel; not -ss, -us, -is, -eed), then a final -e
/// and a final doubled consonant go (so -es goes as -s then -e). Stems are index keys,
/// not words: "change", "changes" and "changing" all become "chang"; "shipped" and
/// "ship" both "ship".
pub fn stem(word: &str) -> String {
    let has_vowel = |s: &str| s.chars().any(|c| "aeiouy".contains(c));
    let mut w = word.to_string();
    if w.len() > 4 && (w.ends_with("ies") || w.ends_with("ied")) {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if let Some(s) = w
        .strip_suffix("ing")
        .filter(|s| s.len() >= 2 && has_vowel(s))
    {
        w = s.to_string();
    } else if let Some(s) = w
        .strip_suffix("ed")
        .filter(|s| s.len() >= 2 && has_vowel(s) && !s.ends_with('e'))
    {
        w = s.to_string();
    } else if w.len() >= 3 && w.ends_with('s') && !["ss", "us", "is"].iter().any(|e| w.ends_with(e))
    {
        w.pop();
    }
    if w.len() >= 3 && w.ends_with('e') && !w.ends_with("ee") {
        w.pop();
    }
    let b = w.as_bytes();
    if b.len() >= 3
        && b[b.len() - 1] == b[b.len() - 2]
        && b[b.len() - 1].is_ascii_alphabetic()
        && !b"aeiou".contains(&b[b.len() - 1])
    {
        w.pop();
    }
    w
}

/// Chinese phrases asking for a human, each with the characters that must not follow it
/// (人工智能 is AI, 人工费 a labour charge, 真人秀 a reality show).
const HUMAN_ZH: &[(&str, &str)] = &[("人工", "智费成"), ("真人", "秀版")];

/// Whole English words asking for a human, with words that must not come just before
/// and just after. Bare "agent" counts: a needless hand-off costs less than a visitor
/// stuck with the bot. But "agent of" ("the agent of change in chemistry"), "user
/// agent", "travel agent", "human error" and "mobile operator" name something else.
const HUMAN_EN: &[(&str, &[&str], &[&str])] = &[
    ("human", &[], &["error", "errors", "rights", "resources"]),
    ("humans", &[], &[]),
    ("agent", &["user", "travel"], &["of"]),
    ("agents", &["user", "travel"], &["of"]),
    ("operator", &["mobile", "network", "tour"], &[]),
    ("operators", &["mobile", "network", "tour"], &[]),
    ("representative", &[], &[]),
];

/// True if `text` asks for a human: 转人工, 人工(客服), 真人; or, as whole words in
/// any case, human, agent, operator, representative, "talk/speak/chat to/with
/// a person/someone", "real/live person". Exceptions: 人工智能, 人工费, 人工成本,
/// 真人秀/版; "agent of", "user/travel agent", "human error/rights/resources",
/// "mobile/network/tour operator".
pub fn wants_human(text: &str) -> bool {
    let folded: String = text.chars().flat_map(char::to_lowercase).collect();
    for (phrase, not_after) in HUMAN_ZH {
        for (at, _) in folded.match_indices(phrase) {
            if folded[at + phrase.len()..]
                .chars()
                .next()
                .is_none_or(|c| !not_after.contains(c))
            {
                return true;
            }
        }
    }
    // Words in order; a CJK run becomes "" so that it breaks phrases.
    let words: Vec<String> = pieces(text)
        .into_iter()
        .map(|p| match p {
            Piece::Word(w) => w,
            Piece::Cjk(_) => String::new(),
        })
        .collect();
    let at = |i: usize| words.get(i).map_or("", String::as_str);
    let person = ["person", "someone", "somebody", "people"];
    (0..words.len()).any(|i| {
        let word = HUMAN_EN.iter().any(|(w, not_before, not_after)| {
            at(i) == *w
                && (i == 0 || !not_before.contains(&at(i - 1)))
                && !not_after.contains(&at(i + 1))
        });
        let talk = ["talk", "speak", "chat"].contains(&at(i))
            && ["to", "with"].contains(&at(i + 1))
            && (person.contains(&at(i + 2))
                || (["a", "an", "some"].contains(&at(i + 2)) && person.contains(&at(i + 3))));
        let real = ["real", "live", "actual"].contains(&at(i)) && person.contains(&at(i + 1));
        word || talk || real
    })
}

#[cfg(test)]
#[path = "knowledge_tests.rs"]
mod tests;
