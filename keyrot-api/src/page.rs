//! The status page, `GET /admin/page`: the admin status as plain server-rendered HTML with an
//! inline SVG timeline per user. No script, no style sheet, nothing loaded from anywhere:
//! its Content-Security-Policy (`default-src 'none'`) would refuse any of it. Authenticated
//! exactly as `GET /admin/status` (API key and bearer token in headers, the admin right): a
//! browser gets there through a client that sets those headers (chromedriver in the tests), so
//! no credential ever sits in a URL, a history or a log.

use std::fmt::Write as _;
use std::time::Duration;

use keyrot_core::KeyStatus;
use keyrot_core::duration::format_duration;
use keyrot_core::model::Timestamp;
use keyrot_core::report::{KeyState, Stage, UserState};

/// The page's Content-Security-Policy: nothing may load, run or frame it.
pub(crate) const CSP: &str = "default-src 'none'; base-uri 'none'; form-action 'none'; \
                              frame-ancestors 'none'";

/// The chart's width and one key's row height, in pixels.
const WIDTH: f64 = 720.0;
const ROW: f64 = 22.0;

/// Text for HTML: `& < > " '` escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The fill of a key's bar by its stage.
fn colour(stage: Stage) -> &'static str {
    match stage {
        Stage::Pending => "#f0ad4e",
        Stage::Current => "#2e7d32",
        Stage::Grace => "#81c784",
        Stage::AwaitingDisuse => "#fbc02d",
        Stage::RecoveryWindow => "#9e9e9e",
        Stage::Deleted => "#e0e0e0",
        Stage::Unknown => "#1565c0",
    }
}

/// The page of `users` at `now`.
pub(crate) fn render(users: &[UserState], now: Timestamp) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>keyrot status</title></head><body>\n<h1>keyrot status</h1>\n\
         <p>As of <time>{now}</time>. Read-only; no secret is shown.</p>\n"
    );
    if users.is_empty() {
        out.push_str("<p>No managed users.</p>\n");
    }
    for user in users {
        let name = escape(user.user.as_str());
        let _ = writeln!(out, "<section id=\"user-{name}\"><h2>{name}</h2>");
        let _ = writeln!(
            out,
            "<p>Next: <span class=\"next\">{}</span>{}{}</p>",
            escape(&user.next),
            user.at
                .map(|at| format!(" at <time>{at}</time>"))
                .unwrap_or_default(),
            if user.attention {
                " <strong>(needs attention)</strong>"
            } else {
                ""
            }
        );
        out.push_str(
            "<table border=\"1\" cellpadding=\"4\"><tr><th>key</th><th>status</th>\
             <th>age</th><th>stage</th><th>created</th><th>superseded</th>\
             <th>deactivated</th></tr>\n",
        );
        for key in &user.keys {
            let age = key
                .created
                .and_then(|c| Duration::try_from(now.duration_since(c)).ok())
                .map(format_duration)
                .unwrap_or_default();
            let time = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{age}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                escape(key.id.as_str()),
                key.status.map_or("deleted", |s| match s {
                    KeyStatus::Active => "active",
                    KeyStatus::Inactive => "inactive",
                }),
                key.stage.as_str(),
                time(key.created),
                time(key.superseded),
                time(key.deactivated),
            );
        }
        out.push_str("</table>\n");
        out.push_str(&timeline(user, now));
        out.push_str("</section>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// A user's keys as bars on one time axis, from the oldest creation to now: each bar from the
/// key's creation (its first mark, for a deleted key) to now, coloured by its stage, with a
/// tick where it was superseded and where it was deactivated.
fn timeline(user: &UserState, now: Timestamp) -> String {
    let begin = |k: &KeyState| k.created.or(k.adopted).or(k.superseded).or(k.deactivated);
    let start = user.keys.iter().filter_map(begin).min().unwrap_or(now);
    let span = now.duration_since(start).as_secs_f64().max(1.0);
    let x = |t: Timestamp| 110.0 + (t.duration_since(start).as_secs_f64() / span) * (WIDTH - 120.0);
    let rows = user.keys.len().max(1);
    let height = ROW * rows as f64 + 24.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{height}\" role=\"img\" aria-label=\"timeline of {}'s keys\">\
         <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#fafafa\"/>",
        escape(user.user.as_str())
    );
    for (i, key) in user.keys.iter().enumerate() {
        let y = ROW * i as f64 + 4.0;
        let from = begin(key).map_or(110.0, x);
        let to = x(now);
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{:.1}\" font-size=\"11\" font-family=\"monospace\">{}</text>\
             <rect class=\"key\" x=\"{from:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
             fill=\"{}\"><title>{} {}</title></rect>",
            y + 13.0,
            escape(&key.id.as_str()[key.id.as_str().len().saturating_sub(12)..]),
            (to - from).max(2.0),
            ROW - 6.0,
            colour(key.stage),
            escape(key.id.as_str()),
            key.stage.as_str(),
        );
        for (mark, label) in [
            (key.superseded, "superseded"),
            (key.deactivated, "deactivated"),
        ] {
            if let Some(at) = mark {
                let _ = write!(
                    svg,
                    "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" \
                     stroke=\"#000\" stroke-width=\"2\"><title>{label} {at}</title></line>",
                    x(at),
                    y - 2.0,
                    y + ROW - 4.0,
                );
            }
        }
    }
    let _ = writeln!(
        svg,
        "<text x=\"110\" y=\"{:.1}\" font-size=\"10\">{start}</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">now</text></svg>",
        height - 6.0,
        WIDTH - 10.0,
        height - 6.0,
    );
    svg
}
