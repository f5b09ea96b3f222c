// Device alarms (SOS, fall) and device status in the control room: the SOS
// banner, the alarm's facts on its card, its marker on the plan, and the
// officers table's device column. Kept apart from the alert cards on purpose.

import { el, svg, beep, formatDuration, formatTime } from "./common.js";

const ALARM_KINDS = new Set(["sos", "fall"]);
const seen = new Set();

export function isAlarm(a) { return ALARM_KINDS.has(a.kind); }

function officerOf(a) { return a.details?.officer ?? a.rule.replace(/^officer:/, ""); }

function kindWord(a) { return a.kind === "sos" ? "SOS" : "FALL"; }

export function alarmTitle(a) { return `${kindWord(a)} · officer ${officerOf(a)}`; }

function positionText(a) {
  const p = a.details?.position;
  if (!p) return "Position unknown";
  // In words relative to the nearest post (the server's "where"); site metres only as a detail.
  const words = a.where?.text ?? `(${p.x.toFixed(0)}, ${p.y.toFixed(0)}) m${p.accuracy_m ? ` ±${Math.round(p.accuracy_m)} m` : ", accuracy unknown"}`;
  return `Last known position ${words} at ${formatTime(Date.parse(p.time))} · site (${p.x.toFixed(0)}, ${p.y.toFixed(0)}) m`;
}

export function shortPosition(a) {
  const p = a.details?.position;
  if (!p) return "position unknown";
  return a.where?.text ?? `site (${p.x.toFixed(0)}, ${p.y.toFixed(0)}) m`;
}

// The facts on an alarm's card: when it was raised on the device, when it arrived, where.
export function alarmFacts(a, v) {
  const d = a.details ?? {};
  const pressed = d.event_time ? formatTime(Date.parse(d.event_time)) : "unknown";
  const arrived = d.received ? formatTime(Date.parse(d.received)) : formatTime(a.alert_at_ms);
  const ended = a.resolved_at_ms !== null && a.resolved_at_ms <= v.nowMs;
  const levels = a.escalated_level >= 0 ? `Escalated: level ${a.escalated_level + 1}` : "Not escalated";
  const ack = a.acknowledged_by ? `Acknowledged by ${a.acknowledged_by} ${formatTime(a.acknowledged_at_ms)}${a.acknowledgement_note ? ": “" + a.acknowledgement_note + "”" : ""}` : null;
  return {
    shortFor: `${kindWord(a)} from ${officerOf(a)}${d.device ? " (" + d.device + ")" : ""}: sent ${pressed}, arrived ${arrived}`,
    coverNow: positionText(a), esc: levels, ack, lapsedNow: !ended,
  };
}

// An alarm still live (open or acknowledged, not closed): in the banner and first in the list.
export function liveAlarm(a) { return isAlarm(a) && (a.state === "open" || a.state === "acknowledged"); }

// The one order of live alarms, in the banner, on the plan and in the alert list (the
// board's order may change between refreshes): by the time sent on the device, then the
// officer, then the alert.
export function alarmOrder(x, y) {
  const sent = (a) => (a.details?.event_time ? Date.parse(a.details.event_time) : a.alert_at_ms);
  return sent(x) - sent(y) || officerOf(x).localeCompare(officerOf(y)) || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
}

// A red banner that stays while any alarm is open or acknowledged but not closed.
export function renderSosBanner(host, alerts, sound) {
  const live = alerts.filter(liveAlarm).sort(alarmOrder);
  if (!live.length) { host.hidden = true; host.replaceChildren(); host._key = ""; return; }
  // Redrawn only when what it shows changes, so a line is never swapped under the eye.
  const key = live.map((a) => `${a.id}|${a.state}|${a.acknowledged_by}|${a.where?.text}|${a.details?.event_time}`).join(";");
  if (host._key === key && !host.hidden) return;
  host._key = key;
  // One line each, so four SOS leave room for the plan: where in words, when sent; the
  // details (arrival, site metres) are left out on a phone and are on the alarm's card.
  const metres = (p) => (p ? ` · site (${p.x.toFixed(0)}, ${p.y.toFixed(0)}) m` : "");
  // Each line's number is shown where the plan shows the alarm by it (no room for its name).
  host.replaceChildren(...live.map((a, k) => el("p", { class: "sos-line", "data-alert": a.id, title: positionText(a) },
    el("span", { class: "num" }, alarmNumber(a, k)), el("strong", {}, `${kindWord(a)} ${officerOf(a)}`), " – ", shortPosition(a),
    ` – sent ${a.details?.event_time ? formatTime(Date.parse(a.details.event_time)) : "unknown"}`,
    el("span", { class: "detail" }, `, arrived ${formatTime(a.alert_at_ms)}${a.where?.text ? metres(a.details?.position) : ""}`),
    a.state === "acknowledged" ? ` – acknowledged by ${a.acknowledged_by}` : "")));
  host.hidden = false;
  const fresh = live.filter((a) => !seen.has(a.id) && a.state === "open");
  for (const a of live) seen.add(a.id);
  if (fresh.length && sound) { beep(); setTimeout(beep, 400); setTimeout(beep, 800); }
}

// An alarm's number: its line in the SOS banner, with the kind's letter (S1, F2).
function alarmNumber(a, k) { return `${kindWord(a)[0]}${k + 1}`; }

// Rings on the plan at each live alarm's last known position, labelled with the officer
// or, where that finds no room (planlabels.js), with the alarm's number in the banner.
export function drawAlarmMarkers(plan, alerts) {
  if (!plan.gAlarms) { plan.gAlarms = svg("g", { class: "alarms" }); plan.root.append(plan.gAlarms); }
  // Numbered as in the banner: over every live alarm, placed or not.
  const live = alerts.filter(liveAlarm).sort(alarmOrder);
  const number = new Map(live.map((a, k) => [a.id, alarmNumber(a, k)]));
  plan.gAlarms.replaceChildren(...live
    .filter((a) => a.details?.position)
    .map((a) => {
      const p = a.details.position;
      return svg("g", { class: "alarm-marker", "data-alert": a.id, transform: `translate(${p.x},${-p.y})` },
        svg("circle", { class: "alarm-ring", r: Math.max(p.accuracy_m, 4) }),
        svg("text", { class: "alarm-label", dy: "-1em" }, svg("tspan", { class: "num" }, number.get(a.id)),
          svg("tspan", { class: "name" }, `${kindWord(a)} ${officerOf(a)}`)),
        svg("title", {}, positionText(a)));
    }));
}

// The officers table's device column: last report, battery, why not counting.
export function deviceCell(o) {
  const parts = [];
  if (o.last_report) {
    const reports = o.device_reports ?? [];
    const age = Math.min(...reports.map((d) => d.last_report_age_s));
    parts.push(`reported ${formatDuration(age)} ago`);
  } else if (o.last_fix) {  // fixes sent as events (API, MQTT, files) are reports too
    parts.push(`reported ${formatDuration(o.last_fix_age_s)} ago`);
  } else if (o.devices?.length) {
    parts.push(`${o.devices.join(", ")}: no report yet`);
  }
  if (o.battery !== null && o.battery !== undefined) parts.push(`battery ${Math.round(o.battery)}%`);
  for (const d of o.device_reports ?? []) {
    if (d.alarm && d.alarm !== "sos") parts.push(d.alarm);
    if (!d.used_as_fix && d.reason) parts.push(`last report not used: ${d.reason}`);
  }
  const cell = el("td", { class: o.not_counting ? "not-counting" : null }, parts.join(" · ") || "–");
  if (o.not_counting) cell.append(el("div", { class: "why" }, `Reporting but not counting: ${o.not_counting}`));
  return cell;
}
