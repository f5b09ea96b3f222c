// The planning page: load or paste a plan (YAML), check it against the site
// with POST /api/v1/plan/check, show the verdict, the tables and the pictures.
// Problems in the plan are listed with their line; each jumps to that line.

import { api, me, logout, sitePath, el, AuthError, formatTime, setTimeZone } from "./common.js";

const $ = (id) => document.getElementById(id);
let csrf = "";

const ORDINAL = { 1: "1st", 2: "2nd", 3: "3rd" };
const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);

function who(row) {
  return `${ORDINAL[row.k] ?? `${row.k}th`} ${row.capability ?? "officer"}${row.capability ? " officer" : ""}`;
}

// Put the cursor on a line of the pasted plan (1-based) and select it.
function goToLine(line) {
  const ta = $("plan-text");
  const lines = ta.value.split("\n");
  const n = Math.min(Math.max(line, 1), lines.length);
  let start = 0;
  for (let i = 0; i < n - 1; i++) start += lines[i].length + 1;
  ta.focus();
  ta.setSelectionRange(start, start + lines[n - 1].length);
  const lh = parseFloat(getComputedStyle(ta).lineHeight) || 18;
  ta.scrollTop = Math.max(0, (n - 3) * lh);
}

function showProblems(detail) {
  const box = $("problems");
  const problems = (detail && detail.problems) || [];
  const message = typeof detail === "string" ? detail : (detail && detail.message) || "the request was refused";
  const items = problems.map((p) => {
    const where = [p.line ? `line ${p.line}` : null, p.field || null].filter(Boolean).join(", ");
    return el("li", {},
      p.line ? el("button", { type: "button", class: "linkish", onclick: () => goToLine(p.line) }, where || "go to line")
        : where ? el("b", {}, where) : null,
      where ? ": " : "", p.message);
  });
  box.replaceChildren(
    el("h3", {}, problems.length ? `The plan has ${problems.length === 1 ? "a problem" : `${problems.length} problems`}; nothing was checked` : "Not checked"),
    problems.length ? el("ul", {}, items) : el("p", {}, message));
  box.hidden = false;
}

// The server's problem body (docs/server.md): file problems carry a line; option
// errors name the field.
function problemDetail(data, res) {
  const names = { hz: "fixes per second", samples: "response samples", seed: "seed", threshold_s: "response target", plan: "plan" };
  const errors = Array.isArray(data.errors) ? data.errors : [];
  if (errors.some((p) => p.line)) return { message: data.detail, problems: errors };
  const message = errors.map((p) => (p.field ? `${names[p.field] ?? p.field}: ${p.message}` : p.message)).join("; ");
  return { message: message || data.detail || `${res.status} ${res.statusText}`, problems: [] };
}

// "22 Mar 13:00 to 15:00 (Europe/London)", in the site's time zone.
function shift(r) {
  setTimeZone(r.site.timezone);
  const day = (ms) => formatTime(ms, { short: true, now: 0 });
  const a = day(r.plan.start_ms);
  let b = day(r.plan.end_ms);
  if (a.slice(0, -5) === b.slice(0, -5)) b = b.slice(-5);
  return `shift ${a} to ${b} (${r.site.timezone})`;
}

function render(r) {
  $("empty").hidden = true;
  const v = $("verdict");
  v.className = `verdict ${r.verdict}`;
  v.replaceChildren(
    el("p", { class: "verdict-word" }, r.verdict === "flagged" ? "FLAGGED" : "PASSES"),
    el("p", { class: "headline" }, r.headline),
    r.unmet.length > 1 ? el("div", { class: "also" }, "Also unmet:", el("ul", {}, r.unmet.slice(1).map((u) => el("li", {}, u)))) : null,
    el("p", { class: "muted small" },
      `Plan ${r.plan.id}: ${r.plan.officers} officers, ${shift(r)}, ` +
      `${r.plan.fixes.toLocaleString("en-GB")} simulated fixes at ${r.options.hz} per second, seed ${r.options.seed}. ` +
      (r.verdict === "flagged" ? "Change the plan and check again before the shift." : "")));
  v.hidden = false;

  $("rules-body").replaceChildren(...r.rules.map((s) => el("tr", { class: s.alerts ? "unmet" : null, "data-rule": `${s.post}/${s.rule}` },
    el("td", {}, s.post_name), el("td", {}, s.rule), el("td", {}, s.need), el("td", {}, s.lapses),
    el("td", {}, s.alerts ? el("b", { class: "bad" }, s.alerts) : "0"),
    el("td", {}, s.longest_gap ?? "–"),
    el("td", {}, s.cover_pct === null ? "not required" : `${s.cover_pct.toFixed(1)}%`))));

  const resp = r.response;
  $("th-threshold").textContent = `Within ${resp.threshold_s} s`;
  $("response-help").textContent = resp.rows.length
    ? `For ${resp.samples.toLocaleString("en-GB")} random moments of the shift: how long until the 1st, 2nd, … officer (with the capability the rule needs) could reach the post along the walkways. The last column uses the response time a rule sets (reach_s in the site file). Red: some moments are not answered in time.`
    : "No response analysis: the site has no walkways, or samples was 0.";
  $("response-body").replaceChildren(...resp.rows.map((a) => el("tr", {},
    el("td", {}, a.post_name), el("td", {}, who(a)), el("td", {}, a.median), el("td", {}, a.p90), el("td", {}, a.worst),
    el("td", {}, a.under_threshold < 1 ? el("b", { class: "bad" }, pct(a.under_threshold)) : pct(a.under_threshold)),
    el("td", {}, a.reach_s === null ? "no response time set"
      : a.under_reach < 1 ? el("b", { class: "bad" }, `${pct(a.under_reach)} within ${a.reach_s} s`) : `${pct(a.under_reach)} within ${a.reach_s} s`))));

  $("pic-site").src = r.pictures.site_plan;
  $("pic-site").alt = `Site plan of ${r.site.name} with each patrol route and a heat map of the worst-case time for an officer to arrive; green is fast, red is slow.`;
  $("cap-site").textContent = `Where the officers walk, and how long the first officer could take to arrive at each spot at the worst moment of the shift (green fast, red slow; the dark red line marks ${resp.threshold_s} s).`;
  $("pic-timeline").src = r.pictures.timeline;
  $("pic-timeline").alt = "Per rule, the number of officers counting over the shift against the number needed; red bands are lapses that would raise an alert.";
  $("cap-timeline").textContent = "Predicted cover over the shift, one strip per rule: the black line is how many officers count, the dotted line what the rule needs; red bands would raise an alert, orange ones end within the grace period, grey means the rule is not required then.";
  showGame(r.patrol_game);
  $("result-body").hidden = false;
}

// The plan's patrol game (a plan with targets): what an attacker who watched the
// routine can expect against the fixed routes, and against randomised patrols.
function showGame(g) {
  $("game").hidden = !g;
  if (!g) return;
  if (g.error) {
    $("game-text").textContent = `The patrols cannot be randomised: ${g.error}`;
    $("pic-game").hidden = true;
    $("cap-game").textContent = "";
    return;
  }
  $("game-text").textContent = `Randomising ${g.randomised.join(", ")}: the attacker's best expected payoff is ${g.fixed_payoff.toFixed(2)} against the fixed routes (at ${g.fixed_target}) and ${g.game_payoff.toFixed(2)} against randomised patrols (at ${g.game_target}; ${g.sampled_payoff.toFixed(2)} over ${g.days} sampled days). coverwatch plan randomise writes the day's schedule (seed ${g.seed}).`;
  $("pic-game").hidden = false;
  $("pic-game").src = g.picture;
  $("pic-game").alt = "Per patrol target: cover at the attacker's best moment and the attacker's expected payoff, fixed routes against randomised patrols.";
  $("cap-game").textContent = "Left: how often each target is covered at the moment an attacker who watched the routine would choose (grey fixed routes, blue randomised). Right: what that attacker can expect at each target; the dashed lines are the attacker's best.";
}

async function check(event) {
  event.preventDefault();
  const text = $("plan-text").value;
  $("problems").hidden = true;
  if (!text.trim()) {
    showProblems({ message: "Load a plan file or paste a plan first.", problems: [] });
    $("plan-text").focus();
    return;
  }
  const num = (id) => ($(id).value === "" ? undefined : Number($(id).value));
  const body = { plan: text, hz: num("hz"), samples: num("samples"), seed: num("seed"), threshold_s: num("threshold") };
  const button = $("check");
  button.disabled = true;
  $("busy").textContent = "Simulating the shift…";
  try {
    const res = await fetch(sitePath("/api/v1/plan/check"), {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    if (res.status === 401) {
      location.assign("/login?next=/planning");
      return;
    }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      $("verdict").hidden = true;
      $("result-body").hidden = true;
      $("empty").hidden = true;
      showProblems(problemDetail(data, res));
      $("busy").textContent = "The plan was not checked.";
      return;
    }
    render(data);
    $("busy").textContent = `Checked: ${data.verdict}.`;
    // Keep the verdict in view: it is the answer.
    $("result").focus({ preventScroll: true });
    $("result").scrollIntoView({ block: "start" });
  } catch (e) {
    showProblems({ message: `Could not reach the server: ${e.message}`, problems: [] });
    $("busy").textContent = "";
  } finally {
    button.disabled = !$("read-only").hidden; // stays off for read-only roles
  }
}

async function main() {
  let whoami;
  try {
    whoami = await me();
  } catch (e) {
    if (e instanceof AuthError) return;
    throw e;
  }
  csrf = whoami.csrf_token ?? "";
  $("user").textContent = `${whoami.name} (${whoami.roles.join(", ")})`;
  $("logout").addEventListener("click", logout);
  const canCheck = whoami.roles.includes("supervisor") || whoami.roles.includes("admin");
  if (!canCheck) {
    $("read-only").hidden = false;
    $("check").disabled = true;
  }
  api("/api/v1/site").then((s) => { $("site-name").textContent = `· ${s.name}`; }).catch(() => {});
  $("plan-file").addEventListener("change", async () => {
    const file = $("plan-file").files[0];
    if (!file) return;
    $("plan-text").value = await file.text();
    $("busy").textContent = `Loaded ${file.name}.`;
  });
  $("plan-form").addEventListener("submit", check);
}

main();
