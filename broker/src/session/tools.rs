//! Frames beyond plain chat: the bot menu, ratings, internal notes and transfers,
//! visitor context, presence, entry points, quick replies, invitations, manual pick.
//! Each checks who may send it and hands the request to the tenant router.

use super::core::{append, reply_errors, route_error_code, stop_if_closing, SessionActor};
use crate::routing::tenant_router::{
    AddNote, BotInput, BotTurn, Invite, OpenConversation, PresenceChanged, RateConversation, RequestRating, TakeConversation, Transfer,
};
use crate::routing::RouteError;
use crate::service::assignment::{TakeError, DEFAULT_GROUP};
use actix::prelude::*;
use switchboard_protocol::{ClientFrame, ConversationState, ErrorCode, GroupId, Participant, SendMessage, ServerFrame};
use switchboard_raft_store::VisitorProfileRecord;

/// Handles every frame `core::on_frame` does not.
pub(super) fn on_tool_frame<A: SessionActor>(act: &mut A, frame: ClientFrame, ctx: &mut Context<A>) {
    let core = act.core();
    match frame {
        ClientFrame::Choose { conversation, item } => match core.entry(conversation) {
            Ok(e) if e.record.state == ConversationState::Bot && matches!(core.me, Participant::Visitor(_)) => {
                core.ctx.routers.get(core.tenant, &core.ctx).do_send(BotTurn { conversation, seq: 0, input: BotInput::Choice(item) })
            }
            Ok(_) => core.reject(ErrorCode::INVALID_REQUEST, "no bot menu is open in this conversation", None),
            Err((code, message)) => core.reject(code, message, None),
        },
        ClientFrame::Rate { conversation, score, comment } => {
            let Participant::Visitor(visitor) = core.me else {
                return core.reject(ErrorCode::INVALID_REQUEST, "only visitors rate conversations", None);
            };
            if !(1..=5).contains(&score) || comment.len() > 2000 {
                return core.reject(ErrorCode::INVALID_REQUEST, "score must be 1 to 5 and the comment at most 2000 bytes", None);
            }
            let router = core.ctx.routers.get(core.tenant, &core.ctx);
            reply_errors(act, router.send(RateConversation { conversation, visitor, score, comment }), ctx);
        }
        ClientFrame::RequestRating { conversation } => {
            let Participant::Agent(agent) = core.me else {
                return core.reject(ErrorCode::INVALID_REQUEST, "only agents ask for ratings", None);
            };
            let router = core.ctx.routers.get(core.tenant, &core.ctx);
            reply_errors(act, router.send(RequestRating { conversation, agent }), ctx);
        }
        ClientFrame::Note { conversation, body } | ClientFrame::Transfer { conversation, note: body, .. } if body.len() > 4000 => {
            let _ = conversation;
            core.reject(ErrorCode::INVALID_REQUEST, "a note is at most 4000 bytes", None)
        }
        ClientFrame::Note { conversation, body } => {
            let Participant::Agent(agent) = core.me else {
                return core.reject(ErrorCode::INVALID_REQUEST, "only agents write internal notes", None);
            };
            let router = core.ctx.routers.get(core.tenant, &core.ctx);
            reply_errors(act, router.send(AddNote { conversation, agent, body }), ctx);
        }
        ClientFrame::Transfer { conversation, to, note } => {
            let Participant::Agent(from) = core.me else {
                return core.reject(ErrorCode::INVALID_REQUEST, "only agents transfer conversations", None);
            };
            let router = core.ctx.routers.get(core.tenant, &core.ctx);
            reply_errors(act, router.send(Transfer { conversation, from, to, note }), ctx);
        }
        ClientFrame::Track(mut view) => {
            let Participant::Visitor(visitor) = core.me else {
                return core.reject(ErrorCode::INVALID_REQUEST, "only visitors send page views", None);
            };
            if [&view.url, &view.title, &view.referrer, &view.keywords].iter().any(|s| s.len() > 2000) {
                return core.reject(ErrorCode::INVALID_REQUEST, "page view fields are at most 2000 bytes each", None);
            }
            view.at_ms = crate::context::now_ms();
            // Durable with the next batch; nothing waits for it.
            drop(core.ctx.store.track(core.tenant, visitor, &view));
        }
        ClientFrame::SetProfile { attributes } => {
            let Participant::Visitor(visitor) = core.me else {
                return core.reject(ErrorCode::INVALID_REQUEST, "only visitors set their profile", None);
            };
            if attributes.len() > 50 || attributes.iter().any(|(k, v)| k.is_empty() || k.len() > 100 || v.len() > 2000) {
                return core.reject(ErrorCode::INVALID_REQUEST, "at most 50 attributes, names 1-100 bytes, values at most 2000 bytes", None);
            }
            let dir = &core.ctx.directory;
            let mut profile = dir.profile(core.tenant, visitor).unwrap_or_else(|| VisitorProfileRecord::new(core.tenant, visitor));
            profile.attributes.extend(attributes);
            if profile.attributes.len() > 100 {
                return core.reject(ErrorCode::INVALID_REQUEST, "a profile holds at most 100 attributes", None);
            }
            drop(core.ctx.store.put_profile(&profile));
            dir.set_profile(profile);
        }
        ClientFrame::SetPresence { presence } => match core.me {
            Participant::Agent(agent) => {
                let available = presence == switchboard_protocol::Presence::Online;
                core.ctx.routers.get(core.tenant, &core.ctx).do_send(PresenceChanged { agent, available });
            }
            _ => core.reject(ErrorCode::INVALID_REQUEST, "only agents have a presence", None),
        },
        ClientFrame::OpenIn { group } => open_in(act, group, ctx),
        ClientFrame::OpenVia { channel } => {
            if let Err(e) = check_channel(&channel) {
                return core.reject(ErrorCode::INVALID_REQUEST, e, None);
            }
            let group = core.ctx.directory.channel_group(core.tenant, &channel).unwrap_or(DEFAULT_GROUP);
            open_in(act, group, ctx)
        }
        ClientFrame::ListQuickReplies => match core.me {
            Participant::Agent(agent) => {
                let replies = core.ctx.directory.quick_replies_for(core.tenant, Some(agent));
                core.push(&ServerFrame::QuickReplies { replies });
            }
            _ => core.reject(ErrorCode::INVALID_REQUEST, "only agents have quick replies", None),
        },
        ClientFrame::Invite { visitor, body, client_msg_id } => {
            let Participant::Agent(agent) = core.me else {
                return core.reject(ErrorCode::INVALID_REQUEST, "only agents invite visitors", None);
            };
            if body.len() > core.ctx.config.max_message_len as usize {
                return core.reject(ErrorCode::MESSAGE_TOO_LARGE, "the invitation is longer than the maximum message", Some(client_msg_id));
            }
            let router = core.ctx.routers.get(core.tenant, &core.ctx);
            let invite = router.send(Invite { agent, visitor });
            ctx.wait(invite.into_actor(act).map(move |res, act, ctx| match res.unwrap_or(Err(RouteError::Unavailable)) {
                Ok(conversation) => append(act, conversation, SendMessage { client_msg_id, conversation: Some(conversation), body }, ctx),
                Err(e) => {
                    let code = route_error_code(&e);
                    act.core().reject(code, e.to_string(), Some(client_msg_id));
                }
            }));
        }
        ClientFrame::Take { conversation } => {
            let Participant::Agent(agent) = core.me else {
                return core.reject(ErrorCode::INVALID_REQUEST, "only agents take conversations", None);
            };
            let router = core.ctx.routers.get(core.tenant, &core.ctx);
            let take = router.send(TakeConversation { conversation, agent });
            ctx.spawn(take.into_actor(act).map(move |res, act, ctx| {
                let core = act.core();
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e @ TakeError::NotQueued)) => core.reject(ErrorCode::CONVERSATION_NOT_FOUND, e.to_string(), None),
                    Ok(Err(e)) => core.reject(ErrorCode::FORBIDDEN, e.to_string(), None),
                    Err(_) => core.reject(ErrorCode::SHUTTING_DOWN, "router unavailable", None),
                }
                stop_if_closing(act, ctx);
            }));
        }
        // Login, chat, ack, fetch and close are handled by core::on_frame.
        ClientFrame::Hello(_)
        | ClientFrame::Ping
        | ClientFrame::Send(_)
        | ClientFrame::Ack { .. }
        | ClientFrame::Fetch { .. }
        | ClientFrame::Close { .. } => {}
    }
}

/// A visitor opens a conversation in `group` before writing.
fn open_in<A: SessionActor>(act: &mut A, group: GroupId, ctx: &mut Context<A>) {
    let core = act.core();
    let Participant::Visitor(visitor) = core.me else {
        return core.reject(ErrorCode::INVALID_REQUEST, "only visitors open conversations", None);
    };
    if let Some(open) = core.ctx.directory.open_conversation_of(core.tenant, visitor) {
        return core.reject(ErrorCode::INVALID_REQUEST, format!("conversation {open} is already open"), None);
    }
    let router = core.ctx.routers.get(core.tenant, &core.ctx);
    let open = router.send(OpenConversation { visitor, group: Some(group) });
    ctx.wait(open.into_actor(act).map(move |res, act, ctx| {
        match res.unwrap_or(Err(RouteError::Unavailable)) {
            Ok(conversation) => {
                act.core().subs.subscribe(conversation, 0, 0);
            }
            Err(e) => {
                let code = route_error_code(&e);
                act.core().reject(code, e.to_string(), None);
            }
        }
        stop_if_closing(act, ctx);
    }));
}

/// A channel name: 1-64 bytes of `a-z 0-9 . _ -`.
pub fn check_channel(channel: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&channel.len()) && channel.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("channel {channel:?}: 1-64 bytes of a-z, 0-9, '.', '_' or '-'"))
    }
}
