//! The Lua scripts, one per queue operation that must be atomic across several keys. The
//! sources are in `src/lua/`; each opens with its keys, arguments, reply and what it
//! guarantees, and `prelude.lua` (prepended to each) holds the clock and number helpers and
//! the one statement of how a token admitted by a record reads (`derive`).

use domain::ids::UserId;
use redis::{Cmd, Script, ScriptInvocation};

use crate::keys::{user_bytes, Keys, Place};

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// The loaded scripts. `Script` sends `EVALSHA` and, when Redis does not know the script (after
/// a restart or `SCRIPT FLUSH`), loads it and retries.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) issue: Script,
    pub(crate) find: Script,
    pub(crate) find_with_cursor: Script,
    pub(crate) admit: Script,
    pub(crate) expire: Script,
    pub(crate) use_up: Script,
    pub(crate) stats: Script,
    pub(crate) note_seen: Script,
    pub(crate) draw_claim: Script,
    pub(crate) draw_chunk: Script,
    pub(crate) draw_finish: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            issue: script(include_str!("lua/issue.lua")),
            find: script(include_str!("lua/find.lua")),
            find_with_cursor: script(include_str!("lua/find_with_cursor.lua")),
            admit: script(include_str!("lua/admit.lua")),
            expire: script(include_str!("lua/expire.lua")),
            use_up: script(include_str!("lua/use_up.lua")),
            stats: script(include_str!("lua/stats.lua")),
            note_seen: script(include_str!("lua/note_seen.lua")),
            draw_claim: script(include_str!("lua/draw_claim.lua")),
            draw_chunk: script(include_str!("lua/draw_chunk.lua")),
            draw_finish: script(include_str!("lua/draw_finish.lua")),
        }
    }
}

impl Scripts {
    /// `issue.lua` with its keys and arguments (see its header): the issues of `issues` in the
    /// line of `k`, in one call, each a user, the random part (24 bytes) of the token it plans
    /// and its time (µs); expired tokens kept `retain_ms`. One statement of the call for the
    /// blocking client (one issue, `invoke`) and the async one (the issues a thread gathered,
    /// `invoke_async`).
    pub(crate) fn issue_call<'a>(
        &self,
        k: &Keys,
        retain_ms: &str,
        issues: impl IntoIterator<Item = (UserId, &'a [u8], i64)>,
    ) -> ScriptInvocation<'_> {
        let mut call = self.issue.prepare_invoke();
        for key in issue_keys(k) {
            call.key(key);
        }
        call.arg(&k.namespace).arg(retain_ms);
        for (user, random, now_us) in issues {
            call.arg(&user_bytes(user)[..]).arg(random).arg(now_us);
        }
        call
    }

    /// The same call as [`Self::issue_call`], as the `EVALSHA` command itself, for the async
    /// client to pipeline with what confirms it (it loads the script on `NOSCRIPT` itself).
    pub(crate) fn issue_eval<'a>(
        &self,
        k: &Keys,
        retain_ms: &str,
        issues: impl IntoIterator<Item = (UserId, &'a [u8], i64)>,
    ) -> Cmd {
        let keys = issue_keys(k);
        let mut eval = redis::cmd("EVALSHA");
        eval.arg(self.issue.get_hash()).arg(keys.len()).arg(&keys[..]).arg(&k.namespace).arg(retain_ms);
        for (user, random, now_us) in issues {
            eval.arg(&user_bytes(user)[..]).arg(random).arg(now_us);
        }
        eval
    }

    /// `find.lua` (or, `with_cursor`, `find_with_cursor.lua`) for the token at `place` in the
    /// line of `k`. One statement for both clients.
    pub(crate) fn find_call(&self, k: &Keys, place: &Place, with_cursor: bool) -> ScriptInvocation<'_> {
        let script = if with_cursor { &self.find_with_cursor } else { &self.find };
        let mut call = script.prepare_invoke();
        call.key(&k.cursor).key(&k.drawn).key(&k.admissions).arg(&k.namespace).arg(place.seq).arg(&place.random[..]);
        call
    }
}

/// `issue.lua`'s keys, in its order (see its header).
fn issue_keys(k: &Keys) -> [&String; 6] {
    [&k.issued, &k.cursor, &k.waiting, &k.users, &k.drawn, &k.admissions]
}
