//! The bot's part of a tenant router: it answers visitors while a conversation is in
//! the `Bot` state, and hands conversations over to skill groups.

use super::*;
use crate::service::bot;
use crate::service::knowledge::{Entry, EntryId};

/// Sent by a `VisitorSession` when its visitor wrote to, or picked a menu item in, a
/// conversation the bot is in charge of.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct BotTurn {
    /// The conversation.
    pub conversation: ConversationId,
    /// The visitor's message seq (idempotency of the bot's reply), or 0 for a menu pick.
    pub seq: u64,
    /// What the visitor wrote or picked.
    pub input: BotInput,
}

/// A visitor's turn with the bot.
#[derive(Debug)]
pub enum BotInput {
    /// Free text.
    Text(String),
    /// Menu item, from 1.
    Choice(u32),
}

/// Sent by the admin API after the bot or the knowledge base changed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct BotChanged;

pub(super) fn knowledge_base(ctx: &Ctx, tenant: TenantId) -> KnowledgeBase {
    KnowledgeBase::new(
        ctx.directory
            .knowledge_of(tenant)
            .into_iter()
            .map(|k| Entry { id: EntryId(k.id), questions: k.questions, answer: k.answer })
            .collect(),
    )
}

impl TenantRouter {
    /// Appends a message from the bot. Not awaited here; it takes a place in the
    /// router's write order, so a record change written after it is announced only
    /// once the message is committed.
    pub(super) fn bot_says(&mut self, conversation: ConversationId, text: String, ctx: &mut Context<Self>) {
        self.bot_replies += 1;
        let request = AppendRequest {
            conversation,
            sender: Participant::Bot,
            // unique per conversation: creation time in ms and a counter
            client_msg_id: (crate::context::now_ms() << 16) ^ self.bot_replies,
            body: text,
            sent_at_ms: self.now(),
            origin: 0,
            received_at: std::time::Instant::now(),
            webhook: self.ctx.directory.webhook(self.tenant).map(|_| self.tenant),
        };
        let append = self.ctx.log.append(request);
        let seq = self.next_write;
        self.next_write += 1;
        self.writes.insert(seq, Slot::Pending);
        ctx.spawn(append.into_actor(self).map(move |res, act, ctx| {
            if let Err(e) = res {
                tracing::warn!(error = %e, %conversation, "bot reply not stored");
            }
            act.writes.insert(seq, Slot::Message);
            act.release_written(ctx);
        }));
    }

    /// Hands a bot conversation to a skill group's queue.
    pub(super) fn hand_off(&mut self, mut rec: ConversationRecord, group: GroupId, ctx: &mut Context<Self>) {
        let group = if group == DEFAULT_GROUP || self.ctx.directory.group(self.tenant, group).is_some() { group } else { DEFAULT_GROUP };
        let ticket = self.next_ticket(rec.visitor);
        let now = self.now();
        rec.queue_ticket = ticket;
        rec.queued_at_ms = Some(now);
        let (group, placement) = match self.place_in(rec.id, rec.visitor, group, ticket, ctx) {
            Ok(x) => x,
            Err(_) => {
                self.bot_says(rec.id, "All our agents are busy and the queue is full. Please leave a message; we will get back to you. 客服繁忙，请留言。".into(), ctx);
                return;
            }
        };
        rec.group = group;
        match placement {
            Placement::Assigned(agent) => {
                rec.state = ConversationState::Assigned;
                rec.agent = Some(agent);
                rec.assigned_at_ms = Some(now);
            }
            Placement::Queued { .. } => rec.state = ConversationState::Queued,
        }
        ::metrics::counter!(metrics::BOT_HANDOFFS).increment(1);
        self.after_hours_notice(rec.id, group, ctx);
        let event = if rec.state == ConversationState::Assigned { "conversation.assigned" } else { "conversation.queued" };
        self.persist(rec, &[event], ctx);
    }
}

impl Handler<BotTurn> for TenantRouter {
    type Result = ();

    fn handle(&mut self, msg: BotTurn, ctx: &mut Context<Self>) {
        let Some(rec) = self.records.get(&msg.conversation).copied().filter(|r| r.state == ConversationState::Bot) else {
            return; // an agent has it (or it closed) meanwhile
        };
        let Some(bot) = self.ctx.directory.bot(self.tenant) else { return };
        let (reply, outcome) = match &msg.input {
            BotInput::Text(text) => bot::on_text(&bot, &self.kb, text),
            BotInput::Choice(item) => bot::on_choice(&bot, &self.kb, *item as usize),
        };
        let label = match outcome {
            bot::Outcome::Answered => "answered",
            bot::Outcome::Suggested => "suggested",
            bot::Outcome::NoMatch => "no_match",
            bot::Outcome::HandedOff => "handed_off",
        };
        ::metrics::counter!(metrics::BOT_REPLIES, "outcome" => label).increment(1);
        // The visitor's first message opened the conversation and got the welcome:
        // don't add "I don't know" to it.
        if outcome == bot::Outcome::NoMatch && msg.seq <= 2 {
            return;
        }
        match reply {
            bot::BotReply::Say(text) => self.bot_says(msg.conversation, text, ctx),
            bot::BotReply::Handoff { group, say } => {
                self.bot_says(msg.conversation, say, ctx);
                self.hand_off(rec, group, ctx);
            }
        }
    }
}

impl Handler<BotChanged> for TenantRouter {
    type Result = ();

    fn handle(&mut self, _: BotChanged, _: &mut Context<Self>) {
        self.kb = knowledge_base(&self.ctx, self.tenant);
    }
}
